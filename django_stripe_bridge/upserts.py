"""Batch inserts the ORM does not offer: insert-or-skip and insert-or-lock, each one statement.

Both rely on ``INSERT … ON CONFLICT … RETURNING`` (PostgreSQL; SQLite 3.35 and newer):

- :func:`insert_new` inserts the rows whose unique key is not stored yet and says which it
  inserted (the webhook's events: stored exactly once under concurrent deliveries);
- :func:`insert_and_lock` inserts the missing rows and returns every row, new or stored,
  locked until the transaction ends (the transactions an ingest batch folds events into).

``bulk_create(ignore_conflicts=True)`` returns no ids, and locking what it skipped takes a
second statement; here each is one round trip. Only the model's own quoted names are
formatted into the SQL; every value is a parameter. (A ``VALUES`` list measured cheaper
than PostgreSQL's one-array-per-column ``UNNEST`` here: psycopg builds array literals in
Python.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import connections
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)


def supported(using: str) -> bool:
    """Whether the database has ``INSERT … ON CONFLICT … RETURNING``."""
    vendor = connections[using].vendor
    if vendor == "postgresql":
        return True
    return vendor == "sqlite" and sqlite3.sqlite_version_info >= (3, 35)


def insert_new(objs: Sequence[M], *, unique: str, using: str) -> dict[Any, Any]:
    """Insert the objects whose ``unique`` field value is not stored yet.

    Returns ``{unique value: primary key}`` of the rows this statement inserted. The rows go
    in in the order given (callers sort them, so that two batches sharing keys wait for
    each other in one order). ``objs`` must not repeat a ``unique`` value.
    """
    model = type(objs[0])
    quote = connections[using].ops.quote_name
    returning = f"{_column(model._meta.pk, quote)}, {_column(model._meta.get_field(unique), quote)}"
    inserted: dict[Any, Any] = {}
    for statement, params in _statements(objs, using, f"({quote(unique)}) DO NOTHING", returning):
        with connections[using].cursor() as cursor:
            cursor.execute(statement, params)
            inserted.update((key, pk_value) for pk_value, key in cursor.fetchall())
    return inserted


def insert_and_lock(objs: Sequence[M], *, using: str) -> list[M]:
    """Insert the objects missing by primary key; every one of them as stored, locked.

    The row of an object that was stored already comes back as stored (its other fields
    untouched) and, on PostgreSQL, locked as by ``SELECT … FOR UPDATE`` until the
    transaction ends. Rows are locked in the order given. ``objs`` must not repeat a key.
    """
    model = type(objs[0])
    connection = connections[using]
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    pk = _column(model._meta.pk, quote)
    # Setting the key to itself is what makes the conflicting row lock and come back.
    action = f"({pk}) DO UPDATE SET {pk} = EXCLUDED.{pk}"
    returning = ", ".join(_column(f, quote) for f in fields)
    converters = [_converters(field, connection) for field in fields]
    stored: list[M] = []
    for statement, params in _statements(objs, using, action, returning):
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            for row in cursor.fetchall():
                values = []
                for value, (column, convert) in zip(row, converters, strict=True):
                    for converter in convert:
                        value = converter(value, column, connection)
                    values.append(value)
                stored.append(model.from_db(using, [f.attname for f in fields], values))
    return stored


def _statements(
    objs: Sequence[Model], using: str, on_conflict: str, returning: str
) -> list[tuple[str, list[Any]]]:
    """``INSERT`` statements of ``objs``' rows, with their parameters (more than one
    statement where the database's parameter limit demands it)."""
    model = type(objs[0])
    connection = connections[using]
    quote = connection.ops.quote_name
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and _is_auto(f))]
    columns = ", ".join(_column(f, quote) for f in fields)
    head = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) "
    tail = f" ON CONFLICT {on_conflict} RETURNING {returning}"
    rows = [
        [f.get_db_prep_save(f.pre_save(obj, add=True), connection) for f in fields] for obj in objs
    ]
    size = max(1, connection.ops.bulk_batch_size(fields, objs))
    one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return [
        (
            head + "VALUES " + ", ".join([one_row] * len(chunk)) + tail,
            [value for row in chunk for value in row],
        )
        for chunk in (rows[start : start + size] for start in range(0, len(rows), size))
    ]


def _column(field: Any, quote: Callable[[str], str]) -> str:
    """``field``'s column name, quoted."""
    return quote(field.column)


def _is_auto(field: Field[Any, Any]) -> bool:
    return field.get_internal_type() in {"AutoField", "BigAutoField", "SmallAutoField"}


def _converters(field: Field[Any, Any], connection: Any) -> tuple[Any, list[Any]]:
    """``field``'s column and what turns its database values into the model's, as a
    query's compiler would (the backend's converters, then the field's)."""
    column = field.get_col(field.model._meta.db_table)
    return column, connection.ops.get_db_converters(column) + column.get_db_converters(connection)
