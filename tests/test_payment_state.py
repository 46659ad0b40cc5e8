"""The payment-state fold (SPEC §3), as pure unit tests: every status, every object's rule."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from django_stripe_bridge.models import StripeTransaction
from django_stripe_bridge.payment_state import (
    STATUSES,
    PaymentState,
    Status,
    fold,
    status_of_event,
)

T = 1_700_000_000
NEW_API = "2025-03-31.basil"
OLD_API = "2024-06-20"


def event(kind: str, obj: dict[str, Any], at: int = T, api: str | None = NEW_API) -> dict:
    return {
        "id": f"evt_{kind}_{obj.get('id')}_{at}_{obj.get('status')}",
        "object": "event",
        "type": kind,
        "created": at,
        "api_version": api,
        "data": {"object": obj},
    }


def charge(status: str = "succeeded", **fields: Any) -> dict[str, Any]:
    captured = fields.pop("captured", status == "succeeded")
    amount = fields.pop("amount", 2000)
    obj = {
        "id": "ch_1",
        "object": "charge",
        "amount": amount,
        "amount_captured": amount if captured else 0,
        "amount_refunded": 0,
        "captured": captured,
        "refunded": False,
        "currency": "usd",
        "status": status,
        "payment_intent": None,
    }
    obj.update(fields)
    return obj


def intent(status: str, **fields: Any) -> dict[str, Any]:
    obj = {
        "id": "pi_1",
        "object": "payment_intent",
        "amount": 2000,
        "amount_received": 2000 if status == "succeeded" else 0,
        "currency": "eur",
        "status": status,
        "last_payment_error": None,
    }
    obj.update(fields)
    return obj


def refund(status: str = "succeeded", amount: int = 500, **fields: Any) -> dict[str, Any]:
    obj = {
        "id": "re_1",
        "object": "refund",
        "amount": amount,
        "charge": "ch_1",
        "status": status,
        "created": T,
    }
    obj.update(fields)
    return obj


def dispute(status: str, **fields: Any) -> dict[str, Any]:
    obj = {"id": "dp_1", "object": "dispute", "charge": "ch_1", "status": status, "amount": 2000}
    obj.update(fields)
    return obj


def in_every_order(events: list[dict]) -> list[PaymentState]:
    return [fold(order) for order in itertools.permutations(events)]


def assert_every_order(events: list[dict], status: str, **amounts: int) -> None:
    for state in in_every_order(events):
        assert state.status == status
        for name, value in amounts.items():
            assert getattr(state, name) == value, name


# -- the vocabulary --------------------------------------------------------------------------


def test_the_model_offers_every_status_and_nothing_else():
    assert {value for value, _ in StripeTransaction.Status.choices} == set(STATUSES)
    assert len(STATUSES) == len(set(STATUSES)) == 13


@pytest.mark.parametrize(
    ("kind", "obj", "expected"),
    [
        ("payment_intent.created", intent("requires_payment_method"), Status.PENDING),
        ("payment_intent.created", intent("requires_confirmation"), Status.PENDING),
        ("payment_intent.requires_action", intent("requires_action"), Status.REQUIRES_ACTION),
        ("payment_intent.processing", intent("processing"), Status.PROCESSING),
        (
            "payment_intent.amount_capturable_updated",
            intent("requires_capture"),
            "requires_capture",
        ),
        ("payment_intent.succeeded", intent("succeeded"), Status.SUCCEEDED),
        ("payment_intent.canceled", intent("canceled"), Status.CANCELED),
        ("payment_intent.payment_failed", intent("requires_payment_method"), Status.FAILED),
        (
            "payment_intent.updated",
            intent("requires_payment_method", last_payment_error={"code": "card_declined"}),
            Status.FAILED,
        ),
        ("charge.pending", charge("pending"), Status.PROCESSING),
        ("charge.failed", charge("failed"), Status.FAILED),
        ("charge.succeeded", charge(), Status.SUCCEEDED),
        ("charge.succeeded", charge(captured=False), Status.REQUIRES_CAPTURE),
        ("charge.expired", charge(captured=False), Status.EXPIRED),
        ("charge.refunded", charge(captured=False, refunded=True), Status.CANCELED),
        ("charge.refunded", charge(amount_refunded=2000, refunded=True), Status.REFUNDED),
        ("charge.refunded", charge(amount_refunded=1), Status.PARTIALLY_REFUNDED),
        ("charge.dispute.created", dispute("warning_needs_response"), Status.DISPUTED),
        ("charge.dispute.updated", dispute("warning_under_review"), Status.DISPUTED),
        ("charge.dispute.created", dispute("needs_response"), Status.DISPUTED),
        ("charge.dispute.updated", dispute("under_review"), Status.DISPUTED),
        ("charge.dispute.closed", dispute("won"), Status.DISPUTE_WON),
        ("charge.dispute.closed", dispute("warning_closed"), Status.DISPUTE_WON),
        ("charge.dispute.closed", dispute("prevented"), Status.DISPUTE_WON),
        ("charge.dispute.closed", dispute("lost"), Status.DISPUTE_LOST),
        ("charge.dispute.closed", dispute("charge_refunded"), Status.DISPUTE_LOST),
        # All that is known: money was taken and given back; nothing says some was kept.
        ("refund.created", refund(), Status.REFUNDED),
        ("customer.created", {"id": "cus_1", "object": "customer"}, None),
        ("payment_intent.created", intent("something_new"), None),
    ],
)
def test_what_one_event_tells(kind, obj, expected):
    assert status_of_event(event(kind, obj)) == expected


def test_a_captured_charge_counts_as_captured_when_stripe_left_the_field_out():
    old = charge()
    del old["captured"], old["amount_captured"]
    state = fold([event("charge.succeeded", old)])
    assert (state.status, state.amount_captured) == (Status.SUCCEEDED, 2000)
    uncaptured = charge(captured=False)
    del uncaptured["amount_captured"]
    assert fold([event("charge.succeeded", uncaptured)]).amount_captured == 0


# -- authorization and capture -----------------------------------------------------------------


def test_an_authorization_is_not_a_payment_until_captured():
    events = [
        event("payment_intent.created", intent("requires_payment_method"), T),
        event("charge.succeeded", charge(captured=False, payment_intent="pi_1"), T),
        event("payment_intent.amount_capturable_updated", intent("requires_capture"), T),
    ]
    assert_every_order(events, Status.REQUIRES_CAPTURE, amount_captured=0, amount=2000)
    captured = [
        event("charge.captured", charge(amount_captured=1200, payment_intent="pi_1"), T + 5),
        event("payment_intent.succeeded", intent("succeeded", amount_received=1200), T + 5),
    ]
    assert_every_order(events + captured, Status.SUCCEEDED, amount_captured=1200, amount=2000)


@pytest.mark.parametrize(
    ("api", "taken"),
    # Without a version, an old API's refund of the rest shows when it exceeds what was taken.
    [(NEW_API, 1200), (OLD_API, 1200), (None, 500), ("2025-03-30", 1200)],
)
def test_partial_capture_then_refund_of_all_that_was_captured_is_refunded(api, taken):
    # Before 2025-03-31 Stripe refunded the uncaptured rest; since, it releases it.
    released = 2000 - taken if api != NEW_API else 0
    captured = charge(amount_captured=taken, amount_refunded=released)
    refunded = charge(amount_captured=taken, amount_refunded=released + taken, refunded=True)
    events = [
        event("charge.captured", captured, T, api),
        event("charge.refunded", refunded, T + 1, api),
    ]
    assert_every_order(events[:1], Status.SUCCEEDED, amount_captured=taken, amount_refunded=0)
    assert_every_order(events, Status.REFUNDED, amount_captured=taken, amount_refunded=taken)
    half = charge(amount_captured=taken, amount_refunded=released + 100)
    assert_every_order(
        [events[0], event("charge.refunded", half, T + 1, api)],
        Status.PARTIALLY_REFUNDED,
        amount_refunded=100,
    )


def test_without_a_version_a_refund_within_what_was_taken_is_a_refund():
    partial = charge(amount_captured=1200, amount_refunded=800)
    state = fold([event("charge.refunded", partial, T, None)])
    assert (state.status, state.amount_refunded) == (Status.PARTIALLY_REFUNDED, 800)


def test_an_old_api_partial_capture_refund_object_for_the_rest_is_no_customer_refund():
    events = [
        event("charge.captured", charge(amount_captured=1200, amount_refunded=800), T, OLD_API),
        event("refund.created", refund(amount=800), T, OLD_API),
    ]
    assert_every_order(events, Status.SUCCEEDED, amount_captured=1200, amount_refunded=0)


def test_a_released_or_canceled_authorization_is_canceled_never_refunded():
    events = [
        event("charge.succeeded", charge(captured=False, payment_intent="pi_1"), T),
        event("payment_intent.canceled", intent("canceled"), T + 1),
        event(
            "charge.refunded",
            charge(captured=False, refunded=True, amount_refunded=2000, payment_intent="pi_1"),
            T + 1,
        ),
    ]
    assert_every_order(events, Status.CANCELED, amount_captured=0, amount_refunded=0)


def test_an_expired_authorization_is_expired_also_after_the_intent_is_canceled():
    events = [
        event("charge.succeeded", charge(captured=False, payment_intent="pi_1"), T),
        event("payment_intent.amount_capturable_updated", intent("requires_capture"), T),
        event("charge.expired", charge(captured=False, payment_intent="pi_1"), T + 7 * 86400),
        event("payment_intent.canceled", intent("canceled"), T + 7 * 86400),
    ]
    assert_every_order(events, Status.EXPIRED, amount_captured=0)


# -- attempts ------------------------------------------------------------------------------------


def test_a_retry_that_succeeds_in_the_same_second_overrides_the_failure():
    error = {"code": "card_declined", "charge": "ch_1"}
    events = [
        event("payment_intent.created", intent("requires_payment_method"), T),
        event("charge.failed", charge("failed", payment_intent="pi_1"), T),
        event(
            "payment_intent.payment_failed",
            intent("requires_payment_method", last_payment_error=error),
            T,
        ),
        event("charge.succeeded", charge(id="ch_2", payment_intent="pi_1"), T),
        event("payment_intent.succeeded", intent("succeeded"), T),
    ]
    assert_every_order(events, Status.SUCCEEDED, amount_captured=2000)
    # Without the intent's success, the captured charge alone says the same.
    assert_every_order([events[2], events[3]], Status.SUCCEEDED)


def test_a_failure_stays_failed_until_a_newer_attempt():
    failed = event("payment_intent.payment_failed", intent("requires_payment_method"), T)
    assert_every_order(
        [event("payment_intent.created", intent("requires_payment_method"), T), failed],
        Status.FAILED,
    )
    retry = event("payment_intent.requires_action", intent("requires_action"), T + 1)
    assert_every_order([failed, retry], Status.REQUIRES_ACTION)
    # In one second the failure is read: a new attempt reports its own outcome later.
    assert_every_order(
        [failed, event("payment_intent.processing", intent("processing"), T)], Status.FAILED
    )


def test_the_newest_attempt_of_intent_and_charges_wins():
    created = event("payment_intent.created", intent("requires_payment_method"), T)
    pending = event("charge.pending", charge("pending", payment_intent="pi_1"), T)
    assert_every_order([created, pending], Status.PROCESSING)
    failed_charge = event("charge.failed", charge("failed", payment_intent="pi_1"), T + 1)
    assert_every_order([created, pending, failed_charge], Status.FAILED)
    action = event("payment_intent.requires_action", intent("requires_action"), T + 2)
    assert_every_order([created, failed_charge, action], Status.REQUIRES_ACTION)


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        (intent("processing"), intent("succeeded")),
        (intent("requires_action"), intent("processing")),
        (intent("requires_payment_method"), intent("requires_confirmation")),
        (intent("requires_capture"), intent("canceled")),
        (charge("pending"), charge("failed")),
        (charge(captured=False), charge()),
        (refund("pending"), refund("succeeded")),
        (refund("succeeded"), refund("failed")),
        (dispute("warning_needs_response"), dispute("warning_under_review")),
        (dispute("warning_under_review"), dispute("needs_response")),
        (dispute("needs_response"), dispute("under_review")),
        (dispute("under_review"), dispute("lost")),
    ],
)
def test_in_one_second_each_object_moves_along_its_lifecycle(older, newer):
    states = in_every_order([event("x.updated", older), event("x.updated", newer)])
    for state in states:
        [snapshot] = state.objects.values()
        assert snapshot["status"] == newer["status"]


def test_a_late_older_snapshot_never_overrides_a_newer_one():
    newer = event("charge.refunded", charge(amount_refunded=2000, refunded=True), T + 10)
    older = event("charge.succeeded", charge(), T)
    state = fold([newer])
    assert state.apply(older) is False
    assert state.status == Status.REFUNDED
    assert state.apply(newer) is False  # a duplicate changes nothing
    # A newer snapshot wins whatever its lifecycle stage.
    assert state.apply(event("charge.dispute.created", dispute("needs_response"), T + 20))
    assert state.status == Status.DISPUTED


# -- refunds ---------------------------------------------------------------------------------------


def test_a_refund_that_fails_no_longer_counts():
    events = [
        event("charge.succeeded", charge(), T),
        event("refund.created", refund(amount=2000), T),
        event("charge.refunded", charge(amount_refunded=2000, refunded=True), T),
        event("refund.failed", refund("failed", amount=2000), T + 3),
        event("charge.refund.updated", refund("failed", amount=2000), T + 3),
    ]
    assert_every_order(events, Status.SUCCEEDED, amount_refunded=0, amount_captured=2000)


def test_a_failed_refund_in_the_same_second_as_the_charge_snapshot():
    # Whether the charge's snapshot came before or after the failure, nothing is refunded.
    for after_failure in (0, 2000):
        events = [
            event("charge.refunded", charge(amount_refunded=after_failure), T),
            event("refund.failed", refund("failed", amount=2000), T),
        ]
        assert_every_order(events, Status.SUCCEEDED, amount_refunded=0)


def test_several_refunds_some_failing_or_canceled():
    events = [
        event("charge.succeeded", charge(), T),
        event("refund.created", refund(amount=300), T + 1),
        event("refund.created", refund(id="re_2", amount=500, created=T + 2), T + 2),
        event("refund.created", refund(id="re_3", amount=700, created=T + 2), T + 2),
        event("charge.refunded", charge(amount_refunded=1500), T + 2),
        event("refund.failed", refund("failed", id="re_2", amount=500, created=T + 2), T + 4),
        event("refund.updated", refund("canceled", id="re_3", amount=700, created=T + 2), T + 4),
        event("charge.updated", charge(amount_refunded=300), T + 4),
    ]
    assert_every_order(events[:5], Status.PARTIALLY_REFUNDED, amount_refunded=1500)
    for order in itertools.islice(itertools.permutations(events), 0, None, 97):
        state = fold(order)
        assert (state.status, state.amount_refunded) == (Status.PARTIALLY_REFUNDED, 300)


def test_refunds_known_only_from_the_charge_count_too():
    events = [
        event("refund.created", refund(amount=300), T + 1),
        # 300 known one by one, 900 more only through the charge's total.
        event("charge.refunded", charge(amount_refunded=1200), T + 2),
    ]
    assert_every_order(events, Status.PARTIALLY_REFUNDED, amount_refunded=1200)
    # A refund made after the charge's snapshot adds to it.
    later = event("refund.created", refund(id="re_9", amount=800, created=T + 3), T + 3)
    assert_every_order([*events, later], Status.REFUNDED, amount_refunded=2000)


def test_refunds_embedded_in_the_charge_are_objects_of_their_own():
    embedded = charge(
        amount_refunded=500,
        refunds={"object": "list", "data": [refund(amount=500)]},
    )
    state = fold([event("charge.refunded", embedded, T)])
    assert set(state.objects) == {"ch_1", "re_1"}
    assert (state.status, state.amount_refunded) == (Status.PARTIALLY_REFUNDED, 500)
    state.apply(event("refund.failed", refund("failed", amount=500), T + 1))
    assert (state.status, state.amount_refunded) == (Status.SUCCEEDED, 0)


def test_charges_embedded_in_an_old_intent_are_objects_of_their_own():
    old = intent("succeeded", charges={"object": "list", "data": [charge(payment_intent="pi_1")]})
    state = fold([event("payment_intent.succeeded", old, T, OLD_API)])
    assert set(state.objects) == {"pi_1", "ch_1"}
    assert (state.status, state.amount_captured, state.currency) == (Status.SUCCEEDED, 2000, "eur")


def test_an_embedded_list_is_bounded():
    many = [refund(id=f"re_{i}", amount=1) for i in range(500)]
    state = fold([event("charge.refunded", charge(refunds={"data": many}), T)])
    assert len(state.objects) == 1 + 100


def test_a_refund_of_an_unknown_charge_counts_for_the_intent():
    events = [
        event("payment_intent.succeeded", intent("succeeded"), T),
        event("refund.created", refund(amount=2000, charge="ch_unseen", payment_intent="pi_1"), T),
    ]
    assert_every_order(events, Status.REFUNDED, amount_refunded=2000, amount_captured=2000)


def test_refunds_never_exceed_what_was_taken():
    events = [event("charge.succeeded", charge(amount_captured=1000), T)]
    events.append(event("refund.created", refund(amount=5000), T + 1))
    assert_every_order(events, Status.REFUNDED, amount_refunded=1000)


# -- disputes --------------------------------------------------------------------------------------


def test_an_open_dispute_outranks_refunds_and_a_closed_one_tells_the_outcome():
    base = [
        event("charge.succeeded", charge(), T),
        event("charge.refunded", charge(amount_refunded=500), T + 1),
    ]
    opened = event("charge.dispute.created", dispute("needs_response"), T + 2)
    assert_every_order([*base, opened], Status.DISPUTED, amount_refunded=500)
    lost = event("charge.dispute.closed", dispute("lost"), T + 9)
    assert_every_order([*base, opened, lost], Status.DISPUTE_LOST)


def test_an_inquiry_closed_counts_as_won_and_any_open_dispute_wins_over_a_closed_one():
    inquiry = [
        event("charge.succeeded", charge(), T),
        event("charge.dispute.created", dispute("warning_needs_response"), T + 1),
        event("charge.dispute.closed", dispute("warning_closed"), T + 2),
    ]
    assert_every_order(inquiry, Status.DISPUTE_WON)
    second = event("charge.dispute.created", dispute("needs_response", id="dp_2"), T + 3)
    assert_every_order([*inquiry, second], Status.DISPUTED)


def test_a_dispute_is_read_after_the_payment_only_when_money_was_taken():
    assert fold([event("charge.failed", charge("failed"), T)]).status == Status.FAILED
    only_dispute = fold([event("charge.dispute.created", dispute("needs_response"), T)])
    assert only_dispute.status == Status.DISPUTED


# -- amounts and storage ---------------------------------------------------------------------------


def test_amounts_come_from_the_intent_else_the_newest_charge():
    state = fold([event("charge.succeeded", charge(amount=900, currency="JPY"), T)])
    assert (state.amount, state.currency, state.amount_captured) == (900, "jpy", 900)
    state.apply(event("payment_intent.succeeded", intent("succeeded", amount=950), T))
    assert (state.amount, state.currency) == (950, "eur")
    assert fold([]).summary().amount is None
    assert fold([]).status is None and fold([]).currency == ""


def test_hostile_amounts_and_shapes_are_ignored_not_trusted():
    weird = charge(amount=-5, amount_captured=True, amount_refunded=2**70, currency="dollars")
    state = fold([event("charge.succeeded", weird, T)])
    assert (state.amount, state.amount_captured, state.amount_refunded, state.currency) == (
        None,
        0,
        0,
        "",
    )
    assert fold([{"type": "charge.succeeded", "created": T, "data": []}]).objects == {}
    assert fold([{"created": True, "data": {"object": charge()}}]).objects == {}
    assert fold([event("charge.succeeded", {**charge(), "id": ""})]).objects == {}


def test_the_state_survives_json_and_refuses_garbage():
    events = [
        event("charge.succeeded", charge(captured=False), T),
        event("refund.created", refund(amount=100), T + 1),
    ]
    state = fold(events)
    again = PaymentState.from_json(state.to_json())
    assert again.objects == state.objects and again.summary() == state.summary()
    assert PaymentState.from_json(None).objects == {}
    assert PaymentState.from_json({"objects": []}).objects == {}
    assert PaymentState.from_json({"objects": {"x": {"no": "key"}, "y": 3}}).objects == {}


def test_the_fold_is_the_same_in_every_order_even_with_equal_keys_and_other_content():
    # Two snapshots of one charge in one second at one stage with the same amounts differ only
    # in content: the order is still total.
    a = event("charge.updated", charge(amount_refunded=0, currency="usd"), T)
    b = event("charge.updated", charge(amount_refunded=0, currency="eur"), T)
    assert fold([a, b]).objects == fold([b, a]).objects


def test_an_expiry_stays_whichever_snapshot_of_the_charge_wins():
    # Before API 2025-03-31 Stripe refunds the expired authorization too, maybe later.
    expired = event("charge.expired", charge(captured=False), T, OLD_API)
    released = event(
        "charge.refunded",
        charge(captured=False, refunded=True, amount_refunded=2000),
        T + 1,
        OLD_API,
    )
    assert_every_order([expired, released], Status.EXPIRED, amount_refunded=0)
    state = fold([released])
    assert state.apply(expired) is True  # loses on time, still tells the expiry
    assert state.status == Status.EXPIRED
    assert state.apply(expired) is False


def test_refunds_of_the_snapshots_second_count_by_best_fit():
    # The charge's snapshot says 50: the failed 50, not the failed 1, or a live 1 made after.
    for refunds in (
        [refund("failed", amount=1), refund("failed", id="re_2", amount=50)],
        [refund("failed", amount=50), refund(id="re_2", amount=1)],
    ):
        events = [event("charge.refunded", charge(amount_refunded=50), T)]
        events += [event("refund.updated", r, T) for r in refunds]
        live = sum(r["amount"] for r in refunds if r["status"] == "succeeded")
        assert_every_order(events, Status.PARTIALLY_REFUNDED if live else Status.SUCCEEDED)
        assert fold(events).amount_refunded == live


def test_many_refunds_in_one_second_are_fitted_largest_first():
    failed = [refund("failed", id=f"re_{i}", amount=100 + i) for i in range(12)]
    snapshot = event("charge.refunded", charge(amount_refunded=111 + 110 + 1), T)
    state = fold([snapshot, *(event("refund.updated", r, T) for r in failed)])
    # 111 and 110 fit, and nothing else does: 1 is left to a refund not seen one by one.
    assert state.amount_refunded == 1
