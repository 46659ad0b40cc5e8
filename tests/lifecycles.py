"""A model of Stripe payment lifecycles: the events Stripe sends for one transaction, and
the status and amounts SPEC §3 says the bridge must end with.

Written from Stripe's documented behaviour and SPEC §3, not from the bridge's code, so that
the property tests in ``test_payment_state_lifecycles.py`` check one against the other.
:class:`Payment` is one transaction at Stripe: each method is something that happens to it
(a decline, a capture, a refund that fails, …) and records the events Stripe sends for it,
with objects shaped like Stripe's API objects. :func:`lifecycles` drives it with hypothesis.

Decisions where SPEC §3 is silent (from Stripe's docs; docs/models.md states them too):

1. Authorization expiry. Stripe sends ``charge.expired`` and, for a PaymentIntent,
   ``payment_intent.canceled`` (``cancellation_reason`` ``expired`` since 2025-03-31.basil,
   ``automatic`` before). The status is ``expired``: the more specific fact; ``canceled`` is
   for a cancellation someone asked for.
2. Releasing an authorization. Before 2025-03-31 Stripe released an uncaptured charge by
   refunding it (``charge.refunded`` with ``refunded: true, captured: false``); since then
   a cancellation creates no refund and sends no ``charge.refunded``. Either way a released
   authorization is ``canceled`` with ``amount_refunded`` 0: nothing was captured, so
   nothing went back to the customer. (A Charges-API authorization has no cancel call: it is
   released by a refund; the model does that under the older API versions only.)
3. Partial capture. Before 2025-03-31 the uncaptured remainder was refunded: the charge's
   ``amount_refunded`` includes it (``charge.captured`` and ``charge.refunded`` show it).
   The model sends no ``refund.*`` event for that internal refund. ``amount_refunded`` of
   the transaction never includes the remainder: it is no refund to the customer.
4. ``amount_captured`` is money taken: the captured amount of succeeded charges. A pending
   (asynchronous) charge shows ``captured: true`` at Stripe, but until it succeeds the
   transaction is ``processing`` with ``amount_captured`` 0; a failed one stays at 0.
5. Refunds count while they have not failed or been canceled: a ``pending`` refund counts;
   one that fails after succeeding (``refund.failed``, ``charge.refund.updated``) stops
   counting. Stripe lowers the charge's ``amount_refunded`` then, so later charge snapshots
   show the lower sum.
6. Disputes. Open (``warning_needs_response``, ``warning_under_review``,
   ``needs_response``, ``under_review``) is ``disputed``; ``won`` and ``warning_closed``
   (an inquiry closed without a chargeback) are ``dispute_won``; ``lost`` is
   ``dispute_lost``. An inquiry that escalates (``warning_*`` → ``needs_response``) follows
   the chargeback. The dispute decides the status, open or closed, over any refund status;
   ``amount_refunded`` still reports the refunds. Only a charge not fully refunded is
   disputed, after its refunds.
7. ``pending`` is a PaymentIntent with no attempt yet; once an attempt failed, the
   PaymentIntent waiting for a new one (``requires_payment_method`` with
   ``last_payment_error``) is ``failed``; a later attempt's state replaces it.
9. Checkout (issue 17). A Checkout Session sends no event when made; its PaymentIntent is
   made at the customer's first attempt (``payment_intent.created``) and its attempts go as
   any PaymentIntent's while the session is open (a declined card reads ``failed``). A card
   paid completes it ``paid`` (``checkout.session.completed``): ``succeeded``; an
   authorization only completes it ``unpaid``: ``requires_capture`` and on as any
   authorization. A delayed method completes it ``unpaid`` (``processing``), then
   ``checkout.session.async_payment_succeeded`` (``succeeded``) or ``…_failed``
   (``failed``). An open session that expires (``checkout.session.expired``, its
   PaymentIntent canceled if it had one) is ``expired``. The transaction is the session's
   id (the one a client holds) once a session event names the PaymentIntent.
8. Ties. Events of a lifecycle have non-decreasing ``created`` and most share a second, with
   one exception: a PaymentIntent moving between two of ``requires_action``,
   ``processing`` and failed (``requires_payment_method`` with an error) moves to a later
   second. Stripe's lifecycle loops through those three (a retry goes back to
   ``requires_action``), so within one second nothing tells which came last; every other
   step (an outcome after any of them, a capture, a refund, a dispute) has one order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

#: API versions since 2025-03-31.basil: a partial capture or a cancellation refunds nothing.
NEW_API_VERSIONS = ("2025-03-31.basil", "2025-09-30.clover", "2026-06-24.dahlia")
#: Older versions: the uncaptured remainder (or the whole authorization) is refunded.
OLD_API_VERSIONS = ("2023-10-16", "2024-06-20", "2025-02-24.acacia")

#: PaymentIntent states between which a retry loops (decision 8).
_LOOPING = frozenset({"requires_action", "processing", "failed"})

_OPEN_DISPUTE = frozenset(
    {"warning_needs_response", "warning_under_review", "needs_response", "under_review"}
)


def is_new_api(api_version: str) -> bool:
    """Whether ``api_version`` has 2025-03-31.basil's partial capture and cancellation."""
    return api_version[:10] >= "2025-03-31"


@dataclasses.dataclass(frozen=True)
class Expected:
    """The transaction's final state as SPEC §3 defines it."""

    status: str
    amount: int
    amount_captured: int
    amount_refunded: int
    currency: str


@dataclasses.dataclass(frozen=True)
class Lifecycle:
    """One transaction's events in the order Stripe sent them, and the state to end in."""

    transaction_id: str
    api_version: str
    events: tuple[dict[str, Any], ...]
    expected: Expected
    story: tuple[str, ...]

    def __repr__(self) -> str:
        return f"{self.describe()}\n{self.expected}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints a failing example with this, not field by field.
        printer.text(repr(self))

    def describe(self) -> str:
        """The story and the events, one line each, for a failure message."""
        lines = [f"{self.transaction_id} ({self.api_version}): {' → '.join(self.story)}"]
        lines += [f"  {describe_event(event)}" for event in self.events]
        return "\n".join(lines)


def describe_event(event: dict[str, Any]) -> str:
    """``created id type object-id`` and the fields that matter, on one line."""
    obj = event["data"]["object"]
    fields = {
        "charge": ("status", "captured", "amount_captured", "amount_refunded", "refunded"),
        "payment_intent": ("status", "amount_received"),
        "refund": ("status", "amount"),
        "dispute": ("status", "amount"),
        "checkout.session": ("status", "payment_status", "payment_intent"),
    }[obj["object"]]
    facts = [f"{field}={obj[field]}" for field in fields]
    if obj.get("last_payment_error"):
        facts.append("last_payment_error")
    return f"{event['created']} {event['id']} {event['type']} {obj['id']} {' '.join(facts)}"


@dataclasses.dataclass
class _Charge:
    id: str
    created: int
    status: str = "pending"  # pending | succeeded | failed
    captured: bool = False
    amount_captured: int = 0
    remainder_refunded: int = 0  # the old API's refund of what was not captured
    released: bool = False  # the whole authorization released (old API: refunded)
    expired: bool = False
    declined: str | None = None  # the failure code


@dataclasses.dataclass
class _Refund:
    id: str
    created: int
    amount: int
    status: str  # pending | succeeded | failed | canceled


class Payment:
    """One transaction at Stripe, built step by step; :meth:`lifecycle` is the result.

    ``gap()`` gives the seconds between one event and the next (0 most of the time in the
    property tests; always 0 in the hand-written examples, so everything shares a second).
    """

    def __init__(
        self,
        kind: str,
        *,
        amount: int = 2000,
        currency: str = "usd",
        api_version: str = NEW_API_VERSIONS[0],
        start: int = 1_760_000_000,
        tag: str = "model",
        gap: Callable[[], int] = lambda: 0,
    ) -> None:
        assert kind in ("charge", "payment_intent")
        self.kind = kind
        self.amount = amount
        self.currency = currency
        self.api_version = api_version
        self.new_api = is_new_api(api_version)
        self.now = start
        self.token = tag
        self.gap = gap
        self.events: list[dict[str, Any]] = []
        self.story: list[str] = []
        self._serial = 0
        self.charges: list[_Charge] = []
        self.refunds: list[_Refund] = []
        self.dispute_id: str | None = None
        self.dispute_status: str | None = None
        self.dispute_amount = 0
        self.dispute_created = 0
        # PaymentIntent only
        self.pi_id = self._new_id("pi")
        self.capture_method = "automatic"
        self.pi_status = "requires_payment_method"  # Stripe's status of the PaymentIntent
        self.pi_error: dict[str, Any] | None = None
        self.pi_canceled_reason: str | None = None
        self.pi_created = start
        self._pi_state: str | None = None  # its last snapshot's class (decision 8)
        self.end = "pending"  # what the transaction reads when nothing was captured
        # Checkout only (decision 9)
        self.session_id: str | None = None
        self.session_status = "open"
        self.session_paid = False
        self.session_sent = False  # a session event named the PaymentIntent
        self.has_intent = False

    # ----- what happens to the payment ---------------------------------------------------

    def create(self, *, capture_method: str = "automatic", with_payment_method: bool = False):
        """A PaymentIntent is created (``payment_intent.created``)."""
        assert self.kind == "payment_intent" and not self.events
        self.has_intent = True
        self.capture_method = capture_method
        self.pi_status = (
            "requires_confirmation" if with_payment_method else "requires_payment_method"
        )
        self._say(f"create PaymentIntent ({capture_method} capture)")
        self._send_intent("payment_intent.created", state="created")
        return self

    def require_action(self) -> None:
        """The customer must authenticate (3-D Secure): ``payment_intent.requires_action``."""
        assert self.kind == "payment_intent"
        self._say("3-D Secure asked")
        self.pi_status = "requires_action"
        self._send_intent("payment_intent.requires_action", state="requires_action")
        self.end = "requires_action"

    def fail_authentication(self) -> None:
        """The customer fails 3-D Secure: no charge, ``payment_intent.payment_failed``."""
        assert self.pi_status == "requires_action"
        self._say("3-D Secure failed")
        self._intent_failed(
            {
                "code": "payment_intent_authentication_failure",
                "message": "The provided PaymentMethod has failed authentication.",
                "type": "invalid_request_error",
            }
        )

    def submit(self) -> None:
        """An asynchronous payment method is submitted: ``charge.pending`` (+ PI processing)."""
        charge = self._new_charge()
        # How Stripe shows a pending debit; not money taken yet (decision 4).
        charge.captured, charge.amount_captured = True, self.amount
        self._say("submitted, pending")
        self._send_charge("charge.pending", charge)
        if self.kind == "payment_intent":
            self.pi_status = "processing"
            self._send_intent("payment_intent.processing", state="processing")
        self.end = "processing"

    def decline(self) -> None:
        """The attempt fails: ``charge.failed`` (+ ``payment_intent.payment_failed``)."""
        charge = self._pending_charge() or self._new_charge()
        charge.status, charge.captured, charge.amount_captured = "failed", False, 0
        charge.declined = "card_declined"
        self._say("declined")
        self._send_charge("charge.failed", charge)
        if self.kind == "payment_intent":
            self._intent_failed(
                {
                    "charge": charge.id,
                    "code": "card_declined",
                    "decline_code": "generic_decline",
                    "message": "Your card was declined.",
                    "type": "card_error",
                }
            )
        self.end = "failed"

    def authorize(self) -> None:
        """The attempt succeeds: captured at once, or only authorized (manual capture)."""
        charge = self._pending_charge() or self._new_charge()
        charge.status = "succeeded"
        if self.capture_method == "automatic":
            charge.captured, charge.amount_captured = True, self.amount
            self._say("succeeded")
        else:
            charge.captured, charge.amount_captured = False, 0
            self._say("authorized")
        self._send_charge("charge.succeeded", charge)
        if self.kind == "payment_intent":
            self.pi_error = None
            if charge.captured:
                self.pi_status = "succeeded"
                self._send_intent("payment_intent.succeeded", state="succeeded")
            else:
                self.pi_status = "requires_capture"
                self._send_intent(
                    "payment_intent.amount_capturable_updated", state="requires_capture"
                )
        self.end = "succeeded" if charge.captured else "requires_capture"

    def capture(self, amount: int | None = None) -> None:
        """The authorization is captured, in full or in part (``charge.captured``)."""
        charge = self._uncaptured()
        amount = self.amount if amount is None else amount
        assert 0 < amount <= self.amount
        charge.captured, charge.amount_captured = True, amount
        self._say(f"captured {amount} of {self.amount}")
        if amount < self.amount and not self.new_api:
            charge.remainder_refunded = self.amount - amount
        self._send_charge("charge.captured", charge)
        if charge.remainder_refunded:
            self._send_charge("charge.refunded", charge)
        if self.kind == "payment_intent":
            self.pi_status = "succeeded"
            self._send_intent("payment_intent.succeeded", state="succeeded")
        self.end = "succeeded"

    def cancel(self) -> None:
        """The PaymentIntent is canceled, or a Charges-API authorization released."""
        charge = self._latest_uncaptured()
        if self.kind == "charge":
            assert charge is not None and not self.new_api, "decision 2"
        self._say("canceled")
        if charge is not None and not self.new_api:
            charge.released = True
            self._send_charge("charge.refunded", charge)
        if self.kind == "payment_intent":
            self.pi_status, self.pi_canceled_reason = "canceled", "requested_by_customer"
            self._send_intent("payment_intent.canceled", state="canceled")
        self.end = "canceled"

    def expire(self) -> None:
        """The authorization expires uncaptured: ``charge.expired`` (+ PI canceled)."""
        charge = self._uncaptured()
        charge.expired = True
        charge.released = not self.new_api
        self._say("authorization expired")
        self._send_charge("charge.expired", charge)
        if charge.released:
            self._send_charge("charge.refunded", charge)
        if self.kind == "payment_intent":
            self.pi_status = "canceled"
            self.pi_canceled_reason = "expired" if self.new_api else "automatic"
            self._send_intent("payment_intent.canceled", state="canceled")
        self.end = "expired"

    def refund(self, amount: int, *, status: str = "succeeded") -> str:
        """A refund is created (``refund.created``, ``charge.refunded``); its id."""
        charge = self._captured()
        assert status in ("succeeded", "pending")
        assert 0 < amount <= self.refundable()
        refund = _Refund(self._new_id("re"), self.now, amount, status)
        self.refunds.append(refund)
        self._say(f"refund {amount} ({status})")
        self._send_refund("refund.created", refund)
        self._send_charge("charge.refunded", charge)
        return refund.id

    def settle_refund(self, refund_id: str, status: str) -> None:
        """A refund moves on: succeeds (from pending), fails, or is canceled (from pending)."""
        refund = next(r for r in self.refunds if r.id == refund_id)
        allowed = {"pending": ("succeeded", "failed", "canceled"), "succeeded": ("failed",)}
        assert status in allowed.get(refund.status, ()), (refund.status, status)
        refund.status = status
        self._say(f"refund {refund.amount} {status}")
        if status == "failed":
            self._send_refund("refund.failed", refund)
        self._send_refund("refund.updated", refund)
        self._send_refund("charge.refund.updated", refund)

    def open_dispute(self, *, inquiry: bool = False) -> None:
        """The customer disputes the charge, or its bank asks first (an inquiry)."""
        charge = self._captured()
        assert self.dispute_id is None and self.refundable() > 0
        self.dispute_id, self.dispute_amount = self._new_id("dp"), self.refundable()
        self.dispute_created = self.now
        self._say("inquiry" if inquiry else "dispute")
        self.dispute_status = "warning_needs_response" if inquiry else "needs_response"
        self._send_dispute("charge.dispute.created", charge)
        if not inquiry:
            self._send_dispute("charge.dispute.funds_withdrawn", charge)

    def update_dispute(self, status: str) -> None:
        """Evidence is submitted (``*under_review``), or an inquiry becomes a chargeback."""
        charge = self._captured()
        order = ("warning_needs_response", "warning_under_review", "needs_response")
        order += ("under_review",)
        assert self.dispute_status in order and status in order
        assert order.index(status) > order.index(self.dispute_status)
        escalated = self.dispute_status.startswith("warning_") and not status.startswith("warn")
        self.dispute_status = status
        self._say(f"dispute {status}")
        self._send_dispute("charge.dispute.updated", charge)
        if escalated:
            self._send_dispute("charge.dispute.funds_withdrawn", charge)

    def close_dispute(self, status: str) -> None:
        """The dispute is closed: ``won``, ``lost``, or ``warning_closed`` (an inquiry)."""
        charge = self._captured()
        assert self.dispute_status in _OPEN_DISPUTE
        inquiry = self.dispute_status.startswith("warning_")
        assert status in (("warning_closed",) if inquiry else ("won", "lost"))
        self.dispute_status = status
        self._say(f"dispute {status}")
        self._send_dispute("charge.dispute.closed", charge)
        if status == "won":
            self._send_dispute("charge.dispute.funds_reinstated", charge)

    def open_checkout(self, *, capture_method: str = "automatic") -> Payment:
        """A Checkout Session is made: no event yet (decision 9)."""
        assert self.kind == "payment_intent" and not self.events
        self.session_id = self._new_id("cs")
        self.capture_method = capture_method
        self._say(f"open Checkout Session ({capture_method} capture)")
        return self

    def pay_on_checkout(self) -> None:
        """The customer's first attempt on the page makes the PaymentIntent."""
        assert self.session_id is not None
        if not self.has_intent:
            self.create(capture_method=self.capture_method, with_payment_method=True)

    def complete_checkout(self) -> None:
        """``checkout.session.completed``: paid when the money was taken."""
        self.session_status = "complete"
        self.session_paid = self.pi_status == "succeeded"
        self._say("Checkout completed " + ("paid" if self.session_paid else "unpaid"))
        self._send_session("checkout.session.completed")

    def settle_checkout(self, *, succeeded: bool) -> None:
        """A delayed method settles: the charge's outcome, then the session's event."""
        if succeeded:
            self.authorize()
            self.session_paid = True
            self._send_session("checkout.session.async_payment_succeeded")
        else:
            self.decline()
            self._send_session("checkout.session.async_payment_failed")

    def expire_checkout(self) -> None:
        """An open session expires; its PaymentIntent, if any, is canceled."""
        assert self.session_status == "open"
        if self.has_intent:
            self.pi_status, self.pi_canceled_reason = "canceled", "abandoned"
            self._send_intent("payment_intent.canceled", state="canceled")
        self.session_status = "expired"
        self._say("Checkout expired")
        self._send_session("checkout.session.expired")
        self.end = "expired"

    def _send_session(self, event_type: str) -> None:
        self.session_sent = self.session_sent or self.has_intent
        self._send(event_type, self._session_object())

    def _session_object(self) -> dict[str, Any]:
        return {
            "id": self.session_id,
            "object": "checkout.session",
            "amount_subtotal": self.amount,
            "amount_total": self.amount,
            "cancel_url": "https://shop.example/cart",
            "created": self.pi_created,
            "currency": self.currency,
            "customer_details": {"email": "jo@example.com"},
            "expires_at": self.pi_created + 86_400,
            "livemode": False,
            "metadata": {},
            "mode": "payment",
            "payment_intent": self.pi_id if self.has_intent else None,
            "payment_method_types": ["card", "sepa_debit"],
            "payment_status": "paid" if self.session_paid else "unpaid",
            "status": self.session_status,
            "success_url": "https://shop.example/done?session={CHECKOUT_SESSION_ID}",
            "url": None,
        }

    # ----- the truth -----------------------------------------------------------------------

    @property
    def transaction_id(self) -> str:
        if self.session_id is not None and (self.session_sent or not self.has_intent):
            return self.session_id  # decision 9
        return self.pi_id if self.kind == "payment_intent" else self.charges[0].id

    def amount_captured(self) -> int:
        """Money taken (decision 4)."""
        return sum(c.amount_captured for c in self.charges if c.status == "succeeded")

    def refunded(self) -> int:
        """Refunds to the customer that have not failed or been canceled (decision 5)."""
        return sum(r.amount for r in self.refunds if r.status in ("pending", "succeeded"))

    def refundable(self) -> int:
        return self.amount_captured() - self.refunded()

    def expected(self) -> Expected:
        """The status and amounts SPEC §3 (and the decisions above) give this payment."""
        captured, refunded = self.amount_captured(), self.refunded()
        if self.dispute_status in _OPEN_DISPUTE:
            status = "disputed"
        elif self.dispute_status in ("won", "warning_closed"):
            status = "dispute_won"
        elif self.dispute_status == "lost":
            status = "dispute_lost"
        elif captured and refunded >= captured:
            status = "refunded"
        elif captured and refunded:
            status = "partially_refunded"
        else:
            status = self.end
        return Expected(status, self.amount, captured, refunded, self.currency)

    def lifecycle(self) -> Lifecycle:
        assert self.events, "nothing happened"
        return Lifecycle(
            self.transaction_id,
            self.api_version,
            tuple(self.events),
            self.expected(),
            tuple(self.story),
        )

    # ----- plumbing -------------------------------------------------------------------------

    def _say(self, step: str) -> None:
        self.story.append(step)

    def _new_id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}_{self.token}{self._serial:03d}"

    def _new_charge(self) -> _Charge:
        charge = _Charge(self._new_id("ch"), self.now)
        self.charges.append(charge)
        return charge

    def _pending_charge(self) -> _Charge | None:
        charge = self.charges[-1] if self.charges else None
        return charge if charge is not None and charge.status == "pending" else None

    def _uncaptured(self) -> _Charge:
        charge = self._latest_uncaptured()
        assert charge is not None, "no authorization to capture"
        return charge

    def _latest_uncaptured(self) -> _Charge | None:
        charge = self.charges[-1] if self.charges else None
        if charge is None or charge.status != "succeeded" or charge.captured:
            return None
        if charge.released or charge.expired:
            return None
        return charge

    def _captured(self) -> _Charge:
        charge = self.charges[-1]
        assert charge.status == "succeeded" and charge.captured and charge.amount_captured
        return charge

    def _intent_failed(self, error: dict[str, Any]) -> None:
        self.pi_status = "requires_payment_method"
        self.pi_error = {
            "charge": None,
            "decline_code": None,
            "doc_url": f"https://docs.stripe.com/error-codes/{error['code'].replace('_', '-')}",
            "param": None,
            "payment_method": {"id": self._new_id("pm"), "object": "payment_method"},
            **error,
        }
        self._send_intent("payment_intent.payment_failed", state="failed")
        self.end = "failed"

    def _tick(self, *, strict: bool = False) -> None:
        step = self.gap()
        self.now += max(step, 1) if strict else step

    def _send(self, event_type: str, obj: dict[str, Any], *, strict: bool = False) -> None:
        self._tick(strict=strict)
        self._serial += 1
        self.events.append(
            {
                "id": f"evt_{self.token}{self._serial:03d}",
                "object": "event",
                "api_version": self.api_version,
                "created": self.now,
                "data": {"object": obj},
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": event_type,
            }
        )

    def _send_intent(self, event_type: str, *, state: str) -> None:
        # Decision 8: between looping states, a later second.
        strict = state in _LOOPING and self._pi_state in _LOOPING and state != self._pi_state
        self._pi_state = state
        self._send(event_type, self._intent_object(), strict=strict)

    def _send_charge(self, event_type: str, charge: _Charge) -> None:
        self._send(event_type, self._charge_object(charge))

    def _send_refund(self, event_type: str, refund: _Refund) -> None:
        self._send(event_type, self._refund_object(refund))

    def _send_dispute(self, event_type: str, charge: _Charge) -> None:
        self._send(event_type, self._dispute_object(charge))

    # ----- Stripe's objects (fields as in Stripe's API reference and OpenAPI fixtures) ------

    def _intent_object(self) -> dict[str, Any]:
        succeeded = self.pi_status == "succeeded"
        latest = self.charges[-1] if self.charges else None
        received = latest.amount_captured if succeeded and latest is not None else 0
        return {
            "id": self.pi_id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": self.amount if self.pi_status == "requires_capture" else 0,
            "amount_details": {"tip": {}},
            "amount_received": received,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None,
            "canceled_at": self.now if self.pi_status == "canceled" else None,
            "cancellation_reason": self.pi_canceled_reason,
            "capture_method": self.capture_method,
            "client_secret": f"{self.pi_id}_secret_{self.token}",
            "confirmation_method": "automatic",
            "created": self.pi_created,
            "currency": self.currency,
            "customer": None,
            "description": None,
            "last_payment_error": self.pi_error,
            "latest_charge": latest.id if latest is not None else None,
            "livemode": False,
            "metadata": {},
            "next_action": (
                {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
                if self.pi_status == "requires_action"
                else None
            ),
            "on_behalf_of": None,
            "payment_method": None if self.pi_error else f"pm_{self.token}card",
            "payment_method_configuration_details": None,
            "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            "payment_method_types": ["card"],
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": self.pi_status,
            "transfer_data": None,
            "transfer_group": None,
        }

    def _charge_object(self, charge: _Charge) -> dict[str, Any]:
        succeeded = charge.status == "succeeded"
        live_refunds = self.refunded() if charge is self._last_succeeded() else 0
        amount_refunded = charge.remainder_refunded + live_refunds
        if charge.released:
            amount_refunded = self.amount
        failed = charge.status == "failed"
        return {
            "id": charge.id,
            "object": "charge",
            "amount": self.amount,
            "amount_captured": charge.amount_captured if charge.status != "failed" else 0,
            "amount_refunded": amount_refunded,
            "application": None,
            "application_fee": None,
            "application_fee_amount": None,
            "balance_transaction": f"txn_{charge.id[3:]}" if charge.captured else None,
            "billing_details": {"address": None, "email": None, "name": None, "phone": None},
            "calculated_statement_descriptor": "DJANGO STRIPE BRIDGE",
            "captured": charge.captured,
            "created": charge.created,
            "currency": self.currency,
            "customer": None,
            "description": None,
            "disputed": self.dispute_id is not None,
            "failure_balance_transaction": None,
            "failure_code": charge.declined,
            "failure_message": "Your card was declined." if failed else None,
            "fraud_details": {},
            "livemode": False,
            "metadata": {},
            "on_behalf_of": None,
            "outcome": {
                "network_status": "declined_by_network" if failed else "approved_by_network",
                "reason": "generic_decline" if failed else None,
                "risk_level": "normal",
                "risk_score": 32,
                "seller_message": (
                    "The bank did not return any further details with this decline."
                    if failed
                    else "Payment complete."
                ),
                "type": "issuer_declined" if failed else "authorized",
            },
            "paid": succeeded,
            "payment_intent": self.pi_id if self.kind == "payment_intent" else None,
            "payment_method": f"pm_{self.token}card",
            "payment_method_details": {"card": {"brand": "visa", "last4": "4242"}, "type": "card"},
            "receipt_email": None,
            "receipt_number": None,
            "receipt_url": None,
            "refunded": amount_refunded >= self.amount,
            "review": None,
            "shipping": None,
            "source": None,
            "source_transfer": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": charge.status,
            "transfer_data": None,
            "transfer_group": None,
        }

    def _last_succeeded(self) -> _Charge | None:
        return next((c for c in reversed(self.charges) if c.status == "succeeded"), None)

    def _refund_object(self, refund: _Refund) -> dict[str, Any]:
        charge = self._captured()
        failed = refund.status == "failed"
        return {
            "id": refund.id,
            "object": "refund",
            "amount": refund.amount,
            "balance_transaction": f"txn_{refund.id[3:]}",
            "charge": charge.id,
            "created": refund.created,
            "currency": self.currency,
            "destination_details": {"card": {"type": "refund"}, "type": "card"},
            "failure_balance_transaction": f"txn_{refund.id[3:]}f" if failed else None,
            "failure_reason": "expired_or_canceled_card" if failed else None,
            "metadata": {},
            "payment_intent": self.pi_id if self.kind == "payment_intent" else None,
            "reason": "requested_by_customer",
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": refund.status,
            "transfer_reversal": None,
        }

    def _dispute_object(self, charge: _Charge) -> dict[str, Any]:
        status = self.dispute_status
        assert status is not None and self.dispute_id is not None
        inquiry = status.startswith("warning_")
        return {
            "id": self.dispute_id,
            "object": "dispute",
            "amount": self.dispute_amount,
            "balance_transactions": [],
            "charge": charge.id,
            "created": self.dispute_created,
            "currency": self.currency,
            "evidence": {"customer_name": None, "uncategorized_text": None},
            "evidence_details": {
                "due_by": self.dispute_created + 7 * 86400,
                "has_evidence": status in ("under_review", "warning_under_review"),
                "past_due": False,
                "submission_count": int(status in ("under_review", "warning_under_review")),
            },
            "is_charge_refundable": inquiry,
            "livemode": False,
            "metadata": {},
            "payment_intent": self.pi_id if self.kind == "payment_intent" else None,
            "payment_method_details": {"card": {"brand": "visa"}, "type": "card"},
            "reason": "fraudulent",
            "status": status,
        }


# ----- hypothesis ----------------------------------------------------------------------------

#: Seconds between one event and the next: mostly none, so many share one second.
GAPS = st.sampled_from((0, 0, 0, 0, 0, 1, 2, 90))


@st.composite
def lifecycles(draw: st.DrawFn) -> Lifecycle:
    """A Stripe payment lifecycle: its events and the state it must end in."""
    kind = draw(st.sampled_from(("payment_intent", "charge", "checkout")))
    payment = Payment(
        "payment_intent" if kind == "checkout" else kind,
        amount=draw(st.integers(50, 100_000)),
        currency=draw(st.sampled_from(("usd", "eur", "gbp", "jpy"))),
        api_version=draw(st.sampled_from(NEW_API_VERSIONS + OLD_API_VERSIONS)),
        start=draw(st.integers(1_600_000_000, 1_900_000_000)),
        tag=draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=8)),
        gap=lambda: draw(GAPS),
    )
    if kind == "checkout":
        payment.kind = "payment_intent"
        _checkout(draw, payment)
    elif kind == "payment_intent":
        _attempts_of_an_intent(draw, payment)
    else:
        _attempt_of_a_charge(draw, payment)
    if payment.amount_captured():
        _refunds(draw, payment)
        _dispute(draw, payment)
    return payment.lifecycle()


def _attempts_of_an_intent(draw: st.DrawFn, payment: Payment) -> None:
    payment.create(
        capture_method=draw(st.sampled_from(("automatic", "manual"))),
        with_payment_method=draw(st.booleans()),
    )
    for _ in range(draw(st.sampled_from((0, 0, 1, 2)))):
        how = draw(st.sampled_from(("decline", "action, decline", "action, fail", "async")))
        if how.startswith("action"):
            payment.require_action()
        if how == "action, fail":
            payment.fail_authentication()
        else:
            if how == "async":
                payment.submit()
            payment.decline()
    last = draw(st.sampled_from(("stop", "action", "async", "succeed", "succeed", "cancel")))
    if last in ("action", "succeed") and draw(st.booleans()):
        payment.require_action()
    automatic = payment.capture_method == "automatic"
    if last == "async" or (last == "succeed" and automatic and draw(st.integers(0, 3)) == 0):
        payment.submit()
    if last == "cancel" or (last == "action" and draw(st.booleans())):
        payment.cancel()
    if last == "succeed":
        payment.authorize()
        if payment.capture_method == "manual":
            _after_authorization(draw, payment)


def _checkout(draw: st.DrawFn, payment: Payment) -> None:
    """A Checkout Session's life (decision 9)."""
    payment.open_checkout(capture_method=draw(st.sampled_from(("automatic", "manual"))))
    for _ in range(draw(st.sampled_from((0, 0, 1, 2)))):
        payment.pay_on_checkout()
        how = draw(st.sampled_from(("decline", "action, decline", "action, fail")))
        if how.startswith("action"):
            payment.require_action()
        if how == "action, fail":
            payment.fail_authentication()
        else:
            payment.decline()
    ends = ["expire", "card", "card"]
    ends += ["abandon"] if payment.events else []
    ends += (
        ["delayed", "delayed", "delayed, pending"] if payment.capture_method == "automatic" else []
    )
    end = draw(st.sampled_from(ends))
    if end == "expire":
        payment.expire_checkout()
    elif end == "card":
        payment.pay_on_checkout()
        if draw(st.booleans()):
            payment.require_action()
        payment.authorize()
        payment.complete_checkout()
        if payment.capture_method == "manual":
            _after_authorization(draw, payment)
    elif end.startswith("delayed"):
        payment.pay_on_checkout()
        payment.submit()
        payment.complete_checkout()
        if end == "delayed":
            payment.settle_checkout(succeeded=draw(st.booleans()))


def _attempt_of_a_charge(draw: st.DrawFn, payment: Payment) -> None:
    how = draw(st.sampled_from(("decline", "async", "async, decline", "authorize", "authorize")))
    if how == "authorize":
        payment.capture_method = draw(st.sampled_from(("automatic", "manual")))
    if how.startswith("async"):
        payment.submit()
    if how.endswith("decline"):
        payment.decline()
    elif how == "authorize" or draw(st.booleans()):
        payment.authorize()
        if payment.capture_method == "manual":
            _after_authorization(draw, payment)


def _after_authorization(draw: st.DrawFn, payment: Payment) -> None:
    choices = ["leave", "capture", "capture part", "expire"]
    if payment.kind == "payment_intent" or not payment.new_api:
        choices.append("cancel")
    what = draw(st.sampled_from(choices))
    if what == "capture":
        payment.capture()
    elif what == "capture part":
        payment.capture(draw(st.integers(1, payment.amount - 1)))
    elif what == "expire":
        payment.expire()
    elif what == "cancel":
        payment.cancel()


def _refunds(draw: st.DrawFn, payment: Payment) -> None:
    """Refunds created and settled in any interleaving; some fail or are canceled."""
    for _ in range(draw(st.integers(0, 6))):
        open_refunds = [r for r in payment.refunds if r.status in ("pending", "succeeded")]
        moves = ["refund"] if payment.refundable() else []
        moves += ["settle"] if open_refunds else []
        if not moves:
            return
        if draw(st.sampled_from(moves)) == "refund":
            amount = draw(st.integers(1, payment.refundable()) | st.just(payment.refundable()))
            payment.refund(amount, status=draw(st.sampled_from(("succeeded", "pending"))))
        else:
            refund = draw(st.sampled_from(open_refunds))
            choices = ("failed",) if refund.status == "succeeded" else ("succeeded", "failed")
            choices += ("canceled",) if refund.status == "pending" else ()
            payment.settle_refund(refund.id, draw(st.sampled_from(choices)))


def _dispute(draw: st.DrawFn, payment: Payment) -> None:
    if not payment.refundable() or draw(st.integers(0, 2)):
        return
    inquiry = draw(st.booleans())
    payment.open_dispute(inquiry=inquiry)
    if inquiry and draw(st.booleans()):
        payment.update_dispute("warning_under_review")
    if inquiry and draw(st.integers(0, 2)) == 0:
        payment.update_dispute("needs_response")
        inquiry = False
    if not inquiry and draw(st.booleans()):
        payment.update_dispute("under_review")
    end = draw(st.sampled_from(("open", "closed", "closed", "lost")))
    if end == "closed":
        payment.close_dispute("warning_closed" if inquiry else "won")
    elif end == "lost" and not inquiry:
        payment.close_dispute("lost")
