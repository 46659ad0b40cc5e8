"""Batch statements the ORM does not offer, one round trip each, for the ingest's hot path.

- ``insert_new()`` inserts the rows whose unique key is not stored yet and says which it
  inserted (the webhook's events: stored exactly once under concurrent deliveries);
- ``insert_and_lock()`` inserts the missing rows and returns every row, new or stored,
  locked until the transaction ends (the transactions an ingest batch folds events into);
- ``update_fields()`` writes some fields of many rows, each row its own values.

The first two have ``…_later()`` forms that send the statement and return a function that
reads its rows: in a pipeline (``pipeline.py``) several statements then share one round
trip, their rows read once it ends.

``bulk_create(ignore_conflicts=True)`` returns no ids, locking what it skipped takes a
second statement, and ``bulk_update`` builds a ``CASE`` per field and row. The first two
need ``INSERT … ON CONFLICT … RETURNING`` (PostgreSQL; SQLite 3.35 and newer:
``supported()``). Only the model's own quoted names and column types are formatted into
the SQL; every value is a parameter.

On PostgreSQL the statements go through psycopg's ``RawCursor``: ``$1`` placeholders, the
parameters sent apart from the text. Django's client-side cursor would parse a statement of
more than 50 parameters anew each time and quote every value into it in Python: most of the
ingest's CPU went there. Where Django logs queries (``DEBUG``, ``CaptureQueriesContext``),
which needs ``%s`` placeholders, they take Django's own cursor instead.

What a statement's text and its converters are depends only on the model, the fields, the
connection and the number of rows, so each is built once per connection and kept
(``_memo``): a batch of one event otherwise spent a fifth of its CPU writing out the same
quoted names again.
"""

from __future__ import annotations

import json
import sqlite3
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from django.db import connections
from django.db.models import Model

M = TypeVar("M", bound=Model)

#: Parameters of one statement at most, whatever Django says of the database: it sets no
#: limit on PostgreSQL, whose protocol numbers parameters in 16 bits.
MAX_PARAMETERS = 65535
#: ``VALUES`` lists of up to this many rows are kept once written out (a group-commit
#: batch holds at most ``group_commit.MAX_BATCH``); longer ones are written each time.
MEMO_ROWS = 256

_memos: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()
T = TypeVar("T")


def _memo(connection: Any, key: tuple[Any, ...], build: Callable[[], T]) -> T:
    """``build()``, once per ``connection`` (a thread's own database connection) and ``key``."""
    memo = _memos.get(connection)
    if memo is None:
        memo = _memos[connection] = {}
    try:
        value: T = memo[key]
    except KeyError:
        value = memo[key] = build()
    return value


def supported(using: str) -> bool:
    """Whether the database has ``INSERT … ON CONFLICT … RETURNING``."""
    vendor = connections[using].vendor
    if vendor == "postgresql":
        return True
    return vendor == "sqlite" and sqlite3.sqlite_version_info >= (3, 35)


def insert_new(
    objs: Sequence[M],
    *,
    unique: str,
    using: str,
    encoded: Mapping[str, Sequence[str | None]] | None = None,
) -> dict[Any, Any]:
    """Insert the objects whose ``unique`` field value is not stored yet.

    Returns ``{unique value: primary key}`` of the rows this statement inserted. The rows go
    in in the order given (callers sort them, so that two batches sharing keys wait for
    each other in one order). ``objs`` must not repeat a ``unique`` value.

    ``encoded`` gives, for a ``JSONField`` by name, each object's value as JSON text already
    (``None``: encode the object's value as usual): stored as it is, and the object's own
    value of the field must say the same.
    """
    return insert_new_later(objs, unique=unique, using=using, encoded=encoded)()


def insert_new_later(
    objs: Sequence[M],
    *,
    unique: str,
    using: str,
    encoded: Mapping[str, Sequence[str | None]] | None = None,
) -> Callable[[], dict[Any, Any]]:
    """``insert_new()``, sent now; what it returns, once the returned function is called."""
    model = type(objs[0])
    quote = connections[using].ops.quote_name
    returning = f"{_column(model._meta.pk, quote)}, {_column(model._meta.get_field(unique), quote)}"
    action = f"({quote(unique)}) DO NOTHING"
    sent = _inserts(objs, using, action, returning, encoded or {})

    def inserted() -> dict[Any, Any]:
        return {key: pk_value for rows in sent for pk_value, key in rows()}

    return inserted


def insert_and_lock(objs: Sequence[M], *, using: str) -> list[M]:
    """Insert the objects missing by primary key; every one of them as stored, locked.

    The row of an object that was stored already comes back as stored (its other fields
    untouched) and, on PostgreSQL, locked as by ``SELECT … FOR UPDATE`` until the
    transaction ends. Rows are locked in the order given. ``objs`` must not repeat a key.
    """
    return insert_and_lock_later(objs, using=using)()


def insert_and_lock_later(objs: Sequence[M], *, using: str) -> Callable[[], list[M]]:
    """``insert_and_lock()``, sent now; what it returns, once the returned function is
    called."""
    model = type(objs[0])
    connection = connections[using]
    action, returning, converters, names = _memo(
        connection, ("lock", model), lambda: _lock_plan(model, connection)
    )
    sent = _inserts(objs, using, action, returning, {})

    def stored() -> list[M]:
        objects: list[M] = []
        for rows in sent:
            for row in rows():
                values = []
                for value, (column, convert) in zip(row, converters, strict=True):
                    for converter in convert:
                        value = converter(value, column, connection)
                    values.append(value)
                objects.append(model.from_db(using, names, values))
        return objects

    return stored


def _lock_plan(model: type[Model], connection: Any) -> tuple[str, str, list[Any], list[str]]:
    """``insert_and_lock``'s conflict action, returned columns, converters and names."""
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    pk = _column(model._meta.pk, quote)
    # Setting the key to itself is what makes the conflicting row lock and come back.
    action = f"({pk}) DO UPDATE SET {pk} = EXCLUDED.{pk}"
    returning = ", ".join(_column(f, quote) for f in fields)
    converters = [_converters(field, connection) for field in fields]
    return action, returning, converters, [f.attname for f in fields]


def update_fields(objs: Sequence[Model], fields: Sequence[str], *, using: str) -> None:
    """Write ``fields`` of every object to its row (by primary key), in one statement.

    Needs ``UPDATE … FROM`` (PostgreSQL; SQLite 3.33 and newer, as ``supported()``
    implies).
    """
    model = type(objs[0])
    connection = connections[using]
    columns, casts, head, tail = _memo(
        connection,
        ("update", model, tuple(fields)),
        lambda: _update_plan(model, fields, connection),
    )
    rows = [
        [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in columns] for obj in objs
    ]
    for values, params in _values(rows, casts, columns, using):
        _send(using, f"{head}{values}{tail}", params, rows=False)


def _update_plan(
    model: type[Model], fields: Sequence[str], connection: Any
) -> tuple[list[Any], tuple[str, ...], str, str]:
    """``update_fields``' columns, their casts, and its statement's text around the
    ``VALUES`` list."""
    quote = connection.ops.quote_name
    meta = model._meta
    columns: list[Any] = [meta.pk, *(meta.get_field(name) for name in fields)]
    # PostgreSQL types a VALUES list from its parameters: say what each column is.
    casts = tuple(_cast(f, connection) for f in columns)
    names = ", ".join(_column(f, quote) for f in columns)
    table, pk = quote(meta.db_table), _column(meta.pk, quote)
    assignments = ", ".join(f"{_column(f, quote)} = v.{_column(f, quote)}" for f in columns[1:])
    head = f"WITH v ({names}) AS (VALUES "
    tail = f") UPDATE {table} SET {assignments} FROM v WHERE {table}.{pk} = v.{pk}"  # noqa: S608
    return columns, casts, head, tail


def _inserts(
    objs: Sequence[Model],
    using: str,
    on_conflict: str,
    returning: str,
    encoded: Mapping[str, Sequence[str | None]],
) -> list[Callable[[], list[tuple[Any, ...]]]]:
    """Send the ``INSERT`` statements of ``objs``' rows (more than one where the database's
    parameter limit demands it); for each, what reads its returned rows."""
    model = type(objs[0])
    connection = connections[using]
    fields, casts, head = _memo(
        connection, ("insert", model), lambda: _insert_plan(model, connection)
    )
    rows = _row_values(objs, fields, encoded, connection)
    tail = f" ON CONFLICT {on_conflict} RETURNING {returning}"
    return [
        _send(using, f"{head}{values}{tail}", params)
        for values, params in _values(rows, casts, fields, using)
    ]


def _insert_plan(model: type[Model], connection: Any) -> tuple[list[Any], tuple[str, ...], str]:
    """The fields an ``INSERT`` of ``model`` writes, their casts and its text up to the
    ``VALUES`` list."""
    quote = connection.ops.quote_name
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and _is_auto(f))]
    columns = ", ".join(_column(f, quote) for f in fields)
    casts = ("",) * len(fields)  # an INSERT's target columns type its values
    head = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES "  # noqa: S608
    return fields, casts, head


def _row_values(
    objs: Sequence[Model],
    fields: Sequence[Any],
    encoded: Mapping[str, Sequence[str | None]],
    connection: Any,
) -> list[list[Any]]:
    """Each object's values to insert; the JSON text of ``encoded``'s fields is taken as it
    is (through the backend's own JSON adaptation, which then has nothing to encode)."""
    rows = []
    for index, obj in enumerate(objs):
        row = []
        for f in fields:
            text = encoded[f.name][index] if f.name in encoded else None
            if text is None:
                row.append(f.get_db_prep_save(f.pre_save(obj, add=True), connection))
            else:
                row.append(connection.ops.adapt_json_value(text, _AsIs))
        rows.append(row)
    return rows


class _AsIs(json.JSONEncoder):
    """Writes out JSON text that is JSON text already: itself."""

    def encode(self, o: Any) -> str:
        return str(o)


def _values(
    rows: list[list[Any]], casts: tuple[str, ...], fields: Sequence[Any], using: str
) -> Iterator[tuple[str, list[Any]]]:
    """A ``VALUES`` list's text and parameters for each chunk of ``rows`` (each a value per
    field, cast as ``casts`` say) that the database's parameter limit lets into one
    statement."""
    connection = connections[using]
    width = len(casts)
    size = max(1, min(connection.ops.bulk_batch_size(list(fields), rows), MAX_PARAMETERS // width))
    numbered = _numbered(using)
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        count = len(chunk)
        if count <= MEMO_ROWS:
            key = ("values", count, casts, numbered)
            values = _memo(connection, key, partial(_values_text, count, casts, numbered))
        else:
            values = _values_text(count, casts, numbered)
        yield values, [value for row in chunk for value in row]


def _values_text(count: int, casts: tuple[str, ...], numbered: bool) -> str:
    """A ``VALUES`` list of ``count`` rows of placeholders, each cast as ``casts`` say."""
    width = len(casts)
    return ", ".join(
        "("
        + ", ".join(
            (f"${n * width + i + 1}" if numbered else "%s") + cast for i, cast in enumerate(casts)
        )
        + ")"
        for n in range(count)
    )


def _numbered(using: str) -> bool:
    """Whether statements go through psycopg's ``RawCursor`` (``$n`` placeholders)."""
    connection = connections[using]
    return connection.vendor == "postgresql" and not connection.queries_logged


def _send(
    using: str, sql: str, params: list[Any], *, rows: bool = True
) -> Callable[[], list[tuple[Any, ...]]]:
    """Run ``sql`` through Django's cursor wrapper (its execute wrappers apply); what reads
    its rows (``rows=False``: a statement that returns none).

    In a pipeline the statement is only queued, and its rows are there once the pipeline
    has synced; elsewhere they are read at once.
    """
    connection = connections[using]
    if not _numbered(using):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            found = cursor.fetchall() if rows and cursor.description else []
        return lambda: found
    import psycopg

    connection.validate_thread_sharing()
    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    raw = psycopg.RawCursor(connection.connection)
    wrapper = connection.make_cursor(raw)  # type: ignore[arg-type]  # any DB-API cursor
    piped = connection.connection.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF
    if not (piped and rows):
        # Closed at once: in a pipeline, a statement without rows is still sent, and its
        # outcome checked at the sync.
        with wrapper:
            wrapper.execute(sql, params)
            found = wrapper.fetchall() if rows else []
        return lambda: found
    try:
        wrapper.execute(sql, params)
    except BaseException:
        wrapper.close()
        raise

    def fetch() -> list[tuple[Any, ...]]:
        with wrapper:
            return wrapper.fetchall()

    return fetch


def _column(field: Any, quote: Callable[[str], str]) -> str:
    """``field``'s column name, quoted."""
    return quote(field.column)


def _cast(field: Any, connection: Any) -> str:
    """``::type`` of ``field``'s column on PostgreSQL; nothing elsewhere."""
    return f"::{field.db_type(connection)}" if connection.vendor == "postgresql" else ""


def _is_auto(field: Any) -> bool:
    return field.get_internal_type() in {"AutoField", "BigAutoField", "SmallAutoField"}


def _converters(field: Any, connection: Any) -> tuple[Any, list[Any]]:
    """``field``'s column and what turns its database values into the model's, as a
    query's compiler would (the backend's converters, then the field's)."""
    column = field.get_col(field.model._meta.db_table)
    return column, connection.ops.get_db_converters(column) + column.get_db_converters(connection)
