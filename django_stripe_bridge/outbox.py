"""The outbox relay: stored events that never reached the channel layer are published later.

An event is committed first and published after (``messaging.publish_event``). When that
publish fails (layer down), the process dies in between, or marking ``published_at`` fails,
the row stays unpublished. Every server process runs a relay thread (started by its first
websocket connection or publish) that, each ``OUTBOX_INTERVAL`` seconds, publishes the
events unpublished for more than ``OUTBOX_DELAY`` seconds, oldest first, once the layer
answers. Several relays may run at once: each event is claimed under a row lock (``SELECT …
FOR UPDATE SKIP LOCKED`` where the database has it, else the conditional ``UPDATE`` that
sets ``published_at``), so two relays never send the same event.
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
from .messaging import get_layer, send_event
from .models import StripeEvent

logger = logging.getLogger(__name__)

_thread: threading.Thread | None = None
_start_lock = threading.Lock()


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
    pending = StripeEvent.objects.filter(published_at__isnull=True, received_at__lte=cutoff)
    sent = 0
    for pk in pending.order_by("id").values_list("pk", flat=True)[:limit]:
        outcome = _relay_one(pk)
        if outcome is False:
            break
        sent += outcome is True
    return sent


def _relay_one(pk: int) -> bool | None:
    """Claim, send and mark one event: True if sent, None if another relay has it."""
    try:
        with transaction.atomic():
            rows = StripeEvent.objects.filter(pk=pk, published_at__isnull=True)
            if connection.features.has_select_for_update_skip_locked:
                row = rows.select_for_update(skip_locked=True).first()
            else:
                row = rows.first()
            if row is None:
                return None
            # The claim: only one relay's UPDATE changes the row; on SQLite it also takes
            # the write lock, so a second relay waits and then finds the row published.
            if not rows.update(published_at=timezone.now()):
                return None
            send_event(row)  # raises: the claim is rolled back, the row stays unpublished
    except Exception as exc:
        metrics.incr("publish_failures")
        logger.warning(
            "Outbox relay could not publish event pk=%s (%s: %s); retrying later.",
            pk,
            type(exc).__name__,
            exc,
        )
        return False
    metrics.incr("events_republished")
    logger.info("Outbox relay published Stripe event %s.", row.event_id)
    return True


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
