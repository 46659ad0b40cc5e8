"""The bridge's worker threads keep their database connections, hand pooled ones back, and
drop broken ones."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections

from django_stripe_bridge.db import release_connections
from django_stripe_bridge.models import StripeEvent
from django_stripe_bridge.realtime import replay
from django_stripe_bridge.realtime.replay import run_in_replay_thread

pytestmark = pytest.mark.django_db(transaction=True)


def pooled() -> bool:
    return getattr(connection, "pool", None) is not None


def current_connection() -> Any:
    StripeEvent.objects.exists()
    return connection.connection


def test_a_replay_thread_keeps_its_connection_unless_a_pool_lends_it(settings: Any) -> None:
    settings.STRIPE_BRIDGE = {**settings.STRIPE_BRIDGE, "REPLAY_THREADS": 1}
    replay._queue = None  # one replay thread for this test
    try:
        first = async_to_sync(run_in_replay_thread)(current_connection)
        second = async_to_sync(run_in_replay_thread)(current_connection)
        after = async_to_sync(run_in_replay_thread)(lambda: connection.connection)
    finally:
        replay._queue = None
    if pooled():
        # Handed back after every read: a small shared pool is not held by idle threads.
        assert after is None
    else:
        # Not a new connection for every replayed subscription.
        assert first is second and after is first


def test_a_broken_connection_is_dropped_and_a_healthy_one_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    healthy = current_connection()
    release_connections()
    assert connection.connection is (None if pooled() else healthy)

    current_connection()
    connection.errors_occurred = True
    monkeypatch.setattr(connections["default"], "is_usable", lambda: False)  # it went away
    release_connections()
    assert connection.connection is None
    monkeypatch.undo()
    assert current_connection() is not None  # the next piece of work reconnects


def test_the_group_commit_thread_keeps_its_connection_while_batches_wait() -> None:
    from django_stripe_bridge import group_commit
    from tests.factories import charge_object, make_event

    seen: list[Any] = []
    lent: list[int] = []
    others_waiting = threading.Event()

    def ingest(events: Any, **options: Any) -> Any:
        seen.append(current_connection())
        # How many connections the pool has lent so far.
        lent.append(connection.pool.get_stats()["requests_num"] if pooled() else 0)
        others_waiting.wait(10)  # the first batch is stored once the others are waiting
        return group_commit.ingest_events(events, **options)

    committer = group_commit.GroupCommitter(ingest=ingest)

    async def burst() -> Any:
        events = [
            make_event("charge.succeeded", charge_object(f"ch_keep_{n}"), event_id=f"evt_k{n}")
            for n in range(6)
        ]
        first = asyncio.ensure_future(committer.submit(events[0]))
        while not seen:
            await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(committer.submit(e)) for e in events[1:]]
        await asyncio.sleep(0)
        others_waiting.set()
        await asyncio.gather(first, *rest)
        # Once the events sent are marked published too, the work has run out.
        unpublished = StripeEvent.objects.filter(published_at__isnull=True)
        for _ in range(200):
            if not await unpublished.aexists():
                break
            await asyncio.sleep(0.02)
        return await committer._in_thread(lambda: connection.connection)

    after = async_to_sync(burst)()
    assert committer.batch_sizes == [1, 5]
    # Not handed back between two batches, nor taken from the pool again.
    assert seen[0] is seen[1] and lent[0] == lent[1]
    if pooled():
        assert after is None  # handed back once the work ran out
    else:
        assert after is seen[0]


def test_a_committer_whose_loop_ended_with_marks_due_closes_its_connection_on_request() -> None:
    """A loop that stops while marks wait (an async test that posted webhooks) leaves the
    committer's thread holding its connection: on PostgreSQL the test database could not be
    dropped. ``close_connections()`` has it closed (tests/conftest.py, at session end)."""
    from django_stripe_bridge import group_commit
    from tests.factories import charge_object, make_event

    committer = group_commit.GroupCommitter()

    async def trickle() -> None:
        await committer.submit(make_event("charge.succeeded", charge_object("ch_left_1")))
        for _ in range(200):  # sent: its mark is due in MARK_DELAY
            if committer._to_mark:
                break
            await asyncio.sleep(0.005)
        assert committer._to_mark
        await committer.submit(make_event("charge.succeeded", charge_object("ch_left_2")))

    async_to_sync(trickle)()  # its loop is gone before the mark is due

    def held() -> Any:
        return committer._executor.submit(lambda: connection.connection).result(10)

    assert held() is not None
    group_commit.close_connections()
    assert held() is None
