"""What a Stripe event means for the bridge: its shape, its transaction id, the status it sets.

Pure functions over the event as a dict (as Stripe sends it); no database access.
"""

from __future__ import annotations

import math
import re
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


#: The latest ``created`` a datetime can hold: 9999-12-31T23:59:59Z.
MAX_TIMESTAMP = 253_402_300_799
#: The largest amount the amount columns (``BigIntegerField``) hold.
MAX_AMOUNT = 2**63 - 1

#: Characters no event needs and not every database stores: NUL (PostgreSQL refuses it) and
#: lone UTF-16 surrogates (not Unicode: no UTF-8 encoder writes them).
_UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")


def validate_event(event: Any) -> Mapping[str, Any]:
    """Return ``event`` if it has the shape of a Stripe event, else raise :class:`InvalidEvent`.

    Beyond the shape, an event must hold nothing a database cannot store (a NUL character,
    a lone surrogate, a number that is not finite): refusing it says what is wrong, where
    storing it would fail with an error that looks like an outage.
    """
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
    if (
        not isinstance(created, int)
        or isinstance(created, bool)
        or not 0 <= created <= MAX_TIMESTAMP
    ):
        raise InvalidEvent(
            f"'created' must be an integer timestamp between 0 and {MAX_TIMESTAMP} (year 9999)."
        )
    data = event.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("object"), Mapping):
        raise InvalidEvent("'data.object' must be a JSON object.")
    kind = data["object"].get("object")
    if kind is not None and not isinstance(kind, str):
        raise InvalidEvent("'data.object.object' must be a string such as \"charge\".")
    problem = _unstorable(event)
    if problem is not None:
        raise InvalidEvent(problem)
    return event


def _unstorable(event: Mapping[str, Any]) -> str | None:
    """What in ``event`` cannot be stored, and where; ``None`` when all of it can."""
    stack: list[tuple[Any, str]] = [(event, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            found = _UNSTORABLE_CHARACTER.search(value)
            if found:
                return f"'{where}' holds {_describe(found.group())}, which cannot be stored."
        elif isinstance(value, float) and not math.isfinite(value):
            return f"'{where}' is {value}, not a finite number: JSON cannot hold it."
        elif isinstance(value, Mapping):
            for key, item in value.items():
                key = str(key)
                found = _UNSTORABLE_CHARACTER.search(key)
                if found:
                    owner = f"a key of '{where}'" if where else "a key of the event"
                    return f"{owner} holds {_describe(found.group())}, which cannot be stored."
                name = key if len(key) <= 40 else key[:37] + "..."
                stack.append((item, f"{where}.{name}" if where else name))
        elif isinstance(value, list | tuple):
            stack.extend((item, f"{where}[{index}]") for index, item in enumerate(value))
    return None


def _describe(char: str) -> str:
    if char == "\x00":
        return "a NUL character (\\u0000)"
    return f"a lone surrogate (\\u{ord(char):04x}), which is not Unicode"


def amount_of(value: Any) -> int | None:
    """``value`` if it is an amount the bridge can store (an integer, not a boolean, from 0
    to :data:`MAX_AMOUNT`), else ``None``."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_AMOUNT:
        return value
    return None


def _text(value: Any) -> str | None:
    """``value`` if it is a string (a field Stripe documents as one may hold anything)."""
    return value if isinstance(value, str) else None


def event_object(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Stripe object an event is about (``data.object``)."""
    return event["data"]["object"]


def _id_of(value: Any) -> str | None:
    """An id from a field that holds either an id or an expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def transaction_id_of(event: Mapping[str, Any]) -> str:
    """The transaction an event belongs to, by the rules in docs/models.md."""
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
        amount, refunded = amount_of(obj.get("amount")), amount_of(obj.get("amount_refunded"))
        if amount is not None and refunded is not None and refunded < amount:
            return Status.PARTIALLY_REFUNDED
        return Status.REFUNDED
    status = _text(obj.get("status"))
    if event_type == "charge.dispute.closed":
        return Status.DISPUTE_WON if status in _DISPUTE_WON else Status.DISPUTE_LOST
    if event_type == "payment_intent.payment_failed":
        return Status.FAILED
    if event_type.startswith("payment_intent.") and status is not None:
        return _PAYMENT_INTENT_STATUS.get(status)
    return None


def status_of_object(obj: Mapping[str, Any]) -> str | None:
    """The status of a charge or PaymentIntent object as a create call returns it."""
    status = _text(obj.get("status"))
    if status is None:
        return None
    if obj.get("object") == "payment_intent":
        return _PAYMENT_INTENT_STATUS.get(status)
    if status in (Status.SUCCEEDED, Status.PENDING, Status.FAILED):
        return status
    return None


def is_newer(created: int, status: str, current_created: int | None, current: str | None) -> bool:
    """Whether ``(created, rank(status))`` is past the transaction's current pair."""
    if current_created is None or current is None:
        return True
    return (created, RANK[status]) > (current_created, RANK.get(current, -1))
