"""``POST payment-intents`` through the real stripe library against the offline stand-in."""

from __future__ import annotations

import pytest

from django_stripe_bridge.models import StripeTransaction
from tests.charge_fixtures import *  # noqa: F403
from tests.charge_fixtures import bridge_settings_for, post_json, stripe_key_for

pytestmark = [pytest.mark.django_db, pytest.mark.standin]

RESPONSE_FIELDS = {"id", "object", "status", "client_secret", "amount", "currency", "next_action"}


def standin_intents(standin):
    return standin.client().v1.payment_intents.list({"limit": 100}).data


@pytest.mark.parametrize("path", ["payment-intents", "payment-intents/"])
def test_a_payment_intent_confirmed_with_a_visa_succeeds(bridge_stripe, csrf_client, path):
    body = {"amount": 1000, "payment_method": "pm_card_visa", "confirm": True}
    response = post_json(csrf_client, path, body)

    assert response.status_code == 200, response.content
    intent = response.json()
    assert set(intent) == RESPONSE_FIELDS
    assert intent["id"].startswith("pi_")
    assert intent["object"] == "payment_intent"
    assert intent["status"] == "succeeded"
    assert intent["client_secret"].startswith(intent["id"] + "_secret_")
    assert (intent["amount"], intent["currency"], intent["next_action"]) == (1000, "usd", None)
    assert response["Cache-Control"] == "no-store"

    tx = StripeTransaction.objects.get(pk=intent["id"])
    assert (tx.kind, tx.status, tx.amount, tx.currency) == (
        "payment_intent",
        "succeeded",
        1000,
        "usd",
    )
    assert tx.idempotency_key


def test_a_declined_payment_intent_is_402_naming_it_and_its_charge(bridge_stripe, csrf_client):
    body = {
        "amount": 1000,
        "payment_method": "pm_card_chargeDeclinedInsufficientFunds",
        "confirm": True,
    }
    response = post_json(csrf_client, "payment-intents", body)

    assert response.status_code == 402, response.content
    error = response.json()["error"]
    assert error["type"] == "card_error"
    assert (error["code"], error["decline_code"]) == ("card_declined", "insufficient_funds")
    assert error["payment_intent"].startswith("pi_")
    assert error["charge"].startswith("ch_")
    tx = StripeTransaction.objects.get(pk=error["payment_intent"])
    assert (tx.kind, tx.status) == ("payment_intent", "failed")
    assert not StripeTransaction.objects.filter(pk=error["charge"]).exists()


def test_a_card_that_needs_3d_secure_requires_action(bridge_stripe, csrf_client):
    body = {"amount": 1000, "payment_method": "pm_card_threeDSecure2Required", "confirm": True}
    response = post_json(csrf_client, "payment-intents", body)

    assert response.status_code == 200, response.content
    intent = response.json()
    assert intent["status"] == "requires_action"
    assert intent["next_action"]["type"] in ("use_stripe_sdk", "redirect_to_url")
    assert StripeTransaction.objects.get(pk=intent["id"]).status == "requires_action"
    # The customer completes 3-D Secure with Stripe.js and the client secret.
    done = bridge_stripe.authenticate_payment_intent(intent["id"], intent["client_secret"])
    assert done["status"] == "succeeded"


def test_without_confirm_the_intent_waits_for_a_payment_method(bridge_stripe, csrf_client):
    response = post_json(csrf_client, "payment-intents", {"amount": 1500, "currency": "eur"})

    assert response.status_code == 200
    intent = response.json()
    assert intent["status"] == "requires_payment_method"
    assert (intent["amount"], intent["currency"]) == (1500, "eur")
    assert StripeTransaction.objects.get(pk=intent["id"]).status == "pending"


def test_manual_capture_only_authorizes(bridge_stripe, csrf_client):
    body = {
        "amount": 1000,
        "payment_method": "pm_card_visa",
        "confirm": True,
        "capture_method": "manual",
    }
    response = post_json(csrf_client, "payment-intents", body)

    assert response.status_code == 200, response.content
    intent = response.json()
    assert intent["status"] == "requires_capture"
    assert bridge_stripe.client().v1.payment_intents.retrieve(intent["id"]).capture_method == (
        "manual"
    )
    # (The transaction's status for an authorization is the payment-status fold's business.)
    assert StripeTransaction.objects.get(pk=intent["id"]).amount == 1000


@pytest.mark.parametrize("body", [{}, {"capture_method": "automatic"}])
def test_automatic_capture_is_stripes_default(bridge_stripe, csrf_client, body):
    body = {"amount": 1000, "payment_method": "pm_card_visa", "confirm": True, **body}
    intent = post_json(csrf_client, "payment-intents", body).json()

    assert intent["status"] == "succeeded"
    sent = bridge_stripe.client().v1.payment_intents.retrieve(intent["id"]).capture_method
    assert sent in ("automatic", "automatic_async")


def test_with_a_payment_method_but_no_confirm_it_waits_for_confirmation(bridge_stripe, csrf_client):
    body = {"amount": 1000, "payment_method": "pm_card_visa", "confirm": False}
    intent = post_json(csrf_client, "payment-intents", body).json()
    assert intent["status"] == "requires_confirmation"


def test_the_same_idempotency_key_twice_makes_one_payment(bridge_stripe, csrf_client):
    body = {"amount": 1000, "payment_method": "pm_card_visa", "confirm": True}
    first = post_json(csrf_client, "payment-intents", body, idempotency_key="cart-7")
    again = post_json(csrf_client, "payment-intents", body, idempotency_key="cart-7")

    assert first.status_code == again.status_code == 200, again.content
    assert first.json()["id"] == again.json()["id"]
    assert again.json()["status"] == "succeeded"
    assert len(standin_intents(bridge_stripe)) == 1
    charges = bridge_stripe.client().v1.charges.list().data
    assert len(charges) == 1
    assert StripeTransaction.objects.get().idempotency_key == stripe_key_for(csrf_client, "cart-7")


def test_a_key_reused_with_another_amount_is_409(bridge_stripe, csrf_client):
    body = {"amount": 1000, "payment_method": "pm_card_visa", "confirm": True}
    assert post_json(csrf_client, "payment-intents", body, idempotency_key="k").status_code == 200
    response = post_json(csrf_client, "payment-intents", {**body, "amount": 5}, idempotency_key="k")
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "idempotency_error"


def test_an_unknown_payment_method_is_400_naming_it(bridge_stripe, csrf_client):
    body = {"amount": 1000, "payment_method": "pm_doesNotExist", "confirm": True}
    response = post_json(csrf_client, "payment-intents", body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "payment_method"


BAD_BODIES = [
    ({}, "amount"),
    ({"amount": "1000"}, "amount"),
    ({"amount": 10.5}, "amount"),
    ({"amount": 0}, "amount"),
    ({"amount": True}, "amount"),
    ({"amount": 1000, "currency": "dollars"}, "currency"),
    ({"amount": 1000, "confirm": True}, "payment_method"),
    ({"amount": 1000, "confirm": "true"}, "confirm"),
    ({"amount": 1000, "confirm": 1}, "confirm"),
    ({"amount": 1000, "payment_method": 5}, "payment_method"),
    ({"amount": 1000, "capture_method": "later"}, "capture_method"),
    ({"amount": 1000, "capture_method": "Manual"}, "capture_method"),
    ({"amount": 1000, "capture_method": None}, "capture_method"),
    ({"amount": 1000, "capture_method": 1}, "capture_method"),
    ({"amount": 1000, "payment_method": "pm card"}, "payment_method"),
    ({"amount": 1000, "metadata": {"a": 1}}, "metadata[a]"),
    ({"amount": 1000, "description": "d" * 1001}, "description"),
    ({"amount": 1000, "token": "tok_visa"}, "token"),
    ([{"amount": 1000}, {"amount": 1000}], "body"),
    ("pay", "body"),
]


@pytest.mark.parametrize(("body", "param"), BAD_BODIES)
def test_bad_input_is_400_naming_the_parameter(bridge_stripe, csrf_client, body, param):
    response = post_json(csrf_client, "payment-intents", body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert standin_intents(bridge_stripe) == []


def test_a_one_element_array_body_is_accepted(bridge_stripe, csrf_client):
    response = post_json(csrf_client, "payment-intents", [{"amount": 1000}])
    assert response.status_code == 200


def test_stripe_down_is_502(bridge_stripe, csrf_client, settings, closed_port_url):
    bridge_settings_for(settings, API_BASE=closed_port_url)
    response = post_json(csrf_client, "payment-intents", {"amount": 1000})
    assert response.status_code == 502


def test_not_configured_is_503(bridge_stripe, csrf_client, settings):
    bridge_settings_for(settings, API_KEY=None)
    response = post_json(csrf_client, "payment-intents", {"amount": 1000})
    assert response.status_code == 503


def test_permission_classes_apply(bridge_stripe, csrf_client, settings):
    bridge_settings_for(
        settings, CHARGE_PERMISSION_CLASSES=["rest_framework.permissions.IsAuthenticated"]
    )
    assert post_json(csrf_client, "payment-intents", {"amount": 1000}).status_code == 403
