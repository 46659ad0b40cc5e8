"""The one path by which a verified Stripe event becomes rows.

The webhook view, ``stripe_bridge_sync`` and the tests all call :func:`ingest_event`. It
stores the event once, folds it into its transaction's state under a row lock
(:mod:`~django_stripe_bridge.payment_state`), and, after the commit, sends the signals and
publishes the event to the channel layer.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.dispatch import Signal

from . import signals
from .events import TRANSACTION_OBJECTS, event_object, transaction_id_of, validate_event
from .models import StripeEvent, StripeTransaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What :func:`ingest_event` did: the stored row and whether this call created it."""

    event: StripeEvent
    created: bool
    transaction: StripeTransaction | None = None
    old_status: str | None = None
    status_changed: bool = False


def timestamp_to_datetime(value: int) -> dt.datetime:
    """Stripe's integer seconds as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(value, tz=dt.UTC)


def ingest_event(event: Mapping[str, Any], *, publish: bool = True) -> IngestResult:
    """Store a verified Stripe event exactly once and update its transaction.

    Safe under concurrent deliveries of the same event: one call creates the row, every
    other returns ``created=False`` and changes nothing. Raises
    :class:`~django_stripe_bridge.exceptions.InvalidEvent` for a payload that is not an event.
    """
    validate_event(event)
    with transaction.atomic():
        row, created = _insert_event(event)
        if not created:
            result = IngestResult(event=row, created=False)
        else:
            result = _update_transaction(row, event)
        transaction.on_commit(lambda: _after_commit(result, publish=publish))
    return result


def _insert_event(event: Mapping[str, Any]) -> tuple[StripeEvent, bool]:
    obj = event_object(event)
    object_type = obj.get("object")
    object_id = obj.get("id")
    row = StripeEvent(
        event_id=event["id"],
        transaction_id=transaction_id_of(event)[:255],
        type=event["type"],
        object_type=object_type[:100] if isinstance(object_type, str) else "",
        object_id=object_id[:255] if isinstance(object_id, str) else "",
        livemode=event.get("livemode") is True,
        api_version=str(event.get("api_version") or "")[:50],
        created=timestamp_to_datetime(event["created"]),
        payload=dict(event),
    )
    try:
        # A savepoint, so that a duplicate leaves the outer transaction usable.
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:
        # Another delivery of this event got there first (or finished long ago).
        existing = StripeEvent.objects.filter(event_id=event["id"]).first()
        if existing is None:
            raise
        return existing, False
    return row, True


def _update_transaction(row: StripeEvent, event: Mapping[str, Any]) -> IngestResult:
    obj = event_object(event)
    if obj.get("object") not in TRANSACTION_OBJECTS or not row.transaction_id:
        return IngestResult(event=row, created=True)

    tx = StripeTransaction.objects.lock(row.transaction_id, livemode=row.livemode)
    old_status = tx.status or None
    state = tx.payment_state()
    if not tx.state:
        # A transaction stored before the bridge kept states (or made by a create call):
        # fold its whole history, so the first new event does not forget the older ones.
        for stored in tx.events().exclude(pk=row.pk).only("payload").iterator():
            state.apply(stored.payload)
    changed_fields = tx.take_state(state) if state.apply(event) else []
    if changed_fields:
        tx.save(update_fields=[*changed_fields, "updated_at"])
    return IngestResult(
        event=row,
        created=True,
        transaction=tx,
        old_status=old_status,
        status_changed="status" in changed_fields,
    )


def _after_commit(result: IngestResult, *, publish: bool) -> None:
    # The event is committed: a failing receiver must not turn into an error for the
    # caller (Stripe would retry a delivery that is already stored, as a duplicate).
    _send_robust(signals.event_received, StripeEvent, event=result.event, created=result.created)
    if result.status_changed and result.transaction is not None:
        send_status_changed(result.transaction, result.old_status, result.event)
    if result.created and publish:
        from .messaging import publish_event

        publish_event(result.event, transaction=result.transaction)


def _send_robust(signal: Signal, sender: type, **kwargs: Any) -> None:
    """Send a signal to every receiver, logging (not raising) a receiver's error."""
    event, tx = kwargs.get("event"), kwargs.get("transaction")
    subject = f"event {event.event_id}" if event is not None else f"transaction {tx and tx.pk}"
    for receiver, response in signal.send_robust(sender=sender, **kwargs):
        if isinstance(response, Exception):
            logger.error(
                "Receiver %r of a django-stripe-bridge signal failed for %s",
                receiver,
                subject,
                exc_info=response,
            )


def send_status_changed(
    tx: StripeTransaction, old_status: str | None, event: StripeEvent | None
) -> None:
    """Send ``transaction_status_changed`` for ``tx``'s current status (after the commit)."""
    _send_robust(
        signals.transaction_status_changed,
        StripeTransaction,
        transaction=tx,
        old_status=old_status,
        new_status=tx.status,
        event=event,
    )
