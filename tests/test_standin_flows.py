"""Payment lifecycles in the offline Stripe stand-in, as Stripe runs them.

Authorization and capture (in full, in part), release (cancel, expiry), declines, refunds that
fail or settle later, disputes and inquiries, each under the API versions where Stripe's
behaviour differs. Expected values are Stripe's documented behaviour (its changelog for
2024-10-28 and 2025-03-31, its test cards), written out here; docs/testing.md lists the same
sequences. Every test reads the events through the Events API, oldest first.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe

from django_stripe_bridge.testing import (
    StandInError,
    StripeStandIn,
    pytest_plugin,
    run_stripe_standin,
)

pytestmark = pytest.mark.standin

#: Before 2024-10-28: no refund.* events for charge refunds; remainders are refunded.
OLD = "2024-06-20"
#: 2024-10-28 … 2025-03-30: refund.* events for every refund; remainders still refunded.
ACACIA = "2024-12-18.acacia"
#: Since 2025-03-31: remainders and canceled authorizations are released, not refunded.
BASIL = "2025-03-31.basil"


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StripeStandIn]:
    pytest_plugin.require_standin()
    home: Path = tmp_path_factory.mktemp("standin-flows")
    # "Later" only happens when a test calls settle(): no race with the assertions.
    with run_stripe_standin(webhook_delay=0.05, async_delay=300, cwd=home) as running:
        yield running
        log = running.stderr_text()
    # Every flow ran without an error inside the stand-in (its deferred tasks included).
    assert "Traceback" not in log and "failed" not in log, log


@pytest.fixture
def clean(standin: StripeStandIn) -> StripeStandIn:
    standin.reset(webhooks=True)
    return standin


def client(standin: StripeStandIn, version: str = BASIL) -> stripe.StripeClient:
    return standin.client(stripe_version=version)


@pytest.fixture
def api(clean: StripeStandIn) -> stripe.StripeClient:
    return client(clean)


class Log:
    """The stand-in's events, oldest first; ``new()`` returns those since the last call."""

    def __init__(self, api: stripe.StripeClient) -> None:
        self.api = api
        self.seen = 0

    def all(self) -> list[Any]:
        return list(reversed(list(self.api.v1.events.list({"limit": 100}).auto_paging_iter())))

    def new(self) -> list[Any]:
        events = self.all()
        fresh, self.seen = events[self.seen :], len(events)
        return fresh

    def types(self) -> list[str]:
        return [event.type for event in self.new()]


def authorize(api: stripe.StripeClient, amount: int = 2000, pm: str = "pm_card_visa") -> Any:
    return api.v1.payment_intents.create(
        {
            "amount": amount,
            "currency": "usd",
            "payment_method": pm,
            "confirm": True,
            "capture_method": "manual",
        }
    )


def pay(api: stripe.StripeClient, pm: str, amount: int = 1000) -> Any:
    return api.v1.payment_intents.create(
        {"amount": amount, "currency": "usd", "payment_method": pm, "confirm": True}
    )


def charge_of(api: stripe.StripeClient, intent: Any) -> Any:
    return api.v1.charges.retrieve(intent.latest_charge)


def amounts(obj: Any, *names: str) -> tuple[Any, ...]:
    return tuple(obj[name] for name in names)


# --- declines --------------------------------------------------------------------------------


def test_a_declined_charge_captured_nothing(api: stripe.StripeClient) -> None:
    with pytest.raises(stripe.CardError) as caught:
        api.v1.charges.create({"amount": 1000, "currency": "usd", "source": "tok_chargeDeclined"})
    declined = api.v1.charges.retrieve(caught.value.error.charge)
    assert amounts(declined, "status", "captured", "amount_captured", "paid") == (
        "failed",
        False,
        0,
        False,
    )
    [event] = [e for e in Log(api).all() if e.type == "charge.failed"]
    assert (event.data.object.captured, event.data.object.amount_captured) == (False, 0)


def test_a_declined_payment_intent_charge_captured_nothing(api: stripe.StripeClient) -> None:
    with pytest.raises(stripe.CardError) as caught:
        pay(api, "pm_card_chargeDeclined")
    declined = api.v1.charges.retrieve(caught.value.error.charge)
    assert amounts(declined, "captured", "amount_captured") == (False, 0)
    intent = api.v1.payment_intents.retrieve(caught.value.error.payment_intent.id)
    assert amounts(intent, "amount_received", "amount_capturable") == (0, 0)


# --- manual capture --------------------------------------------------------------------------


def test_authorize_then_capture_in_full(api: stripe.StripeClient) -> None:
    log = Log(api)
    intent = authorize(api)
    assert amounts(intent, "status", "amount_capturable", "amount_received") == (
        "requires_capture",
        2000,
        0,
    )
    held = charge_of(api, intent)
    assert amounts(held, "status", "captured", "amount_captured", "paid") == (
        "succeeded",
        False,
        0,
        True,
    )
    events = log.new()
    assert [e.type for e in events] == [
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.amount_capturable_updated",
    ]
    assert amounts(events[1].data.object, "captured", "amount_captured") == (False, 0)
    assert amounts(events[2].data.object, "status", "amount_capturable") == (
        "requires_capture",
        2000,
    )

    captured = api.v1.payment_intents.capture(intent.id)
    assert amounts(captured, "status", "amount_capturable", "amount_received") == (
        "succeeded",
        0,
        2000,
    )
    events = log.new()
    assert [e.type for e in events] == ["charge.captured", "payment_intent.succeeded"]
    assert amounts(events[0].data.object, "captured", "amount_captured", "amount_refunded") == (
        True,
        2000,
        0,
    )
    assert events[1].data.object.amount_received == 2000


def test_partial_capture_releases_the_rest_since_2025_03_31(api: stripe.StripeClient) -> None:
    intent = authorize(api)
    log = Log(api)
    log.new()
    captured = api.v1.payment_intents.capture(intent.id, {"amount_to_capture": 1200})
    assert amounts(captured, "status", "amount_received", "amount_capturable") == (
        "succeeded",
        1200,
        0,
    )
    charge = charge_of(api, intent)
    assert amounts(charge, "captured", "amount_captured", "amount_refunded", "refunded") == (
        True,
        1200,
        0,
        False,
    )
    assert api.v1.refunds.list({"charge": charge.id}).data == []
    assert log.types() == ["charge.captured", "payment_intent.succeeded"]

    with pytest.raises(stripe.InvalidRequestError) as too_much:
        api.v1.refunds.create({"charge": charge.id, "amount": 1201})
    assert too_much.value.param == "amount"
    refund = api.v1.refunds.create({"payment_intent": intent.id})
    assert refund.amount == 1200
    charge = charge_of(api, intent)
    assert amounts(charge, "amount_captured", "amount_refunded", "refunded") == (1200, 1200, True)
    assert log.types() == ["refund.created", "charge.refunded"]


@pytest.mark.parametrize(("version", "refund_events"), [(OLD, []), (ACACIA, ["refund.created"])])
def test_partial_capture_refunds_the_rest_before_2025_03_31(
    clean: StripeStandIn, version: str, refund_events: list[str]
) -> None:
    api = client(clean, version)
    intent = authorize(api)
    log = Log(api)
    log.new()
    api.v1.payment_intents.capture(intent.id, {"amount_to_capture": 1200})
    charge = charge_of(api, intent)
    assert amounts(charge, "captured", "amount_captured", "amount_refunded", "refunded") == (
        True,
        1200,
        800,
        False,
    )
    [remainder] = api.v1.refunds.list({"charge": charge.id}).data
    assert amounts(remainder, "amount", "status", "payment_intent") == (800, "succeeded", intent.id)
    events = log.new()
    assert [e.type for e in events] == [
        "charge.captured",
        "charge.refunded",
        *refund_events,
        "payment_intent.succeeded",
    ]
    assert events[0].data.object.amount_refunded == 800
    assert all(e.api_version == version for e in events)

    # What was taken (1,200) can still be refunded; then the charge is fully refunded.
    rest = api.v1.refunds.create({"charge": charge.id})
    assert rest.amount == 1200
    charge = charge_of(api, intent)
    assert amounts(charge, "amount_refunded", "refunded") == (2000, True)


def test_capture_refusals(api: stripe.StripeClient) -> None:
    intent = authorize(api)
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        api.v1.payment_intents.capture(intent.id, {"amount_to_capture": 2001})
    assert too_much.value.param == "amount_to_capture"
    assert api.v1.payment_intents.retrieve(intent.id).status == "requires_capture"
    with pytest.raises(stripe.InvalidRequestError) as refund_first:
        api.v1.refunds.create({"payment_intent": intent.id})
    assert refund_first.value.code == "payment_intent_unexpected_state"
    api.v1.payment_intents.capture(intent.id)
    with pytest.raises(stripe.InvalidRequestError) as twice:
        api.v1.payment_intents.capture(intent.id)
    assert twice.value.code == "payment_intent_unexpected_state"


def test_charge_with_capture_false_then_partial_capture(api: stripe.StripeClient) -> None:
    log = Log(api)
    held = api.v1.charges.create(
        {"amount": 3000, "currency": "eur", "source": "tok_visa", "capture": False}
    )
    assert amounts(held, "status", "captured", "amount_captured") == ("succeeded", False, 0)
    assert log.types() == ["charge.succeeded"]
    captured = api.v1.charges.capture(held.id, {"amount": 2500})
    assert amounts(captured, "captured", "amount_captured", "amount_refunded") == (
        True,
        2500,
        0,
    )
    assert log.types() == ["charge.captured"]
    with pytest.raises(stripe.InvalidRequestError) as again:
        api.v1.charges.capture(held.id)
    assert again.value.code == "charge_already_captured"


# --- cancel and expiry -----------------------------------------------------------------------


def test_cancel_an_authorization_since_2025_03_31(api: stripe.StripeClient) -> None:
    intent = authorize(api)
    log = Log(api)
    log.new()
    canceled = api.v1.payment_intents.cancel(intent.id)
    assert amounts(canceled, "status", "amount_capturable", "amount_received") == (
        "canceled",
        0,
        0,
    )
    charge = charge_of(api, intent)
    assert amounts(charge, "captured", "amount_captured", "amount_refunded", "refunded") == (
        False,
        0,
        0,
        False,
    )
    assert log.types() == ["payment_intent.canceled"]


def test_cancel_an_authorization_before_2025_03_31(clean: StripeStandIn) -> None:
    api = client(clean, OLD)
    intent = authorize(api)
    log = Log(api)
    log.new()
    api.v1.payment_intents.cancel(intent.id)
    charge = charge_of(api, intent)
    assert amounts(charge, "captured", "amount_captured", "amount_refunded", "refunded") == (
        False,
        0,
        2000,
        True,
    )
    assert [r.amount for r in api.v1.refunds.list({"charge": charge.id}).data] == [2000]
    assert log.types() == ["charge.refunded", "payment_intent.canceled"]


@pytest.mark.parametrize(
    ("version", "reason", "expected"),
    [
        (BASIL, "expired", ["charge.expired", "payment_intent.canceled"]),
        (OLD, "automatic", ["charge.expired", "charge.refunded", "payment_intent.canceled"]),
    ],
)
def test_an_authorization_expires(
    clean: StripeStandIn, version: str, reason: str, expected: list[str]
) -> None:
    api = client(clean, version)
    intent = authorize(api)
    log = Log(api)
    log.new()
    charge = clean.expire_authorization(intent.id)
    assert (charge["id"], charge["captured"], charge["amount_captured"]) == (
        intent.latest_charge,
        False,
        0,
    )
    events = log.new()
    assert [e.type for e in events] == expected
    assert all(e.api_version == version for e in events)
    assert events[-1].data.object.cancellation_reason == reason
    assert api.v1.payment_intents.retrieve(intent.id).status == "canceled"
    assert charge_of(api, intent).refunded is (version == OLD)
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.payment_intents.capture(intent.id)
    with pytest.raises(stripe.InvalidRequestError) as expired:
        api.v1.charges.capture(intent.latest_charge)
    assert expired.value.code == "charge_expired_for_capture"


def test_an_uncaptured_charge_expires(api: stripe.StripeClient, clean: StripeStandIn) -> None:
    held = api.v1.charges.create(
        {"amount": 1500, "currency": "usd", "source": "tok_visa", "capture": False}
    )
    log = Log(api)
    log.new()
    clean.expire_authorization(held.id)
    assert log.types() == ["charge.expired"]
    with pytest.raises(StandInError):
        clean.expire_authorization(held.id)
    paid = api.v1.charges.create({"amount": 1500, "currency": "usd", "source": "tok_visa"})
    with pytest.raises(StandInError):
        clean.expire_authorization(paid.id)


# --- refunds that fail or settle later -------------------------------------------------------


def test_a_refund_that_fails_later(api: stripe.StripeClient, clean: StripeStandIn) -> None:
    intent = pay(api, "pm_card_refundFail")
    log = Log(api)
    log.new()
    refund = api.v1.refunds.create({"payment_intent": intent.id, "amount": 400})
    assert amounts(refund, "status", "amount", "failure_reason") == ("succeeded", 400, None)
    assert amounts(charge_of(api, intent), "amount_refunded", "refunded") == (400, False)
    assert log.types() == ["refund.created", "charge.refunded"]

    assert clean.settle() == 1
    failed = api.v1.refunds.retrieve(refund.id)
    assert amounts(failed, "status", "failure_reason") == ("failed", "expired_or_canceled_card")
    assert failed.failure_balance_transaction is not None
    assert amounts(charge_of(api, intent), "amount_refunded", "refunded") == (0, False)
    events = log.new()
    assert [e.type for e in events] == ["charge.refund.updated", "refund.updated", "refund.failed"]
    assert {(e.data.object.id, e.data.object.status) for e in events} == {(refund.id, "failed")}
    # The money is back on the charge: it can be refunded again (in full).
    again = api.v1.refunds.create({"payment_intent": intent.id})
    assert again.amount == 1000


def test_a_failing_refund_before_2024_10_28(clean: StripeStandIn) -> None:
    api = client(clean, OLD)
    intent = pay(api, "pm_card_refundFail")
    log = Log(api)
    log.new()
    api.v1.refunds.create({"payment_intent": intent.id})
    assert log.types() == ["charge.refunded"]
    clean.settle()
    assert log.types() == ["charge.refund.updated"]


def test_a_pending_refund_that_succeeds_later(
    api: stripe.StripeClient, clean: StripeStandIn
) -> None:
    paid = api.v1.charges.create({"amount": 900, "currency": "usd", "source": "tok_pendingRefund"})
    log = Log(api)
    log.new()
    refund = api.v1.refunds.create({"charge": paid.id})
    assert refund.status == "pending"
    assert amounts(api.v1.charges.retrieve(paid.id), "amount_refunded", "refunded") == (900, True)
    assert log.types() == ["refund.created", "charge.refunded"]
    clean.settle()
    assert api.v1.refunds.retrieve(refund.id).status == "succeeded"
    assert log.types() == ["charge.refund.updated", "refund.updated"]


def test_later_happens_by_itself(tmp_path: Path) -> None:
    pytest_plugin.require_standin()
    with run_stripe_standin(webhook_delay=0.05, async_delay=0.2, cwd=tmp_path) as quick:
        api = quick.client()
        intent = pay(api, "pm_card_refundFail")
        refund = api.v1.refunds.create({"payment_intent": intent.id})
        deadline = time.monotonic() + 10
        while api.v1.refunds.retrieve(refund.id).status != "failed":
            assert time.monotonic() < deadline, "the refund never failed"
            time.sleep(0.05)


# --- disputes and inquiries ------------------------------------------------------------------


def disputed(api: stripe.StripeClient, standin: StripeStandIn, pm: str) -> tuple[Any, Any]:
    intent = pay(api, pm, amount=4200)
    assert api.v1.disputes.list({"payment_intent": intent.id}).data == []
    standin.settle()
    [dispute] = api.v1.disputes.list({"payment_intent": intent.id}).data
    return intent, dispute


def test_a_dispute_opens_after_the_payment(api: stripe.StripeClient, clean: StripeStandIn) -> None:
    log = Log(api)
    intent, dispute = disputed(api, clean, "pm_card_createDispute")
    assert amounts(
        dispute, "object", "status", "reason", "amount", "charge", "is_charge_refundable"
    ) == ("dispute", "needs_response", "fraudulent", 4200, intent.latest_charge, False)
    assert dispute.payment_method_details.card.case_type == "chargeback"
    [withdrawal] = dispute.balance_transactions
    assert (withdrawal.amount, withdrawal.fee, withdrawal.net) == (-4200, 1500, -5700)
    assert charge_of(api, intent).disputed is True
    types = [e.type for e in log.new()]
    assert types[-2:] == ["charge.dispute.created", "charge.dispute.funds_withdrawn"]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        api.v1.refunds.create({"payment_intent": intent.id})
    assert refused.value.code == "charge_disputed"
    assert api.v1.disputes.retrieve(dispute.id).id == dispute.id


def test_win_a_dispute(api: stripe.StripeClient, clean: StripeStandIn) -> None:
    _intent, dispute = disputed(api, clean, "pm_card_createDispute")
    log = Log(api)
    log.new()
    answered = api.v1.disputes.update(
        dispute.id, {"evidence": {"uncategorized_text": "winning_evidence"}}
    )
    assert answered.status == "under_review"
    assert answered.evidence_details.submission_count == 1
    assert log.types() == ["charge.dispute.updated"]
    clean.settle()
    events = log.new()
    assert [e.type for e in events] == ["charge.dispute.closed", "charge.dispute.funds_reinstated"]
    assert events[0].data.object.status == "won"
    assert [t.amount for t in events[1].data.object.balance_transactions] == [-4200, 4200]


def test_lose_a_dispute(api: stripe.StripeClient, clean: StripeStandIn) -> None:
    _intent, dispute = disputed(api, clean, "pm_card_createDisputeProductNotReceived")
    assert dispute.reason == "product_not_received"
    log = Log(api)
    log.new()
    api.v1.disputes.update(dispute.id, {"evidence": {"uncategorized_text": "losing_evidence"}})
    clean.settle()
    assert log.types() == ["charge.dispute.updated", "charge.dispute.closed"]
    assert api.v1.disputes.retrieve(dispute.id).status == "lost"
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.disputes.update(dispute.id, {"evidence": {"uncategorized_text": "more"}})


def test_accept_a_dispute(api: stripe.StripeClient, clean: StripeStandIn) -> None:
    _intent, dispute = disputed(api, clean, "pm_card_createDispute")
    log = Log(api)
    log.new()
    assert api.v1.disputes.close(dispute.id).status == "lost"
    assert log.types() == ["charge.dispute.closed"]
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.disputes.close(dispute.id)


@pytest.mark.parametrize("evidence", ["winning_evidence", "losing_evidence"])
def test_an_inquiry_closes(api: stripe.StripeClient, clean: StripeStandIn, evidence: str) -> None:
    log = Log(api)
    intent, inquiry = disputed(api, clean, "pm_card_createDisputeInquiry")
    assert amounts(inquiry, "status", "is_charge_refundable", "balance_transactions") == (
        "warning_needs_response",
        True,
        [],
    )
    assert inquiry.payment_method_details.card.case_type == "inquiry"
    assert [e.type for e in log.new()][-1] == "charge.dispute.created"
    answered = api.v1.disputes.update(inquiry.id, {"evidence": {"uncategorized_text": evidence}})
    assert answered.status == "warning_under_review"
    clean.settle()
    events = log.new()
    assert [e.type for e in events] == ["charge.dispute.updated", "charge.dispute.closed"]
    assert events[-1].data.object.status == "warning_closed"
    # An inquiry took no money: the charge can still be refunded.
    assert api.v1.refunds.create({"payment_intent": intent.id}).amount == 4200


def test_an_inquiry_escalates_to_a_chargeback(
    api: stripe.StripeClient, clean: StripeStandIn
) -> None:
    _intent, inquiry = disputed(api, clean, "pm_card_createDisputeInquiry")
    log = Log(api)
    log.new()
    api.v1.disputes.update(
        inquiry.id, {"evidence": {"uncategorized_text": "escalate_inquiry_evidence"}}
    )
    clean.settle()
    events = log.new()
    assert [e.type for e in events] == [
        "charge.dispute.updated",
        "charge.dispute.updated",
        "charge.dispute.funds_withdrawn",
    ]
    assert [e.data.object.status for e in events] == [
        "warning_under_review",
        "needs_response",
        "needs_response",
    ]
    assert api.v1.disputes.close(inquiry.id).status == "lost"


def test_closing_an_inquiry(api: stripe.StripeClient, clean: StripeStandIn) -> None:
    _intent, inquiry = disputed(api, clean, "pm_card_createDisputeInquiry")
    assert api.v1.disputes.close(inquiry.id).status == "warning_closed"


def test_dispute_evidence_fields_are_checked(
    api: stripe.StripeClient, clean: StripeStandIn
) -> None:
    _intent, dispute = disputed(api, clean, "pm_card_createDispute")
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        api.v1.disputes.update(dispute.id, {"evidence": {"nonsense": "x"}})
    assert unknown.value.param == "evidence[nonsense]"
    draft = api.v1.disputes.update(
        dispute.id, {"evidence": {"customer_name": "Jenny Rosen"}, "submit": False}
    )
    assert (draft.status, draft.evidence.customer_name) == ("needs_response", "Jenny Rosen")
    assert draft.evidence_details.has_evidence is True
    with pytest.raises(stripe.InvalidRequestError) as missing:
        api.v1.disputes.retrieve("dp_missing")
    assert missing.value.code == "resource_missing"
