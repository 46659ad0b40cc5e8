"""What a Stripe event means for the bridge: its shape, its transaction id, the status it sets.

Pure functions over the event as a dict (as Stripe sends it); no database access.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .exceptions import InvalidEvent


class Status:
    """Values of ``StripeTransaction.status``."""

    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    DISPUTED = "disputed"
    DISPUTE_WON = "dispute_won"
    DISPUTE_LOST = "dispute_lost"


#: How far along a payment a status is. An event changes a transaction's status only when
#: ``(event.created, rank)`` is greater than the transaction's: a late, older event never
#: rolls a refunded payment back to succeeded.
RANK: dict[str, int] = {
    Status.PENDING: 0,
    Status.REQUIRES_ACTION: 1,
    Status.PROCESSING: 2,
    Status.SUCCEEDED: 3,
    Status.FAILED: 3,
    Status.CANCELED: 3,
    Status.EXPIRED: 3,
    Status.PARTIALLY_REFUNDED: 4,
    Status.REFUNDED: 5,
    Status.DISPUTED: 6,
    Status.DISPUTE_WON: 7,
    Status.DISPUTE_LOST: 7,
}

_CHARGE_EVENT_STATUS = {
    "charge.pending": Status.PENDING,
    "charge.succeeded": Status.SUCCEEDED,
    "charge.captured": Status.SUCCEEDED,
    "charge.failed": Status.FAILED,
    "charge.expired": Status.EXPIRED,
    "charge.dispute.created": Status.DISPUTED,
}

_PAYMENT_INTENT_STATUS = {
    "requires_payment_method": Status.PENDING,
    "requires_confirmation": Status.PENDING,
    "requires_action": Status.REQUIRES_ACTION,
    # Authorized, waiting for capture: money is not settled yet.
    "requires_capture": Status.PROCESSING,
    "processing": Status.PROCESSING,
    "succeeded": Status.SUCCEEDED,
    "canceled": Status.CANCELED,
}

#: Disputes closed in the merchant's favour; any other closed status is a loss.
_DISPUTE_WON = {"won", "warning_closed"}

#: Objects whose events belong to a payment, and so to a ``StripeTransaction``.
TRANSACTION_OBJECTS = {"charge", "payment_intent", "refund", "dispute"}


def validate_event(event: Any) -> Mapping[str, Any]:
    """Return ``event`` if it has the shape of a Stripe event, else raise :class:`InvalidEvent`."""
    if not isinstance(event, Mapping):
        raise InvalidEvent("The body must be a JSON object (a Stripe event).")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id.startswith("evt_") or len(event_id) > 255:
        raise InvalidEvent("'id' must be a Stripe event id starting with 'evt_'.")
    if event.get("object") != "event":
        raise InvalidEvent("'object' must be \"event\".")
    if not isinstance(event.get("type"), str) or not event["type"] or len(event["type"]) > 100:
        raise InvalidEvent("'type' must be a non-empty string.")
    created = event.get("created")
    if not isinstance(created, int) or isinstance(created, bool) or created < 0:
        raise InvalidEvent("'created' must be an integer timestamp.")
    data = event.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("object"), Mapping):
        raise InvalidEvent("'data.object' must be a JSON object.")
    return event


def event_object(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Stripe object an event is about (``data.object``)."""
    return event["data"]["object"]


def _id_of(value: Any) -> str | None:
    """An id from a field that holds either an id or an expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def transaction_id_of(event: Mapping[str, Any]) -> str:
    """The transaction an event belongs to, by the rules of SPEC §3."""
    obj = event_object(event)
    kind = obj.get("object")
    if kind == "charge":
        return _id_of(obj.get("payment_intent")) or _id_of(obj.get("id")) or ""
    if kind in ("refund", "dispute"):
        return _id_of(obj.get("payment_intent")) or _id_of(obj.get("charge")) or ""
    return _id_of(obj.get("id")) or ""


def transaction_kind_of(transaction_id: str) -> str:
    """``payment_intent`` for ``pi_…`` ids, ``charge`` otherwise."""
    return "payment_intent" if transaction_id.startswith("pi_") else "charge"


def status_of(event: Mapping[str, Any]) -> str | None:
    """The transaction status an event reports, or ``None`` when it reports none."""
    event_type: str = event["type"]
    obj = event_object(event)
    if event_type in _CHARGE_EVENT_STATUS:
        return _CHARGE_EVENT_STATUS[event_type]
    if event_type == "charge.refunded":
        amount, refunded = obj.get("amount"), obj.get("amount_refunded")
        if isinstance(amount, int) and isinstance(refunded, int) and refunded < amount:
            return Status.PARTIALLY_REFUNDED
        return Status.REFUNDED
    if event_type == "charge.dispute.closed":
        return Status.DISPUTE_WON if obj.get("status") in _DISPUTE_WON else Status.DISPUTE_LOST
    if event_type == "payment_intent.payment_failed":
        return Status.FAILED
    if event_type.startswith("payment_intent."):
        return _PAYMENT_INTENT_STATUS.get(obj.get("status"))  # type: ignore[arg-type]
    return None


def status_of_object(obj: Mapping[str, Any]) -> str | None:
    """The status of a charge or PaymentIntent object as a create call returns it."""
    status = obj.get("status")
    if obj.get("object") == "payment_intent":
        return _PAYMENT_INTENT_STATUS.get(status)  # type: ignore[arg-type]
    if status in (Status.SUCCEEDED, Status.PENDING, Status.FAILED):
        return status  # type: ignore[return-value]
    return None


def is_newer(created: int, status: str, current_created: int | None, current: str | None) -> bool:
    """Whether ``(created, rank(status))`` is past the transaction's current pair."""
    if current_created is None or current is None:
        return True
    return (created, RANK[status]) > (current_created, RANK.get(current, -1))
