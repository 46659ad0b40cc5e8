"""Staff operations on a payment: capture an authorization, cancel it, refund.

Each one asks Stripe (through ``stripe_api``) and returns what
Stripe returned. None of them writes the transaction: Stripe answers an operation with
webhooks (``charge.captured``, ``payment_intent.canceled``, ``charge.refunded`` …), and those
move the transaction's status and amounts, as for a change made in the Dashboard.

Errors: ``OperationRefused`` when the operation cannot
be asked for (an amount out of range, a captured charge to "cancel"), or the
``StripeRequestError`` Stripe's refusal was translated
to; both carry a message fit for staff.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from . import stripe_api
from .exceptions import OperationRefused
from .models import StripeTransaction
from .money import format_amount

#: Reasons Stripe accepts for a refund.
REFUND_REASONS = ("requested_by_customer", "duplicate", "fraudulent")


class Operation(StrEnum):
    CAPTURE = "capture"
    CANCEL = "cancel"
    REFUND = "refund"


def operation_key(operation: Operation, transaction: StripeTransaction, token: str = "") -> str:
    """The ``Idempotency-Key`` of one operation; the same ``token`` (e.g. one per confirmation
    form) makes a repeated submission a replay at Stripe, never a second refund."""
    return f"bridge-{operation}:{transaction.pk}:{token or uuid.uuid4().hex}"[:255]


def on_account(transaction: StripeTransaction) -> str | None:
    """The ``Stripe-Account`` of calls about a payment: its connected account's for a direct
    charge, none for the platform's own and for destination charges (made on the platform)."""
    return transaction.account or None if transaction.direct else None


def capture(
    transaction: StripeTransaction, amount: int | None = None, *, idempotency_key: str = ""
) -> dict[str, Any]:
    """Capture an authorized payment: all of it, or ``amount`` (the rest is then released,
    or refunded under API versions before 2025-03-31). Returns the PaymentIntent or charge."""
    _check_amount(amount, transaction.amount, transaction, "capture", "authorized")
    key = idempotency_key or operation_key(Operation.CAPTURE, transaction)
    if transaction.kind == StripeTransaction.Kind.PAYMENT_INTENT:
        return stripe_api.capture_payment_intent(
            transaction.pk,
            amount=amount,
            idempotency_key=key,
            stripe_account=on_account(transaction),
        )
    return stripe_api.capture_charge(
        transaction.pk, amount=amount, idempotency_key=key, stripe_account=on_account(transaction)
    )


def cancel(transaction: StripeTransaction, *, idempotency_key: str = "") -> dict[str, Any]:
    """Release an authorization that was not captured: cancel the PaymentIntent, or refund
    the uncaptured charge in full (Stripe's way to release a charge). Returns what Stripe
    returned (the PaymentIntent, or the refund)."""
    key = idempotency_key or operation_key(Operation.CANCEL, transaction)
    if transaction.kind == StripeTransaction.Kind.PAYMENT_INTENT:
        return stripe_api.cancel_payment_intent(
            transaction.pk, idempotency_key=key, stripe_account=on_account(transaction)
        )
    charge = stripe_api.retrieve_charge(transaction.pk, stripe_account=on_account(transaction))
    if charge.get("captured") or charge.get("status") != "succeeded":
        raise OperationRefused(
            f"Charge {transaction.pk} is not an authorization waiting for capture "
            f"(status {charge.get('status')}, captured: {bool(charge.get('captured'))}): "
            "only an uncaptured charge can be canceled. Refund a captured one."
        )
    return stripe_api.create_refund(
        charge=transaction.pk, idempotency_key=key, stripe_account=on_account(transaction)
    )


def refund(
    transaction: StripeTransaction,
    amount: int | None = None,
    *,
    reason: str | None = None,
    idempotency_key: str = "",
) -> dict[str, Any]:
    """Refund a payment: what is left of it, or ``amount``. Returns the refund (its
    ``status`` may be ``pending``, and a refund can still fail later)."""
    if reason is not None and reason not in REFUND_REASONS:
        raise OperationRefused(
            f"Unknown refund reason {reason!r}: use one of {', '.join(REFUND_REASONS)}."
        )
    taken = transaction.amount_captured or transaction.amount
    left = None if taken is None else taken - (transaction.amount_refunded or 0)
    _check_amount(amount, left, transaction, "refund", "left to refund")
    key = idempotency_key or operation_key(Operation.REFUND, transaction)
    target = (
        {"payment_intent": transaction.pk}
        if transaction.kind == StripeTransaction.Kind.PAYMENT_INTENT
        else {"charge": transaction.pk}
    )
    return stripe_api.create_refund(
        **target,
        amount=amount,
        reason=reason,
        idempotency_key=key,
        stripe_account=on_account(transaction),
    )


def _check_amount(
    amount: int | None, limit: int | None, transaction: StripeTransaction, verb: str, what: str
) -> None:
    if amount is None:
        return
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise OperationRefused(f"The amount to {verb} must be a positive whole number.")
    if limit is not None and amount > limit:
        currency = transaction.currency or "usd"
        raise OperationRefused(
            f"Cannot {verb} {format_amount(amount, currency)}: only "
            f"{format_amount(max(limit, 0), currency)} is {what} on {transaction.pk}."
        )
