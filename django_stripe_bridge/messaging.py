"""What a stored event looks like on the ``stripe`` channel, and how it gets there.

Headers are what selectors filter on; data is the payload a subscriber receives
(a safe summary by default). Events go to one Channels group per transaction id and to
one broadcast group, so the cost of an event does not grow with unrelated subscribers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.utils import timezone

from .conf import bridge_settings
from .events import event_object

if TYPE_CHECKING:
    from .models import StripeEvent, StripeTransaction

logger = logging.getLogger(__name__)

#: ``type`` of the channel-layer message; the consumer handles it in ``stripe_event()``.
EVENT_MESSAGE_TYPE = "stripe.event"

#: Seconds a publish may take before it counts as failed (the event stays unpublished).
PUBLISH_TIMEOUT = 5.0

#: Fields of a charge, PaymentIntent, refund or dispute kept in the ``summary`` payload.
#: Nothing that identifies a person: no billing details, e-mail, address or fingerprint.
SUMMARY_FIELDS = (
    "id",
    "object",
    "amount",
    "amount_captured",
    "amount_received",
    "amount_refunded",
    "currency",
    "status",
    "paid",
    "captured",
    "refunded",
    "disputed",
    "failure_code",
    "failure_message",
    "payment_intent",
    "charge",
    "reason",
    "cancellation_reason",
    "created",
    "livemode",
)
_ERROR_FIELDS = ("type", "code", "decline_code", "message")
_OUTCOME_FIELDS = ("network_status", "reason", "risk_level", "seller_message", "type")

_GROUP_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,60}$")


# -- groups -------------------------------------------------------------------------------


def broadcast_group() -> str:
    """The group every event is sent to; broad selectors listen here."""
    return "stripe_bridge.all"


def transaction_group(transaction_id: str) -> str:
    """The group of one transaction's events; selectors that pin ``id`` listen here."""
    if _GROUP_SAFE.match(transaction_id):
        return f"stripe_bridge.tx.{transaction_id}"
    # Channels allows only a few characters in group names; other ids are hashed.
    digest = hashlib.sha256(transaction_id.encode()).hexdigest()[:40]
    return f"stripe_bridge.txh.{digest}"


# -- message content ----------------------------------------------------------------------


def _id_or_value(value: Any) -> Any:
    return value.get("id") if isinstance(value, Mapping) else value


def _pick(source: Any, fields: tuple[str, ...]) -> dict[str, Any] | None:
    if not isinstance(source, Mapping):
        return None
    return {name: source[name] for name in fields if name in source}


def summarize_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The ``summary`` projection of a Stripe object: payment state, no personal data."""
    summary = {name: _id_or_value(obj[name]) for name in SUMMARY_FIELDS if name in obj}
    if "last_payment_error" in obj:
        summary["last_payment_error"] = _pick(obj["last_payment_error"], _ERROR_FIELDS)
    if "outcome" in obj:
        summary["outcome"] = _pick(obj["outcome"], _OUTCOME_FIELDS)
    return summary


def build_headers(row: StripeEvent, status: str | None) -> dict[str, Any]:
    """The headers selectors see: ``id``, ``type``, ``event_id``, ``object``, ``status``…"""
    obj = event_object(row.payload)
    amount = obj.get("amount")
    currency = obj.get("currency")
    return {
        "id": row.transaction_id or None,
        "type": row.type,
        "event_id": row.event_id,
        "object": row.object_type or None,
        "status": status,
        "amount": amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
        "currency": currency if isinstance(currency, str) else None,
        "livemode": row.livemode,
        "created": row.created_timestamp,
    }


def build_data(row: StripeEvent) -> dict[str, Any]:
    """The message body: the whole event, or its summary (``MESSAGE_PAYLOAD``)."""
    if bridge_settings.MESSAGE_PAYLOAD == "full":
        return dict(row.payload)
    return {
        "event_id": row.event_id,
        "type": row.type,
        "created": row.created_timestamp,
        "livemode": row.livemode,
        "object": summarize_object(event_object(row.payload)),
    }


def status_after(row: StripeEvent, transaction: StripeTransaction | None) -> str | None:
    """The status to report with an event: its transaction's, else the object's own."""
    if transaction is not None and transaction.status:
        return transaction.status
    status = event_object(row.payload).get("status")
    return status if isinstance(status, str) else None


def build_message(row: StripeEvent, status: str | None) -> dict[str, Any]:
    """The channel-layer message for one event."""
    return {
        "type": EVENT_MESSAGE_TYPE,
        "event_pk": row.pk,
        "event_id": row.event_id,
        "transaction_id": row.transaction_id,
        "headers": build_headers(row, status),
        "data": build_data(row),
    }


# -- publishing ---------------------------------------------------------------------------


def get_layer() -> Any:
    """The configured channel layer, or ``None`` when real-time is disabled."""
    from channels.layers import get_channel_layer

    return get_channel_layer()


async def _send(layer: Any, message: dict[str, Any]) -> None:
    groups = [broadcast_group()]
    if message["transaction_id"]:
        groups.insert(0, transaction_group(message["transaction_id"]))
    async with asyncio.timeout(PUBLISH_TIMEOUT):
        for group in groups:
            await layer.group_send(group, message)


def send_event(row: StripeEvent, transaction: StripeTransaction | None = None) -> None:
    """Hand an event to the channel layer now; raises if the layer is missing or fails."""
    layer = get_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured (CHANNEL_LAYERS)")
    if transaction is None and row.transaction_id:
        from .models import StripeTransaction

        transaction = StripeTransaction.objects.filter(pk=row.transaction_id).first()
    message = build_message(row, status_after(row, transaction))
    async_to_sync(_send)(layer, message)


def publish_event(row: StripeEvent, transaction: StripeTransaction | None = None) -> bool:
    """Hand an event to the channel layer and mark it published; ``False`` if that failed.

    Never raises: the event is safe in the database, and the outbox relay (``outbox.py``)
    publishes it a few seconds later, once the layer answers.
    """
    from . import metrics, outbox

    outbox.ensure_relay()
    try:
        if get_layer() is None:
            return False
        send_event(row, transaction)
    except Exception as exc:
        logger.warning(
            "Could not publish Stripe event %s to the channel layer (%s: %s); the outbox "
            "relay publishes it once the layer answers ('stripe_bridge_republish "
            "--unpublished' does it at once).",
            row.event_id,
            type(exc).__name__,
            exc,
        )
        metrics.incr("publish_failures")
        return False
    metrics.incr("events_published")
    now = timezone.now()
    try:
        type(row).objects.filter(pk=row.pk).update(published_at=now)
    except Exception as exc:
        # Sent, but not marked: the relay sends it again, and subscribers drop the repeat
        # (by event id).
        logger.warning(
            "Published Stripe event %s but could not mark it published (%s: %s).",
            row.event_id,
            type(exc).__name__,
            exc,
        )
        return True
    row.published_at = now
    return True
