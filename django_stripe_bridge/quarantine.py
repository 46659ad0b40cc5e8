"""Poison isolation: an event the database refuses fails alone, and is kept apart.

A group-commit batch is one transaction, so one event the database cannot store (amounts
whose sum overflows a ``bigint``, a value too long for its column…) would fail every event
of its batch, on every retry. ``ingest_isolating()`` stores a batch and, when the
database refuses it for its data, splits it in halves and stores each alone, down to the
single events that cannot be stored. Those are written to ``QuarantinedEvent`` for an
operator and reported as ``EventQuarantined``; the
webhook answers them 200, so that Stripe stops retrying (docs/webhooks.md says why).

Only data errors are isolated. An error of the connection or of the moment (the database
went away, a lock or statement timeout, a deadlock: ``OperationalError``,
``InterfaceError``) fails the batch as before, and Stripe retries after a 503.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db import DataError, IntegrityError, router, transaction
from django.db.models import F

from . import metrics
from .exceptions import EventQuarantined
from .ingest import IngestResult, ingest_events
from .models import QuarantinedEvent

logger = logging.getLogger(__name__)

#: Errors that the same data raises again on every attempt: the event's own fault. A value
#: out of range is a ``DataError`` on PostgreSQL and an ``OverflowError`` from SQLite's
#: driver.
DATA_ERRORS: tuple[type[Exception], ...] = (DataError, IntegrityError, OverflowError)

Ingest = Callable[..., list[IngestResult]]


def is_data_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the data cannot be stored (not that the database is unwell)."""
    return isinstance(exc, DATA_ERRORS)


def ingest_isolating(
    events: Sequence[Mapping[str, Any]], *, ingest: Ingest = ingest_events, **options: Any
) -> list[IngestResult | Exception]:
    """Store ``events`` as ``ingest`` does; an event the database refuses is quarantined.

    A result per event, in order: its ``IngestResult``, the
    ``EventQuarantined`` error of an event stored apart, or, when the database failed
    otherwise once part of the batch was stored, the error of each event not stored. A
    batch that fails on a data error is halved until each part stores or is one event, so
    ``k`` bad events among ``n`` cost about ``2·k·log2(n)`` extra attempts. Raises what any
    other failure of the whole batch raises (then nothing of it was stored).
    """
    if not events:
        return []
    try:
        return list(ingest(events, **options))
    except Exception as exc:
        if not is_data_error(exc):
            raise
        if len(events) == 1:
            return [quarantine(events[0], exc)]
    middle = len(events) // 2
    return [
        *_isolating_part(events[:middle], ingest, options),
        *_isolating_part(events[middle:], ingest, options),
    ]


def _isolating_part(
    events: Sequence[Mapping[str, Any]], ingest: Ingest, options: dict[str, Any]
) -> list[IngestResult | Exception]:
    """One half of a refused batch; a failure of the database fails this half only (the
    other may be committed already, and its events are answered as stored)."""
    try:
        return ingest_isolating(events, ingest=ingest, **options)
    except Exception as exc:
        return [exc] * len(events)


def quarantine(event: Mapping[str, Any], exc: BaseException) -> EventQuarantined:
    """Keep ``event`` apart with the error that refused it; the error to answer with.

    A repeat delivery of the same event counts in ``deliveries``. Raises if even this write
    fails (then the database is unwell, and the webhook answers 503).
    """
    reason = _clean(f"{type(exc).__name__}: {exc}".strip(), 1000)
    event_id = _clean(str(event.get("id", "")), 255)
    logger.error(
        "Stripe event %s could not be stored (%s); kept apart as a quarantined event.",
        event_id,
        reason,
    )
    using = router.db_for_write(QuarantinedEvent)
    kept = QuarantinedEvent.objects.using(using).filter(event_id=event_id)
    if not kept.update(deliveries=F("deliveries") + 1, error=reason):
        try:
            with transaction.atomic(using=using):
                QuarantinedEvent.objects.using(using).create(
                    event_id=event_id,
                    type=_clean(str(event.get("type", "")), 100),
                    transaction_id=_clean(_transaction_id(event), 255),
                    error=reason,
                    # ASCII JSON: NUL and every other character escaped, storable anywhere.
                    payload=json.dumps(event, ensure_ascii=True),
                )
        except IntegrityError:
            # Another delivery of it (another process) kept it a moment ago.
            kept.update(deliveries=F("deliveries") + 1, error=reason)
    metrics.incr("events_quarantined")
    return EventQuarantined(event_id, reason)


def _transaction_id(event: Mapping[str, Any]) -> str:
    from .events import transaction_id_of

    try:
        return transaction_id_of(event)
    except (KeyError, TypeError, AttributeError):
        return ""


def _clean(text: str, limit: int) -> str:
    """``text`` as any text column stores it: no NUL, no lone surrogate, at most ``limit``."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text[:limit]
