"""pipeline.py: an ingest batch's transaction in two round trips on PostgreSQL, and what it
must keep of ``atomic``: all or nothing, Django's errors, a connection left as it was.

The round trips are counted in libpq's own trace of the connection (what it sent and
received), not inferred from the statements: on PostgreSQL, each ``Sync`` or simple
``Query`` the client sends is a wait for the server.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from django_stripe_bridge import pipeline
from django_stripe_bridge.ingest import ingest_event, ingest_events
from django_stripe_bridge.models import StripeEvent, StripeTransaction
from django_stripe_bridge.quarantine import ingest_isolating
from tests.test_ingest_batch import history


def waits(run: Callable[[], Any]) -> tuple[int, Any]:
    """How many times the connection waited on PostgreSQL while ``run()`` ran, and what it
    returned."""
    from psycopg import pq

    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    fd, path = tempfile.mkstemp()
    try:
        pgconn.trace(fd)
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            value = run()
        finally:
            pgconn.untrace()
        with open(path) as trace:
            sent = [line.split("\t") for line in trace]
    finally:
        os.close(fd)
        os.unlink(path)
    count = sum(1 for line in sent if line[0] == "F" and line[2].split()[0] in {"Sync", "Query"})
    return count, value


@pytest.fixture
def refuse() -> Iterator[Callable[[str, str], None]]:
    """Add a CHECK constraint to a table for the test (a real refusal by the server)."""
    added: list[tuple[str, str]] = []

    def add(table: str, check: str) -> None:
        name = f"test_refuse_{len(added)}"
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({check}) NOT VALID")
        added.append((table, name))

    yield add
    with connection.cursor() as cursor:
        for table, name in added:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")


def idle() -> bool:
    """Whether the connection is outside any transaction, as Django left it."""
    from psycopg import pq

    status = connection.connection.pgconn.transaction_status
    return bool(status == pq.TransactionStatus.IDLE and connection.get_autocommit())


@pytest.mark.django_db(transaction=True)
def test_only_postgresql_outside_atomic_blocks_pipelines() -> None:
    on_postgresql = connection.vendor == "postgresql"
    assert pipeline.available("default") is on_postgresql
    with transaction.atomic():
        assert pipeline.available("default") is False  # Django's transaction, savepoints
    connection.force_debug_cursor = True  # queries logged: they go through Django's cursor
    try:
        assert pipeline.available("default") is False
    finally:
        connection.force_debug_cursor = False


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_batch_waits_on_the_database_twice() -> None:
    # BEGIN, the events' insert and the lock, then the update and the commit (was five).
    assert waits(lambda: ingest_events([*history("ch_a"), *history("ch_b")], publish=False))[0] == 2
    assert waits(lambda: ingest_events(history("ch_c", 1), publish=False))[0] == 2
    tx = StripeTransaction.objects.get(pk="ch_a")
    assert (tx.status, tx.amount_refunded) == ("partially_refunded", 300)
    assert StripeEvent.objects.count() == 9
    assert idle()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_repeated_deliveries_in_a_pipelined_batch_change_nothing() -> None:
    ingest_event(history("ch_r")[0], publish=False)
    batch = [*history("ch_r"), history("ch_r")[2], history("ch_n")[0]]
    # One more wait: the rows of the events stored before are read between the two.
    count, results = waits(lambda: ingest_events(batch, publish=False))
    assert count == 3
    assert [r.created for r in results] == [False, True, True, True, False, True]
    assert [r.event.pk for r in results][2] == results[4].event.pk
    assert StripeEvent.objects.count() == 5
    tx = StripeTransaction.objects.get(pk="ch_r")
    assert (tx.status, tx.amount_refunded) == ("partially_refunded", 300)
    # A batch of repeats alone locks its transaction and changes nothing.
    assert [r.created for r in ingest_events(history("ch_r"), publish=False)] == [False] * 4
    assert StripeTransaction.objects.get(pk="ch_r").updated_at == tx.updated_at


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("table", "check"),
    [
        # Refused by the first round trip (the events' insert) …
        ("django_stripe_bridge_stripeevent", "event_id <> 'evt_ch_bad_1'"),
        # … and by the second (the fold's update).
        ("django_stripe_bridge_stripetransaction", "amount_refunded < 200"),
    ],
)
def test_a_refused_batch_stores_nothing_and_leaves_the_connection_as_it_was(
    refuse: Callable[[str, str], None], table: str, check: str
) -> None:
    ingest_event(history("ch_ok")[0], publish=False)
    refuse(table, check)
    with pytest.raises(IntegrityError, match="test_refuse_0"):
        ingest_events([*history("ch_bad"), history("ch_ok")[1]], publish=False)
    assert idle()
    assert list(StripeEvent.objects.values_list("event_id", flat=True)) == ["evt_ch_ok_0"]
    assert list(StripeTransaction.objects.values_list("pk", "status")) == [("ch_ok", "succeeded")]
    # The connection goes on: the next batch is stored, in two round trips again.
    assert waits(lambda: ingest_events(history("ch_ok", 2)[1:], publish=False))[0] == 2
    assert StripeTransaction.objects.get(pk="ch_ok").amount_refunded == 100


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_refused_event_among_good_ones_is_isolated_through_the_pipeline(
    refuse: Callable[[str, str], None],
) -> None:
    refuse("django_stripe_bridge_stripeevent", "event_id <> 'evt_ch_p5_0'")
    batch = [history(f"ch_p{n}", 1)[0] for n in range(10)]
    outcome = ingest_isolating(batch, publish=False)
    assert [isinstance(r, Exception) for r in outcome] == [n == 5 for n in range(10)]
    assert StripeEvent.objects.count() == 9
    assert StripeTransaction.objects.filter(status="succeeded").count() == 9
    assert idle()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_error_in_python_mid_batch_rolls_the_transaction_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django_stripe_bridge import ingest

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the fold")

    monkeypatch.setattr(ingest, "_update_transactions", broken)
    with pytest.raises(RuntimeError, match="a bug in the fold"):
        ingest_events(history("ch_e"), publish=False)
    assert idle()
    assert StripeEvent.objects.count() == 0
    assert StripeTransaction.objects.count() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_lost_connection_fails_the_batch_with_django_s_error() -> None:
    from django.db import OperationalError

    connection.ensure_connection()
    connection.connection.close()  # gone under Django's feet: the server went away
    try:
        # Django's error, which the webhook answers 503 (psycopg's own would be a 500).
        with pytest.raises(OperationalError, match="closed"):
            ingest_events(history("ch_l"), publish=False)
    finally:
        connection.close()
    assert StripeEvent.objects.count() == 0
