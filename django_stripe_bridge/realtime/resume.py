"""Exact resume: the stored events of a subscription after a client's cursor.

A cursor is the stored event's primary key, as a decimal string: it orders events as the
database stored them, which is the order they were published in. A client sends back the
cursor of the last message it got (``since`` on a websocket ``subscribe``, the
``Last-Event-ID`` of an ``EventSource``) and receives every stored event of its pinned ids
after it, each with the status it was published with, in order, oldest first. The resume
is refused — the client is told ``recovered: false`` and gets a ``latest`` replay instead —
when the cursor is not one this database gave (unreadable, or its event is gone: pruned,
another database), or when more than ``MAX_RESUME_EVENTS`` events follow it.

These functions are synchronous and touch the database: run them in the replay threads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import messaging
from ..models import StripeEvent
from .replay import as_seen_by, events_by_payment, status_fold

#: At most this many stored events are resumed per subscription; past that, ``latest``.
MAX_RESUME_EVENTS = 1000
#: Longest cursor text accepted.
MAX_CURSOR_CHARS = 20


def cursor_of(message: dict[str, Any]) -> str | None:
    """The resume cursor of a channel-layer message (``None`` if it has no stored row)."""
    pk = message.get("event_pk")
    return str(pk) if isinstance(pk, int) and not isinstance(pk, bool) else None


def parse_cursor(value: Any) -> int | None:
    """The event pk a cursor names, or ``None`` for a cursor this server never gave."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CURSOR_CHARS:
        return None
    if not value.isascii() or not value.isdigit():
        return None
    return int(value)


def resume_messages(
    ids: Iterable[str], selector: Any, after: int | None
) -> list[dict[str, Any]] | None:
    """Channel-layer messages of the stored events of ``ids`` that ``selector`` matches,
    stored after the event ``after``, in the order they were stored; ``None`` when the
    resume cannot be complete (unknown cursor, or more than ``MAX_RESUME_EVENTS``)."""
    if after is None or not StripeEvent.objects.filter(pk=after).exists():
        return None
    messages: list[dict[str, Any]] = []
    # Fold through every event of each id so each carries the status it was sent with.
    for tx_id, group in events_by_payment(ids):
        for row, status in status_fold(group):
            headers = {**messaging.build_headers(row, status), "id": tx_id}
            if row.pk > after and selector.matches(headers):
                if len(messages) == MAX_RESUME_EVENTS:
                    return None
                messages.append(as_seen_by(messaging.build_message(row, status), tx_id))
    messages.sort(key=lambda message: message["event_pk"])
    return messages
