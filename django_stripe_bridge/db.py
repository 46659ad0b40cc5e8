"""Database connections of the bridge's own worker threads (replay reads, group commit), and
views kept out of ``ATOMIC_REQUESTS``.

Django closes a request's connections when the request ends (``CONN_MAX_AGE``). These
threads serve no requests and each runs one piece of work after another, so a new
connection for every piece would cost more than the work (on SQLite, a connection per
replayed subscription). They keep their connections, and drop only one that broke; a
connection pool (PostgreSQL's ``"pool": True``) gets its connections back after each piece,
as the pool is small and shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connections, transaction


def release_connections() -> None:
    """After a piece of work: hand pooled connections back, drop broken ones, keep the rest."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        pooled = getattr(connection, "pool", None) is not None
        broken = connection.errors_occurred and not connection.is_usable()
        if pooled or broken or connection.in_atomic_block:
            connection.close()
        else:
            connection.errors_occurred = False


def non_atomic_requests(view: Callable[..., Any]) -> Callable[..., Any]:
    """``view`` exempt from ``ATOMIC_REQUESTS`` on every database: it manages its own
    transactions (what it answers must already be committed)."""
    for alias in connections:
        view = transaction.non_atomic_requests(using=alias)(view)
    return view
