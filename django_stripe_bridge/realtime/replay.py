"""Stored events a new subscription receives first (``REPLAY``), read from the database.

Replay covers only the transaction ids a selector pins. ``latest`` sends, per id, the newest
stored event that matches the selector, with the transaction's current status. ``all``
sends every matching stored event of each id, oldest first (the newest 100 when there are
more), each with the status the transaction had right after it: the events are folded in
order through the same rule ingest applies (``django_stripe_bridge.payment_state``).
Messages have the shape the channel layer carries (``messaging.build_message``), so the
consumer treats replayed and live events alike.

These functions are synchronous and touch the database: a consumer calls them through
``read_replay()``, which runs them in the replay threads (``REPLAY_THREADS``), fairly
between connections (``django_stripe_bridge.realtime.replay_queue``), and
``send_in_turns()`` sends what they read without holding the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from itertools import groupby
from typing import Any, TypeVar

from django.db.models import F, Window
from django.db.models.functions import RowNumber

from .. import messaging
from ..conf import bridge_settings
from ..db import release_connections
from ..events import event_object
from ..models import StripeEvent, StripeTransaction
from ..payment_state import PaymentState
from .replay_queue import ANYONE, FairQueue

T = TypeVar("T")

#: At most this many stored events are replayed per transaction id with ``all``.
MAX_REPLAY_PER_ID = 100
#: ``latest`` looks this far back for the newest event that matches a narrower selector.
LATEST_SCAN = 100
#: An ``all`` replay is read this many ids at a time, each read queued on its own: a
#: replay of 100 ids holds a thread for a fraction of its time, and others' reads go
#: between its parts.
IDS_PER_READ = 10
#: Seconds of replayed frames one replay sends before the other replays of the event loop
#: get their turn (and every other task in between); a turn that leaves frames to send
#: ends with a pause of half as long, in which the replay threads get the interpreter.
SEND_SLICE = 0.002
#: A replay of at most this many events is sent at once, without waiting for a turn: it
#: costs less than a turn, and a new client's replay is usually this small.
SMALL_REPLAY = 10

LATEST, ALL, NONE = "latest", "all", "none"

_queue: FairQueue | None = None
_queue_lock = threading.Lock()


def replay_queue() -> FairQueue:
    """The process's replay threads (``REPLAY_THREADS`` of them, started on first use)."""
    global _queue
    with _queue_lock:
        if _queue is None:
            threads = max(1, int(bridge_settings.REPLAY_THREADS))
            _queue = FairQueue(threads, "stripe-bridge-replay")
        return _queue


async def run_in_replay_thread(
    function: Callable[..., T], *args: Any, owner: Any = ANYONE, **kwargs: Any
) -> T:
    """Run a replay read in the replay threads, not in the one thread Channels shares for
    database work: a flood of replays cannot delay a handshake's session lookup, and
    connections' reads run side by side. ``owner`` (the connection) is what the threads
    are fair between."""

    def call() -> T:
        try:
            return function(*args, **kwargs)
        finally:
            release_connections()

    return await asyncio.wrap_future(replay_queue().submit(owner, call))


async def read_replay(
    ids: Iterable[str], mode: str, selector: Any, *, owner: Any, since: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """``replay_messages()`` for ``owner`` (a connection), in the replay threads: ``latest``
    read together with other subscriptions' (``read_latest()``), ``all`` in parts of
    ``IDS_PER_READ`` ids, each queued fairly."""
    if mode == LATEST and since is None:
        return await read_latest(ids, selector)
    wanted = sorted(set(ids))
    messages: list[dict[str, Any]] = []
    for start in range(0, len(wanted), IDS_PER_READ):
        part = wanted[start : start + IDS_PER_READ]
        messages += await run_in_replay_thread(
            replay_messages, part, mode, selector, since=since, owner=owner
        )
    messages.sort(key=_send_order)
    return messages


_send_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


async def send_in_turns(
    messages: Sequence[dict[str, Any]], send: Callable[[dict[str, Any]], Awaitable[None]]
) -> None:
    """``await send(message)`` for each of ``messages``, in turns of ``SEND_SLICE`` seconds
    shared by every replay of the event loop: a connection sending thousands of replayed
    frames cannot keep another's handshake or replay waiting for long. A small replay
    (``SMALL_REPLAY``) goes at once."""
    if len(messages) <= SMALL_REPLAY:
        for message in messages:
            await send(message)
        return
    loop = asyncio.get_running_loop()
    turn = _send_turns.get(loop)
    if turn is None:
        turn = _send_turns[loop] = asyncio.Lock()
    index = 0
    while index < len(messages):
        async with turn:  # released also when the replay is cancelled
            end = loop.time() + SEND_SLICE
            while index < len(messages):
                await send(messages[index])
                index += 1
                if loop.time() >= end:
                    break
            if index < len(messages):
                # Still holding the turn: the loop idles a moment, and the threads (a
                # newcomer's read) get the interpreter.
                await asyncio.sleep(SEND_SLICE / 2)
        await asyncio.sleep(0)  # the next turn goes to another replay, or any other task


#: Ids of the ``latest`` replays read together at most (one subscription pins up to 100).
MAX_LATEST_IDS = 2000

_latest_readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LatestReader] = (
    weakref.WeakKeyDictionary()
)


async def read_latest(ids: Iterable[str], selector: Any) -> list[dict[str, Any]]:
    """``replay_messages(ids, "latest", selector)``, read together with the other
    subscriptions' ``latest`` replays waiting at the same moment (a reconnect storm's
    thousands become a few reads), in a replay thread."""
    loop = asyncio.get_running_loop()
    reader = _latest_readers.get(loop)
    if reader is None:
        reader = _latest_readers[loop] = _LatestReader()
    return await reader.read(frozenset(ids), selector)


class _LatestReader:
    """One read at a time per event loop; the requests arriving meanwhile wait for the next."""

    def __init__(self) -> None:
        self._pending: list[tuple[frozenset[str], Any, asyncio.Future[list[dict[str, Any]]]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def read(self, ids: frozenset[str], selector: Any) -> list[dict[str, Any]]:
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._pending.append((ids, selector, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="stripe-bridge-latest-replay")
        return await future

    async def _run(self) -> None:
        while self._pending:
            count, ids = 0, 0
            for pending_ids, _, _ in self._pending:
                if count and ids + len(pending_ids) > MAX_LATEST_IDS:
                    break
                count, ids = count + 1, ids + len(pending_ids)
            batch = self._pending[:count]
            del self._pending[:count]
            try:
                results = await run_in_replay_thread(
                    latest_many, [(i, s) for i, s, _ in batch], owner=self
                )
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), messages in zip(batch, results, strict=True):
                if not future.done():  # not if its subscriber went away meanwhile
                    future.set_result(sorted(messages, key=_send_order))


def _send_order(message: dict[str, Any]) -> tuple[Any, Any]:
    return message["headers"]["created"], message["event_pk"]


def replay_messages(
    ids: Iterable[str], mode: str, selector: Any, *, since: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Channel-layer messages of the stored events to replay, in the order to send them.

    ``selector`` is a compiled selector (anything with ``matches(headers)``). The result is
    ordered by Stripe's ``created`` time, then by arrival. With ``since`` (mode ``all``),
    only events stored or published at or after that time are returned (a catch-up after
    the channel layer lost its state). Each mode reads all the ids in one query.
    """
    ids = sorted(set(ids))
    if mode == NONE or not ids:
        return []
    if mode == LATEST:
        messages = _latest(ids, selector)
    elif mode == ALL:
        messages = _all(ids, selector, since)
    else:
        raise ValueError(f"unknown replay mode {mode!r}")
    messages.sort(key=_send_order)
    return messages


def _latest(ids: list[str], selector: Any) -> list[dict[str, Any]]:
    return latest_many([(ids, selector)])[0]


def latest_many(requests: Sequence[tuple[Iterable[str], Any]]) -> list[list[dict[str, Any]]]:
    """``latest`` replays of several subscriptions (ids, selector) in one read; the messages
    of each, as ``replay_messages()`` would give them.

    The newest event of every id asked for is read once, with the transactions' statuses,
    and each subscription's selector picks from them; only where a selector is narrower than
    its ids are older events read, for those ids and that selector alone. A payment known by
    two ids (a Checkout Session and its PaymentIntent) is replayed under the id asked for,
    from the events of both.
    """
    asked = sorted({tx_id for ids, _ in requests for tx_id in ids})
    transactions = StripeTransaction.objects.only("id", "status", "kind", "linked_id").in_bulk(
        asked
    )
    ids_of = {tx_id: payment_ids_of(tx_id, transactions) for tx_id in asked}
    wanted = sorted({stored for ids in ids_of.values() for stored in ids})
    newest_stored = {row.transaction_id: row for row in _newest(wanted, 1)}
    # Per id asked for: the newest row, the headers selectors see, and the message (built once).
    newest: dict[str, tuple[StripeEvent, dict[str, Any], str | None]] = {}
    for tx_id, stored_ids in ids_of.items():
        rows = [newest_stored[i] for i in stored_ids if i in newest_stored]
        if not rows:
            continue
        row = max(rows, key=lambda r: (r.created, r.pk))
        status = messaging.status_after(row, transactions.get(tx_id))
        headers = {**messaging.build_headers(row, status), "id": tx_id}
        newest[tx_id] = (row, headers, status)
    built: dict[str, dict[str, Any]] = {}
    results = []
    for ids, selector in requests:
        messages, unmatched = [], []
        for tx_id in sorted(set(ids)):
            if tx_id not in newest:
                continue  # nothing stored for it
            row, headers, status = newest[tx_id]
            if selector.matches(headers):
                if tx_id not in built:
                    built[tx_id] = as_seen_by(messaging.build_message(row, status), tx_id)
                messages.append(built[tx_id])
            else:
                unmatched.append(tx_id)
        if unmatched:
            messages += _older_matching(unmatched, selector, transactions, ids_of)
        results.append(messages)
    return results


def payment_ids_of(tx_id: str, transactions: dict[str, StripeTransaction]) -> tuple[str, ...]:
    """The ids whose events make up the payment of ``tx_id`` (itself first): a linked
    Checkout Session's and its PaymentIntent's (``transactions`` holds the rows asked for)."""
    tx = transactions.get(tx_id)
    return tx.payment_ids if tx is not None else (tx_id,)


def as_seen_by(message: dict[str, Any], tx_id: str) -> dict[str, Any]:
    """``message`` as the subscribers of ``tx_id`` receive it (another id of its payment)."""
    message.pop("linked_ids", None)
    return message if message["transaction_id"] == tx_id else messaging.relabel(message, tx_id)


def _older_matching(
    ids: list[str],
    selector: Any,
    transactions: dict[str, StripeTransaction],
    ids_of: dict[str, tuple[str, ...]],
) -> list[dict[str, Any]]:
    """Per id, the newest of its ``LATEST_SCAN`` newest events that ``selector`` matches."""
    stored_ids = sorted({stored for tx_id in ids for stored in ids_of[tx_id]})
    by_stored: dict[str, list[StripeEvent]] = {}
    for row in _newest(stored_ids, LATEST_SCAN):
        by_stored.setdefault(row.transaction_id, []).append(row)
    messages = []
    for tx_id in ids:
        rows = [row for stored in ids_of[tx_id] for row in by_stored.get(stored, [])]
        rows.sort(key=lambda r: (r.created, r.pk), reverse=True)
        for row in rows[:LATEST_SCAN]:
            # The transaction's current status, as a live message sent now would carry.
            status = messaging.status_after(row, transactions.get(tx_id))
            if selector.matches({**messaging.build_headers(row, status), "id": tx_id}):
                messages.append(as_seen_by(messaging.build_message(row, status), tx_id))
                break
    return messages


def _newest(ids: list[str], depth: int) -> Iterable[StripeEvent]:
    """The ``depth`` newest stored events of each of ``ids``, newest first, in one query."""
    newest_first = Window(
        RowNumber(),
        partition_by=[F("transaction_id")],
        order_by=[F("created").desc(), F("id").desc()],
    )
    return (
        StripeEvent.objects.filter(transaction_id__in=ids)
        .annotate(newest_rank=newest_first)
        .filter(newest_rank__lte=depth)
        .order_by("transaction_id", "-created", "-id")
    )


def status_fold(rows: Iterable[StripeEvent]) -> Iterable[tuple[StripeEvent, str | None]]:
    """Each row with the transaction status right after it, folding in the given order."""
    state = PaymentState()
    for row in rows:
        state.apply(row.payload)
        current = state.status
        if current is None:
            # No event has told a status yet: report the object's own, as a live message does.
            own = event_object(row.payload).get("status")
            current = own if isinstance(own, str) else None
        yield row, current


def _all(ids: list[str], selector: Any, since: dt.datetime | None) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for tx_id, rows in events_by_payment(ids):
        messages += _all_of(tx_id, rows, selector, since)
    return messages


def events_by_payment(ids: Iterable[str]) -> Iterator[tuple[str, Iterable[StripeEvent]]]:
    """Each of ``ids`` that has events, with its payment's stored events, oldest first,
    streamed: the rows of an id of its own, then, for each linked Checkout Session or
    PaymentIntent, the events of both its ids."""
    ids = sorted(set(ids))
    transactions = StripeTransaction.objects.only("id", "kind", "linked_id").in_bulk(ids)
    linked = {tx_id for tx_id in ids if len(payment_ids_of(tx_id, transactions)) > 1}
    rows = StripeEvent.objects.filter(
        transaction_id__in=[tx_id for tx_id in ids if tx_id not in linked]
    ).order_by("transaction_id", "created", "id")
    for tx_id, group in groupby(rows.iterator(chunk_size=200), key=lambda r: r.transaction_id):
        yield tx_id, group
    for tx_id in sorted(linked):
        both = StripeEvent.objects.filter(transaction_id__in=payment_ids_of(tx_id, transactions))
        yield tx_id, both.order_by("created", "id").iterator(chunk_size=200)


def _all_of(
    tx_id: str, rows: Iterable[StripeEvent], selector: Any, since: dt.datetime | None
) -> Iterable[dict[str, Any]]:
    """The messages of one payment's events that ``all`` replays under ``tx_id``."""
    kept: deque[dict[str, Any]] = deque(maxlen=MAX_REPLAY_PER_ID)
    # Fold through every event (streamed) so the statuses are right even when only the
    # newest MAX_REPLAY_PER_ID are sent.
    for row, status in status_fold(rows):
        if since is not None and not _touched_since(row, since):
            continue
        headers = {**messaging.build_headers(row, status), "id": tx_id}
        if selector.matches(headers):
            kept.append(as_seen_by(messaging.build_message(row, status), tx_id))
    return kept


def _touched_since(row: StripeEvent, since: dt.datetime) -> bool:
    return row.received_at >= since or (row.published_at is not None and row.published_at >= since)
