"""batch_sql.py: insert-or-skip and insert-or-lock in one statement, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from django_stripe_bridge import batch_sql
from django_stripe_bridge.ingest import timestamp_to_datetime
from django_stripe_bridge.models import StripeEvent, StripeTransaction

pytestmark = pytest.mark.django_db(transaction=True)


def event_row(event_id: str, **fields: Any) -> StripeEvent:
    return StripeEvent(
        event_id=event_id,
        transaction_id=fields.pop("transaction_id", "ch_1"),
        type="charge.succeeded",
        created=timestamp_to_datetime(1_700_000_000),
        payload={"id": event_id, "nested": {"amount": 1200, "ok": True}},
        **fields,
    )


@contextlib.contextmanager
def recorded_statements() -> Iterator[list[str]]:
    """The SQL of every statement run meanwhile, as Django's execute wrappers see it."""
    statements: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield statements


def test_both_test_databases_have_insert_returning() -> None:
    assert batch_sql.supported("default") is True


def test_insert_new_inserts_only_the_missing_rows_and_says_which() -> None:
    StripeEvent.objects.bulk_create([event_row("evt_old")])
    old_pk = StripeEvent.objects.get(event_id="evt_old").pk

    inserted = batch_sql.insert_new(
        [event_row("evt_a"), event_row("evt_old"), event_row("evt_b")],
        unique="event_id",
        using="default",
    )

    stored = dict(StripeEvent.objects.values_list("event_id", "pk"))
    assert inserted == {"evt_a": stored["evt_a"], "evt_b": stored["evt_b"]}
    assert stored["evt_old"] == old_pk
    assert len(stored) == 3
    # The values went in as given, through the fields' own preparation (JSON, datetimes).
    row = StripeEvent.objects.get(event_id="evt_a")
    assert row.payload == {"id": "evt_a", "nested": {"amount": 1200, "ok": True}}
    assert row.created == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert row.received_at is not None  # auto_now_add applied


def test_insert_new_of_rows_all_stored_inserts_nothing() -> None:
    StripeEvent.objects.bulk_create([event_row("evt_a")])
    assert batch_sql.insert_new([event_row("evt_a")], unique="event_id", using="default") == {}
    assert StripeEvent.objects.count() == 1


def test_insert_new_splits_a_batch_over_the_parameter_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection.ops, "bulk_batch_size", lambda fields, objs: 2)
    rows = [event_row(f"evt_{n}") for n in range(5)]
    with recorded_statements() as statements:
        inserted = batch_sql.insert_new(rows, unique="event_id", using="default")
    assert sorted(inserted) == [f"evt_{n}" for n in range(5)]
    assert len([s for s in statements if s.startswith("INSERT")]) == 3  # 2 + 2 + 1
    assert StripeEvent.objects.count() == 5


def test_insert_and_lock_returns_new_and_stored_rows_as_stored() -> None:
    StripeTransaction.objects.create(
        id="ch_old",
        kind="charge",
        status="succeeded",
        amount=1200,
        livemode=True,
        state={"objects": {"ch_old": {"amount": 1200}}},
    )
    before = StripeTransaction.objects.get(pk="ch_old")

    rows = batch_sql.insert_and_lock(
        [
            StripeTransaction(id="ch_new", kind="charge", livemode=False),
            # A stored row's values are not overwritten by the object passed in.
            StripeTransaction(id="ch_old", kind="charge", livemode=False, status="failed"),
        ],
        using="default",
    )

    assert [tx.pk for tx in rows] == ["ch_new", "ch_old"]
    new, old = rows
    # Converted as a query would: a dict, Python booleans, aware datetimes; state saved.
    assert (old.status, old.amount, old.livemode, old.state) == (
        "succeeded",
        1200,
        True,
        {"objects": {"ch_old": {"amount": 1200}}},
    )
    assert old.created_at == before.created_at and old.updated_at == before.updated_at
    assert (new.status, new.amount, new.livemode, new.state, new.amount_refunded) == (
        "",
        None,
        False,
        {},
        0,
    )
    assert new.created_at.tzinfo is not None
    assert not new._state.adding and new._state.db == "default"  # as if loaded by a query
    assert StripeTransaction.objects.get(pk="ch_new").kind == "charge"
    assert StripeTransaction.objects.count() == 2


def test_insert_and_lock_holds_the_rows_until_the_transaction_ends() -> None:
    StripeTransaction.objects.create(id="ch_held", kind="charge")
    attempts: list[str] = []

    def other_writer() -> None:
        try:
            if connection.vendor == "postgresql":
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT id FROM django_stripe_bridge_stripetransaction "
                        "WHERE id = 'ch_held' FOR UPDATE NOWAIT"
                    )
            else:  # SQLite: the writer holds the database's one write lock
                with connection.cursor() as cursor:
                    cursor.execute("PRAGMA busy_timeout = 50")
                    cursor.execute(
                        "UPDATE django_stripe_bridge_stripetransaction SET status = 'x' "
                        "WHERE id = 'ch_held'"
                    )
            attempts.append("got it")
        except OperationalError:
            attempts.append("waited")
        finally:
            connections.close_all()

    with transaction.atomic():
        batch_sql.insert_and_lock([StripeTransaction(id="ch_held", kind="charge")], using="default")
        thread = threading.Thread(target=other_writer)
        thread.start()
        thread.join(30)
    assert attempts == ["waited"]
    thread = threading.Thread(target=other_writer)
    thread.start()
    thread.join(30)
    assert attempts == ["waited", "got it"]


def test_update_fields_writes_each_row_its_own_values() -> None:
    for tx_id in ("ch_a", "ch_b", "ch_c"):
        StripeTransaction.objects.create(id=tx_id, kind="charge", status="pending", amount=100)
    later = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    a = StripeTransaction(id="ch_a", status="succeeded", amount=None, state={"x": [1, "two"]})
    b = StripeTransaction(id="ch_b", status="refunded", amount=250, state={}, updated_at=later)
    a.updated_at = later

    batch_sql.update_fields([a, b], ["status", "amount", "state", "updated_at"], using="default")

    rows = {
        tx.pk: (tx.status, tx.amount, tx.state, tx.updated_at, tx.kind)
        for tx in StripeTransaction.objects.all()
    }
    assert rows["ch_a"] == ("succeeded", None, {"x": [1, "two"]}, later, "charge")
    assert rows["ch_b"] == ("refunded", 250, {}, later, "charge")
    assert rows["ch_c"][:3] == ("pending", 100, {})  # not named: untouched


def test_update_fields_splits_a_batch_over_the_parameter_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection.ops, "bulk_batch_size", lambda fields, objs: 2)
    for n in range(5):
        StripeTransaction.objects.create(id=f"ch_{n}", kind="charge")
    objs = [StripeTransaction(id=f"ch_{n}", status="failed") for n in range(5)]
    with recorded_statements() as statements:
        batch_sql.update_fields(objs, ["status"], using="default")
    assert len(statements) == 3
    assert set(StripeTransaction.objects.values_list("status", flat=True)) == {"failed"}


def test_statements_send_their_values_apart_from_the_text_on_postgresql() -> None:
    with recorded_statements() as seen:  # Django's execute wrappers still apply
        batch_sql.insert_new([event_row("evt_a")], unique="event_id", using="default")
    # psycopg's RawCursor on PostgreSQL (no parsing or quoting in Python); elsewhere,
    # Django's placeholders.
    placeholder = "$1" if connection.vendor == "postgresql" else "%s"
    assert placeholder in seen[0]
    assert StripeEvent.objects.get().payload["nested"] == {"amount": 1200, "ok": True}


def test_where_django_logs_queries_they_are_logged_and_work_the_same() -> None:
    StripeTransaction.objects.create(id="ch_old", kind="charge", status="succeeded")
    with CaptureQueriesContext(connection) as queries:
        inserted = batch_sql.insert_new([event_row("evt_a")], unique="event_id", using="default")
        rows = batch_sql.insert_and_lock(
            [
                StripeTransaction(id="ch_old", kind="charge"),
                StripeTransaction(id="ch_new", kind="charge"),
            ],
            using="default",
        )
        rows[0].status = "refunded"
        batch_sql.update_fields(rows, ["status"], using="default")
    assert list(inserted) == ["evt_a"]
    assert [tx.pk for tx in rows] == ["ch_old", "ch_new"]
    assert dict(StripeTransaction.objects.values_list("pk", "status")) == {
        "ch_old": "refunded",
        "ch_new": "",
    }
    logged = [q["sql"] for q in queries.captured_queries]
    assert len(logged) == 3
    assert "evt_a" in logged[0]  # the values formatted in, as Django logs them
    assert all("$1" not in sql for sql in logged)


def test_no_statement_passes_the_protocol_parameter_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two rows of transactions (one parameter per column) per statement at most.
    columns = len(StripeTransaction._meta.concrete_fields)
    monkeypatch.setattr(batch_sql, "MAX_PARAMETERS", 2 * columns)
    objs = [StripeTransaction(id=f"ch_{n}", kind="charge") for n in range(5)]
    with recorded_statements() as statements:
        rows = batch_sql.insert_and_lock(objs, using="default")
    assert [tx.pk for tx in rows] == [f"ch_{n}" for n in range(5)]
    assert len(statements) == 3  # 2 + 2 + 1


def test_statement_texts_kept_once_written_follow_each_call() -> None:
    """A statement's text is written out once per connection and kept; what is kept follows
    whether Django logs queries, the number of rows and the fields written."""
    for tx_id in ("ch_a", "ch_b"):
        StripeTransaction.objects.create(id=tx_id, kind="charge", amount=1)

    def update(objs: list[StripeTransaction], fields: list[str]) -> None:
        batch_sql.update_fields(objs, fields, using="default")

    with recorded_statements() as first:
        update([StripeTransaction(id="ch_a", status="failed")], ["status"])
    with CaptureQueriesContext(connection) as queries:
        update([StripeTransaction(id="ch_b", status="refunded")], ["status"])
    with recorded_statements() as again:
        update([StripeTransaction(id="ch_a", status="failed")], ["status"])
        update(
            [
                StripeTransaction(id="ch_a", amount=5, status="x"),
                StripeTransaction(id="ch_b", amount=7, status="y"),
            ],
            ["amount"],
        )

    assert again[0] == first[0]
    logged = queries.captured_queries[0]["sql"]
    assert "$1" not in logged and "refunded" in logged
    assert again[1].count("(") > first[0].count("(") and "amount" in again[1]
    assert "status" not in again[1].split("SET", 1)[1]
    rows = dict(StripeTransaction.objects.values_list("pk", "status"))
    amounts = dict(StripeTransaction.objects.values_list("pk", "amount"))
    assert rows == {"ch_a": "failed", "ch_b": "refunded"}
    assert amounts == {"ch_a": 5, "ch_b": 7}
