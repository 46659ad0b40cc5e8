"""``ingest_events``: a batch in one transaction, one insert, each event once, in order."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError, connection

from django_stripe_bridge import batch_sql, ingest, messaging
from django_stripe_bridge.ingest import ingest_event, ingest_events
from django_stripe_bridge.messaging import transaction_group
from django_stripe_bridge.models import StripeEvent, StripeTransaction
from tests.factories import charge_object, make_event
from tests.webhook_fixtures import *  # noqa: F403
from tests.webhook_fixtures import SignalLog, run_concurrently

T = 1_700_000_000


def history(charge_id: str, count: int = 4) -> list[dict[str, Any]]:
    """succeeded, then refunds growing by 100 each second."""
    return [
        make_event(
            "charge.succeeded" if n == 0 else "charge.refunded",
            charge_object(charge_id, amount_refunded=n * 100),
            created=T + n,
            event_id=f"evt_{charge_id}_{n}",
        )
        for n in range(count)
    ]


def inserts(queries: list[dict]) -> list[str]:
    return [
        q["sql"]
        for q in queries
        if q["sql"].startswith('INSERT INTO "django_stripe_bridge_stripeevent"')
    ]


@pytest.mark.django_db(transaction=True)
def test_a_batch_is_stored_in_one_insert_with_a_result_per_event(
    signal_log: SignalLog, django_assert_max_num_queries: Any
) -> None:
    ingest_event(history("ch_b")[0], publish=False)  # stored before
    batch = [*history("ch_b"), history("ch_b")[2], *history("ch_c", 2)]
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        results = ingest_events(batch, publish=False)
    assert [r.created for r in results] == [False, True, True, True, False, True, True]
    assert [r.event.event_id for r in results] == [e["id"] for e in batch]
    assert len({r.event.pk for r in results}) == 6 and all(r.event.pk for r in results)
    assert len(inserts(queries.captured_queries)) == 1
    assert StripeEvent.objects.count() == 6
    # Each result carries its transaction as it stood right after its event.
    assert [r.transaction.status for r in results[1:4]] == ["partially_refunded"] * 3
    assert [r.transaction.amount_refunded for r in results[1:4]] == [100, 200, 300]
    assert results[5].transaction.status == "succeeded"
    assert results[6].transaction.amount_refunded == 100
    assert results[0].transaction is None and results[4].transaction is None
    # One status change per real change, each with its own old status and event.
    changes = [
        (c["old_status"], c["new_status"], c["event"].event_id) for c in signal_log.status_changes
    ]
    assert changes == [
        (None, "succeeded", "evt_ch_b_0"),  # the ingest before the batch
        ("succeeded", "partially_refunded", "evt_ch_b_1"),
        (None, "succeeded", "evt_ch_c_0"),
        ("succeeded", "partially_refunded", "evt_ch_c_1"),
    ]
    assert [e["created"] for e in signal_log.received][1:] == [r.created for r in results]
    tx = StripeTransaction.objects.get(pk="ch_b")
    assert (tx.status, tx.amount_refunded) == ("partially_refunded", 300)


@pytest.mark.django_db(transaction=True)
def test_a_batch_larger_than_one_statement_takes_is_split(settings: Any) -> None:
    events = [e for n in range(60) for e in history(f"ch_{n:03d}", 4)]  # 240 events
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        results = ingest_events(events, publish=False)
    assert all(r.created for r in results)
    assert StripeEvent.objects.count() == 240
    assert StripeTransaction.objects.filter(status="partially_refunded").count() == 60
    statements = len(inserts(queries.captured_queries))
    fields = len([f for f in StripeEvent._meta.concrete_fields if not f.primary_key])
    per_statement = connection.ops.bulk_batch_size([None] * fields, events)
    assert statements == -(-240 // per_statement)


@pytest.mark.django_db(transaction=True)
def test_databases_without_insert_returning_get_the_same_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch_sql, "supported", lambda using: False)
    ingest_event(history("ch_f")[0], publish=False)
    results = ingest_events([*history("ch_f"), history("ch_f")[1]], publish=False)
    assert [r.created for r in results] == [False, True, True, True, False]
    assert StripeEvent.objects.count() == 4
    assert StripeTransaction.objects.get(pk="ch_f").amount_refunded == 300


@pytest.mark.django_db(transaction=True)
def test_a_failing_batch_stores_nothing_of_it(signal_log: SignalLog) -> None:
    def fail_the_update(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith(("UPDATE", "WITH")) and "stripetransaction" in sql:
            raise OperationalError("lost the connection")
        return execute(sql, params, many, context)

    ingest_event(history("ch_x")[0], publish=False)
    with connection.execute_wrapper(fail_the_update), pytest.raises(OperationalError):
        ingest_events(history("ch_x") + history("ch_y"), publish=False)
    assert list(StripeEvent.objects.values_list("event_id", flat=True)) == ["evt_ch_x_0"]
    assert list(StripeTransaction.objects.values_list("pk", "status")) == [("ch_x", "succeeded")]
    assert len(signal_log.received) == 1  # the first, separate ingest only


@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_batches_store_each_event_once(signal_log: SignalLog) -> None:
    events = [e for n in range(5) for e in history(f"ch_r{n}", 4)]

    def deliver(i: int) -> list[Any]:
        # Each worker sends an overlapping slice, in its own order.
        mine = events[i % 4 :] + events[: i % 4]
        return ingest_events(mine[::-1] if i % 2 else mine, publish=False)

    batches = run_concurrently(deliver, 8, timeout=90)
    created = [r.event.event_id for batch in batches for r in batch if r.created]
    assert sorted(created) == sorted(e["id"] for e in events)
    assert StripeEvent.objects.count() == len(events)
    assert len(signal_log.created) == len(events)
    for n in range(5):
        tx = StripeTransaction.objects.get(pk=f"ch_r{n}")
        assert (tx.status, tx.amount_refunded) == ("partially_refunded", 300)


@pytest.mark.django_db(transaction=True)
def test_a_batch_is_published_in_order_with_each_events_status(
    in_memory_layer: Any, channel_receiver: Any
) -> None:
    receiver = channel_receiver(transaction_group("ch_p"))
    results = ingest_events(history("ch_p", 3))
    got = [receiver.receive(2) for _ in results]
    assert [m["headers"]["event_id"] for m in got] == [r.event.event_id for r in results]
    assert [m["headers"]["status"] for m in got] == [
        "succeeded",
        "partially_refunded",
        "partially_refunded",
    ]
    assert StripeEvent.objects.filter(published_at__isnull=True).count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_layer_failing_mid_batch_leaves_the_rest_unpublished(
    in_memory_layer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    real_send, calls = layer.group_send, {"n": 0}

    async def failing_send(group: str, message: dict) -> None:
        calls["n"] += 1
        if calls["n"] > 2:  # the first event's two groups go; then the layer goes down
            raise ConnectionError("layer down")
        await real_send(group, message)

    monkeypatch.setattr(layer, "group_send", failing_send)
    monkeypatch.setattr(messaging, "MAX_BROADCAST_BATCH", 1)  # every event its own batch
    results = ingest_events(history("ch_half", 4))
    published = StripeEvent.objects.filter(published_at__isnull=False)
    assert list(published.values_list("event_id", flat=True)) == [results[0].event.event_id]
    assert calls["n"] == 3  # no send was tried after the first failure
    assert StripeEvent.objects.filter(published_at__isnull=True).count() == 3


def test_every_field_a_fold_changes_is_written() -> None:
    from django_stripe_bridge.payment_state import fold

    tx = StripeTransaction(id="ch_fields", kind="charge")
    events = history("ch_fields", 3)
    changed = tx.take_state(fold(events))
    assert set(changed) <= set(ingest._FOLDED_FIELDS)
    assert {"status", "amount", "amount_captured", "amount_refunded", "currency", "state"} <= set(
        changed
    )


@pytest.mark.django_db(transaction=True)
def test_the_broadcast_group_gets_a_batch_in_one_message(
    in_memory_layer: Any, channel_receiver: Any
) -> None:
    from django_stripe_bridge.messaging import EVENTS_MESSAGE_TYPE, broadcast_group

    receiver = channel_receiver(broadcast_group())
    results = ingest_events(history("ch_b1", 2) + history("ch_b2", 2))
    batch = receiver.receive(2)
    assert batch["type"] == EVENTS_MESSAGE_TYPE
    assert [m["event_id"] for m in batch["events"]] == [r.event.event_id for r in results]
    receiver.receive_nothing()
