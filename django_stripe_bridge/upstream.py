"""Stripe's answers, checked before the bridge stores or relays anything of them.

A Stripe-compatible server, or a proxy in between, may answer 200 with a body that is not
the object asked for, or echo the request's ``Authorization`` header. ``validated()``
refuses such an answer (502, nothing stored); ``redact()`` masks secrets in text taken
from Stripe's errors, and ``error_fields()`` keeps only well-formed error fields.

Pure Python over plain dicts: nothing here imports ``stripe``.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .conf import bridge_settings
from .exceptions import StripeUnavailable

logger = logging.getLogger(__name__)

__all__ = [
    "CHARGE_STATUSES",
    "PAYMENT_INTENT_STATUSES",
    "REFUND_STATUSES",
    "SHAPES",
    "Shape",
    "contains_secret",
    "error_fields",
    "redact",
    "validated",
]

#: Anything shaped like a Stripe secret or restricted key.
KEY_PATTERN = re.compile(r"\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9]+")
#: A Stripe object id: a prefix such as ``ch_`` and letters, digits and underscores.
_ID = re.compile(r"[a-z]+_[A-Za-z0-9_]{1,250}")
#: Stripe's error codes (``card_declined``, ``insufficient_funds``, …).
_CODE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_CURRENCY = re.compile(r"[a-z]{3}")
#: Longest message relayed from one of Stripe's errors.
MAX_MESSAGE_LENGTH = 1000
MAX_PARAM_LENGTH = 200


# --- secrets ---------------------------------------------------------------------------------


def _configured_secrets() -> list[str]:
    found = [bridge_settings.API_KEY, *bridge_settings.webhook_secrets]
    return [s for s in found if isinstance(s, str) and len(s) > 8]


def _secret_forms() -> list[tuple[str, str]]:
    """Each configured secret as it may appear in text, with what replaces it."""
    forms = []
    for secret in _configured_secrets():
        masked = secret[:8] + "…redacted"
        forms.append((secret, masked))
        # As an HTTP basic credential ("Authorization: Basic …"), as the stripe library
        # once sent it.
        forms.append((base64.b64encode(f"{secret}:".encode()).decode().rstrip("="), masked))
    return forms


def redact(text: str) -> str:
    """``text`` with the configured secrets, and anything shaped like a key, masked."""
    for form, masked in _secret_forms():
        text = text.replace(form, masked)
    return KEY_PATTERN.sub(lambda match: match.group(0)[:8] + "…redacted", text)


def contains_secret(value: Any) -> bool:
    """Whether any string in ``value`` (keys of mappings too, at any depth) holds a secret."""
    forms = [form for form, _ in _secret_forms()]
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if KEY_PATTERN.search(item) or any(form in item for form in forms):
                return True
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


# --- shapes of answers -----------------------------------------------------------------------

CHARGE_STATUSES = ("succeeded", "pending", "failed")
PAYMENT_INTENT_STATUSES = (
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "canceled",
    "succeeded",
)
REFUND_STATUSES = ("pending", "requires_action", "succeeded", "failed", "canceled")
CHECKOUT_SESSION_STATUSES = ("open", "complete", "expired")
CHECKOUT_PAYMENT_STATUSES = ("paid", "unpaid", "no_payment_required")

#: A check of one field: returns why the value is wrong, or ``None``.
Check = Callable[[Any], str | None]


def _amount(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return "is not a non-negative integer"
    return None


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "is not a boolean"


def _timestamp(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return "is not a Unix time"
    return None


def _currency(value: Any) -> str | None:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        return "is not a lowercase three-letter currency code"
    return None


def _optional_text(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "is not a string or null"


def _optional_object(value: Any) -> str | None:
    return None if value is None or isinstance(value, Mapping) else "is not an object or null"


def _optional_amount(value: Any) -> str | None:
    return None if value is None else _amount(value)


def _optional_currency(value: Any) -> str | None:
    return None if value is None else _currency(value)


def _page_url(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.startswith(("https://", "http://"))):
        return None
    return "is not null or an http(s) URL"


def _payment_status(value: Any) -> str | None:
    return None if value in CHECKOUT_PAYMENT_STATUSES else "is missing or unknown"


def optional_id(*prefixes: str) -> Check:
    """A check: ``null``, or an id starting with one of ``prefixes``."""

    def check(value: Any) -> str | None:
        if value is None or _is_id(value, prefixes):
            return None
        return f"is not null or an id starting {' or '.join(prefixes)}"

    return check


def _is_id(value: Any, prefixes: Collection[str]) -> bool:
    return (
        isinstance(value, str)
        and _ID.fullmatch(value) is not None
        and any(value.startswith(prefix) for prefix in prefixes)
    )


@dataclass(frozen=True)
class Shape:
    """What the bridge needs of one kind of Stripe object."""

    #: Its ``id`` starts with one of these.
    prefixes: tuple[str, ...]
    #: Its ``status`` is one of these.
    statuses: tuple[str, ...]
    #: Other fields, each with its check (a missing field is checked as ``None``).
    fields: Mapping[str, Check] = field(default_factory=dict)


def _client_secret(obj: Mapping[str, Any]) -> str | None:
    secret, intent_id = obj.get("client_secret"), obj.get("id")
    if not isinstance(secret, str) or not secret.startswith(f"{intent_id}_secret_"):
        return "'client_secret' is not this PaymentIntent's"
    return None


#: The shapes ``validated()`` knows, by ``object``. Add one to validate another kind.
SHAPES: dict[str, Shape] = {
    "charge": Shape(
        prefixes=("ch_", "py_"),
        statuses=CHARGE_STATUSES,
        fields={
            "amount": _amount,
            "amount_refunded": _amount,
            "currency": _currency,
            "paid": _boolean,
            "captured": _boolean,
            "created": _timestamp,
            "livemode": _boolean,
            "payment_intent": optional_id("pi_"),
            "failure_code": _optional_text,
            "failure_message": _optional_text,
        },
    ),
    "payment_intent": Shape(
        prefixes=("pi_",),
        statuses=PAYMENT_INTENT_STATUSES,
        fields={
            "amount": _amount,
            "currency": _currency,
            "created": _timestamp,
            "livemode": _boolean,
            "next_action": _optional_object,
        },
    ),
    "refund": Shape(
        prefixes=("re_", "pyr_"),
        statuses=REFUND_STATUSES,
        fields={
            "amount": _amount,
            "currency": _currency,
            "created": _timestamp,
            "charge": optional_id("ch_", "py_"),
            "payment_intent": optional_id("pi_"),
        },
    ),
    "checkout.session": Shape(
        prefixes=("cs_",),
        statuses=CHECKOUT_SESSION_STATUSES,
        fields={
            "url": _page_url,
            "payment_status": _payment_status,
            "expires_at": _timestamp,
            "amount_total": _optional_amount,
            "currency": _optional_currency,
            "created": _timestamp,
            "livemode": _boolean,
            "payment_intent": optional_id("pi_"),
        },
    ),
}

#: Checks of the whole object, by ``object``, for what one field cannot say alone.
_OBJECT_CHECKS: dict[str, tuple[Callable[[Mapping[str, Any]], str | None], ...]] = {
    "payment_intent": (_client_secret,),
}


def plain(obj: Any) -> dict[str, Any]:
    """A ``stripe`` object as plain dicts and lists all the way down.

    ``to_dict()`` is that from stripe 15 on; before, it kept the nested objects as they were
    and warned that it was deprecated, and ``_to_dict_recursive()`` was the deep one.
    """
    if hasattr(obj, "to_dict_recursive"):  # stripe 12 to 14
        return dict(obj._to_dict_recursive())
    return dict(obj.to_dict())


def validated(
    obj: Any, *, object: str, prefix: str | tuple[str, ...] | None = None
) -> dict[str, Any]:
    """``obj`` as a dict, once it is a well-formed ``object`` (``"charge"``, …); else 502.

    Checks the ``id`` (with ``prefix``, default the shape's), ``object``, ``status`` and the
    shape's fields (amounts, currency, …), and that no string in it holds a secret. Raises
    ``StripeUnavailable``, whose message names the
    problem but no value from the answer; the log says the same.
    """
    shape = SHAPES[object]
    prefixes = (prefix,) if isinstance(prefix, str) else (prefix or shape.prefixes)
    data = plain(obj) if callable(getattr(obj, "to_dict", None)) else obj
    problem = _problem(data, object, prefixes, shape)
    if problem is not None:
        logger.error("Refused Stripe's answer: %s", problem)
        raise StripeUnavailable(
            f"Stripe's answer was not a valid {object}: {problem}. Nothing was recorded; "
            "retry with the same Idempotency-Key."
        )
    assert isinstance(data, dict)
    return data


def _problem(data: Any, object: str, prefixes: tuple[str, ...], shape: Shape) -> str | None:
    if not isinstance(data, dict):
        return "it is not a JSON object"
    if contains_secret(data):
        return "it holds something shaped like a secret key"
    if not _is_id(data.get("id"), prefixes):
        return f"'id' is missing or does not start {' or '.join(prefixes)}"
    if data.get("object") != object:
        return f"'object' is not '{object}'"
    if data.get("status") not in shape.statuses:
        return "'status' is missing or unknown"
    for name, check in shape.fields.items():
        why = check(data.get(name))
        if why is not None:
            return f"'{name}' {why}"
    for check_object in _OBJECT_CHECKS.get(object, ()):
        why = check_object(data)
        if why is not None:
            return why
    return None


# --- errors ----------------------------------------------------------------------------------


def error_fields(raw: Mapping[str, Any], names: Collection[str]) -> dict[str, Any]:
    """The fields ``names`` of a Stripe error that are safe to relay, others dropped.

    Codes must look like codes, ``charge`` and ``payment_intent`` like their ids (a
    PaymentIntent object gives its id); ``param`` is redacted and shortened.
    """
    safe: dict[str, Any] = {}
    for name in names:
        value = raw.get(name)
        if name == "payment_intent" and isinstance(value, Mapping):
            value = value.get("id")
        if name == "charge":
            ok = _is_id(value, ("ch_", "py_"))
        elif name == "payment_intent":
            ok = _is_id(value, ("pi_",))
        elif name == "param":
            ok = isinstance(value, str) and bool(value)
            if isinstance(value, str):
                value = redact(value)[:MAX_PARAM_LENGTH]
        else:
            ok = isinstance(value, str) and _CODE.fullmatch(value) is not None
        if ok and not contains_secret(value):
            safe[name] = value
    return safe


def error_message(text: Any, default: str) -> str:
    """A message from a Stripe error, redacted and of bounded length."""
    if not isinstance(text, str) or not text.strip():
        return default
    text = redact(text)
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 1] + "…"
    return text
