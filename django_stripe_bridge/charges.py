"""Charging through Stripe: the service functions behind ``POST charge``, ``payment-intents``
and ``checkout-sessions``.

The views call these; these call ``stripe_api`` and record the
``StripeTransaction`` that later webhooks update. A webhook
may land before the create call returns: the row is then completed, never rolled back.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from .conf import bridge_settings
from .connect import ConnectCharge
from .events import transaction_id_of
from .exceptions import StripeCardError, StripeInvalidRequest
from .idempotency import scoped_idempotency_key
from .ingest import send_status_changed
from .models import StripeTransaction
from .stripe_api import api_version as stripe_api_version
from .stripe_api import confirm_payment_intent as _confirm_payment_intent
from .stripe_api import create_charge as _create_charge
from .stripe_api import create_checkout_session as _create_checkout_session
from .stripe_api import create_payment_intent as _create_payment_intent

__all__ = [
    "CheckoutItem",
    "confirm_idempotency_key",
    "create_charge",
    "create_checkout_session",
    "create_payment_intent",
    "new_idempotency_key",
    "record_transaction",
    "scoped_idempotency_key",
]

#: Stripe's parameter names → the bridge's, for errors that name a parameter. ``id`` is what
#: Stripe blames when an object named in the request does not exist ("No such token").
_CHARGE_PARAMS = {"source": "token", "card": "token", "id": "token"}
_PAYMENT_INTENT_PARAMS = {"id": "payment_method"}
_CHECKOUT_PARAMS = {
    "payment_intent_data[capture_method]": "capture_method",
    "line_items[0][price_data][unit_amount]": "amount",
    "line_items[0][price_data][currency]": "currency",
    "line_items[0][price_data][product_data][name]": "name",
}


def new_idempotency_key() -> str:
    """A fresh key for a create call whose client sent none."""
    return str(uuid.uuid4())


def confirm_idempotency_key(idempotency_key: str) -> str:
    """The key for confirming the PaymentIntent created with ``idempotency_key``.

    Stripe refuses one key on two endpoints; deriving the second keeps a retry of the whole
    request (same key) a replay of both calls.
    """
    derived = f"{idempotency_key}:confirm"
    if len(derived) <= 255:
        return derived
    return "confirm:" + hashlib.sha256(idempotency_key.encode()).hexdigest()


def create_charge(
    *,
    token: str,
    amount: int,
    currency: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, str] | None = None,
    receipt_email: str | None = None,
    idempotency_key: str | None = None,
    user: Any = None,
    connect: ConnectCharge | None = None,
) -> dict[str, Any]:
    """Charge ``token`` and return Stripe's charge object; record its transaction.

    ``connect`` (decided by ``decide()``, never by the
    client) makes it a direct or destination charge for a connected account.

    Raises a ``StripeRequestError``; for a decline
    (``StripeCardError``) the failed charge is recorded
    too, so its id can still be followed.
    """
    key = idempotency_key or new_idempotency_key()
    currency = (currency or bridge_settings.DEFAULT_CURRENCY).lower()
    params: dict[str, Any] = {"amount": amount, "currency": currency, "source": token}
    params.update(_present(description=description, metadata=metadata, receipt_email=receipt_email))
    params.update(connect.params() if connect else {})
    on_account = connect.stripe_account if connect else None
    try:
        charge = _create_charge(params, idempotency_key=key, stripe_account=on_account)
    except StripeCardError as exc:
        charge_id = exc.error.get("charge")
        if isinstance(charge_id, str) and charge_id:
            failed = {
                "id": charge_id,
                "object": "charge",
                "status": "failed",
                "amount": amount,
                "currency": currency,
                "payment_intent": exc.error.get("payment_intent"),
                "livemode": _livemode(),
            }
            record_transaction(failed, user=user, idempotency_key=key, connect=connect)
        raise
    except StripeInvalidRequest as exc:
        _rename_param(exc, _CHARGE_PARAMS)
        raise
    record_transaction(charge, user=user, idempotency_key=key, connect=connect)
    return charge


def create_payment_intent(
    *,
    amount: int,
    currency: str | None = None,
    payment_method: str | None = None,
    confirm: bool = False,
    capture_method: str = "automatic",
    description: str | None = None,
    metadata: Mapping[str, str] | None = None,
    idempotency_key: str | None = None,
    user: Any = None,
    connect: ConnectCharge | None = None,
) -> dict[str, Any]:
    """Create a PaymentIntent (and confirm it when ``confirm``); record its transaction.

    ``connect`` makes it a payment for a connected account, as in ``create_charge()``.

    ``capture_method="manual"`` only authorizes the amount (status ``requires_capture``);
    ``"automatic"`` is Stripe's default and is not sent.

    The PaymentIntent is created first and confirmed in a second call, so its transaction is
    recorded before any money moves and a decline still names it
    (``error["payment_intent"]``).
    """
    key = idempotency_key or new_idempotency_key()
    currency = (currency or bridge_settings.DEFAULT_CURRENCY).lower()
    params: dict[str, Any] = {"amount": amount, "currency": currency}
    if capture_method != "automatic":
        params["capture_method"] = capture_method
    params.update(
        _present(payment_method=payment_method, description=description, metadata=metadata)
    )
    params.update(connect.params() if connect else {})
    on_account = connect.stripe_account if connect else None
    try:
        intent = _create_payment_intent(params, idempotency_key=key, stripe_account=on_account)
    except StripeInvalidRequest as exc:
        _rename_param(exc, _PAYMENT_INTENT_PARAMS)
        raise
    record_transaction(intent, user=user, idempotency_key=key, connect=connect)
    if not confirm:
        return intent
    try:
        intent = _confirm_payment_intent(
            intent["id"], idempotency_key=confirm_idempotency_key(key), stripe_account=on_account
        )
    except StripeCardError as exc:
        if not exc.error.get("payment_intent"):
            exc.error["payment_intent"] = intent["id"]
        # The attempt failed: the PaymentIntent is back at requires_payment_method.
        failed = {**intent, "status": "requires_payment_method", "last_payment_error": exc.error}
        record_transaction(failed, user=user, idempotency_key=key, connect=connect)
        raise
    record_transaction(intent, user=user, idempotency_key=key, connect=connect)
    return intent


@dataclass(frozen=True)
class CheckoutItem:
    """One line of a Checkout Session: a Stripe Price and how many."""

    price: str
    quantity: int = 1


def create_checkout_session(
    *,
    success_url: str,
    cancel_url: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
    name: str | None = None,
    line_items: Sequence[CheckoutItem] = (),
    customer_email: str | None = None,
    metadata: Mapping[str, str] | None = None,
    capture_method: str = "automatic",
    payment_method_types: Sequence[str] | None = None,
    idempotency_key: str | None = None,
    user: Any = None,
    connect: ConnectCharge | None = None,
) -> dict[str, Any]:
    """Create a Checkout Session in payment mode and record its transaction (``cs_…``).

    Either ``amount`` (with ``name``, the product shown on the page) or ``line_items``.
    The session's PaymentIntent joins the transaction when the customer pays: its webhooks
    name it (docs/models.md, "Checkout Sessions").

    ``connect`` makes it a payment for a connected account, as in ``create_charge()``: a
    direct charge creates the session on the account (``Stripe-Account``); a destination
    charge's parameters go to the PaymentIntent the session makes (``payment_intent_data``).
    """
    key = idempotency_key or new_idempotency_key()
    params: dict[str, Any] = {"mode": "payment", "success_url": success_url}
    if line_items:
        params["line_items"] = [{"price": i.price, "quantity": i.quantity} for i in line_items]
    else:
        params["line_items"] = [
            {
                "price_data": {
                    "currency": (currency or bridge_settings.DEFAULT_CURRENCY).lower(),
                    "unit_amount": amount,
                    "product_data": {"name": name},
                },
                "quantity": 1,
            }
        ]
    intent_data: dict[str, Any] = {}
    if capture_method != "automatic":
        intent_data["capture_method"] = capture_method
    if metadata:
        intent_data["metadata"] = dict(metadata)  # on the payment too, for the Dashboard
    intent_data.update(connect.params() if connect else {})
    params.update(
        _present(
            cancel_url=cancel_url,
            customer_email=customer_email,
            metadata=metadata,
            payment_intent_data=intent_data,
            payment_method_types=list(payment_method_types or []) or None,
        )
    )
    on_account = connect.stripe_account if connect else None
    try:
        session = _create_checkout_session(params, idempotency_key=key, stripe_account=on_account)
    except StripeInvalidRequest as exc:
        _rename_param(exc, _CHECKOUT_PARAMS)
        raise
    record_transaction(session, user=user, idempotency_key=key, connect=connect)
    return session


def record_transaction(
    obj: Mapping[str, Any],
    *,
    user: Any = None,
    idempotency_key: str = "",
    connect: ConnectCharge | None = None,
) -> StripeTransaction:
    """Create or complete the transaction of a charge, PaymentIntent or Checkout Session a
    create call returned.

    The object is folded into the transaction's state like an event created at the object's
    own ``created`` time (``payment_state``): safe against a webhook
    for the same transaction handled at the same moment (the row is locked), and never rolls
    back what a webhook already set. A change of status sends ``transaction_status_changed``
    (with ``event=None``) after the commit. ``connect`` records the connected account the
    server decided the payment is for.
    """
    if obj.get("object") == "checkout.session":
        tx_id = str(obj["id"])  # the id its client holds, linked or not
    else:
        tx_id = transaction_id_of({"data": {"object": obj}})
    created = obj.get("created")
    at = created if isinstance(created, int) and not isinstance(created, bool) else 0
    with transaction.atomic():
        account = connect.account if connect else ""
        tx = StripeTransaction.objects.lock(
            tx_id, livemode=obj.get("livemode") is True, account=account
        )
        changed: list[str] = []
        if connect is not None and not tx.account:
            tx.account = connect.account
            changed.append("account")
        if connect is not None and connect.stripe_account and not tx.direct:
            tx.direct = True
            changed.append("direct")
        if user is not None and getattr(user, "is_authenticated", False) and tx.user_id is None:
            tx.user = user
            changed.append("user")
        if idempotency_key and not tx.idempotency_key:
            tx.idempotency_key = idempotency_key[:255]
            changed.append("idempotency_key")
        old_status = tx.status or None
        state = tx.payment_state()
        # A linked session's state is on its PaymentIntent's row, further along than this.
        if tx.holds_state and state.apply_object(obj, at=at, api_version=stripe_api_version()):
            changed += tx.take_state(state)
        if changed:
            tx.save(update_fields=[*changed, "updated_at"])
        if "status" in changed:
            # No event made this change: receivers get ``event=None`` (docs/operations.md).
            transaction.on_commit(lambda: send_status_changed(tx, old_status, None))
    return tx


# --- plumbing --------------------------------------------------------------------------------


def _present(**params: Any) -> dict[str, Any]:
    """The parameters that were given (not ``None``, not empty)."""
    return {name: value for name, value in params.items() if value not in (None, "", {})}


def _livemode() -> bool:
    return "_live_" in str(bridge_settings.API_KEY or "")


def _rename_param(exc: StripeInvalidRequest, names: Mapping[str, str]) -> None:
    param = exc.error.get("param")
    if isinstance(param, str) and param in names:
        exc.error["param"] = names[param]
