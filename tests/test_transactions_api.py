"""``GET transactions/<id>``: the polling fallback (SPEC §4)."""

from __future__ import annotations

import pytest
from drf_spectacular.validation import validate_schema

from django_stripe_bridge.ingest import ingest_event
from tests.charge_fixtures import *  # noqa: F403
from tests.charge_fixtures import API, post_json
from tests.factories import StripeTransactionFactory, charge_object, make_event

pytestmark = pytest.mark.django_db

FIELDS = {
    "id",
    "kind",
    "status",
    "amount",
    "amount_refunded",
    "currency",
    "livemode",
    "created_at",
    "updated_at",
    "events",
}


@pytest.mark.parametrize("slash", ["", "/"])
def test_a_transaction_with_its_events_oldest_first(client, slash):
    ingest_event(make_event("charge.succeeded", charge_object("ch_poll"), created=1_700_000_000))
    refund = charge_object("ch_poll", amount_refunded=400, refunded=False)
    ingest_event(make_event("charge.refunded", refund, created=1_700_000_100, event_id="evt_r"))

    response = client.get(f"{API}/transactions/ch_poll{slash}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == FIELDS
    assert body["id"] == "ch_poll"
    assert (body["kind"], body["status"]) == ("charge", "partially_refunded")
    assert (body["amount"], body["amount_refunded"], body["currency"]) == (1000, 400, "usd")
    assert body["livemode"] is False
    assert body["created_at"].endswith("Z") and body["updated_at"]
    assert [e["type"] for e in body["events"]] == ["charge.succeeded", "charge.refunded"]
    assert body["events"][1] == {
        "event_id": "evt_r",
        "type": "charge.refunded",
        "created": 1_700_000_100,
    }
    assert response["Cache-Control"] == "no-store"


def test_a_transaction_without_events(client):
    StripeTransactionFactory(id="pi_quiet", kind="payment_intent", status="pending")
    body = client.get(f"{API}/transactions/pi_quiet").json()
    assert (body["kind"], body["status"], body["events"]) == ("payment_intent", "pending", [])


def test_an_unknown_transaction_is_404_in_the_error_shape(client):
    response = client.get(f"{API}/transactions/ch_unknown")
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "resource_missing")
    assert "ch_unknown" in error["message"]


def test_knowing_the_id_is_enough_whatever_the_charge_permissions(client, settings):
    settings.STRIPE_BRIDGE = {
        **settings.STRIPE_BRIDGE,
        "CHARGE_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    }
    StripeTransactionFactory(id="ch_open")
    assert client.get(f"{API}/transactions/ch_open").status_code == 200


def test_post_is_405(client):
    StripeTransactionFactory(id="ch_ro")
    response = client.post(f"{API}/transactions/ch_ro", {}, content_type="application/json")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.standin
def test_a_charge_made_through_the_bridge_can_be_polled(bridge_stripe, csrf_client):
    charge = post_json(csrf_client, "charge", {"token": "tok_visa", "amount": 1234}).json()
    body = csrf_client.get(f"{API}/transactions/{charge['id']}").json()
    assert (body["id"], body["status"], body["amount"]) == (charge["id"], "succeeded", 1234)


# --- schema ----------------------------------------------------------------------------------


def test_the_schema_is_yaml_by_default_and_lists_the_endpoints(client):
    response = client.get(f"{API}/schema")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    text = response.content.decode()
    assert text.startswith("openapi: 3")
    for path in ("charge", "payment-intents", "transactions/{transaction_id}"):
        assert f"  /api/services/Stripe/{path}:" in text


def test_the_schema_as_json_documents_requests_and_error_shapes(client):
    response = client.get(f"{API}/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    assert set(paths) == {
        "/api/services/Stripe/charge",
        "/api/services/Stripe/payment-intents",
        "/api/services/Stripe/checkout-sessions",
        "/api/services/Stripe/transactions/{transaction_id}",
        "/api/services/Stripe/webhooks/handler",
        "/api/services/Stripe/events",
    }
    validate_schema(schema)  # a valid OpenAPI 3 document, webhook operation included
    webhook = paths["/api/services/Stripe/webhooks/handler"]["post"]
    assert [p["name"] for p in webhook["parameters"]] == ["Stripe-Signature"]
    assert set(webhook["responses"]) == {"200", "400", "413", "503"}
    charge = paths["/api/services/Stripe/charge"]["post"]
    assert set(charge["responses"]) >= {"200", "400", "402", "409", "429", "502", "503"}
    assert any(p["name"] == "Idempotency-Key" for p in charge["parameters"])
    assert "application/json" in charge["requestBody"]["content"]
    components = schema["components"]["schemas"]
    assert {"token", "amount"} <= set(components["ChargeRequest"]["required"])
    assert set(components["ErrorDetail"]["properties"]) >= {"type", "message", "param"}
    intents = paths["/api/services/Stripe/payment-intents"]["post"]
    assert set(intents["responses"]) >= {"200", "400", "402", "409", "429", "502", "503"}
    tx = paths["/api/services/Stripe/transactions/{transaction_id}"]["get"]
    assert set(tx["responses"]) == {"200", "403", "404"}
