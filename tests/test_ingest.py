"""``ingest_event``: one row per event, the status table of SPEC §3, order, signals, races."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import transaction

from django_stripe_bridge import signals
from django_stripe_bridge.events import transaction_id_of
from django_stripe_bridge.exceptions import InvalidEvent
from django_stripe_bridge.ingest import ingest_event
from django_stripe_bridge.models import StripeEvent, StripeTransaction
from tests.factories import StripeTransactionFactory, charge_object, make_event
from tests.webhook_fixtures import *  # noqa: F403
from tests.webhook_fixtures import SignalLog, run_concurrently

T = 1_700_000_000


def pi_object(pi_id: str = "pi_test", status: str = "succeeded", **fields: Any) -> dict[str, Any]:
    obj = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": 1500,
        "amount_received": 1500 if status == "succeeded" else 0,
        "currency": "eur",
        "status": status,
        "livemode": False,
        "last_payment_error": None,
    }
    obj.update(fields)
    return obj


def refund_object(**fields: Any) -> dict[str, Any]:
    obj = {"id": "re_1", "object": "refund", "amount": 300, "charge": "ch_r", "currency": "usd"}
    obj.update(fields)
    return obj


def dispute_object(status: str = "needs_response", **fields: Any) -> dict[str, Any]:
    obj = {
        "id": "dp_1",
        "object": "dispute",
        "amount": 1000,
        "charge": "ch_d",
        "payment_intent": None,
        "currency": "usd",
        "status": status,
        "reason": "fraudulent",
    }
    obj.update(fields)
    return obj


def status_of_tx(tx_id: str) -> str:
    return StripeTransaction.objects.get(pk=tx_id).status


# -- the status table ----------------------------------------------------------------------

STATUS_TABLE = [
    ("charge.pending", charge_object("ch_1", status="pending"), "processing"),
    ("charge.succeeded", charge_object("ch_1"), "succeeded"),
    ("charge.captured", charge_object("ch_1"), "succeeded"),
    ("charge.failed", charge_object("ch_1", status="failed", paid=False), "failed"),
    ("charge.expired", charge_object("ch_1", captured=False), "expired"),
    ("charge.succeeded", charge_object("ch_1", captured=False), "requires_capture"),
    (
        "charge.refunded",
        charge_object("ch_1", amount_refunded=1000, refunded=True),
        "refunded",
    ),
    (
        "charge.refunded",
        charge_object("ch_1", amount_refunded=1200, refunded=True),
        "refunded",
    ),
    ("charge.refunded", charge_object("ch_1", amount_refunded=400), "partially_refunded"),
    (
        "payment_intent.amount_capturable_updated",
        pi_object("pi_1", "requires_capture", amount_capturable=1500),
        "requires_capture",
    ),
    ("charge.dispute.created", dispute_object(charge="ch_1"), "disputed"),
    ("charge.dispute.closed", dispute_object("won", charge="ch_1"), "dispute_won"),
    ("charge.dispute.closed", dispute_object("warning_closed", charge="ch_1"), "dispute_won"),
    ("charge.dispute.closed", dispute_object("lost", charge="ch_1"), "dispute_lost"),
    ("payment_intent.created", pi_object("pi_1", "requires_payment_method"), "pending"),
    ("payment_intent.created", pi_object("pi_1", "requires_confirmation"), "pending"),
    ("payment_intent.requires_action", pi_object("pi_1", "requires_action"), "requires_action"),
    ("payment_intent.processing", pi_object("pi_1", "processing"), "processing"),
    ("payment_intent.succeeded", pi_object("pi_1", "succeeded"), "succeeded"),
    ("payment_intent.canceled", pi_object("pi_1", "canceled"), "canceled"),
    (
        "payment_intent.payment_failed",
        pi_object("pi_1", "requires_payment_method"),
        "failed",
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("event_type", "obj", "expected"),
    STATUS_TABLE,
    ids=[f"{row[0]}->{row[2]}" for row in STATUS_TABLE],
)
def test_status_table(event_type: str, obj: dict[str, Any], expected: str) -> None:
    event = make_event(event_type, obj, created=T)
    result = ingest_event(event, publish=False)
    tx_id = "pi_1" if obj["object"] == "payment_intent" else "ch_1"
    assert result.created
    assert result.event.transaction_id == tx_id
    assert status_of_tx(tx_id) == expected
    assert result.status_changed
    assert result.old_status is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "event_type", ["charge.updated", "charge.refund.updated", "payment_intent.partially_funded"]
)
def test_events_that_tell_nothing_new_are_stored_and_change_nothing(event_type: str) -> None:
    refund = refund_object(charge="ch_1", status="succeeded", created=T)
    ingest_event(make_event("charge.succeeded", charge_object("ch_1"), created=T), publish=False)
    ingest_event(make_event("refund.created", refund, created=T), publish=False)
    if "refund" in event_type:
        obj = dict(refund, description="the same refund, described")
    else:
        obj = charge_object("ch_1", amount_refunded=300, description="a new description")
    result = ingest_event(make_event(event_type, obj, created=T + 1), publish=False)
    assert result.created and not result.status_changed
    assert StripeEvent.objects.filter(type=event_type).count() == 1
    tx = StripeTransaction.objects.get(pk="ch_1")
    assert (tx.status, tx.amount_captured, tx.amount_refunded) == ("partially_refunded", 1000, 300)


# -- order ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_late_older_succeeded_never_rolls_back_a_refund(signal_log: SignalLog) -> None:
    refunded = make_event(
        "charge.refunded", charge_object("ch_o", amount_refunded=1000, refunded=True), created=T
    )
    succeeded = make_event("charge.succeeded", charge_object("ch_o"), created=T - 30)
    ingest_event(refunded, publish=False)
    late = ingest_event(succeeded, publish=False)
    assert late.created and not late.status_changed
    tx = StripeTransaction.objects.get(pk="ch_o")
    assert tx.status == "refunded"
    assert tx.amount_refunded == 1000
    assert tx.payment_state().objects["ch_o"]["at"] == T
    # Still stored (and published) like any other event.
    assert StripeEvent.objects.filter(transaction_id="ch_o").count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("charge.succeeded", "charge.refunded", "refunded"),
        ("charge.refunded", "charge.succeeded", "refunded"),
        ("charge.pending", "charge.succeeded", "succeeded"),
        ("charge.succeeded", "charge.pending", "succeeded"),
        ("charge.refunded", "charge.dispute.created", "disputed"),
        ("charge.dispute.created", "charge.refunded", "disputed"),
        ("charge.dispute.closed", "charge.dispute.created", "dispute_lost"),
        ("payment_intent.succeeded", "payment_intent.processing", "succeeded"),
        ("payment_intent.processing", "payment_intent.requires_action", "processing"),
    ],
)
def test_same_second_ties_go_to_the_higher_rank(first: str, second: str, expected: str) -> None:
    def build(event_type: str) -> dict[str, Any]:
        if event_type.startswith("payment_intent."):
            status = event_type.split(".", 1)[1]
            return make_event(event_type, pi_object("pi_tie", status), created=T)
        if event_type.startswith("charge.dispute."):
            status = "lost" if event_type.endswith("closed") else "needs_response"
            return make_event(event_type, dispute_object(status, charge="ch_tie"), created=T)
        fields = {"amount_refunded": 1000} if event_type == "charge.refunded" else {}
        status = "pending" if event_type == "charge.pending" else "succeeded"
        return make_event(event_type, charge_object("ch_tie", status=status, **fields), created=T)

    ingest_event(build(first), publish=False)
    ingest_event(build(second), publish=False)
    tx_id = "pi_tie" if first.startswith("payment_intent.") else "ch_tie"
    assert status_of_tx(tx_id) == expected


@pytest.mark.django_db
def test_a_newer_event_may_lower_the_rank() -> None:
    # A dispute won, then a second dispute opened later: the newer event wins.
    ingest_event(
        make_event("charge.dispute.closed", dispute_object("won", charge="ch_n"), created=T),
        publish=False,
    )
    ingest_event(
        make_event("charge.dispute.created", dispute_object(charge="ch_n"), created=T + 60),
        publish=False,
    )
    assert status_of_tx("ch_n") == "disputed"


@pytest.mark.django_db
def test_partial_refunds_in_one_second_keep_the_largest_refunded_amount() -> None:
    first = charge_object("ch_p", amount_refunded=300)
    second = charge_object("ch_p", amount_refunded=700)
    ingest_event(make_event("charge.refunded", second, created=T), publish=False)
    ingest_event(make_event("charge.refunded", first, created=T), publish=False)
    tx = StripeTransaction.objects.get(pk="ch_p")
    assert (tx.status, tx.amount_refunded) == ("partially_refunded", 700)


# -- transactions made elsewhere and by the bridge -----------------------------------------


@pytest.mark.django_db
def test_transaction_made_elsewhere_is_created_from_its_first_event() -> None:
    obj = pi_object("pi_else", "succeeded", amount=4200, currency="gbp")
    ingest_event(make_event("payment_intent.succeeded", obj, livemode=False), publish=False)
    tx = StripeTransaction.objects.get(pk="pi_else")
    assert (tx.kind, tx.status, tx.amount, tx.currency, tx.user) == (
        "payment_intent",
        "succeeded",
        4200,
        "gbp",
        None,
    )


@pytest.mark.django_db
def test_transaction_first_seen_in_any_event_gets_its_state() -> None:
    # The status comes from the object, not from the event's type.
    ingest_event(make_event("charge.updated", charge_object("ch_upd", amount=777)), publish=False)
    tx = StripeTransaction.objects.get(pk="ch_upd")
    assert (tx.kind, tx.status, tx.amount, tx.amount_captured) == ("charge", "succeeded", 777, 777)


@pytest.mark.django_db
def test_events_of_other_objects_are_stored_without_a_transaction() -> None:
    obj = {"id": "cus_1", "object": "customer", "email": "a@example.com"}
    result = ingest_event(make_event("customer.created", obj), publish=False)
    assert result.created and result.transaction is None
    assert result.event.transaction_id == "cus_1"
    assert not StripeTransaction.objects.exists()


@pytest.mark.django_db
def test_bridge_created_transaction_moves_on_from_the_create_status(
    signal_log: SignalLog, django_capture_on_commit_callbacks: Any
) -> None:
    StripeTransactionFactory(id="ch_b", status="succeeded", amount=1000)
    event = make_event(
        "charge.refunded", charge_object("ch_b", amount_refunded=1000, refunded=True)
    )
    with django_capture_on_commit_callbacks(execute=True):
        ingest_event(event, publish=False)
    assert status_of_tx("ch_b") == "refunded"
    [change] = signal_log.status_changes
    assert (change["old_status"], change["new_status"]) == ("succeeded", "refunded")
    assert change["transaction"].pk == "ch_b"
    assert change["event"].event_id == event["id"]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (charge_object("ch_a"), "ch_a"),
        (charge_object("ch_a", payment_intent="pi_a"), "pi_a"),
        (charge_object("ch_a", payment_intent={"id": "pi_x", "object": "payment_intent"}), "pi_x"),
        (pi_object("pi_b"), "pi_b"),
        (refund_object(charge="ch_r", payment_intent=None), "ch_r"),
        (refund_object(charge="ch_r", payment_intent="pi_r"), "pi_r"),
        (refund_object(charge={"id": "ch_rx", "object": "charge"}), "ch_rx"),
        (dispute_object(charge="ch_d"), "ch_d"),
        (dispute_object(charge="ch_d", payment_intent="pi_d"), "pi_d"),
        ({"id": "cus_1", "object": "customer"}, "cus_1"),
    ],
    ids=[
        "charge",
        "charge-with-pi",
        "charge-with-expanded-pi",
        "payment-intent",
        "refund",
        "refund-with-pi",
        "refund-with-expanded-charge",
        "dispute",
        "dispute-with-pi",
        "other-object",
    ],
)
def test_transaction_id_of(obj: dict[str, Any], expected: str) -> None:
    assert transaction_id_of(make_event("x.y", obj)) == expected


@pytest.mark.django_db
def test_refund_and_dispute_events_land_on_the_payment_intent() -> None:
    ingest_event(make_event("payment_intent.succeeded", pi_object("pi_z")), publish=False)
    ingest_event(
        make_event("charge.dispute.created", dispute_object(charge="ch_z", payment_intent="pi_z")),
        publish=False,
    )
    assert StripeEvent.objects.filter(transaction_id="pi_z").count() == 2
    assert status_of_tx("pi_z") == "disputed"
    assert not StripeTransaction.objects.filter(pk="ch_z").exists()


@pytest.mark.django_db
def test_not_an_event_is_refused_and_nothing_stored() -> None:
    with pytest.raises(InvalidEvent):
        ingest_event({"id": "ch_1", "object": "charge"})
    assert not StripeEvent.objects.exists()


@pytest.mark.django_db
def test_duplicate_changes_nothing() -> None:
    event = make_event("charge.succeeded", charge_object("ch_dup"))
    first = ingest_event(event, publish=False)
    again = ingest_event({**event, "type": "charge.failed"}, publish=False)
    assert first.created and not again.created
    assert again.event.pk == first.event.pk
    assert StripeEvent.objects.get(pk=first.event.pk).type == "charge.succeeded"
    assert status_of_tx("ch_dup") == "succeeded"


# -- signals after commit ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_signals_are_sent_after_commit_only(signal_log: SignalLog) -> None:
    event = make_event("charge.succeeded", charge_object("ch_sig"))
    with transaction.atomic():
        ingest_event(event, publish=False)
        assert signal_log.received == [] and signal_log.status_changes == []
    assert [(e["created"], e["in_atomic"]) for e in signal_log.received] == [(True, False)]
    assert [(e["new_status"], e["in_atomic"]) for e in signal_log.status_changes] == [
        ("succeeded", False)
    ]
    # A receiver sees the committed rows.
    assert signal_log.received[0]["event"].pk == StripeEvent.objects.get().pk

    ingest_event(event, publish=False)  # a repeat: event_received(created=False), no change
    assert [e["created"] for e in signal_log.received] == [True, False]
    assert len(signal_log.status_changes) == 1


@pytest.mark.django_db(transaction=True)
def test_no_signal_when_the_transaction_rolls_back(signal_log: SignalLog) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        ingest_event(make_event("charge.succeeded", charge_object("ch_rb")), publish=False)
        raise Abort
    assert signal_log.received == [] and signal_log.status_changes == []
    assert not StripeEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_failing_receiver_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.event_received.connect(broken, dispatch_uid="broken")
    try:
        with caplog.at_level(logging.ERROR, logger="django_stripe_bridge"):
            result = ingest_event(make_event("charge.succeeded", charge_object("ch_x")))
    finally:
        signals.event_received.disconnect(dispatch_uid="broken")
    assert result.created
    assert StripeEvent.objects.filter(pk=result.event.pk).exists()
    assert any("receiver" in r.getMessage().lower() for r in caplog.records)


# -- concurrency ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_event(signal_log: SignalLog) -> None:
    event = make_event("charge.succeeded", charge_object("ch_race"))
    results = run_concurrently(lambda i: ingest_event(event, publish=False), 20, timeout=60)
    assert sum(result.created for result in results) == 1
    assert StripeEvent.objects.filter(event_id=event["id"]).count() == 1
    assert StripeTransaction.objects.filter(pk="ch_race").count() == 1
    assert len(signal_log.created) == 1
    assert len(signal_log.received) == 20
    assert len(signal_log.status_changes) == 1
    assert status_of_tx("ch_race") == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_concurrent_events_of_one_transaction_end_in_the_highest_status() -> None:
    events = [
        make_event("charge.pending", charge_object("ch_many", status="pending"), created=T),
        make_event("charge.succeeded", charge_object("ch_many"), created=T + 1),
        make_event("charge.refunded", charge_object("ch_many", amount_refunded=200), created=T + 2),
        make_event(
            "charge.refunded", charge_object("ch_many", amount_refunded=1000), created=T + 3
        ),
    ] * 3
    run_concurrently(lambda i: ingest_event(events[i], publish=False), len(events), timeout=60)
    tx = StripeTransaction.objects.get(pk="ch_many")
    assert (tx.status, tx.amount_refunded) == ("refunded", 1000)
    assert StripeEvent.objects.filter(transaction_id="ch_many").count() == 4
