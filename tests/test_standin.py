"""The offline Stripe stand-in, exercised through the official ``stripe`` library.

One stand-in serves the module; every test starts from an empty one. Expected values are
Stripe's documented behaviour, written out here rather than read from the implementation.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import stripe

from django_stripe_bridge.testing import (
    TEST_API_KEY,
    TEST_PAYMENT_METHODS,
    TEST_TOKENS,
    StandInError,
    StripeStandIn,
    pytest_plugin,
    run_stripe_standin,
)
from tests.relay import *  # noqa: F403
from tests.relay import Relay

pytestmark = pytest.mark.standin

ROOT = Path(__file__).resolve().parent.parent
PICKLE = Path("/tmp/localstripe.pickle")  # where localstripe's own CLI would persist

# token → (brand, last4, funding)
SUCCESS_TOKENS = {
    "tok_visa": ("visa", "4242", "credit"),
    "tok_visa_debit": ("visa", "5556", "debit"),
    "tok_mastercard": ("mastercard", "4444", "credit"),
    "tok_mastercard_debit": ("mastercard", "8210", "debit"),
    "tok_mastercard_prepaid": ("mastercard", "5100", "prepaid"),
    "tok_amex": ("amex", "0005", "credit"),
    "tok_discover": ("discover", "1117", "credit"),
    "tok_diners": ("diners", "0004", "credit"),
    "tok_jcb": ("jcb", "0505", "credit"),
    "tok_unionpay": ("unionpay", "0005", "credit"),
}
# token → (error code, decline code, param)
DECLINE_TOKENS = {
    "tok_chargeDeclined": ("card_declined", "generic_decline", None),
    "tok_visa_chargeDeclined": ("card_declined", "generic_decline", None),
    "tok_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds", None),
    "tok_visa_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds", None),
    "tok_chargeDeclinedLostCard": ("card_declined", "lost_card", None),
    "tok_visa_chargeDeclinedLostCard": ("card_declined", "lost_card", None),
    "tok_chargeDeclinedStolenCard": ("card_declined", "stolen_card", None),
    "tok_visa_chargeDeclinedStolenCard": ("card_declined", "stolen_card", None),
    "tok_chargeDeclinedExpiredCard": ("expired_card", "expired_card", "exp_month"),
    "tok_chargeDeclinedIncorrectCvc": ("incorrect_cvc", "incorrect_cvc", "cvc"),
    "tok_chargeDeclinedProcessingError": ("processing_error", "processing_error", None),
    "tok_chargeDeclinedFraudulent": ("card_declined", "fraudulent", None),
    "tok_radarBlock": ("card_declined", "fraudulent", None),
    "tok_visa_chargeDeclinedVelocityLimitExceeded": (
        "card_declined",
        "card_velocity_exceeded",
        None,
    ),
    "tok_chargeCustomerFail": ("card_declined", "generic_decline", None),
}
# token → what its charges do later (succeed first, then a refund fails or settles, or a
# dispute opens); see tests/test_standin_flows.py
LATER_TOKENS = {
    "tok_refundFail": ("visa", "5126"),
    "tok_pendingRefund": ("visa", "7726"),
    "tok_createDispute": ("visa", "0259"),
    "tok_createDisputeProductNotReceived": ("visa", "2685"),
    "tok_createDisputeInquiry": ("visa", "1976"),
}
DECLINE_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "generic_decline": "Your card was declined.",
    "card_velocity_exceeded": (
        "Your card was declined for making repeated attempts too frequently or exceeding its "
        "amount limit."
    ),
}
ALL_EVENT_TYPES = {
    "charge.succeeded",
    "charge.failed",
    "charge.refunded",
    "refund.created",
    "payment_intent.created",
    "payment_intent.canceled",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
}


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in's working directory and TMPDIR: nothing may be written there."""
    return tmp_path_factory.mktemp("standin-home")


@pytest.fixture(scope="module")
def pickle_before() -> float | None:
    return PICKLE.stat().st_mtime if PICKLE.exists() else None


@pytest.fixture(scope="module")
def standin(standin_home: Path, pickle_before: float | None) -> Iterator[StripeStandIn]:
    pytest_plugin.require_standin()
    with run_stripe_standin(
        webhook_delay=0.05, cwd=standin_home, env={"TMPDIR": str(standin_home)}
    ) as running:
        yield running


@pytest.fixture
def clean_standin(standin: StripeStandIn) -> StripeStandIn:
    standin.reset(webhooks=True)
    return standin


@pytest.fixture
def api(clean_standin: StripeStandIn) -> stripe.StripeClient:
    return stripe.StripeClient(
        TEST_API_KEY, base_addresses={"api": clean_standin.base_url}, max_network_retries=0
    )


def charge(api: stripe.StripeClient, source: str, amount: int = 1000, **extra: Any) -> Any:
    return api.v1.charges.create({"amount": amount, "currency": "usd", "source": source, **extra})


def declined(call: Any) -> stripe.CardError:
    with pytest.raises(stripe.CardError) as caught:
        call()
    return caught.value


# --- tokens ----------------------------------------------------------------------------------


def test_every_documented_token_is_covered_here() -> None:
    assert set(TEST_TOKENS) == set(SUCCESS_TOKENS) | set(DECLINE_TOKENS) | set(LATER_TOKENS)


@pytest.mark.parametrize("token", sorted(SUCCESS_TOKENS))
def test_success_token_charges(api: stripe.StripeClient, token: str) -> None:
    brand, last4, funding = SUCCESS_TOKENS[token]
    created = charge(api, token)
    assert created.status == "succeeded"
    assert created.paid is True and created.captured is True
    assert created.outcome.type == "authorized"
    card = created.payment_method_details.card
    assert (card.brand, card.last4, card.funding) == (brand, last4, funding)
    assert created.payment_method.startswith("card_")
    assert created.source.last4 == last4
    assert created.source.object == "card"
    assert api.v1.charges.retrieve(created.id).status == "succeeded"


@pytest.mark.parametrize("token", sorted(DECLINE_TOKENS))
def test_decline_token_charges(api: stripe.StripeClient, token: str) -> None:
    code, decline_code, param = DECLINE_TOKENS[token]
    error = declined(lambda: charge(api, token))
    assert error.http_status == 402
    assert error.code == code
    assert error.error.type == "card_error"
    assert error.error.decline_code == decline_code
    assert error.error.param == param
    assert error.user_message == DECLINE_MESSAGES.get(decline_code, "Your card was declined.")
    assert error.error.charge.startswith("ch_")
    failed = api.v1.charges.retrieve(error.error.charge)
    assert failed.status == "failed"
    assert failed.paid is False
    assert failed.failure_code == code
    assert failed.failure_message == error.user_message
    assert failed.outcome.type in ("issuer_declined", "blocked")
    assert [c.id for c in api.v1.charges.list().data] == [failed.id]


def test_a_stored_token_is_single_use(api: stripe.StripeClient, standin: StripeStandIn) -> None:
    token = api.v1.tokens.create(
        {"card": {"number": "5555555555554444", "exp_month": 12, "exp_year": 2040, "cvc": "123"}}
    )
    assert charge(api, token.id).payment_method_details.card.brand == "mastercard"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        charge(api, token.id)
    assert caught.value.code == "token_already_used"


def test_customer_source_token(api: stripe.StripeClient) -> None:
    customer = api.v1.customers.create({"source": "tok_amex", "email": "ada@example.com"})
    paid = api.v1.charges.create({"amount": 700, "currency": "usd", "customer": customer.id})
    assert paid.status == "succeeded"
    assert paid.customer == customer.id
    assert paid.payment_method_details.card.brand == "amex"


def test_attaching_a_declined_card_is_a_card_error(api: stripe.StripeClient) -> None:
    error = declined(lambda: api.v1.customers.create({"source": "tok_chargeDeclinedExpiredCard"}))
    assert (error.code, error.error.decline_code) == ("expired_card", "expired_card")


# --- amounts and currencies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "accepted"),
    [
        (49, "usd", False),
        (50, "usd", True),
        (49, "eur", False),
        (50, "eur", True),
        (29, "gbp", False),
        (30, "gbp", True),
        (49, "jpy", False),
        (50, "jpy", True),
        (50, "USD", True),
        (0, "usd", False),
    ],
)
def test_minimum_charge_amounts(
    api: stripe.StripeClient, amount: int, currency: str, accepted: bool
) -> None:
    params = {"amount": amount, "currency": currency, "source": "tok_visa"}
    if accepted:
        created = api.v1.charges.create(params)
        assert (created.status, created.currency) == ("succeeded", currency.lower())
        return
    with pytest.raises(stripe.InvalidRequestError) as caught:
        api.v1.charges.create(params)
    assert caught.value.http_status == 400
    assert caught.value.code == "amount_too_small"
    assert caught.value.param == "amount"
    assert caught.value.error.type == "invalid_request_error"
    assert api.v1.charges.list().data == []


def test_minimum_amount_for_payment_intents(api: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        api.v1.payment_intents.create({"amount": 49, "currency": "usd"})
    assert (caught.value.code, caught.value.param) == ("amount_too_small", "amount")
    assert api.v1.payment_intents.create({"amount": 50, "currency": "jpy"}).amount == 50


@pytest.mark.parametrize("resource", ["charges", "payment_intents"])
def test_unknown_currency_is_refused(api: stripe.StripeClient, resource: str) -> None:
    params: dict[str, Any] = {"amount": 1000, "currency": "xyz"}
    if resource == "charges":
        params["source"] = "tok_visa"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        getattr(api.v1, resource).create(params)
    assert caught.value.http_status == 400
    assert caught.value.param == "currency"
    assert caught.value.user_message.startswith("Invalid currency: xyz.")


def test_missing_amount_is_refused(api: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        api.v1.charges.create({"currency": "usd", "source": "tok_visa"})
    assert (caught.value.code, caught.value.param) == ("parameter_missing", "amount")


# --- payment intents -------------------------------------------------------------------------


def test_payment_intent_with_pm_card_visa_succeeds(api: stripe.StripeClient) -> None:
    intent = api.v1.payment_intents.create(
        {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    )
    assert intent.status == "succeeded"
    assert intent.amount_received == 2000
    assert intent.payment_method.startswith("pm_") and intent.payment_method != "pm_card_visa"
    assert isinstance(intent.latest_charge, str)
    paid = api.v1.charges.retrieve(intent.latest_charge)
    assert paid.payment_intent == intent.id
    assert paid.payment_method == intent.payment_method
    assert paid.payment_method_details.card.last4 == "4242"
    expanded = api.v1.payment_intents.retrieve(intent.id, {"expand": ["latest_charge"]})
    assert expanded.latest_charge.id == paid.id


def test_payment_intent_confirmed_later_with_a_payment_method(api: stripe.StripeClient) -> None:
    intent = api.v1.payment_intents.create({"amount": 1500, "currency": "eur"})
    assert intent.status == "requires_payment_method"
    intent = api.v1.payment_intents.confirm(intent.id, {"payment_method": "pm_card_amex"})
    assert intent.status == "succeeded"
    paid = api.v1.charges.retrieve(intent.latest_charge)
    assert paid.payment_method_details.card.brand == "amex"


@pytest.mark.parametrize(
    ("payment_method", "code", "decline_code"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_visa_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_visa_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
        ("pm_card_chargeDeclinedFraudulent", "card_declined", "fraudulent"),
    ],
)
def test_payment_intent_with_a_declined_card(
    api: stripe.StripeClient, payment_method: str, code: str, decline_code: str
) -> None:
    error = declined(
        lambda: api.v1.payment_intents.create(
            {"amount": 2000, "currency": "usd", "payment_method": payment_method, "confirm": True}
        )
    )
    assert error.http_status == 402
    assert (error.code, error.error.decline_code) == (code, decline_code)
    assert error.error.payment_intent.status == "requires_payment_method"
    assert error.error.payment_method.id.startswith("pm_")
    intent = api.v1.payment_intents.retrieve(error.error.payment_intent.id)
    assert intent.status == "requires_payment_method"
    assert intent.payment_method is None
    assert intent.last_payment_error.type == "card_error"
    assert intent.last_payment_error.decline_code == decline_code
    assert intent.last_payment_error.charge == error.error.charge
    failed = api.v1.charges.retrieve(error.error.charge)
    assert (failed.status, failed.payment_intent) == ("failed", intent.id)
    # The customer tries another card on the same PaymentIntent.
    retried = api.v1.payment_intents.confirm(intent.id, {"payment_method": "pm_card_visa"})
    assert retried.status == "succeeded"
    assert retried.last_payment_error is None


def test_every_test_payment_method_is_known(api: stripe.StripeClient) -> None:
    for alias in TEST_PAYMENT_METHODS:
        made = api.v1.payment_methods.retrieve(alias)
        assert made.id.startswith("pm_") and made.id != alias
        assert made.card.last4 == TEST_PAYMENT_METHODS[alias].last4


def test_three_d_secure_then_authenticate(api: stripe.StripeClient, standin: StripeStandIn) -> None:
    intent = api.v1.payment_intents.create(
        {
            "amount": 2000,
            "currency": "usd",
            "payment_method": "pm_card_threeDSecure2Required",
            "confirm": True,
        }
    )
    assert intent.status == "requires_action"
    assert intent.next_action is not None and intent.next_action.type
    assert intent.latest_charge is None
    done = standin.authenticate_payment_intent(intent.id, intent.client_secret)
    assert done["status"] == "succeeded"
    assert api.v1.payment_intents.retrieve(intent.id).status == "succeeded"


def test_three_d_secure_failed_authentication(
    api: stripe.StripeClient, standin: StripeStandIn
) -> None:
    intent = api.v1.payment_intents.create(
        {
            "amount": 2000,
            "currency": "usd",
            "payment_method": "pm_card_authenticationRequired",
            "confirm": True,
        }
    )
    assert intent.status == "requires_action"
    standin.authenticate_payment_intent(intent.id, intent.client_secret, success=False)
    failed = api.v1.payment_intents.retrieve(intent.id)
    assert failed.status == "requires_payment_method"
    assert failed.last_payment_error.code == "payment_intent_authentication_failure"
    assert failed.last_payment_error.payment_method.id.startswith("pm_")


def test_three_d_secure_then_declined(api: stripe.StripeClient, standin: StripeStandIn) -> None:
    intent = api.v1.payment_intents.create(
        {
            "amount": 2000,
            "currency": "usd",
            "payment_method": "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds",
            "confirm": True,
        }
    )
    assert intent.status == "requires_action"
    with pytest.raises(StandInError, match="insufficient_funds"):
        standin.authenticate_payment_intent(intent.id, intent.client_secret)
    after = api.v1.payment_intents.retrieve(intent.id)
    assert after.status == "requires_payment_method"
    assert after.last_payment_error.decline_code == "insufficient_funds"


def test_three_d_secure_redirect_page(api: stripe.StripeClient, standin: StripeStandIn) -> None:
    intent = api.v1.payment_intents.create(
        {
            "amount": 2000,
            "currency": "usd",
            "payment_method": "pm_card_threeDSecureRequired",
            "confirm": True,
            "return_url": "https://shop.example/return?order=7",
        }
    )
    assert intent.next_action.type == "redirect_to_url"
    url = urlparse(intent.next_action.redirect_to_url.url)
    assert f"{url.scheme}://{url.netloc}" == standin.base_url
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    connection.request("GET", f"{url.path}?{url.query}")
    page = connection.getresponse()
    assert page.status == 200
    assert "Complete authentication" in page.read().decode()
    secret = parse_qs(url.query)["client_secret"][0]
    connection.request(
        "POST",
        url.path,
        body=f"client_secret={secret}&action=complete",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    answer = connection.getresponse()
    answer.read()
    connection.close()
    assert answer.status == 303
    back = urlparse(answer.getheader("Location"))
    assert (back.netloc, back.path) == ("shop.example", "/return")
    query = parse_qs(back.query)
    assert query["order"] == ["7"]
    assert query["payment_intent"] == [intent.id]
    assert query["redirect_status"] == ["succeeded"]
    assert api.v1.payment_intents.retrieve(intent.id).status == "succeeded"


def test_off_session_payment_needing_authentication_is_declined(
    api: stripe.StripeClient,
) -> None:
    error = declined(
        lambda: api.v1.payment_intents.create(
            {
                "amount": 2000,
                "currency": "usd",
                "payment_method": "pm_card_authenticationRequired",
                "confirm": True,
                "off_session": True,
            }
        )
    )
    assert (error.code, error.error.decline_code) == (
        "authentication_required",
        "authentication_required",
    )
    assert error.error.payment_intent.status == "requires_payment_method"


def test_cancel_payment_intent(api: stripe.StripeClient) -> None:
    intent = api.v1.payment_intents.create({"amount": 900, "currency": "usd"})
    canceled = api.v1.payment_intents.cancel(
        intent.id, {"cancellation_reason": "requested_by_customer"}
    )
    assert canceled.status == "canceled"
    assert canceled.cancellation_reason == "requested_by_customer"
    assert canceled.canceled_at is not None
    with pytest.raises(stripe.InvalidRequestError) as caught:
        api.v1.payment_intents.cancel(intent.id)
    assert caught.value.code == "payment_intent_unexpected_state"


def test_manual_capture(api: stripe.StripeClient) -> None:
    intent = api.v1.payment_intents.create(
        {
            "amount": 3000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "capture_method": "manual",
        }
    )
    assert intent.status == "requires_capture"
    assert intent.amount_capturable == 3000
    captured = api.v1.payment_intents.capture(intent.id)
    assert captured.status == "succeeded"
    types = [event.type for event in api.v1.events.list({"limit": 100}).data]
    assert "charge.captured" in types
    assert "payment_intent.amount_capturable_updated" in types


# --- refunds ---------------------------------------------------------------------------------


def test_partial_then_full_refund(api: stripe.StripeClient) -> None:
    paid = charge(api, "tok_visa", amount=1000)
    first = api.v1.refunds.create({"charge": paid.id, "amount": 300, "reason": "duplicate"})
    assert (first.amount, first.status, first.reason) == (300, "succeeded", "duplicate")
    after = api.v1.charges.retrieve(paid.id)
    assert (after.amount_refunded, after.refunded) == (300, False)
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        api.v1.refunds.create({"charge": paid.id, "amount": 701})
    assert too_much.value.param == "amount"
    rest = api.v1.refunds.create({"charge": paid.id})
    assert rest.amount == 700
    after = api.v1.charges.retrieve(paid.id)
    assert (after.amount_refunded, after.refunded) == (1000, True)
    with pytest.raises(stripe.InvalidRequestError) as again:
        api.v1.refunds.create({"charge": paid.id})
    assert again.value.code == "charge_already_refunded"


def test_refund_a_payment_intent(api: stripe.StripeClient) -> None:
    intent = api.v1.payment_intents.create(
        {"amount": 2500, "currency": "gbp", "payment_method": "pm_card_visa", "confirm": True}
    )
    refund = api.v1.refunds.create({"payment_intent": intent.id})
    assert (refund.amount, refund.charge, refund.payment_intent) == (
        2500,
        intent.latest_charge,
        intent.id,
    )
    assert api.v1.charges.retrieve(intent.latest_charge).refunded is True


# --- events and webhooks ---------------------------------------------------------------------


def produce_every_event(api: stripe.StripeClient) -> dict[str, str]:
    """Run payments that emit each event type we promise; returns a few object ids."""
    paid = charge(api, "tok_visa")
    failed = declined(lambda: charge(api, "tok_chargeDeclined")).error.charge
    api.v1.refunds.create({"charge": paid.id})
    open_intent = api.v1.payment_intents.create({"amount": 1000, "currency": "usd"})
    api.v1.payment_intents.cancel(open_intent.id)
    good = api.v1.payment_intents.create(
        {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    )
    bad = declined(
        lambda: api.v1.payment_intents.create(
            {
                "amount": 1000,
                "currency": "usd",
                "payment_method": "pm_card_chargeDeclined",
                "confirm": True,
            }
        )
    ).error.payment_intent.id
    return {"paid": paid.id, "failed": failed, "good": good.id, "bad": bad}


def test_events_api(api: stripe.StripeClient) -> None:
    start = int(time.time())
    ids = produce_every_event(api)
    events = list(api.v1.events.list({"limit": 100}).auto_paging_iter())
    assert ALL_EVENT_TYPES <= {event.type for event in events}
    sequence = [event.type for event in reversed(events)]  # oldest first
    assert sequence.index("payment_intent.created") < sequence.index("payment_intent.canceled")

    by_type = lambda kind: [e for e in events if e.type == kind]  # noqa: E731
    assert {e.data.object.id for e in by_type("charge.failed")} >= {ids["failed"]}
    refunded = by_type("charge.refunded")[0].data.object
    assert (refunded.id, refunded.refunded, refunded.amount_refunded) == (ids["paid"], True, 1000)
    assert by_type("refund.created")[0].data.object.charge == ids["paid"]
    pi_charges = [
        e.data.object for e in by_type("charge.succeeded") if e.data.object.payment_intent
    ]
    assert [c.payment_intent for c in pi_charges] == [ids["good"]]
    pi_failures = [e.data.object for e in by_type("charge.failed") if e.data.object.payment_intent]
    assert [c.payment_intent for c in pi_failures] == [ids["bad"]]
    assert by_type("payment_intent.payment_failed")[0].data.object.id == ids["bad"]
    assert by_type("payment_intent.succeeded")[0].data.object.id == ids["good"]

    only = api.v1.events.list({"type": "charge.failed"}).data
    assert {e.type for e in only} == {"charge.failed"} and len(only) == 2
    wildcard = api.v1.events.list({"type": "refund.*"}).data
    assert [e.type for e in wildcard] == ["refund.created"]
    assert len(api.v1.events.list({"created": {"gte": start}, "limit": 100}).data) == len(events)
    assert api.v1.events.list({"created": {"gte": int(time.time()) + 60}}).data == []

    first = api.v1.events.list({"limit": 3})
    assert first.has_more is True
    second = api.v1.events.list({"limit": 3, "starting_after": first.data[-1].id})
    assert [e.id for e in first.data + second.data] == [e.id for e in events[:6]]
    back = api.v1.events.list({"limit": 3, "ending_before": second.data[0].id})
    assert [e.id for e in back.data] == [e.id for e in first.data]
    assert api.v1.events.retrieve(events[0].id).id == events[0].id


def _verify_signature(header: str, body: bytes, secret: str) -> None:
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(parts["v1"], expected.hexdigest())
    assert abs(int(parts["t"]) - time.time()) < 60


def test_webhooks_delivered_and_signed(
    api: stripe.StripeClient, standin: StripeStandIn, relay: Relay
) -> None:
    secret = "whsec_" + uuid.uuid4().hex
    standin.register_webhook(relay.url + "/webhooks/", secret)
    failures = Relay()
    try:
        standin.register_webhook(
            failures.url + "/webhooks/", "whsec_other", events=["charge.failed"], name="f"
        )
        produce_every_event(api)
        listed = list(api.v1.events.list({"limit": 100}).auto_paging_iter())
        relay.wait_for({event.id for event in listed})
        failures.wait_for({event.id for event in listed if event.type == "charge.failed"})
    finally:
        failures.close()
    assert {event["type"] for event in failures.events()} == {"charge.failed"}
    delivered = relay.events()
    assert ALL_EVENT_TYPES <= {event["type"] for event in delivered}
    assert sorted(event["id"] for event in delivered) == sorted(event.id for event in listed)
    taken = relay.take()
    assert {path for path, _signature, _body in taken} == {"/webhooks/"}
    for _path, signature, body in taken:
        _verify_signature(signature, body, secret)
        event = stripe.Webhook.construct_event(body.decode(), signature, secret)
        assert event.type in ALL_EVENT_TYPES | {"charge.refunded"}
    assert all(record.get("status") == 200 for record in standin.webhook_deliveries())


def test_events_carry_the_request_and_its_idempotency_key(api: stripe.StripeClient) -> None:
    key = f"order-{uuid.uuid4()}"
    paid = api.v1.charges.create(
        {"amount": 1000, "currency": "usd", "source": "tok_visa"}, {"idempotency_key": key}
    )
    (event,) = api.v1.events.list({"type": "charge.succeeded"}).data
    assert event.data.object.id == paid.id
    # Subscripted: before stripe 16, ``event.request`` is a method of the object.
    assert event["request"]["idempotency_key"] == key
    assert event["request"]["id"].startswith("req_")


# --- idempotency -----------------------------------------------------------------------------


def test_idempotent_replay(api: stripe.StripeClient) -> None:
    key = str(uuid.uuid4())
    params = {"amount": 1234, "currency": "usd", "source": "tok_visa", "metadata": {"o": "1"}}
    first = api.v1.charges.create(params, {"idempotency_key": key})
    again = api.v1.charges.create(params, {"idempotency_key": key})
    assert again.id == first.id
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert first.last_response.headers.get("Idempotent-Replayed") is None
    assert [c.id for c in api.v1.charges.list().data] == [first.id]
    assert len(api.v1.events.list({"type": "charge.succeeded"}).data) == 1


def test_idempotent_replay_of_a_decline(api: stripe.StripeClient) -> None:
    key = str(uuid.uuid4())
    params = {"amount": 1234, "currency": "usd", "source": "tok_chargeDeclined"}
    first = declined(lambda: api.v1.charges.create(params, {"idempotency_key": key}))
    again = declined(lambda: api.v1.charges.create(params, {"idempotency_key": key}))
    assert again.error.charge == first.error.charge
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(api.v1.charges.list().data) == 1


def test_idempotency_key_with_other_parameters(api: stripe.StripeClient) -> None:
    key = str(uuid.uuid4())
    api.v1.charges.create(
        {"amount": 1000, "currency": "usd", "source": "tok_visa"}, {"idempotency_key": key}
    )
    with pytest.raises(stripe.IdempotencyError) as caught:
        api.v1.charges.create(
            {"amount": 2000, "currency": "usd", "source": "tok_visa"}, {"idempotency_key": key}
        )
    assert caught.value.http_status == 400
    assert caught.value.error.type == "idempotency_error"
    assert "same parameters" in caught.value.user_message
    assert len(api.v1.charges.list().data) == 1


def test_idempotency_key_on_another_endpoint(api: stripe.StripeClient) -> None:
    key = str(uuid.uuid4())
    paid = api.v1.charges.create(
        {"amount": 1000, "currency": "usd", "source": "tok_visa"}, {"idempotency_key": key}
    )
    with pytest.raises(stripe.IdempotencyError):
        api.v1.refunds.create({"charge": paid.id}, {"idempotency_key": key})


def test_idempotency_keys_are_scoped_per_api_key(
    api: stripe.StripeClient, clean_standin: StripeStandIn
) -> None:
    key = str(uuid.uuid4())
    params = {"amount": 1000, "currency": "usd", "source": "tok_visa"}
    other = stripe.StripeClient(
        "sk_test_another_account",
        base_addresses={"api": clean_standin.base_url},
        max_network_retries=0,
    )
    mine = api.v1.charges.create(params, {"idempotency_key": key})
    theirs = other.v1.charges.create(params, {"idempotency_key": key})
    assert mine.id != theirs.id


def test_failed_validation_is_not_saved(api: stripe.StripeClient) -> None:
    key = str(uuid.uuid4())
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.charges.create(
            {"amount": 10, "currency": "usd", "source": "tok_visa"}, {"idempotency_key": key}
        )
    fixed = api.v1.charges.create(
        {"amount": 1000, "currency": "usd", "source": "tok_visa"}, {"idempotency_key": key}
    )
    assert fixed.status == "succeeded"


# --- the server itself -----------------------------------------------------------------------


def test_reset_clears_objects_events_and_idempotency_keys(
    api: stripe.StripeClient, standin: StripeStandIn
) -> None:
    key = str(uuid.uuid4())
    paid = api.v1.charges.create(
        {"amount": 1000, "currency": "usd", "source": "tok_visa"}, {"idempotency_key": key}
    )
    assert api.v1.events.list().data
    standin.reset()
    assert api.v1.charges.list().data == []
    assert api.v1.events.list().data == []
    with pytest.raises(stripe.InvalidRequestError) as caught:
        api.v1.charges.retrieve(paid.id)
    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")
    again = api.v1.charges.create(
        {"amount": 2000, "currency": "usd", "source": "tok_visa"}, {"idempotency_key": key}
    )
    assert again.id != paid.id and again.amount == 2000


def test_unknown_route_answers_like_stripe(api: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        api.raw_request("get", "/v1/no_such_things")
    assert caught.value.http_status == 404
    assert "Unrecognized request URL" in caught.value.user_message


def test_requests_need_a_secret_key(clean_standin: StripeStandIn) -> None:
    anonymous = stripe.StripeClient(
        "pk_test_public", base_addresses={"api": clean_standin.base_url}, max_network_retries=0
    )
    with pytest.raises(stripe.AuthenticationError):
        anonymous.v1.charges.list()


def test_persistence_is_off(
    api: stripe.StripeClient, standin_home: Path, pickle_before: float | None
) -> None:
    produce_every_event(api)
    assert list(standin_home.iterdir()) == []
    after = PICKLE.stat().st_mtime if PICKLE.exists() else None
    assert after == pickle_before


def test_bound_to_loopback_only(standin: StripeStandIn) -> None:
    assert standin.base_url == f"http://127.0.0.1:{standin.port}"
    with pytest.raises(OSError), socket.create_connection(("127.0.0.2", standin.port), 1):
        pass
    proc_net = Path("/proc/net/tcp")
    if proc_net.exists():
        listening = [
            line.split()[1]
            for line in proc_net.read_text().splitlines()[1:]
            if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == standin.port
        ]
        assert listening == [f"0100007F:{standin.port:04X}"]
        six = Path("/proc/net/tcp6")
        if six.exists():
            assert not [
                line
                for line in six.read_text().splitlines()[1:]
                if line.split()[3] == "0A"
                and int(line.split()[1].rsplit(":", 1)[1], 16) == standin.port
            ]


def test_refuses_to_bind_a_public_address() -> None:
    with pytest.raises(StandInError, match="refusing to bind"):
        StripeStandIn(host="192.0.2.10", startup_timeout=10).start()


def test_explicit_port_and_stop() -> None:
    pytest_plugin.require_standin()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with run_stripe_standin(port=port) as running:
        assert running.port == port
        assert running.running
        pid = running.pid
    assert not running.running
    assert pid is not None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 1):
        pass


def test_importing_the_package_needs_no_localstripe() -> None:
    code = (
        "import sys, django_stripe_bridge.testing as t;"
        "assert t.TEST_API_KEY.startswith('sk_test_');"
        "bad = {'localstripe', 'aiohttp', 'stripe'} & set(sys.modules);"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


# --- the pytest plugin -----------------------------------------------------------------------


def test_plugin_skips_or_fails_without_localstripe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pytest_plugin.importlib.util, "find_spec", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="localstripe and aiohttp"):
        pytest_plugin.require_standin()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        pytest_plugin.require_standin()


def test_plugin_fixtures(tmp_path: Path) -> None:
    pytest_plugin.require_standin()
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["django_stripe_bridge.testing.pytest_plugin"]\n'
    )
    (tmp_path / "test_uses_plugin.py").write_text(
        textwrap.dedent(
            """
            def test_charge(stripe_client, stripe_standin):
                charge = stripe_client.v1.charges.create(
                    {"amount": 500, "currency": "usd", "source": "tok_visa"}
                )
                assert charge.status == "succeeded"
                assert stripe_standin.base_url.startswith("http://127.0.0.1:")

            def test_clean(stripe_client):
                assert stripe_client.v1.charges.list().data == []
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:django"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
