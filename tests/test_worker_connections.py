"""The bridge's worker threads keep their database connections, hand pooled ones back, and
drop broken ones."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections

from django_stripe_bridge import replay
from django_stripe_bridge.db import release_connections
from django_stripe_bridge.models import StripeEvent
from django_stripe_bridge.replay import run_in_replay_thread

pytestmark = pytest.mark.django_db(transaction=True)


def pooled() -> bool:
    return getattr(connection, "pool", None) is not None


def current_connection() -> Any:
    StripeEvent.objects.exists()
    return connection.connection


def test_a_replay_thread_keeps_its_connection_unless_a_pool_lends_it(settings: Any) -> None:
    settings.STRIPE_BRIDGE = {**settings.STRIPE_BRIDGE, "REPLAY_THREADS": 1}
    replay._executor = None  # a one-thread executor for this test
    try:
        first = async_to_sync(run_in_replay_thread)(current_connection)
        second = async_to_sync(run_in_replay_thread)(current_connection)
        after = async_to_sync(run_in_replay_thread)(lambda: connection.connection)
    finally:
        replay._executor = None
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
