"""upserts.py: insert-or-skip and insert-or-lock in one statement, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import OperationalError, connection, connections, transaction

from django_stripe_bridge import upserts
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


def test_both_test_databases_have_insert_returning() -> None:
    assert upserts.supported("default") is True


def test_insert_new_inserts_only_the_missing_rows_and_says_which() -> None:
    StripeEvent.objects.bulk_create([event_row("evt_old")])
    old_pk = StripeEvent.objects.get(event_id="evt_old").pk

    inserted = upserts.insert_new(
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
    assert upserts.insert_new([event_row("evt_a")], unique="event_id", using="default") == {}
    assert StripeEvent.objects.count() == 1


def test_insert_new_splits_a_batch_over_the_parameter_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection.ops, "bulk_batch_size", lambda fields, objs: 2)
    statements: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    rows = [event_row(f"evt_{n}") for n in range(5)]
    with connection.execute_wrapper(count):
        inserted = upserts.insert_new(rows, unique="event_id", using="default")
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

    rows = upserts.insert_and_lock(
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
        upserts.insert_and_lock([StripeTransaction(id="ch_held", kind="charge")], using="default")
        thread = threading.Thread(target=other_writer)
        thread.start()
        thread.join(30)
    assert attempts == ["waited"]
    thread = threading.Thread(target=other_writer)
    thread.start()
    thread.join(30)
    assert attempts == ["waited", "got it"]
