"""Stored events a new subscription receives first (``REPLAY``), read from the database.

Replay covers only the transaction ids a selector pins. ``latest`` sends, per id, the newest
stored event that matches the selector, with the transaction's current status. ``all``
sends every matching stored event of each id, oldest first (the newest 100 when there are
more), each with the status the transaction had right after it: the events are folded in
order through the same rule ingest applies (:mod:`~django_stripe_bridge.payment_state`).
Messages have the shape the channel layer carries (``messaging.build_message``), so the
consumer treats replayed and live events alike.

These functions are synchronous and touch the database: call them from a consumer with
``database_sync_to_async``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from . import messaging
from .events import event_object
from .models import StripeEvent, StripeTransaction
from .payment_state import PaymentState

#: At most this many stored events are replayed per transaction id with ``all``.
MAX_REPLAY_PER_ID = 100
#: ``latest`` looks this far back for the newest event that matches a narrower selector.
LATEST_SCAN = 100

LATEST, ALL, NONE = "latest", "all", "none"


def replay_messages(ids: Iterable[str], mode: str, selector: Any) -> list[dict[str, Any]]:
    """Channel-layer messages of the stored events to replay, in the order to send them.

    ``selector`` is a compiled selector (anything with ``matches(headers)``). The result is
    ordered by Stripe's ``created`` time, then by arrival.
    """
    ids = sorted(set(ids))
    if mode == NONE or not ids:
        return []
    if mode == LATEST:
        messages = _latest(ids, selector)
    elif mode == ALL:
        messages = [m for tx_id in ids for m in _all(tx_id, selector)]
    else:
        raise ValueError(f"unknown replay mode {mode!r}")
    messages.sort(key=lambda m: (m["headers"]["created"], m["event_pk"]))
    return messages


def _latest(ids: list[str], selector: Any) -> list[dict[str, Any]]:
    transactions = StripeTransaction.objects.in_bulk(ids)
    messages = []
    for tx_id in ids:
        status = None
        rows = StripeEvent.objects.filter(transaction_id=tx_id).order_by("-created", "-id")
        for row in rows[:LATEST_SCAN]:
            # The transaction's current status, as a live message sent now would carry.
            status = messaging.status_after(row, transactions.get(tx_id))
            if selector.matches(messaging.build_headers(row, status)):
                messages.append(messaging.build_message(row, status))
                break
    return messages


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


def _all(tx_id: str, selector: Any) -> list[dict[str, Any]]:
    rows = StripeEvent.objects.filter(transaction_id=tx_id).order_by("created", "id")
    # Fold through every event (streamed) so the statuses are right even when only the
    # newest MAX_REPLAY_PER_ID are sent.
    kept: deque[dict[str, Any]] = deque(maxlen=MAX_REPLAY_PER_ID)
    for row, status in status_fold(rows.iterator(chunk_size=200)):
        if selector.matches(messaging.build_headers(row, status)):
            kept.append(messaging.build_message(row, status))
    return list(kept)
