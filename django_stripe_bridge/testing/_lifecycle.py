"""Capture, release, expiry and refunds as Stripe does them, under the caller's API version.

- Capture (in full or in part) of an authorized charge or PaymentIntent. Since API version
  2025-03-31 the uncaptured remainder is simply released; before, Stripe refunded it: a Refund
  for the remainder, counted in the charge's ``amount_refunded``, and ``charge.refunded``.
- Release of an authorization (canceling its PaymentIntent, or its expiry): since 2025-03-31
  nothing but ``payment_intent.canceled`` / ``charge.expired``; before, a Refund of the whole
  amount, ``refunded: true`` and ``charge.refunded`` as well.
- Refunds count in ``amount_refunded`` while ``pending`` or ``succeeded``; test cards make them
  fail or settle later (``refund.failed``, ``charge.refund.updated``). Since 2024-10-28 the
  ``refund.*`` events are sent for charge refunds too.

Importing this module changes nothing; ``install()`` applies the patches.
"""

from __future__ import annotations

import time
from typing import Any

from localstripe.resources import (
    BalanceTransaction,
    Charge,
    PaymentIntent,
    PaymentMethod,
    Refund,
    try_convert_to_int,
)

from . import _context, _later
from ._cards import CARDS_BY_NUMBER, TestCard
from ._context import REFUND_EVENTS_FOR_ALL_REFUNDS, RELEASE_WITHOUT_REFUND
from ._currencies import format_amount
from ._errors import invalid, unexpected_state
from ._events import emit

_REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
#: Refund statuses whose amount counts as refunded.
_COUNTED = ("pending", "succeeded")


def card_of(charge: Any) -> TestCard | None:
    """The test card a charge was paid with (``None`` for other cards)."""
    try:
        source = PaymentMethod._api_retrieve(charge.payment_method)
    except Exception:
        return None
    return CARDS_BY_NUMBER.get(str(getattr(source, "_card_number", "")))


def _with_version_of(obj: Any) -> None:
    """Act with the API version ``obj`` was made with (for calls that carry none)."""
    version = getattr(obj, "_standin_api_version", None)
    if version:
        _context.current().api_version = version


def _refund_events_for_charges() -> bool:
    return _context.at_least(REFUND_EVENTS_FOR_ALL_REFUNDS)


# --- charge amounts --------------------------------------------------------------------------


def amount_captured(charge: Any) -> int:
    return int(getattr(charge, "_standin_amount_captured", 0) or 0)


def amount_refunded(charge: Any) -> int:
    return sum(r.amount for r in _refunds_of(charge) if r.status in _COUNTED)


def refunded(charge: Any) -> bool:
    """Fully refunded: refunds cover what was taken, or the whole amount when the uncaptured
    part was refunded (API versions before 2025-03-31) rather than released."""
    refunds = [r for r in _refunds_of(charge) if r.status in _COUNTED]
    total = sum(r.amount for r in refunds)
    if total <= 0:
        return False
    remainder_refunded = any(getattr(r, "_standin_remainder", False) for r in refunds)
    return total >= (charge.amount if remainder_refunded else amount_captured(charge))


def _refunds_of(charge: Any) -> list[Any]:
    return list(Refund._api_list_all(f"/v1/charges/{charge.id}/refunds", charge=charge.id)._list)


def refundable(charge: Any) -> int:
    """What may still be refunded: the captured amount less refunds that count."""
    customer_refunds = sum(
        r.amount
        for r in _refunds_of(charge)
        if r.status in _COUNTED and not getattr(r, "_standin_remainder", False)
    )
    return amount_captured(charge) - customer_refunds


# --- capture ---------------------------------------------------------------------------------


def _check_capturable(charge: Any) -> None:
    if getattr(charge, "_standin_expired", False):
        raise invalid(
            f"Charge {charge.id} has expired and can no longer be captured.",
            code="charge_expired_for_capture",
        )
    if charge.status != "succeeded" or charge.captured:
        raise invalid(
            f"Charge {charge.id} has already been captured.", code="charge_already_captured"
        )


def capture(charge: Any, amount: Any, *, param: str = "amount") -> None:
    """Capture ``amount`` (default: all) of an authorized charge and send the events."""
    _check_capturable(charge)
    value = charge.amount if amount is None else try_convert_to_int(amount)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise invalid(f"Invalid positive integer: {amount}", param=param)
    if value > charge.amount:
        raise invalid(
            f"The amount to capture ({format_amount(value, charge.currency)}) is greater than "
            f"the amount authorized ({format_amount(charge.amount, charge.currency)}).",
            code="amount_too_large",
            param=param,
        )
    txn = BalanceTransaction(
        amount=value,
        currency=charge.currency,
        description=charge.description,
        exchange_rate=1.0,
        reporting_category="charge",
        source=charge.id,
        type="charge",
    )
    charge.balance_transaction = txn.id
    charge.captured = True
    charge._standin_amount_captured = value
    remainder = charge.amount - value
    refund = _refund_remainder(charge, remainder) if remainder else None
    emit("charge.captured", charge)
    if refund is not None:
        _refund_events(refund, charge)
    from ._connect import on_captured
    from ._disputes import after_capture

    after_capture(charge)
    on_captured(charge)


def _refund_remainder(charge: Any, amount: int) -> Any:
    """Before 2025-03-31, what is not captured is refunded (``None`` when it is released)."""
    if _context.at_least(RELEASE_WITHOUT_REFUND):
        return None
    _context.current().extras["refund"] = {"remainder": True}
    return Refund(charge=charge.id, amount=amount)


def _refund_events(refund: Any, charge: Any) -> None:
    emit("charge.refunded", charge)
    if _refund_events_for_charges():
        emit("refund.created", refund)


def capture_payment_intent(cls: Any, id: str, amount_to_capture: Any = None, **kwargs: Any) -> Any:
    """``POST /v1/payment_intents/{id}/capture``."""
    from ._lists import unknown_params

    kwargs.pop("final_capture", None)  # one capture per payment here
    unknown_params(kwargs)
    intent = cls._api_retrieve(id)
    if intent.status != "requires_capture":
        raise unexpected_state(
            f"This PaymentIntent could not be captured because it has a status of "
            f"{intent.status}. Only a PaymentIntent with one of the following statuses may be "
            "captured: requires_capture."
        )
    charge = intent.latest_charge
    if amount_to_capture is not None:
        value = try_convert_to_int(amount_to_capture)
        if isinstance(value, int) and value > intent.amount_capturable:
            raise invalid(
                f"The amount_to_capture ({format_amount(value, intent.currency)}) must be less "
                "than or equal to the PaymentIntent's amount_capturable "
                f"({format_amount(intent.amount_capturable, intent.currency)}).",
                code="amount_too_large",
                param="amount_to_capture",
            )
    capture(charge, amount_to_capture, param="amount_to_capture")
    emit("payment_intent.succeeded", intent)
    return intent


def capture_charge(cls: Any, id: str, amount: Any = None, **kwargs: Any) -> Any:
    """``POST /v1/charges/{id}/capture``."""
    from ._lists import unknown_params

    for ignored in ("receipt_email", "statement_descriptor", "statement_descriptor_suffix"):
        kwargs.pop(ignored, None)
    unknown_params(kwargs)
    charge = cls._api_retrieve(id)
    capture(charge, amount)
    if charge.payment_intent:
        intent = PaymentIntent._api_retrieve(charge.payment_intent)
        emit("payment_intent.succeeded", intent)
    return charge


# --- release: cancel and expiry --------------------------------------------------------------


def release(charge: Any) -> Any:
    """An uncaptured charge's authorization goes: before 2025-03-31, as a full refund.
    Returns that refund (``None`` when released without one). Sends no event."""
    charge._standin_amount_captured = 0
    if _context.at_least(RELEASE_WITHOUT_REFUND):
        return None
    _context.current().extras["refund"] = {"remainder": True}
    return Refund(charge=charge.id, amount=charge.amount)


def cancel_uncaptured(intent: Any) -> None:
    """Called when a ``requires_capture`` PaymentIntent is canceled, before its event."""
    charge = intent.latest_charge
    refund = release(charge)
    if refund is not None:
        _refund_events(refund, charge)


def expire(object_id: str) -> Any:
    """Make the authorization of a charge (or of a PaymentIntent's charge) expire now."""
    intent = None
    if object_id.startswith("pi_"):
        intent = PaymentIntent._api_retrieve(object_id)
        charge = intent.latest_charge
        if intent.status != "requires_capture":
            raise unexpected_state(
                f"PaymentIntent {intent.id} has status {intent.status}: only an uncaptured "
                "authorization (requires_capture) can expire."
            )
    else:
        charge = Charge._api_retrieve(object_id)
        if charge.payment_intent:
            intent = PaymentIntent._api_retrieve(charge.payment_intent)
    if charge is None or charge.status != "succeeded" or charge.captured:
        raise invalid(f"Charge {getattr(charge, 'id', object_id)} is not an uncaptured charge.")
    if getattr(charge, "_standin_expired", False):
        raise invalid(f"Charge {charge.id} has already expired.")
    _with_version_of(charge)
    charge._standin_expired = True
    refund = release(charge)
    emit("charge.expired", charge)
    if refund is not None:
        _refund_events(refund, charge)
    if intent is not None:
        intent._canceled = True
        intent.next_action = None
        intent.canceled_at = int(time.time())
        intent.cancellation_reason = (
            "expired" if _context.at_least(RELEASE_WITHOUT_REFUND) else "automatic"
        )
        emit("payment_intent.canceled", intent)
    return charge


# --- refunds ---------------------------------------------------------------------------------


def create_refund(cls: Any, **data: Any) -> Any:
    """``POST /v1/refunds``: checks what Stripe checks, then makes the refund."""
    reason = data.pop("reason", None)
    if reason is not None and reason not in _REFUND_REASONS:
        raise invalid(
            f"Invalid reason: must be one of {', '.join(_REFUND_REASONS)}", param="reason"
        )
    charge = None
    if isinstance(data.get("charge"), str):
        charge = Charge._api_retrieve(data["charge"])
    elif isinstance(data.get("payment_intent"), str):
        intent = PaymentIntent._api_retrieve(data["payment_intent"])
        charge = intent.latest_charge
        if charge is None or charge.status != "succeeded":
            raise invalid(
                f"This PaymentIntent ({intent.id}) does not have a successful charge to refund.",
                param="payment_intent",
            )
        if intent.status == "requires_capture":
            raise unexpected_state(
                f"This PaymentIntent ({intent.id}) has not been captured: cancel it to release "
                "the authorization instead of refunding it."
            )
    if charge is not None and charge.status == "succeeded":
        _check_refundable(charge, data)
    _context.current().extras["refund"] = {"reason": reason}
    return cls(**data)


def _check_refundable(charge: Any, data: dict[str, Any]) -> None:
    from ._disputes import CHARGED_BACK

    dispute = getattr(charge, "_standin_dispute", None)
    if dispute is not None and dispute.status in CHARGED_BACK:
        raise invalid(
            f"Charge {charge.id} has been charged back; cannot issue a refund.",
            code="charge_disputed",
        )
    if not charge.captured:
        # The Charges API releases an authorization by refunding it, in full.
        amount = try_convert_to_int(data.get("amount"))
        if data.get("amount") is not None and amount != charge.amount:
            raise invalid(
                f"Charge {charge.id} is uncaptured: it can only be refunded in full, which "
                "releases the authorization.",
                param="amount",
            )
        if amount_refunded(charge) > 0:
            raise invalid(
                f"Charge {charge.id} has already been refunded.", code="charge_already_refunded"
            )
        data["amount"] = charge.amount
        return
    remaining = refundable(charge)
    if remaining <= 0:
        raise invalid(
            f"Charge {charge.id} has already been refunded.", code="charge_already_refunded"
        )
    amount = try_convert_to_int(data.get("amount"))
    if data.get("amount") is None:
        data["amount"] = remaining
    elif isinstance(amount, int) and amount > remaining:
        raise invalid(
            f"Refund amount ({format_amount(amount, charge.currency)}) is greater than "
            f"unrefunded amount on charge ({format_amount(remaining, charge.currency)})",
            param="amount",
        )


def init_refund(refund: Any) -> None:
    """Finish a new Refund (after localstripe's ``__init__``) and send its events."""
    extras = _context.current().extras.pop("refund", {})
    refund.reason = extras.get("reason")
    refund.failure_reason = None
    refund.failure_balance_transaction = None
    refund._standin_remainder = bool(extras.get("remainder"))
    charge = Charge._api_retrieve(refund.charge)
    if refund.payment_intent is None:
        refund.payment_intent = charge.payment_intent
    if refund._standin_remainder:
        return  # the caller sends the events of a capture or release
    if not charge.captured:  # refunding an uncaptured charge releases it
        charge._standin_amount_captured = 0
        refund._standin_remainder = True
    behaviour = (card_of(charge) or TestCard("", "")).refund
    if behaviour == "pending":
        refund.status = "pending"
        _later.later(lambda: _settle_refund(refund, "succeeded"))
    elif behaviour == "fail":
        _later.later(lambda: _settle_refund(refund, "failed"))
    if _refund_events_for_charges():
        emit("refund.created", refund)
    emit("charge.refunded", charge)


def _settle_refund(refund: Any, status: str) -> None:
    if refund.status not in ("pending", "succeeded") or refund.status == status:
        return
    refund.status = status
    if status == "failed":
        refund.failure_reason = "expired_or_canceled_card"
        txn = BalanceTransaction(
            amount=refund.amount,
            currency=refund.currency,
            description="REFUND FAILURE",
            exchange_rate=1.0,
            reporting_category="refund",
            source=refund.id,
            type="refund",
        )
        txn.type = "refund_failure"
        txn.reporting_category = "refund_failure"
        refund.failure_balance_transaction = txn.id
    emit("charge.refund.updated", refund)
    if _refund_events_for_charges():
        emit("refund.updated", refund)
        if status == "failed":
            emit("refund.failed", refund)
