"""SPEC §4: the paths, the trailing-slash rule and the request rules not covered elsewhere."""

from __future__ import annotations

import json

import pytest
from django.test import Client, override_settings
from django.urls import include, path

from django_stripe_bridge.models import StripeTransaction
from django_stripe_bridge.serializers import ChargeRequestSerializer
from tests.charge_fixtures import *  # noqa: F403
from tests.charge_fixtures import API, bridge_settings_for, post_json
from tests.factories import StripeTransactionFactory
from tests.webhook_fixtures import event_body, fresh_event, sign_payload

# (method, path, body) for every route of the app; each must answer in place, no redirect.
ROUTES = [
    ("post", "charge", {"token": "tok_visa", "amount": 0}),
    ("post", "payment-intents", {"amount": 0}),
    ("post", "checkout-sessions", {"amount": 0}),
    ("get", "transactions/ch_audit_slash", None),
    ("get", "schema", None),
]


@pytest.mark.django_db
@pytest.mark.parametrize("slash", ["", "/"])
@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_path_answers_with_and_without_a_slash_never_a_redirect(
    settings, method, path, body, slash
):
    settings.APPEND_SLASH = True  # CommonMiddleware is on: it must have nothing to do
    StripeTransactionFactory(id="ch_audit_slash")
    client = Client()
    url = f"{API}/{path}{slash}"
    if method == "post":
        response = client.post(url, json.dumps(body), content_type="application/json")
        assert response.status_code == 400  # amount 0 is refused before Stripe is called
        assert response.json()["error"]["param"] == "amount"
    else:
        response = client.get(url)
        assert response.status_code == 200, response.content
    assert "Location" not in response


@pytest.mark.django_db
@pytest.mark.parametrize("slash", ["", "/"])
def test_the_webhook_answers_with_and_without_a_slash(slash):
    event = fresh_event("charge.succeeded")
    body = event_body(event)
    response = Client().post(
        f"{API}/webhooks/handler{slash}",
        body,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(body, "whsec_tests_primary")},
    )
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}


# --- the charge body -------------------------------------------------------------------------


def _validate(body):
    serializer = ChargeRequestSerializer(data=body)
    return serializer.is_valid(), serializer


def test_metadata_may_have_exactly_fifty_keys():
    metadata = {f"k{i}": "v" for i in range(50)}
    valid, serializer = _validate({"token": "tok_visa", "amount": 1000, "metadata": metadata})
    assert valid, serializer.errors
    assert serializer.validated_data["metadata"] == metadata


@pytest.mark.parametrize("amount", [0, -1])
def test_zero_and_negative_amounts_are_refused_whatever_min_amount_says(settings, amount):
    bridge_settings_for(settings, MIN_AMOUNT=-10)
    valid, serializer = _validate({"token": "tok_visa", "amount": amount})
    assert not valid
    assert "amount" in serializer.errors


@pytest.mark.django_db
@pytest.mark.standin
def test_a_payment_method_id_can_be_charged(bridge_stripe, csrf_client):
    """§1: a one-time card token *or a PaymentMethod* is charged."""
    response = post_json(csrf_client, "charge", {"token": "pm_card_visa", "amount": 1000})
    assert response.status_code == 200, response.content
    charge = response.json()
    assert charge["status"] == "succeeded"
    assert StripeTransaction.objects.get(pk=charge["id"]).status == "succeeded"


# --- mounted under another prefix ------------------------------------------------------------

urlpatterns = [
    path("pay/v2/", include("django_stripe_bridge.urls")),
]


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_the_app_works_under_any_prefix():
    client = Client()
    response = client.post(
        "/pay/v2/charge", json.dumps({"token": "tok_visa"}), content_type="application/json"
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "amount"
    assert client.get("/pay/v2/transactions/ch_nowhere/").status_code == 404

    body = event_body(fresh_event("charge.succeeded"))
    signature = sign_payload(body, "whsec_tests_primary")
    response = client.post(
        "/pay/v2/webhooks/handler",
        body,
        content_type="application/json",
        headers={"Stripe-Signature": signature},
    )
    assert response.status_code == 200

    schema = client.get("/pay/v2/schema?format=json").json()
    assert set(schema["paths"]) == {
        "/pay/v2/charge",
        "/pay/v2/payment-intents",
        "/pay/v2/checkout-sessions",
        "/pay/v2/transactions/{transaction_id}",
        "/pay/v2/webhooks/handler",
        "/pay/v2/events",
    }
