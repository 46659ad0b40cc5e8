"""Thin events (Stripe's Event Destinations, API v2): stored when they arrive, then fetched
through a durable queue and folded like snapshot events.

A thin notification (``object: "v2.core.event"``) names an event and the object it is about,
without its data. The webhook stores it once (``record()``, a ``ThinEvent`` row) and
answers 200 after the commit. Fetching happens afterwards, never in the request: a thread
started after the commit, the outbox relay's thread, and ``manage.py stripe_bridge_thin``
all run ``drain()``. Each fetch:

1. ``GET /v2/core/events/{id}`` with the notification's context as ``Stripe-Context``; an
   event whose context is not the notification's is refused (never folded);
2. the v1 snapshot event it stands for (``snapshot_event``), or else its related object
   wrapped as an event of the same id, is ingested through ``ingest_event()``:
   so a payment followed through thin events ends in the status snapshot events give it,
   and with a snapshot destination also active each event is stored once (same ``evt_``).

A failed fetch (Stripe down, a 5xx, a timeout) is retried with exponential backoff
(``THIN_RETRY_DELAY`` doubling up to ``THIN_MAX_RETRY_DELAY``); the queue is a table, so it
survives restarts. A claimed row's next attempt is pushed ``THIN_LEASE`` seconds on first,
so two workers never fetch one notification at once and a worker that dies mid-fetch leaves
it to be retried. ``v2.core.event_destination.ping`` is recorded and needs no fetch.

What no retry mends is not retried: a fetched event the database refuses to store (a data
error, as for a poison snapshot event) is kept apart as a ``QuarantinedEvent`` and the row
ends ``quarantined``; a fetched event that is not a valid event ends ``refused``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import ingest, quarantine, stripe_api
from .conf import bridge_settings
from .events import is_account_id
from .exceptions import EventQuarantined, InvalidEvent, StripeInvalidRequest
from .models import ThinEvent

logger = logging.getLogger(__name__)

#: The ``object`` of a thin event notification.
THIN_OBJECT = "v2.core.event"
#: Notifications that need no fetch: answered and recorded.
PING = "v2.core.event_destination.ping"
#: Rows fetched per ``drain()`` call at most.
DRAIN_BATCH = 50


class Refused(Exception):
    """A notification that must never be folded (its fetched event belongs elsewhere)."""


@dataclass(frozen=True)
class DrainResult:
    done: int = 0
    retried: int = 0
    refused: int = 0
    quarantined: int = 0


#: What ``_fetch_and_fold`` says of a row, in ``DrainResult``'s order.
OUTCOMES = ("done", "retry", "refused", "quarantined")


def is_thin(payload: Any) -> bool:
    """Whether a parsed webhook body is a thin event notification."""
    return isinstance(payload, Mapping) and payload.get("object") == THIN_OBJECT


def context_account(context: str | None) -> str:
    """The connected account a context names (its last ``acct_…`` segment), or ``""``."""
    last = (context or "").rsplit("/", 1)[-1]
    return last if is_account_id(last) else ""


def validate_notification(notification: Mapping[str, Any]) -> Mapping[str, Any]:
    """``notification`` if it has a thin notification's shape, else raise InvalidEvent."""
    event_id, event_type = notification.get("id"), notification.get("type")
    if not isinstance(event_id, str) or not event_id.startswith("evt_") or len(event_id) > 255:
        raise InvalidEvent("'id' must be an event id: 'evt_' and at most 255 characters.")
    if not isinstance(event_type, str) or not 0 < len(event_type) <= 100:
        raise InvalidEvent("'type' must be a string of 1 to 100 characters.")
    context = notification.get("context")
    if context is not None and (not isinstance(context, str) or len(context) > 255):
        raise InvalidEvent("'context' must be a string of at most 255 characters.")
    return notification


# --- arriving --------------------------------------------------------------------------------


def record(notification: Mapping[str, Any], *, endpoint: str = "") -> bool:
    """Store a verified notification once; whether this call stored it (``False``: a repeat).

    After the commit the fetch is started in the background (``THIN_RELAY``).
    """
    validate_notification(notification)
    ping = notification["type"] == PING
    now = timezone.now()
    row = ThinEvent(
        event_id=notification["id"],
        type=notification["type"],
        context=str(notification.get("context") or ""),
        endpoint=endpoint[:40],
        notification=dict(notification),
        status=ThinEvent.Status.DONE if ping else ThinEvent.Status.PENDING,
        next_attempt_at=None if ping else now,
        done_at=now if ping else None,
    )
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:
        return False
    if not ping and bridge_settings.THIN_RELAY:
        transaction.on_commit(kick)
    return True


# --- fetching ----------------------------------------------------------------------------------


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: doubling, capped."""
    base = float(bridge_settings.THIN_RETRY_DELAY)
    cap = float(bridge_settings.THIN_MAX_RETRY_DELAY)
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


def relay_round() -> None:
    """The outbox relay thread's round: the thin events whose fetch failed, and any left by
    a restart (unless ``THIN_RELAY`` is off)."""
    if bridge_settings.THIN_RELAY:
        drain()


def drain(*, limit: int = DRAIN_BATCH, now: dt.datetime | None = None) -> DrainResult:
    """Fetch and fold the notifications whose next attempt is due, oldest first."""
    now = now or timezone.now()
    due = ThinEvent.objects.filter(
        status=ThinEvent.Status.PENDING, next_attempt_at__lte=now
    ).order_by("next_attempt_at", "id")
    outcomes: list[str] = []
    for pk in list(due.values_list("pk", flat=True)[:limit]):
        row = _claim(pk, now)
        if row is not None:  # else another worker has it
            outcomes.append(_fetch_and_fold(row))
    return DrainResult(*(outcomes.count(name) for name in OUTCOMES))


def lease() -> float:
    """Seconds a claimed fetch holds its row before another worker may retry it
    (``THIN_LEASE``): longer than a fetch can take, else two workers could fetch one row."""
    return float(bridge_settings.THIN_LEASE)


def _claim(pk: int, now: dt.datetime) -> ThinEvent | None:
    """Take one due row: push its next attempt a lease on (a conditional update)."""
    lease_end = now + dt.timedelta(seconds=lease())
    claimed = ThinEvent.objects.filter(
        pk=pk, status=ThinEvent.Status.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=lease_end)
    return ThinEvent.objects.filter(pk=pk).first() if claimed else None


def _fetch_and_fold(row: ThinEvent) -> str:
    try:
        stripe_event_id = fold(row.notification)
    except Refused as exc:
        logger.error("Thin event %s refused: %s", row.event_id, exc)
        _finish(row, ThinEvent.Status.REFUSED, error=str(exc))
        return "refused"
    except (StripeInvalidRequest, InvalidEvent) as exc:
        # Stripe says the event or object does not exist for this context, or what it sent
        # is no event: no retry mends it.
        logger.error("Thin event %s refused: %s", row.event_id, exc)
        _finish(row, ThinEvent.Status.REFUSED, error=str(exc))
        return "refused"
    except EventQuarantined as exc:
        # The database refuses the fetched event's data: kept apart (quarantine() logged it),
        # like a poison snapshot event, rather than fetched and refused again forever.
        _finish(row, ThinEvent.Status.QUARANTINED, error=str(exc), stripe_event_id=exc.event_id)
        return "quarantined"
    except Exception as exc:
        # Stripe unreachable, a 5xx, a timeout (StripeBridgeError), the database unwell: retry.
        attempts = row.attempts + 1
        delay = backoff(attempts)
        logger.warning(
            "Thin event %s: fetch %d failed (%s: %s); retrying in %.0f s.",
            row.event_id,
            attempts,
            type(exc).__name__,
            exc,
            delay,
        )
        ThinEvent.objects.filter(pk=row.pk).update(
            attempts=attempts,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
            next_attempt_at=timezone.now() + dt.timedelta(seconds=delay),
        )
        return "retry"
    _finish(row, ThinEvent.Status.DONE, stripe_event_id=stripe_event_id)
    return "done"


def _finish(row: ThinEvent, status: str, *, error: str = "", stripe_event_id: str = "") -> None:
    ThinEvent.objects.filter(pk=row.pk).update(
        status=status,
        attempts=row.attempts + 1,
        last_error=error[:2000],
        stripe_event_id=stripe_event_id,
        next_attempt_at=None,
        done_at=timezone.now(),
    )


def fold(notification: Mapping[str, Any]) -> str:
    """Fetch what a notification stands for and ingest it; the ``evt_`` id stored (or
    found stored). Raises ``Refused``, or the error of a fetch that failed."""
    context = notification.get("context") or None
    event = stripe_api.retrieve_v2_event(notification["id"], context=context)
    if (event.get("context") or None) != context:
        raise Refused(
            f"the fetched event belongs to context {event.get('context')!r}, the notification "
            f"to {context!r}"
        )
    if event.get("id") != notification["id"]:
        raise Refused(f"asked for event {notification['id']}, got {event.get('id')!r}")
    account = context_account(context)
    snapshot_id = event.get("snapshot_event")
    if isinstance(snapshot_id, str) and snapshot_id.startswith("evt_"):
        snapshot = stripe_api.retrieve_event(snapshot_id, stripe_account=account or None)
        if account:
            # Listed with Stripe-Account: name it as a Connect webhook would, and check it.
            snapshot.setdefault("account", account)
        if (snapshot.get("account") or "") != account:
            raise Refused(f"snapshot event {snapshot_id} belongs to another account")
        _ingest(snapshot)
        return snapshot_id
    related = event.get("related_object") or notification.get("related_object")
    if not isinstance(related, Mapping) or not isinstance(related.get("url"), str):
        return ""  # an event about nothing to fold (stored as a ThinEvent only)
    obj = stripe_api.retrieve_related_object(related["url"], context=context)
    _ingest(as_snapshot(event, obj, account))
    return str(event["id"])


def _ingest(event: Mapping[str, Any]) -> None:
    """Ingest a fetched event; one whose data the database refuses is quarantined (raises
    ``EventQuarantined``), any other failure is raised as it is (and retried)."""
    try:
        ingest.ingest_event(event)
    except Exception as exc:
        if not quarantine.is_data_error(exc):
            raise
        raise quarantine.quarantine(event, exc) from exc


def as_snapshot(event: Mapping[str, Any], obj: Mapping[str, Any], account: str) -> dict[str, Any]:
    """A v1-shaped event holding a thin event's fetched object (for events that have no
    snapshot event): its type without the ``v1.`` prefix, its time in seconds."""
    created = parse_datetime(str(event.get("created") or ""))
    event_type = str(event.get("type") or "")
    snapshot: dict[str, Any] = {
        "id": event["id"],
        "object": "event",
        "type": event_type[3:] if event_type.startswith("v1.") else event_type,
        "created": int(created.timestamp()) if created else int(timezone.now().timestamp()),
        "livemode": bool(event.get("livemode")),
        "api_version": stripe_api.api_version(),
        "data": {"object": dict(obj)},
    }
    if account:
        snapshot["account"] = account
    return snapshot


# --- the background fetcher -------------------------------------------------------------------

_kick_lock = threading.Lock()
_kicked: threading.Thread | None = None
_again = threading.Event()


def kick() -> None:
    """Fetch what is due now in a background thread (one at a time per process; a kick
    while it runs makes it go round once more). The outbox relay thread, started here if
    it does not run yet, retries what fails."""
    global _kicked
    from . import outbox

    outbox.ensure_relay()
    with _kick_lock:
        _again.set()
        if _kicked is not None and _kicked.is_alive():
            return
        _kicked = threading.Thread(target=_drain_now, name="stripe-bridge-thin", daemon=True)
        _kicked.start()


def _drain_now() -> None:
    try:
        while _again.is_set():
            _again.clear()
            close_old_connections()
            drain()
    except Exception:
        logger.exception("Fetching thin events failed; the relay retries them later.")
    finally:
        close_old_connections()
