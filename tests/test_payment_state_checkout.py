"""Checkout Sessions in the payment-state fold (issue 17; docs/models.md), as pure unit tests.

The lifecycle property test covers whole payments in random orders; these pin each rule
at its edges, so that a mutation of one is caught on its own.
"""

from __future__ import annotations

from typing import Any

import pytest

from django_stripe_bridge.events import (
    checkout_session_link,
    transaction_id_of,
    transaction_kind_of,
)
from django_stripe_bridge.payment_state import PaymentState, Status, fold
from tests.test_payment_state import T, assert_every_order, charge, event, intent, refund


def session(status: str = "complete", payment_status: str = "paid", **fields: Any) -> dict:
    obj = {
        "id": "cs_1",
        "object": "checkout.session",
        "amount_total": 2000,
        "currency": "EUR",
        "payment_intent": "pi_1",
        "payment_status": payment_status,
        "status": status,
    }
    obj.update(fields)
    return obj


COMPLETED = "checkout.session.completed"
SUCCEEDED = "checkout.session.async_payment_succeeded"
FAILED = "checkout.session.async_payment_failed"
EXPIRED = "checkout.session.expired"


def only(kind: str, obj: dict, at: int = T) -> PaymentState:
    return fold([event(kind, obj, at)])


# -- a session alone ------------------------------------------------------------------------


def test_an_open_session_is_pending_with_its_amount_and_currency():
    state = PaymentState()
    assert state.apply_object(session("open", "unpaid", payment_intent=None), at=T)
    summary = state.summary()
    assert (summary.status, summary.amount, summary.currency) == ("pending", 2000, "eur")
    assert (summary.amount_captured, summary.amount_refunded) == (0, 0)
    assert state.linked_ids() is None


def test_completed_and_paid_is_succeeded_with_the_money_taken():
    state = only(COMPLETED, session())
    assert state.status == Status.SUCCEEDED
    assert state.amount_captured == 2000
    assert state.linked_ids() == ("cs_1", "pi_1")


@pytest.mark.parametrize("paid", ["paid", "no_payment_required"])
def test_paid_or_nothing_to_pay_is_succeeded(paid):
    assert only(COMPLETED, session(payment_status=paid)).status == Status.SUCCEEDED


def test_completed_unpaid_is_processing_and_takes_nothing():
    state = only(COMPLETED, session(payment_status="unpaid"))
    assert (state.status, state.amount_captured) == (Status.PROCESSING, 0)


def test_the_completed_event_says_complete_whatever_its_object_says():
    """Stripe's own example event of checkout.session.completed carries an open session."""
    assert only(COMPLETED, session("open", "unpaid")).status == Status.PROCESSING


def test_async_success_is_succeeded_even_if_the_object_says_unpaid():
    assert only(SUCCEEDED, session(payment_status="unpaid")).status == Status.SUCCEEDED


def test_async_failure_is_failed_even_if_the_object_says_paid():
    state = only(FAILED, session(payment_status="paid"))
    assert (state.status, state.amount_captured) == (Status.FAILED, 0)


def test_expired_is_expired():
    state = only(EXPIRED, session("open", "unpaid", payment_intent=None))
    assert state.status == Status.EXPIRED
    assert state.linked_ids() is None


def test_an_unknown_session_status_without_an_event_type_reads_pending():
    assert only("checkout.session.updated", session("weird", "unpaid")).status == Status.PENDING


# -- with the PaymentIntent's events, in every order -----------------------------------------


def test_completion_unpaid_then_async_success_in_one_second_in_every_order():
    events = [
        event(COMPLETED, session(payment_status="unpaid")),
        event(SUCCEEDED, session(payment_status="paid")),
    ]
    assert_every_order(events, Status.SUCCEEDED, amount_captured=2000)


def test_completion_unpaid_then_async_failure_in_one_second_in_every_order():
    events = [
        event(COMPLETED, session(payment_status="unpaid")),
        event(FAILED, session(payment_status="unpaid")),
    ]
    assert_every_order(events, Status.FAILED, amount_captured=0)


def test_between_seconds_the_newest_session_snapshot_wins():
    """Time first, as for every object: a completion stamped after the failure is read."""
    events = [
        event(FAILED, session(payment_status="unpaid"), T),
        event(COMPLETED, session(payment_status="unpaid"), T + 5),
    ]
    assert_every_order(events, Status.PROCESSING)


def test_money_taken_wins_over_an_expiry_or_an_unpaid_session():
    assert_every_order(
        [event(EXPIRED, session("expired", "unpaid")), event("x", intent("succeeded"))],
        Status.SUCCEEDED,
    )
    assert_every_order(
        [event(COMPLETED, session(payment_status="unpaid")), event("x", charge("succeeded"))],
        Status.SUCCEEDED,
    )


def test_a_failed_async_payment_wins_over_an_expiry_and_a_processing_intent():
    events = [event(FAILED, session(payment_status="unpaid")), event("x", intent("processing"))]
    assert_every_order(events, Status.FAILED)


def test_an_expired_session_wins_over_its_canceled_intent():
    events = [event(EXPIRED, session("expired", "unpaid")), event("x", intent("canceled"))]
    assert_every_order(events, Status.EXPIRED)


@pytest.mark.parametrize(
    ("intent_status", "fields", "expected"),
    [
        ("requires_capture", {}, Status.REQUIRES_CAPTURE),
        ("canceled", {}, Status.CANCELED),
        ("requires_payment_method", {"last_payment_error": {"code": "x"}}, Status.FAILED),
        ("requires_action", {}, Status.PROCESSING),
        ("processing", {}, Status.PROCESSING),
        ("requires_payment_method", {}, Status.PROCESSING),
    ],
)
def test_complete_and_unpaid_reads_the_attempt_only_when_it_says_more(
    intent_status, fields, expected
):
    events = [
        event(COMPLETED, session(payment_status="unpaid")),
        event("x", intent(intent_status, **fields)),
    ]
    assert_every_order(events, expected)


def test_complete_unpaid_with_an_expired_authorization_is_expired():
    events = [
        event(COMPLETED, session(payment_status="unpaid")),
        event("charge.expired", charge("succeeded", captured=False, payment_intent="pi_1")),
    ]
    assert_every_order(events, Status.EXPIRED)


@pytest.mark.parametrize(
    ("intent_status", "fields", "expected"),
    [
        ("requires_action", {}, Status.REQUIRES_ACTION),
        ("requires_payment_method", {"last_payment_error": {"code": "x"}}, Status.FAILED),
        ("requires_payment_method", {}, Status.PENDING),
    ],
)
def test_an_open_session_reads_the_customers_latest_attempt(intent_status, fields, expected):
    events = [
        event("x", session("open", "unpaid", payment_intent=None)),
        event("x", intent(intent_status, **fields)),
    ]
    assert_every_order(events, expected)


def test_a_refund_after_a_paid_session_reads_as_for_any_payment():
    events = [
        event(COMPLETED, session()),
        event("refund.created", refund(500, payment_intent="pi_1", charge="ch_1")),
    ]
    assert_every_order(events, Status.PARTIALLY_REFUNDED, amount_captured=2000, amount_refunded=500)


def test_the_intent_gives_the_amount_before_the_session():
    state = fold([event(COMPLETED, session(amount_total=999)), event("x", intent("succeeded"))])
    assert state.amount == 2000


# -- merge and links --------------------------------------------------------------------------


def test_merge_keeps_each_snapshot_further_along():
    ahead = fold([event(COMPLETED, session())])
    behind = PaymentState()
    behind.apply_object(session("open", "unpaid", payment_intent=None), at=T - 10)
    behind.apply_object(intent("requires_payment_method"), at=T - 10)
    assert ahead.merge(PaymentState()) is False
    assert ahead.merge(behind)  # the intent is new to it
    assert ahead.objects["cs_1"]["status"] == "complete"
    assert ahead.objects["pi_1"]["status"] == "requires_payment_method"
    assert behind.merge(ahead)
    assert behind.objects["cs_1"]["status"] == "complete"
    assert not behind.merge(ahead)  # nothing further along left


def test_merge_copies_rather_than_shares_snapshots():
    source = fold([event(COMPLETED, session())])
    target = PaymentState()
    target.merge(source)
    target.objects["cs_1"]["status"] = "changed"
    assert source.objects["cs_1"]["status"] == "complete"


def test_linked_ids_follow_the_newest_session_snapshot():
    state = fold(
        [
            event("x", session("open", "unpaid", payment_intent=None), T),
            event(COMPLETED, session(payment_intent={"id": "pi_9"}), T + 1),
        ]
    )
    assert state.linked_ids() == ("cs_1", "pi_9")


# -- which transaction, which link ------------------------------------------------------------


def test_a_session_event_belongs_to_its_payment_intent_else_to_itself():
    assert transaction_id_of(event(COMPLETED, session())) == "pi_1"
    assert transaction_id_of(event(COMPLETED, session(payment_intent={"id": "pi_2"}))) == "pi_2"
    assert transaction_id_of(event(EXPIRED, session(payment_intent=None))) == "cs_1"


def test_checkout_session_link():
    assert checkout_session_link(event(COMPLETED, session())) == ("cs_1", "pi_1")
    assert checkout_session_link(event(EXPIRED, session(payment_intent=None))) is None
    assert checkout_session_link(event("x", intent("succeeded"))) is None
    assert checkout_session_link(event(COMPLETED, session(id="", payment_intent="pi_1"))) is None
    assert (
        checkout_session_link(event(COMPLETED, session(id="pi_1", payment_intent="pi_1"))) is None
    )
    long = "cs_" + "x" * 300
    assert checkout_session_link(event(COMPLETED, session(id=long))) == (long[:255], "pi_1")


@pytest.mark.parametrize(
    ("transaction_id", "kind"),
    [
        ("pi_1", "payment_intent"),
        ("cs_test_1", "checkout_session"),
        ("ch_1", "charge"),
        ("py_1", "charge"),
        ("xcs_1", "charge"),
    ],
)
def test_transaction_kind_of(transaction_id, kind):
    assert transaction_kind_of(transaction_id) == kind


# -- edges a mutation run found no test for --------------------------------------------------


def test_a_session_snapshot_without_an_event_type_reads_its_own_status():
    for status, payment_status, expected in [
        ("complete", "paid", Status.SUCCEEDED),
        ("complete", "unpaid", Status.PROCESSING),
        ("expired", "unpaid", Status.EXPIRED),
        ("open", "unpaid", Status.PENDING),
    ]:
        state = PaymentState()
        state.apply_object(session(status, payment_status), at=T)
        assert state.status == expected, status
    state = PaymentState()
    state.apply_object(session(status=None), at=T)
    assert state.objects["cs_1"]["status"] == ""


def test_in_one_second_each_session_stage_beats_the_one_before():
    opened = event("x", session("open", "unpaid"))
    weird = event("y", session("weird", "unpaid"))
    completed = event(COMPLETED, session(payment_status="unpaid"))
    assert_every_order([weird, opened], Status.PENDING)
    assert_every_order([opened, completed], Status.PROCESSING)
    assert fold([weird, opened]).objects["cs_1"]["status"] == "open"


def test_a_paid_session_without_an_amount_took_nothing_it_can_tell():
    state = only(COMPLETED, session(amount_total=None))
    assert (state.status, state.amount_captured, state.amount) == (Status.SUCCEEDED, 0, None)


def test_no_refund_counts_beyond_what_a_session_took():
    events = [
        event("x", session("open", "unpaid", payment_intent=None)),
        event("refund.created", refund(500, charge="ch_9")),
    ]
    for state in [fold(events), fold(events[::-1])]:
        assert state.amount_refunded == 0


def test_the_newest_of_two_sessions_or_two_intents_is_read():
    """Not seen from Stripe (one session, one PaymentIntent per payment), but the rule is the
    newest snapshot's word, as for every object."""
    state = fold(
        [
            event("x", session("open", "unpaid", id="cs_0", payment_intent=None), T),
            event(COMPLETED, session(id="cs_2", payment_intent="pi_2"), T + 1),
        ]
    )
    assert state.linked_ids() == ("cs_2", "pi_2")
    assert fold(
        [
            event(COMPLETED, session(id="cs_2", payment_intent="pi_2"), T + 1),
            event("x", session("open", "unpaid", id="cs_0", payment_intent="pi_0"), T),
        ]
    ).linked_ids() == ("cs_2", "pi_2")
    two_intents = fold(
        [event("x", intent("canceled", id="pi_0"), T), event("y", intent("processing"), T + 1)]
    )
    assert two_intents.status == Status.PROCESSING
    two_sessions = fold(
        [
            event(EXPIRED, session("expired", "unpaid", id="cs_0"), T),
            event(COMPLETED, session(id="cs_2", payment_status="unpaid"), T + 1),
        ]
    )
    assert two_sessions.status == Status.PROCESSING


def test_merge_says_false_when_nothing_moved():
    assert PaymentState().merge(PaymentState()) is False


def test_a_session_with_neither_id_nor_intent_has_no_transaction():
    assert transaction_id_of(event(EXPIRED, session(id=None, payment_intent=None))) == ""


def test_a_link_to_a_long_intent_id_is_cut_to_the_column():
    long = "pi_" + "y" * 300
    assert checkout_session_link(event(COMPLETED, session(payment_intent=long))) == (
        "cs_1",
        long[:255],
    )


@pytest.mark.parametrize("session_id", [f"cs_{n}" for n in range(8)])
def test_a_completion_beats_the_open_session_of_its_second_whatever_the_digests(session_id):
    opened = event("x", session("open", "unpaid", id=session_id))
    completed = event(COMPLETED, session(payment_status="unpaid", id=session_id))
    assert_every_order([opened, completed], Status.PROCESSING)


def test_no_session_no_link():
    assert PaymentState().linked_ids() is None
    assert fold([event("x", intent("succeeded"))]).linked_ids() is None
