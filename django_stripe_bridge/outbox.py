"""The outbox relay: stored events that never reached the channel layer are published later.

An event is committed first and published after (``messaging.publish_event``). When that
publish fails (layer down), the process dies in between, or marking ``published_at`` fails,
the row stays unpublished. Every server process runs a relay thread (started by its first
websocket connection or publish) that, each ``OUTBOX_INTERVAL`` seconds, publishes the
events unpublished for more than ``OUTBOX_DELAY`` seconds, oldest first, once the layer
answers, up to ``RELAY_CHUNK`` events per claim and send. Several relays may run at once:
each event is claimed under a row lock (``SELECT … FOR UPDATE SKIP LOCKED`` where the
database has it, else the conditional ``UPDATE`` that sets ``published_at``), so two relays
never send the same event.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from . import metrics
from .conf import bridge_settings
from .messaging import get_layer, observe_publish_delay, send_events
from .models import StripeEvent

logger = logging.getLogger(__name__)

_thread: threading.Thread | None = None
_start_lock = threading.Lock()


#: Events claimed and sent together (one transaction, one send of the batch).
RELAY_CHUNK = 50


def relay_unpublished(*, older_than: float | None = None, limit: int | None = None) -> int:
    """Publish events unpublished for more than ``older_than`` seconds; how many were sent.

    Stops at the first failure (the layer is down: the next round tries again).
    """
    if get_layer() is None:
        return 0
    if older_than is None:
        older_than = bridge_settings.OUTBOX_DELAY
    if limit is None:
        limit = bridge_settings.OUTBOX_BATCH
    cutoff = timezone.now() - dt.timedelta(seconds=older_than)
    sent = 0
    while sent < limit:
        relayed = _relay_chunk(cutoff, min(RELAY_CHUNK, limit - sent))
        if not relayed:
            break  # nothing left to claim, or the layer failed
        sent += relayed
    return sent


def _relay_chunk(cutoff: dt.datetime, size: int) -> int:
    """Claim, send and mark up to ``size`` of the oldest unpublished events; how many."""
    pending = StripeEvent.objects.filter(published_at__isnull=True, received_at__lte=cutoff)
    rows: list[StripeEvent] = []
    try:
        with transaction.atomic():
            if connection.features.has_select_for_update_skip_locked:
                # Rows another relay holds are skipped, not waited for.
                rows = list(pending.select_for_update(skip_locked=True).order_by("id")[:size])
            else:
                rows = list(pending.order_by("id")[:size])
            if not rows:
                return 0
            # The claim: a conditional UPDATE, so that of two relays that read the same rows
            # (no SKIP LOCKED) only one sets each; on SQLite it also takes the write lock.
            claimed_at = timezone.now()
            keys = [row.pk for row in rows]
            claimed = StripeEvent.objects.filter(pk__in=keys, published_at__isnull=True)
            if claimed.update(published_at=claimed_at) != len(rows):
                ours = StripeEvent.objects.filter(pk__in=keys, published_at=claimed_at)
                rows = list(ours.order_by("id"))
                if not rows:
                    return 0
            send_events(rows)  # raises: the claim is rolled back, the rows stay unpublished
    except Exception as exc:
        metrics.incr("publish_failures", max(len(rows), 1))
        logger.warning(
            "Outbox relay could not publish %s (%s: %s); retrying later.",
            f"{len(rows)} event(s) from pk={rows[0].pk}" if rows else "events",
            type(exc).__name__,
            exc,
        )
        return 0
    metrics.incr("events_republished", len(rows))
    observe_publish_delay(rows)
    logger.info(
        "Outbox relay published %d Stripe event(s): %s%s.",
        len(rows),
        ", ".join(row.event_id for row in rows[:5]),
        " …" if len(rows) > 5 else "",
    )
    return len(rows)


def _run() -> None:
    while True:
        time.sleep(bridge_settings.OUTBOX_INTERVAL)
        if not bridge_settings.OUTBOX_RELAY:
            continue  # switched off since the thread started (settings of a test)
        try:
            close_old_connections()
            relay_unpublished()
        except Exception:
            logger.exception("Outbox relay round failed; retrying later.")
        finally:
            close_old_connections()


def ensure_relay() -> None:
    """Start this process's relay thread, once, unless ``OUTBOX_RELAY`` is off."""
    global _thread
    if _thread is not None or not bridge_settings.OUTBOX_RELAY:
        return
    with _start_lock:
        if _thread is None:
            _thread = threading.Thread(target=_run, name="stripe-bridge-outbox", daemon=True)
            _thread.start()
