"""The outbox relay: stored events that never reached the channel layer are published later.

An event is committed first and published after (``messaging.publish_event``). When that
publish fails (layer down), the process dies in between, or marking ``published_at`` fails,
the row stays unpublished. Every server process runs a relay thread (started by its first
request, websocket connection, publish or thin event) that, each ``OUTBOX_INTERVAL``
seconds, fetches the thin events due (``thin.drain()``, with ``THIN_RELAY``) and publishes the
events unpublished for more than ``OUTBOX_DELAY`` seconds, oldest first, once the layer
answers, up to ``RELAY_CHUNK`` events per claim and send. Several relays may run at once:
each event is claimed under a row lock (``SELECT … FOR UPDATE SKIP LOCKED`` where the
database has it, else the conditional ``UPDATE`` that sets ``published_at``), so two relays
never send the same event.

An event the layer refuses to carry (it cannot serialize it: ``messaging.REFUSALS``) does
not hold up the others: the rest of its chunk is sent, its refusal is counted on its row
(``publish_attempts``, ``publish_error``), and after ``MAX_PUBLISH_ATTEMPTS`` refusals the
relay skips it for good (the admin and the metrics show it). A layer that is down counts
against no event.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from . import metrics
from .conf import bridge_settings
from .messaging import get_layer, observe_publish_delay, send_events
from .models import MAX_PUBLISH_ATTEMPTS, StripeEvent

logger = logging.getLogger(__name__)

_thread: threading.Thread | None = None
_start_lock = threading.Lock()


#: Events claimed and sent together (one transaction, one send of the batch).
RELAY_CHUNK = 50


def relay_unpublished(*, older_than: float | None = None, limit: int | None = None) -> int:
    """Publish events unpublished for more than ``older_than`` seconds; how many were sent
    or refused by the layer (each refused one is tried once a call).

    Stops at the first failure (the layer is down: the next round tries again).
    """
    if get_layer() is None:
        return 0
    if older_than is None:
        older_than = bridge_settings.OUTBOX_DELAY
    if limit is None:
        limit = bridge_settings.OUTBOX_BATCH
    cutoff = timezone.now() - dt.timedelta(seconds=older_than)
    handled = after = 0
    while handled < limit:
        # Past the last chunk's events: one the layer refused is tried once a round.
        relayed, after = _relay_chunk(cutoff, min(RELAY_CHUNK, limit - handled), after)
        if not relayed:
            break  # nothing left to claim, or the layer failed
        handled += relayed
    return handled


def _relay_chunk(cutoff: dt.datetime, size: int, after: int) -> tuple[int, int]:
    """Claim, send and mark up to ``size`` of the oldest unpublished events with a key past
    ``after``; how many were sent or refused (0: nothing to claim, or the layer failed),
    and the last key claimed."""
    pending = StripeEvent.objects.filter(
        published_at__isnull=True,
        received_at__lte=cutoff,
        publish_attempts__lt=MAX_PUBLISH_ATTEMPTS,
        pk__gt=after,
    )
    rows: list[StripeEvent] = []
    refused: dict[int, str] = {}
    try:
        with transaction.atomic():
            if connection.features.has_select_for_update_skip_locked:
                # Rows another relay holds are skipped, not waited for.
                rows = list(pending.select_for_update(skip_locked=True).order_by("id")[:size])
            else:
                rows = list(pending.order_by("id")[:size])
            if not rows:
                return 0, after
            # The claim: a conditional UPDATE, so that of two relays that read the same rows
            # (no SKIP LOCKED) only one sets each; on SQLite it also takes the write lock.
            claimed_at = timezone.now()
            keys = [row.pk for row in rows]
            claimed = StripeEvent.objects.filter(pk__in=keys, published_at__isnull=True)
            if claimed.update(published_at=claimed_at) != len(rows):
                ours = StripeEvent.objects.filter(pk__in=keys, published_at=claimed_at)
                rows = list(ours.order_by("id"))
                if not rows:
                    return 0, after
            # Raises when the layer fails: the claim is rolled back, the rows stay unpublished.
            refused = send_events(rows)
            if refused:
                _count_refusals([row for row in rows if row.pk in refused], refused)
    except Exception as exc:
        metrics.incr("publish_failures", max(len(rows), 1))
        logger.warning(
            "Outbox relay could not publish %s (%s: %s); retrying later.",
            f"{len(rows)} event(s) from pk={rows[0].pk}" if rows else "events",
            type(exc).__name__,
            exc,
        )
        return 0, after
    sent = [row for row in rows if row.pk not in refused]
    metrics.incr("events_republished", len(sent))
    observe_publish_delay(sent)
    metrics.incr("publish_refusals", len(refused))
    if sent:
        logger.info(
            "Outbox relay published %d Stripe event(s): %s%s.",
            len(sent),
            ", ".join(row.event_id for row in sent[:5]),
            " …" if len(sent) > 5 else "",
        )
    return len(rows), rows[-1].pk


def _count_refusals(rows: list[StripeEvent], reasons: dict[int, str]) -> None:
    """Unclaim the events the layer refused, counting the refusal on each row."""
    for row in rows:
        StripeEvent.objects.filter(pk=row.pk).update(
            published_at=None,
            publish_attempts=F("publish_attempts") + 1,
            publish_error=reasons[row.pk][:300],
        )
        if row.publish_attempts + 1 >= MAX_PUBLISH_ATTEMPTS:
            logger.error(
                "Outbox relay gives up on Stripe event %s: the channel layer refused it %d "
                "times (%s). It stays stored, unpublished; the admin lists it under "
                "'publishing: given up'.",
                row.event_id,
                MAX_PUBLISH_ATTEMPTS,
                reasons[row.pk],
            )


#: What the relay thread does each round besides publishing: the app registers the thin
#: events' retries here (`thin.relay_round`), so that this module need not import them.
round_work: list[Callable[[], None]] = []


def _run() -> None:
    while True:
        time.sleep(bridge_settings.OUTBOX_INTERVAL)
        if not bridge_settings.OUTBOX_RELAY:
            continue  # switched off since the thread started (settings of a test)
        try:
            close_old_connections()
            relay_unpublished()
            for work in round_work:
                work()
        except Exception:
            logger.exception("Outbox relay round failed; retrying later.")
        finally:
            close_old_connections()


def start_relay_on_request(**kwargs: object) -> None:
    """``request_started`` receiver: the relay runs from a process's first request."""
    ensure_relay()


def ensure_relay() -> None:
    """Start this process's relay thread, once, unless ``OUTBOX_RELAY`` is off."""
    global _thread
    if _thread is not None or not bridge_settings.OUTBOX_RELAY:
        return
    with _start_lock:
        if _thread is None:
            _thread = threading.Thread(target=_run, name="stripe-bridge-outbox", daemon=True)
            _thread.start()
