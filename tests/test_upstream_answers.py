"""Stripe's answers are checked before anything is stored or relayed (issue 10, item 2).

A fake Stripe on loopback, driven through the official stripe library, answers what real
Stripe would not. The bridge must answer 502 in its error shape and store nothing, and no
secret may reach a response (nor a log record: the autouse ``no_secret_in_logs`` watches).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from django_stripe_bridge import upstream
from django_stripe_bridge.exceptions import StripeUnavailable
from django_stripe_bridge.models import StripeTransaction
from tests import fake_stripe
from tests.charge_fixtures import TEST_API_KEY, bridge_settings_for, post_json
from tests.fake_stripe import FakeStripe

pytestmark = pytest.mark.django_db

CHARGES = r"/v1/charges"
INTENTS = r"/v1/payment_intents"
CONFIRM = r"/v1/payment_intents/[^/]+/confirm"
VISA = {"token": "tok_visa", "amount": 1000}
SECRET_PART = TEST_API_KEY[len("sk_test_") :]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[tuple[FakeStripe, str]]:
    fake = FakeStripe()
    with fake.serve() as url:
        yield fake, url


@pytest.fixture
def fake(fake_server: tuple[FakeStripe, str], settings: Any) -> FakeStripe:
    stripe, url = fake_server
    stripe.reset()
    bridge_settings_for(
        settings,
        API_KEY=TEST_API_KEY,
        API_BASE=url,
        MAX_NETWORK_RETRIES=0,
        TIMEOUT=5,
        CHARGE_THROTTLE_RATE=None,
    )
    cache.clear()
    return stripe


def echo_authorization(headers: dict[str, str]) -> str:
    return headers.get("authorization", "")


def assert_502_and_nothing_stored(response: Any) -> None:
    assert response.status_code == 502, response.content
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "stripe_unavailable")
    assert error["message"]
    assert SECRET_PART not in response.content.decode()
    assert not StripeTransaction.objects.exists()


def test_a_well_formed_answer_is_relayed(fake, client):
    """The fake speaks Stripe's shape: the refusals below are about the answers alone."""
    fake.answer("POST", CHARGES, 200, fake_stripe.charge())
    response = post_json(client, "charge", VISA)
    assert response.status_code == 200, response.content
    assert response.json()["id"] == "ch_fake1"
    assert StripeTransaction.objects.get().pk == "ch_fake1"


BAD_CHARGES = {
    "empty object": {},
    "no id": {k: v for k, v in fake_stripe.charge().items() if k != "id"},
    "empty id": fake_stripe.charge(id=""),
    "a PaymentIntent id": fake_stripe.charge(id="pi_123"),
    "markup in the id": fake_stripe.charge(id="ch_<script>"),
    "an id that is a number": fake_stripe.charge(id=123),
    "another object": fake_stripe.charge(object="payment_intent"),
    "no status": {k: v for k, v in fake_stripe.charge().items() if k != "status"},
    "an unknown status": fake_stripe.charge(status="exploded"),
    "an amount as a string": fake_stripe.charge(amount="1000"),
    "a negative amount": fake_stripe.charge(amount=-1),
    "a boolean amount": fake_stripe.charge(amount=True),
    "no amount": {k: v for k, v in fake_stripe.charge().items() if k != "amount"},
    "a bad amount_refunded": fake_stripe.charge(amount_refunded=1.5),
    "a bad currency": fake_stripe.charge(currency="dollars"),
    "paid as a string": fake_stripe.charge(paid="true"),
    "a bad payment_intent": fake_stripe.charge(payment_intent="ch_1"),
    "a JSON array": [],
    "a JSON string": "ok",
    "JSON null": None,
    "a key in the description": fake_stripe.charge(description=f"key {TEST_API_KEY}"),
    "a key-shaped string": fake_stripe.charge(failure_message="sk_live_abcdefghijklmnop"),
    "a key nested in metadata": fake_stripe.charge(metadata={"a": [{"b": TEST_API_KEY}]}),
    "a key as a metadata key": fake_stripe.charge(metadata={TEST_API_KEY: "x"}),
}


@pytest.mark.parametrize("body", BAD_CHARGES.values(), ids=BAD_CHARGES.keys())
def test_a_malformed_charge_is_502_and_nothing_is_stored(fake, client, body):
    fake.answer("POST", CHARGES, 200, body)
    assert_502_and_nothing_stored(post_json(client, "charge", VISA))


def test_an_echoed_authorization_header_never_reaches_the_client(fake, client):
    fake.answer("POST", CHARGES, 200, lambda h: fake_stripe.charge(description=h["authorization"]))
    assert_502_and_nothing_stored(post_json(client, "charge", VISA))
    assert fake.requests[0]["headers"]["authorization"] == f"Bearer {TEST_API_KEY}"


def test_a_non_json_answer_holding_the_key_is_502_without_it(fake, client):
    fake.answer("POST", CHARGES, 200, f"<html>{TEST_API_KEY}</html>".encode())
    assert_502_and_nothing_stored(post_json(client, "charge", VISA))


BAD_INTENTS = {
    "no id": {k: v for k, v in fake_stripe.payment_intent().items() if k != "id"},
    "a charge id": fake_stripe.payment_intent(id="ch_1", client_secret="ch_1_secret_x"),
    "another object": fake_stripe.payment_intent(object="charge"),
    "an unknown status": fake_stripe.payment_intent(status="done"),
    "no client_secret": fake_stripe.payment_intent(client_secret=None),
    "another intent's client_secret": fake_stripe.payment_intent(client_secret="pi_x_secret_y"),
    "a bad next_action": fake_stripe.payment_intent(next_action="redirect"),
    "a float amount": fake_stripe.payment_intent(amount=10.5),
    "the key in next_action": fake_stripe.payment_intent(next_action={"k": TEST_API_KEY}),
}


@pytest.mark.parametrize("body", BAD_INTENTS.values(), ids=BAD_INTENTS.keys())
def test_a_malformed_payment_intent_is_502_and_nothing_is_stored(fake, client, body):
    fake.answer("POST", INTENTS, 200, body)
    assert_502_and_nothing_stored(post_json(client, "payment-intents", {"amount": 1000}))


def test_a_malformed_confirmation_is_502_and_leaves_the_created_intent_as_it_was(fake, client):
    fake.answer("POST", INTENTS, 200, fake_stripe.payment_intent(payment_method="pm_1"))
    fake.answer("POST", CONFIRM, 200, lambda h: {"id": "pi_fake1", "echo": h["authorization"]})
    body = {"amount": 1000, "payment_method": "pm_card_visa", "confirm": True}
    response = post_json(client, "payment-intents", body)

    assert response.status_code == 502, response.content
    assert SECRET_PART not in response.content.decode()
    tx = StripeTransaction.objects.get()
    assert (tx.pk, tx.status) == ("pi_fake1", "pending")


def card_error(**fields: Any) -> dict[str, Any]:
    error = {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
        "charge": "ch_declined1",
        **fields,
    }
    return {"error": error}


@pytest.mark.parametrize(
    "field", ["code", "decline_code", "advice_code", "charge", "param", "message"]
)
def test_a_key_in_any_field_of_a_card_error_is_never_relayed(fake, client, field):
    fake.answer("POST", CHARGES, 402, lambda h: card_error(**{field: h["authorization"]}))
    response = post_json(client, "charge", VISA)

    assert response.status_code == 402, response.content
    assert SECRET_PART not in response.content.decode()
    error = response.json()["error"]
    assert error["type"] == "card_error"
    # A "charge id" that is no charge id is not recorded as a transaction either.
    stored = list(StripeTransaction.objects.values_list("pk", flat=True))
    assert stored == ([] if field == "charge" else ["ch_declined1"])


def test_a_card_error_keeps_its_well_formed_fields(fake, client):
    fake.answer("POST", CHARGES, 402, card_error(advice_code="try_again_later"))
    error = post_json(client, "charge", VISA).json()["error"]
    assert {k: error[k] for k in ("code", "decline_code", "advice_code", "charge")} == {
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "advice_code": "try_again_later",
        "charge": "ch_declined1",
    }


def test_garbage_in_a_card_error_is_dropped(fake, client):
    fake.answer(
        "POST",
        CHARGES,
        402,
        card_error(decline_code="<b>x</b>", charge={"id": "ch_1"}, code="x" * 500),
    )
    error = post_json(client, "charge", VISA).json()["error"]
    assert "decline_code" not in error and "charge" not in error
    assert error["code"] == "card_declined"  # the bridge's own, for a code it could not relay


@pytest.mark.parametrize("field", ["param", "code", "message"])
def test_a_key_in_an_invalid_request_error_is_never_relayed(fake, client, field):
    error = {"type": "invalid_request_error", "message": "No such token", "param": "source"}
    fake.answer("POST", CHARGES, 400, lambda h: {"error": {**error, field: h["authorization"]}})
    response = post_json(client, "charge", VISA)

    assert response.status_code == 400, response.content
    assert SECRET_PART not in response.content.decode()


def test_a_long_message_is_cut(fake, client):
    error = {"type": "invalid_request_error", "message": "m" * 100_000}
    fake.answer("POST", CHARGES, 400, {"error": error})
    message = post_json(client, "charge", VISA).json()["error"]["message"]
    assert len(message) <= upstream.MAX_MESSAGE_LENGTH


# --- the helper other calls reuse ------------------------------------------------------------


def test_validated_takes_a_prefix_and_knows_refunds():
    refund = {
        "id": "re_1",
        "object": "refund",
        "status": "succeeded",
        "amount": 500,
        "currency": "usd",
        "created": 1,
        "charge": "ch_1",
        "payment_intent": None,
    }
    assert upstream.validated(refund, object="refund") == refund
    with pytest.raises(StripeUnavailable, match="'id'"):
        upstream.validated(refund, object="refund", prefix="pyr_")
    with pytest.raises(StripeUnavailable, match="'charge'"):
        upstream.validated({**refund, "charge": "pi_1"}, object="refund")


def test_the_refusal_message_names_the_field_and_no_value():
    with pytest.raises(StripeUnavailable) as caught:
        upstream.validated(fake_stripe.charge(amount="lots-of-money"), object="charge")
    assert "'amount'" in caught.value.message
    assert "lots-of-money" not in caught.value.message
