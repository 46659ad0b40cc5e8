"""The payment-state fold's finer rules (docs/models.md, SPEC §3), as pure unit tests.

Ties within one second, amounts as the last tie-break, refunds counted by best fit, hostile
shapes, and the older API's embedded objects: the cases a mutation run of
``payment_state`` showed no test held (bench/README.md says how to run it).
"""

from __future__ import annotations

from typing import Any

import pytest

from django_stripe_bridge.payment_state import PaymentState, Status, fold
from tests.test_payment_state import (
    T,
    assert_every_order,
    charge,
    dispute,
    event,
    in_every_order,
    intent,
    refund,
)

#: An API version from before 2022-11-15, when a PaymentIntent still embedded its charges.
EMBEDDING_API = "2022-08-01"


def kept(state: PaymentState, object_id: str) -> str:
    """The status of the snapshot the state kept of one object."""
    return state.objects[object_id]["status"]


# -- what is no payment object --------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        {"created": True, "data": {"object": charge()}},
        {"created": "1700000000", "data": {"object": charge()}},
        {"created": T, "data": {"object": "ch_1"}},
        {"created": T, "data": None},
    ],
    ids=["created-bool", "created-text", "object-not-a-dict", "no-data"],
)
def test_an_event_without_a_usable_object_or_time_changes_nothing(hostile):
    state = fold([event("charge.succeeded", charge(), T)])
    before = state.to_json()
    assert state.apply(hostile) is False
    assert state.to_json() == before


@pytest.mark.parametrize("object_id", [123, ["ch_1"], {"id": "ch_1"}, None])
def test_an_object_whose_id_is_not_text_is_ignored(object_id):
    state = fold([event("charge.succeeded", charge(id=object_id), T)])
    assert state.objects == {}
    assert state.status is None


# -- API versions ---------------------------------------------------------------------------


@pytest.mark.parametrize("api", [None, 20240620, {"version": "2024-06-20"}])
def test_without_a_readable_version_a_refund_of_exactly_what_was_taken_is_a_refund(api):
    # Only a charge reporting *more* refunded than captured shows an older API's refunded rest.
    taken = charge(amount_captured=1200, amount_refunded=1200, refunded=True)
    state = fold([event("charge.refunded", taken, T, api)])
    assert (state.status, state.amount_captured, state.amount_refunded) == (
        Status.REFUNDED,
        1200,
        1200,
    )


def test_charges_embedded_in_an_old_intent_are_read_by_the_events_version():
    # Before 2025-03-31 a partial capture refunded the uncaptured rest: no customer refund.
    embedded = charge(amount_captured=1200, amount_refunded=800, payment_intent="pi_1")
    old = intent("succeeded", amount_received=1200, charges={"data": [embedded]})
    state = fold([event("payment_intent.succeeded", old, T, EMBEDDING_API)])
    assert (state.status, state.amount_captured, state.amount_refunded) == (
        Status.SUCCEEDED,
        1200,
        0,
    )


def test_a_charge_embedded_in_an_old_intent_moves_on_with_the_charges_own_events():
    old = intent("succeeded", charges={"data": [charge(payment_intent="pi_1")]})
    refunded = charge(amount_refunded=2000, refunded=True, payment_intent="pi_1")
    events = [
        event("payment_intent.succeeded", old, T, EMBEDDING_API),
        event("charge.refunded", refunded, T + 5, EMBEDDING_API),
    ]
    assert_every_order(events, Status.REFUNDED, amount_refunded=2000, amount_captured=2000)


# -- within one second: lifecycle order, then amounts ---------------------------------------


def test_a_failed_attempt_then_an_authorization_in_one_second_is_requires_capture():
    error = {"code": "card_declined"}
    # Several contents: a rule left to the content digest would not pass them all by chance.
    for amount in (2000, 2100, 2200, 2300):
        failed = intent("requires_payment_method", amount=amount, last_payment_error=error)
        events = [
            event("payment_intent.payment_failed", failed),
            event("payment_intent.amount_capturable_updated", intent("requires_capture")),
        ]
        assert_every_order(events, Status.REQUIRES_CAPTURE)


def test_an_authorization_released_in_its_own_second_is_canceled():
    # The Charges API releases an authorization by refunding it.
    events = [
        event("charge.succeeded", charge(captured=False)),
        event("charge.refunded", charge(captured=False, refunded=True, amount_refunded=2000)),
    ]
    assert_every_order(events, Status.CANCELED, amount_captured=0, amount_refunded=0)


@pytest.mark.parametrize(("first", "then"), [(500, 1200), (700, 1300), (100, 1900), (50, 60)])
def test_in_one_second_the_snapshot_that_took_more_wins(first, then):
    # Several partial captures of one authorization (multicapture) in one second; several
    # amounts, so that a tie left to the content digest cannot pass by chance.
    intents = [
        event("payment_intent.amount_capturable_updated", intent("requires_capture", **fields))
        for fields in ({"amount_received": first}, {"amount_received": then})
    ]
    assert_every_order(intents, Status.REQUIRES_CAPTURE, amount_captured=then)
    charges = [
        event("charge.captured", charge(amount_captured=first)),
        event("charge.captured", charge(amount_captured=then)),
    ]
    assert_every_order(charges, Status.SUCCEEDED, amount_captured=then)
    refunded = [
        event("charge.refunded", charge(amount_refunded=first)),
        event("charge.refunded", charge(amount_refunded=then)),
    ]
    assert_every_order(refunded, Status.PARTIALLY_REFUNDED, amount_refunded=then)


@pytest.mark.parametrize(
    ("known", "event_type"),
    [
        (intent("requires_payment_method"), "payment_intent.created"),
        (charge("pending"), "charge.pending"),
        (refund("pending"), "refund.created"),
        (dispute("warning_needs_response"), "charge.dispute.created"),
    ],
    ids=["payment_intent", "charge", "refund", "dispute"],
)
def test_a_status_the_bridge_does_not_know_never_hides_a_known_one_of_the_same_second(
    known, event_type
):
    unknown = {**known, "status": "a_status_stripe_adds_later"}
    expected = fold([event(event_type, known)]).summary()
    for state in in_every_order([event(event_type, known), event(event_type, unknown)]):
        assert kept(state, known["id"]) == known["status"]
        assert state.summary() == expected


# -- refunds --------------------------------------------------------------------------------


def test_a_refund_without_a_status_is_a_succeeded_refund():
    # Refunds of older API versions had no status; they were made, and later than pending.
    old = refund(amount=500)
    del old["status"]
    for state in in_every_order(
        [
            event("charge.succeeded", charge(), T - 1),
            event("refund.created", old),
            event("refund.updated", refund("pending", amount=500)),
        ]
    ):
        assert kept(state, "re_1") == "succeeded"
        assert (state.status, state.amount_refunded) == (Status.PARTIALLY_REFUNDED, 500)


@pytest.mark.parametrize("amount", [None, -500, True, "500", 2**63, 5.0])
def test_a_refund_whose_amount_is_not_an_amount_gives_nothing_back(amount):
    events = [
        event("charge.succeeded", charge(), T),
        event("refund.created", refund(amount=amount), T + 1),
    ]
    assert_every_order(events, Status.SUCCEEDED, amount_refunded=0, amount_captured=2000)


@pytest.mark.parametrize("created", ["missing", None, "1700000000", True])
def test_a_refund_of_unknown_creation_time_counts_as_made_before_the_charges_snapshot(created):
    # Its charge's snapshot already counts it: 500 in all, not 1,000.
    made = refund(amount=500)
    if created == "missing":
        del made["created"]
    else:
        made["created"] = created
    events = [
        event("charge.refunded", charge(amount_refunded=500), T + 2),
        event("refund.updated", made, T + 5),
    ]
    assert_every_order(events, Status.PARTIALLY_REFUNDED, amount_refunded=500)


def test_a_refund_whose_charge_is_expanded_is_matched_to_that_charge():
    expanded = {"id": "ch_1", "object": "charge", "amount": 2000, "status": "succeeded"}
    events = [
        event("refund.created", refund(amount=500, charge=expanded, created=T), T),
        event("charge.refunded", charge(amount_refunded=500), T + 1),
    ]
    assert_every_order(events, Status.PARTIALLY_REFUNDED, amount_refunded=500)


@pytest.mark.parametrize("charge_field", [["ch_1"], {"id": ["ch_1"]}, {"id": 7}, ""])
def test_a_refund_naming_its_charge_in_a_hostile_shape_counts_for_the_payment(charge_field):
    events = [
        event("charge.succeeded", charge(), T),
        event("refund.created", refund(amount=500, charge=charge_field, created=T + 1), T + 1),
    ]
    assert_every_order(events, Status.PARTIALLY_REFUNDED, amount_refunded=500)


def test_a_refund_updated_in_the_snapshots_second_was_counted_by_it_once():
    # 200 made before, touched again in the second of the charge's snapshot of 800: the 600
    # only the snapshot knows of still count.
    events = [
        event("charge.succeeded", charge(), T),
        event("refund.created", refund(amount=200, created=T), T),
        event("refund.updated", refund(amount=200, created=T), T + 2),
        event("charge.refunded", charge(amount_refunded=800), T + 2),
    ]
    assert_every_order(events, Status.PARTIALLY_REFUNDED, amount_refunded=800)


def test_a_refund_of_the_snapshots_second_that_does_not_fit_was_made_after_it():
    # The snapshot says 100 (a refund seen only through it); 300 made in its second does not
    # fit in that, so it came after: 400 in all.
    events = [
        event("charge.refunded", charge(amount_refunded=100), T),
        event("refund.created", refund(id="re_2", amount=300, created=T), T),
    ]
    assert_every_order(events, Status.PARTIALLY_REFUNDED, amount_refunded=400)
    # Beside a refund the snapshot certainly counts, only what is left of it is room.
    events = [
        event("refund.created", refund(amount=500, created=T), T),
        event("refund.created", refund(id="re_2", amount=300, created=T + 1), T + 1),
        event("charge.refunded", charge(amount_refunded=600), T + 1),
    ]
    assert_every_order(events, Status.PARTIALLY_REFUNDED, amount_refunded=900)


def test_ten_refunds_of_one_second_are_fitted_exactly():
    amounts = [60, 50, 50, 1, 1, 1, 1, 1, 1, 1]
    failed = [refund("failed", id=f"re_{i}", amount=a) for i, a in enumerate(amounts)]
    snapshot = event("charge.refunded", charge(amount_refunded=100), T)
    state = fold([snapshot, *(event("refund.failed", r, T) for r in failed)])
    # 50 + 50 explain the snapshot's 100: every refund it counted failed.
    assert (state.status, state.amount_refunded) == (Status.SUCCEEDED, 0)


def test_many_refunds_of_one_second_that_fill_the_snapshot_exactly_leave_nothing_unseen():
    failed = [refund("failed", id=f"re_{i}", amount=100 + i) for i in range(12)]
    snapshot = event("charge.refunded", charge(amount_refunded=111 + 110), T)
    state = fold([snapshot, *(event("refund.failed", r, T) for r in failed)])
    assert (state.status, state.amount_refunded) == (Status.SUCCEEDED, 0)


# -- disputes -------------------------------------------------------------------------------


def test_an_older_open_dispute_outranks_a_newer_closed_one():
    events = [
        event("charge.succeeded", charge(), T),
        event("charge.dispute.created", dispute("needs_response"), T + 1),
        event("charge.dispute.closed", dispute("won", id="dp_2"), T + 5),
    ]
    assert_every_order(events, Status.DISPUTED)


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("lost", "won"),
        ("won", "lost"),
        ("warning_closed", "charge_refunded"),
        ("lost", "prevented"),
    ],
)
def test_of_closed_disputes_the_newest_tells_the_outcome(older, newer):
    expected = Status.DISPUTE_WON if newer in ("won", "prevented") else Status.DISPUTE_LOST
    # Several ids: an order by content instead of time would not pass them all by chance.
    for first, second in (("dp_1", "dp_2"), ("dp_2", "dp_1"), ("dp_a", "dp_b"), ("dp_b", "dp_a")):
        events: list[dict[str, Any]] = [
            event("charge.succeeded", charge(), T),
            event("charge.dispute.closed", dispute(older, id=first), T + 2),
            event("charge.dispute.closed", dispute(newer, id=second), T + 9),
        ]
        assert_every_order(events, expected)


# -- amounts a database column holds --------------------------------------------------------


def test_amounts_are_taken_up_to_what_a_bigint_column_holds():
    largest = 2**63 - 1
    state = fold([event("charge.succeeded", charge(amount=largest), T)])
    assert (state.amount, state.amount_captured) == (largest, largest)
    for beyond in (2**63, 2**63 + 1, 2**64 - 1):
        state = fold([event("charge.succeeded", charge(amount=beyond), T)])
        assert (state.amount, state.amount_captured) == (None, 0)
