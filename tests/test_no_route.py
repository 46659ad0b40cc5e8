"""Every path under the app's prefix answers JSON, also when no route matches (issue 10, item 4)."""

from __future__ import annotations

import pytest

from tests.charge_fixtures import API

PATHS = [
    "transactions/a%2Fb",
    "transactions/ch_1/extra",
    "transactions/ch_1/extra/",
    "charge/more",
    "nothing-here",
    "webhooks",
    "webhooks/handler/x",
    "schema/x",
    "%00",
    "x" * 5000,
]


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", PATHS)
def test_a_path_no_route_matches_is_a_json_404(client, settings, path, debug):
    settings.DEBUG = debug
    response = client.get(f"{API}/{path}")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "resource_missing")
    assert "charge, payment-intents, checkout-sessions, transactions/<id>" in error["message"]
    assert len(error["message"]) < 200


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options", "head"])
def test_every_method_on_an_unmatched_path_is_a_json_404(method, settings):
    from django.test import Client

    settings.DEBUG = True
    # A session and CSRF checks change nothing: there is nothing here to protect.
    response = getattr(Client(enforce_csrf_checks=True), method)(f"{API}/transactions/a/b")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    if method != "head":
        assert response.json()["error"]["code"] == "resource_missing"


def test_the_routes_still_answer(client, db):
    assert client.get(f"{API}/transactions/ch_nowhere").status_code == 404
    assert (
        client.get(f"{API}/transactions/ch_nowhere")
        .json()["error"]["message"]
        .startswith("No such transaction")
    )
    assert client.get(f"{API}/schema").status_code == 200
    assert client.get(f"{API}/charge").status_code == 405
    assert client.get(f"{API}/webhooks/handler").status_code == 405


def test_paths_outside_the_prefix_are_the_sites_own(client):
    response = client.get("/elsewhere/transactions/a/b")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
