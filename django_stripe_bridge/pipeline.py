"""One ingest batch's transaction in two round trips on PostgreSQL (psycopg's pipeline mode).

Through Django, a batch's transaction waits on the database five times: psycopg's ``BEGIN``
(a trip of its own), the events' ``INSERT``, the transactions' lock, their ``UPDATE`` and the
``COMMIT``. Each wait is a round trip: on a database across a network, a fraction of a
millisecond or more; on a busy one, a turn in its run queue. A server's single group-commit
thread (``group_commit.py``) makes them one after the other, so a batch's round trips bound
its events per second.

``transaction(using)`` sends ``BEGIN`` and the statements that follow in a pipeline:
queued, not waited on. ``sync()`` sends what is queued and waits once for all of it;
``resume()`` queues again; leaving the block queues ``COMMIT`` and waits for it with the
rest. The ingest queues its ``BEGIN``, ``INSERT`` and lock, syncs, folds the events into
the states in Python, then queues the ``UPDATE`` and commits: two round trips. Between
``sync()`` and ``resume()`` the connection is out of pipeline mode, so any query the ORM
makes there (the rare paths: duplicate deliveries, older histories) runs as usual, inside
the same transaction.

Django does not see this transaction (its connection stays in autocommit, outside any
``atomic`` block), so it is used only where Django's own would be a plain one: PostgreSQL
through psycopg 3 with pipeline support, no ``atomic`` block open, queries not being logged
(``available()``). An error rolls the whole transaction back, and is raised as Django's
(``IntegrityError``, ``DataError``, ``OperationalError``…), as ``atomic`` would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import connections


def available(using: str) -> bool:
    """Whether ``transaction(using)`` can run: PostgreSQL through psycopg 3 with pipeline
    mode, outside any ``atomic`` block, queries not logged."""
    connection = connections[using]
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return False
    if connection.queries_logged:
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:
        return False
    import psycopg

    return psycopg.Pipeline.is_supported()


class PipelinedTransaction:
    """A transaction whose statements are queued until ``sync()`` or its end."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._raw = connection.connection
        self._pipeline: Any = None

    def sync(self) -> None:
        """Send what is queued and wait for all of it (one round trip); raises the first
        error among the statements, as Django's."""
        pipeline, self._pipeline = self._pipeline, None
        with self._connection.wrap_database_errors:
            pipeline.__exit__(None, None, None)

    def resume(self) -> None:
        """Queue the statements that follow, until the next ``sync()`` or the end."""
        with self._connection.wrap_database_errors:
            self._pipeline = self._raw.pipeline()
            self._pipeline.__enter__()

    def _begin(self) -> None:
        self.resume()
        with self._connection.wrap_database_errors:
            self._raw.execute("BEGIN")

    def _commit(self) -> None:
        if self._pipeline is None:
            self.resume()
        with self._connection.wrap_database_errors:
            self._raw.execute("COMMIT")
        self.sync()

    def _abandon(self, exc: BaseException) -> None:
        """Leave the pipeline and roll back; the connection is then as before ``BEGIN``."""
        pipeline, self._pipeline = self._pipeline, None
        with contextlib.suppress(Exception):
            if pipeline is not None:
                pipeline.__exit__(type(exc), exc, exc.__traceback__)
        with contextlib.suppress(Exception), self._connection.wrap_database_errors:
            self._raw.rollback()


@contextlib.contextmanager
def transaction(using: str) -> Iterator[PipelinedTransaction]:
    """One transaction on ``using``, its statements pipelined (``available()`` must say
    so): committed when the block ends, rolled back when it raises."""
    connection = connections[using]
    connection.validate_thread_sharing()
    connection.ensure_connection()
    tx = PipelinedTransaction(connection)
    try:
        tx._begin()
        yield tx
        tx._commit()
    except BaseException as exc:
        tx._abandon(exc)
        raise
