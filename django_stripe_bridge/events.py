"""What a Stripe event is to the bridge: its shape and the transaction it belongs to.

Pure functions over the event as a dict (as Stripe sends it); no database access. The status
an event leads to is ``payment_state``'s business.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .exceptions import InvalidEvent
from .payment_state import PAYMENT_OBJECTS

#: Objects whose events belong to a payment, and so to a ``StripeTransaction``.
TRANSACTION_OBJECTS = PAYMENT_OBJECTS


#: The latest ``created`` a datetime can hold: 9999-12-31T23:59:59Z.
MAX_TIMESTAMP = 253_402_300_799
#: Characters no event needs and not every database stores: NUL (PostgreSQL refuses it) and
#: lone UTF-16 surrogates (not Unicode: no UTF-8 encoder writes them).
_UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")


class VerifiedEvent(dict[str, Any]):
    """An event read from a verified webhook body and validated (``webhooks.parse_event``),
    with the body's text, ``text``.

    ``ingest_events`` does not validate it again, and stores ``text`` as the payload (the
    same JSON) rather than writing the event out anew. Do not change one after it is made:
    the text would no longer say the same.
    """

    __slots__ = ("text",)

    def __init__(self, event: Mapping[str, Any], text: str) -> None:
        super().__init__(event)
        self.text = text


def validate_event(event: Any) -> Mapping[str, Any]:
    """Return ``event`` if it has the shape of a Stripe event, else raise ``InvalidEvent``.

    Beyond the shape, an event must hold nothing a database cannot store (a NUL character,
    a lone surrogate, a number that is not finite): refusing it says what is wrong, where
    storing it would fail with an error that looks like an outage.
    """
    validate_shape(event)
    # The quick pass finds whether; the careful one, only then, says where.
    problem = _unstorable(event) if _holds_unstorable(event) else None
    if problem is not None:
        raise InvalidEvent(problem)
    return event


def validate_shape(event: Any) -> Mapping[str, Any]:
    """``validate_event`` without the look for what cannot be stored: for an event parsed
    from text that cannot hold any of it (``webhooks.parse_event`` knows)."""
    if not isinstance(event, Mapping):
        raise InvalidEvent("The body must be a JSON object (a Stripe event).")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id.startswith("evt_") or len(event_id) > 255:
        raise InvalidEvent(
            "'id' must be a Stripe event id: 'evt_' and at most 255 characters in all."
        )
    if event.get("object") != "event":
        raise InvalidEvent("'object' must be \"event\".")
    if not isinstance(event.get("type"), str) or not event["type"] or len(event["type"]) > 100:
        raise InvalidEvent("'type' must be a string of 1 to 100 characters.")
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
    account = event.get("account")
    if account is not None and not is_account_id(account):
        raise InvalidEvent(
            "'account' must be a connected account's id: 'acct_' and at most 255 characters."
        )
    return event


def is_account_id(value: Any) -> bool:
    """Whether ``value`` looks like a Stripe account id (``acct_…``, at most 255 characters)."""
    return (
        isinstance(value, str)
        and value.startswith("acct_")
        and len(value) <= 255
        and value.isascii()
        and value[5:].replace("_", "").isalnum()
    )


def _holds_unstorable(event: Mapping[str, Any]) -> bool:
    """Whether anything in ``event`` cannot be stored.

    The quick pass over every value (a 1 MiB event may hold half a million): no path is
    built, and JSON's own types are told apart by ``type()``, which costs a fraction of an
    ``isinstance`` check against ``Mapping``. ``_unstorable()`` then says where.
    """
    search = _UNSTORABLE_CHARACTER.search
    stack: list[Any] = [event]
    pop, extend = stack.pop, stack.extend
    while stack:
        value = pop()
        kind = type(value)
        if kind is int or kind is bool or value is None:
            continue
        if kind is str:
            if search(value):
                return True
        elif kind is list:
            extend(value)
        elif kind is dict:
            for key in value:
                if search(str(key)):
                    return True
            extend(value.values())
        elif kind is float:
            if not math.isfinite(value):
                return True
        elif isinstance(value, str | float | Mapping | list | tuple):
            # Another type of the same kinds (not from JSON): the careful pass decides.
            return _unstorable(value) is not None
    return False


def _unstorable(event: Any) -> str | None:
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
    return f"a lone surrogate (\\u{ord(char):04x}: not Unicode)"


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
    if kind == "checkout.session":
        # Paid through a PaymentIntent, a session is that payment (docs/models.md).
        return _id_of(obj.get("payment_intent")) or _id_of(obj.get("id")) or ""
    return _id_of(obj.get("id")) or ""


def checkout_session_link(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(session id, PaymentIntent id)`` of a Checkout Session event whose session names its
    PaymentIntent; else ``None``."""
    obj = event_object(event)
    if obj.get("object") != "checkout.session":
        return None
    session_id, intent_id = _id_of(obj.get("id")), _id_of(obj.get("payment_intent"))
    if not session_id or not intent_id or session_id == intent_id:
        return None
    return session_id[:255], intent_id[:255]


def account_of(event: Mapping[str, Any]) -> str:
    """The connected account a verified event's payment is for; ``""`` for the platform's own.

    A Connect event names it in ``account`` (a direct charge, made on the connected account).
    A destination charge is the platform's own object, made for the account its
    ``transfer_data.destination`` (else its ``on_behalf_of``) names. Stripe wrote all of these:
    nothing a client sends reaches here.
    """
    account = event.get("account")
    if is_account_id(account):
        return str(account)
    obj = event_object(event)
    if obj.get("object") not in ("charge", "payment_intent", "checkout.session"):
        return ""
    transfer = obj.get("transfer_data")
    destination = _id_of(transfer.get("destination")) if isinstance(transfer, Mapping) else None
    for candidate in (destination, _id_of(obj.get("on_behalf_of"))):
        if is_account_id(candidate):
            return str(candidate)
    return ""


def transaction_kind_of(transaction_id: str) -> str:
    """``payment_intent`` for ``pi_…`` ids, ``checkout_session`` for ``cs_…``, ``charge``
    otherwise."""
    if transaction_id.startswith("pi_"):
        return "payment_intent"
    if transaction_id.startswith("cs_"):
        return "checkout_session"
    return "charge"
