"""The state of a payment: a transaction's Stripe objects folded into one status and amounts.

A transaction (a PaymentIntent, or a charge made without one) is followed through several
Stripe objects: the PaymentIntent, its charges (one per attempt), their refunds and disputes,
and the Checkout Session the PaymentIntent was paid through, if any.
``PaymentState`` keeps the latest known snapshot of each object and derives the
transaction's status and amounts from all of them (docs/models.md has the table).

Stripe delivers webhooks late, twice and in any order. A snapshot replaces an object's
stored one only when it is further along: first by the event's ``created``, then by the
object's own lifecycle order, then by its amounts, and last by its content, so the result is
the same whatever the delivery order, also when many events share one second.

Pure: no Django, no database. Ingest, replay, the create calls and the admin all use it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class Status:
    """Values of ``StripeTransaction.status``."""

    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    EXPIRED = "expired"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    DISPUTED = "disputed"
    DISPUTE_WON = "dispute_won"
    DISPUTE_LOST = "dispute_lost"


#: Every status, in the order of a payment's life.
STATUSES = (
    Status.PENDING,
    Status.REQUIRES_ACTION,
    Status.PROCESSING,
    Status.REQUIRES_CAPTURE,
    Status.FAILED,
    Status.SUCCEEDED,
    Status.CANCELED,
    Status.EXPIRED,
    Status.PARTIALLY_REFUNDED,
    Status.REFUNDED,
    Status.DISPUTED,
    Status.DISPUTE_WON,
    Status.DISPUTE_LOST,
)

#: The objects whose snapshots make up a payment's state.
PAYMENT_OBJECTS = frozenset({"charge", "payment_intent", "refund", "dispute", "checkout.session"})
CHECKOUT_SESSION = "checkout.session"

#: Since this API version a partial capture releases the uncaptured rest; before it, Stripe
#: refunded the rest, so the charge's ``amount_refunded`` counts money never taken.
RELEASE_API_VERSION = "2025-03-31"

# Lifecycle order of each object, for snapshots of one second. A PaymentIntent's failed
# attempt (``requires_payment_method`` with ``last_payment_error``) ranks above
# ``processing`` and ``requires_action``: of a failure and an attempt in the same second
# the failure is read, since a new attempt sends its own outcome later while a failure
# read as "processing" would never be corrected.
_PI_STAGE = {
    "requires_payment_method": 0,
    "requires_confirmation": 1,
    "requires_action": 2,
    "processing": 3,
    # 4: requires_payment_method after a failed attempt
    "requires_capture": 5,
    "succeeded": 6,
    "canceled": 6,
}
_CHARGE_STAGE = {"pending": 0, "failed": 1, "succeeded": 2}  # captured 3, expired/released 4
_REFUND_STAGE = {"pending": 0, "requires_action": 0, "succeeded": 1, "failed": 2, "canceled": 2}
_DISPUTE_STAGE = {
    "warning_needs_response": 0,
    "warning_under_review": 1,
    "needs_response": 2,
    "under_review": 3,
    "won": 4,
    "lost": 4,
    "warning_closed": 4,
    "prevented": 4,
    "charge_refunded": 4,
}

#: Closed disputes in the merchant's favour: won, an inquiry closed without a chargeback,
#: and one prevented before it became a dispute. Any other closed status lost the money.
_DISPUTE_WON = frozenset({"won", "warning_closed", "prevented"})
_DISPUTE_CLOSED = frozenset({"won", "lost", "warning_closed", "prevented", "charge_refunded"})
_REFUND_VOID = frozenset({"failed", "canceled"})

# A Checkout Session's lifecycle: open, then complete (unpaid, then paid or failed) or expired.
_SESSION_STAGE = {"open": 0, "complete": 1, "expired": 2}
#: What a session event says about its object whatever the object's own fields say (Stripe's
#: example event of ``checkout.session.completed`` carries an ``open`` session).
_SESSION_EVENTS = {
    "checkout.session.completed": "complete",
    "checkout.session.async_payment_succeeded": "complete",
    "checkout.session.async_payment_failed": "complete",
    "checkout.session.expired": "expired",
}
# While the session is complete but unpaid, these word of the attempt stand; any other
# (an older "requires_action", say) is read as the debit being processed.
_UNPAID_ATTEMPTS = frozenset(
    {Status.REQUIRES_CAPTURE, Status.FAILED, Status.CANCELED, Status.EXPIRED}
)

# Among a payment's attempts (the PaymentIntent and its charges) that are not final, the
# newest wins; in one second, the one further along (same reasoning as ``_PI_STAGE``).
_ATTEMPT_ORDER = {
    Status.PENDING: 0,
    Status.REQUIRES_ACTION: 1,
    Status.PROCESSING: 2,
    Status.FAILED: 3,
    Status.REQUIRES_CAPTURE: 4,
}
_PI_STATUS = {
    "requires_payment_method": Status.PENDING,
    "requires_confirmation": Status.PENDING,
    "requires_action": Status.REQUIRES_ACTION,
    "processing": Status.PROCESSING,
    "requires_capture": Status.REQUIRES_CAPTURE,
}

#: Objects taken from one embedded list (a charge's ``refunds``, an old PaymentIntent's
#: ``charges``): Stripe embeds at most 10; more is not Stripe, and must not grow the state.
MAX_EMBEDDED = 100

#: The most snapshots of one kind a state keeps (docs/models.md, "Bounds"); other kinds
#: keep ``MAX_KEPT_OTHER``. Beyond, the oldest are let go (by their own ``created``,
#: then id), so that what one transaction stores, and the time each of its events takes,
#: stay bounded whatever its events embed. A charge's ``amount_refunded`` still counts the
#: refunds let go, so the totals stay exact.
MAX_KEPT = {"charge": 100, "refund": 250, "dispute": 20}
MAX_KEPT_OTHER = 20


@dataclass(frozen=True)
class Summary:
    """A transaction's status and amounts, as derived from its objects."""

    status: str | None
    amount: int | None
    amount_captured: int
    amount_refunded: int
    currency: str


class PaymentState:
    """The latest known snapshot of each Stripe object of one transaction.

    Stored as JSON on the transaction (``to_json()``, ``from_json()``); the derived
    status and amounts are ``summary()``.
    """

    def __init__(self, objects: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.objects: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (objects or {}).items()}

    @classmethod
    def from_json(cls, data: Any) -> PaymentState:
        """The state stored by ``to_json()`` (an empty one for anything else)."""
        objects = data.get("objects") if isinstance(data, Mapping) else None
        if not isinstance(objects, Mapping):
            return cls()
        return cls({k: v for k, v in objects.items() if isinstance(v, Mapping) and "key" in v})

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON-serializable dict."""
        return {"objects": self.objects}

    def apply(self, event: Mapping[str, Any]) -> bool:
        """Take in what a Stripe event says; ``True`` when any snapshot moved forward."""
        created = event.get("created")
        data = event.get("data")
        obj = data.get("object") if isinstance(data, Mapping) else None
        if not isinstance(obj, Mapping) or not isinstance(created, int) or created is True:
            return False
        return self.apply_object(
            obj,
            at=created,
            api_version=_text(event.get("api_version")),
            event_type=_text(event.get("type")),
        )

    def apply_object(
        self,
        obj: Mapping[str, Any],
        *,
        at: int,
        api_version: str | None = None,
        event_type: str | None = None,
    ) -> bool:
        """Take in an object as known at time ``at`` (an event's ``created``, or the object's
        own for a create call's answer); ``True`` when any snapshot moved forward."""
        changed: set[str] = set()
        for snapshot in _snapshots(obj, at=at, api_version=api_version, event_type=event_type):
            current = self.objects.get(snapshot["id"])
            if current is None or snapshot["key"] > current["key"]:
                if current is not None and current.get("expired"):
                    snapshot["expired"] = True
                self.objects[snapshot["id"]] = snapshot
                changed.add(snapshot["id"])
            elif snapshot.get("expired") and not current.get("expired"):
                # An expiry never un-happens, whichever snapshot of the charge is newest
                # (before API 2025-03-31 Stripe also refunds the expired authorization).
                current["expired"] = True
                changed.add(snapshot["id"])
        if changed:
            _keep_bounded(self.objects)
        # A snapshot let go at once changed nothing.
        return any(object_id in self.objects for object_id in changed)

    def merge(self, other: PaymentState) -> bool:
        """Take in ``other``'s snapshots (a transaction joining this one); ``True`` when any
        snapshot moved forward."""
        changed = False
        for object_id, snapshot in other.objects.items():
            current = self.objects.get(object_id)
            if current is None or snapshot["key"] > current["key"]:
                self.objects[object_id] = dict(snapshot)
                changed = True
        return changed

    def linked_ids(self) -> tuple[str, str] | None:
        """``(session id, PaymentIntent id)`` when a Checkout Session was paid through a
        PaymentIntent, as its newest snapshot says; else ``None``."""
        sessions = [s for s in self.objects.values() if s["object"] == CHECKOUT_SESSION]
        session = max(sessions, key=lambda s: s["key"], default=None)
        if session is None or not session["payment_intent"]:
            return None
        return session["id"], session["payment_intent"]

    def summary(self) -> Summary:
        """The transaction's status and amounts by the rules in docs/models.md."""
        return _summarize(self.objects.values())

    @property
    def status(self) -> str | None:
        return self.summary().status

    @property
    def amount(self) -> int | None:
        return self.summary().amount

    @property
    def amount_captured(self) -> int:
        return self.summary().amount_captured

    @property
    def amount_refunded(self) -> int:
        return self.summary().amount_refunded

    @property
    def currency(self) -> str:
        return self.summary().currency


def fold(events: Iterable[Mapping[str, Any]]) -> PaymentState:
    """The state of one transaction after all of ``events``, in any order."""
    state = PaymentState()
    for event in events:
        state.apply(event)
    return state


def status_of_event(event: Mapping[str, Any]) -> str | None:
    """The status an event alone tells of its payment (``charge.refunded`` → ``refunded``)."""
    return fold([event]).status


# --- snapshots ---------------------------------------------------------------------------------


def _snapshots(
    obj: Mapping[str, Any], *, at: int, api_version: str | None, event_type: str | None
) -> Iterable[dict[str, Any]]:
    """The snapshots an object holds: itself, and the objects Stripe embedded in it."""
    kind = obj.get("object")
    object_id = _text(obj.get("id"))
    if kind not in PAYMENT_OBJECTS or not object_id:
        return
    if kind == "charge":
        yield _charge(obj, object_id, at, api_version, expired=event_type == "charge.expired")
        for refund in _embedded(obj.get("refunds")):
            yield from _snapshots(refund, at=at, api_version=api_version, event_type=None)
    elif kind == "payment_intent":
        failed = event_type == "payment_intent.payment_failed"
        yield _payment_intent(obj, object_id, at, failed=failed)
        # Before API 2022-11-15 a PaymentIntent embedded its charges.
        for charge in _embedded(obj.get("charges")):
            yield from _snapshots(charge, at=at, api_version=api_version, event_type=None)
    elif kind == "refund":
        yield _refund(obj, object_id, at)
    elif kind == "dispute":
        yield _dispute(obj, object_id, at)
    else:
        yield _checkout_session(obj, object_id, at, event_type=event_type)


def _keep_bounded(objects: dict[str, dict[str, Any]]) -> None:
    """Let go of the oldest snapshots of each kind beyond its bound (``MAX_KEPT``).

    The ones kept are the newest of all ever taken in, whatever the order they came in, so
    the fold still does not depend on delivery order.
    """
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for snapshot in objects.values():
        by_kind.setdefault(snapshot["object"], []).append(snapshot)
    for kind, snapshots in by_kind.items():
        extra = len(snapshots) - MAX_KEPT.get(kind, MAX_KEPT_OTHER)
        if extra > 0:
            snapshots.sort(key=lambda s: (s.get("created") or 0, s["id"]))
            for snapshot in snapshots[:extra]:
                del objects[snapshot["id"]]


def _embedded(value: Any) -> list[Mapping[str, Any]]:
    data = value.get("data") if isinstance(value, Mapping) else None
    if not isinstance(data, list):
        return []
    return [item for item in data[:MAX_EMBEDDED] if isinstance(item, Mapping)]


def _payment_intent(
    obj: Mapping[str, Any], object_id: str, at: int, *, failed: bool
) -> dict[str, Any]:
    status = _text(obj.get("status")) or ""
    failed = status == "requires_payment_method" and (failed or bool(obj.get("last_payment_error")))
    stage = 4 if failed else _PI_STAGE.get(status, -1)
    snapshot: dict[str, Any] = {
        "id": object_id,
        "object": "payment_intent",
        "status": status,
        "failed": failed,
        "amount": _amount(obj.get("amount")),
        "amount_received": _amount(obj.get("amount_received")) or 0,
        "currency": _currency(obj.get("currency")),
    }
    return _keyed(snapshot, at, stage, snapshot["amount_received"])


def _charge(
    obj: Mapping[str, Any], object_id: str, at: int, api_version: str | None, *, expired: bool
) -> dict[str, Any]:
    status = _text(obj.get("status")) or ""
    amount = _amount(obj.get("amount"))
    # Charges from before ``captured`` existed, and fixtures without it, were captured.
    captured = status == "succeeded" and obj.get("captured", True) is not False
    amount_captured = _amount(obj.get("amount_captured"))
    if amount_captured is None:
        amount_captured = (amount or 0) if captured else 0
    amount_refunded = _amount(obj.get("amount_refunded")) or 0
    # An uncaptured charge that was refunded was released (the Charges API's "cancel").
    released = status == "succeeded" and not captured and obj.get("refunded") is True
    if expired or released:
        stage = 4
    elif captured:
        stage = 3
    else:
        stage = _CHARGE_STAGE.get(status, -1)
    snapshot: dict[str, Any] = {
        "id": object_id,
        "object": "charge",
        "status": status,
        "captured": captured,
        "expired": expired,
        "released": released,
        "amount": amount,
        "amount_captured": amount_captured if captured else 0,
        "amount_refunded": amount_refunded,
        "currency": _currency(obj.get("currency")),
        "api_version": (api_version or "")[:10],
    }
    return _keyed(snapshot, at, stage, snapshot["amount_captured"], amount_refunded)


def _refund(obj: Mapping[str, Any], object_id: str, at: int) -> dict[str, Any]:
    status = _text(obj.get("status")) or "succeeded"
    created = obj.get("created")
    snapshot: dict[str, Any] = {
        "id": object_id,
        "object": "refund",
        "status": status,
        "charge": _id_of(obj.get("charge")),
        "amount": _amount(obj.get("amount")) or 0,
        # Unknown: it may have existed before any snapshot of its charge.
        "created": created if _is_int(created) else 0,
    }
    return _keyed(snapshot, at, _REFUND_STAGE.get(status, -1))


def _dispute(obj: Mapping[str, Any], object_id: str, at: int) -> dict[str, Any]:
    status = _text(obj.get("status")) or ""
    snapshot: dict[str, Any] = {"id": object_id, "object": "dispute", "status": status}
    return _keyed(snapshot, at, _DISPUTE_STAGE.get(status, -1))


def _checkout_session(
    obj: Mapping[str, Any], object_id: str, at: int, *, event_type: str | None
) -> dict[str, Any]:
    status = _SESSION_EVENTS.get(event_type or "") or _text(obj.get("status")) or ""
    failed = event_type == "checkout.session.async_payment_failed"
    paid = not failed and (
        event_type == "checkout.session.async_payment_succeeded"
        or obj.get("payment_status") in ("paid", "no_payment_required")
    )
    stage = _SESSION_STAGE.get(status, -1)
    if status == "complete" and (paid or failed):
        stage = 2  # the delayed payment's outcome, after the completion that came unpaid
    snapshot: dict[str, Any] = {
        "id": object_id,
        "object": CHECKOUT_SESSION,
        "status": status,
        "paid": paid,
        "failed": failed,
        "payment_intent": _id_of(obj.get("payment_intent")),
        "amount": _amount(obj.get("amount_total")),
        "currency": _currency(obj.get("currency")),
    }
    return _keyed(snapshot, at, stage)


def _keyed(snapshot: dict[str, Any], at: int, stage: int, *progress: int) -> dict[str, Any]:
    """``snapshot`` with ``at`` and its ordering key: time, lifecycle stage, amounts, content.

    The content digest makes the order total, so the fold does not depend on delivery order.
    """
    snapshot["at"] = at
    digest = hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()[:16]
    snapshot["key"] = [at, stage, *progress, digest]
    return snapshot


# --- the derived status --------------------------------------------------------------------------


def _summarize(snapshots: Iterable[Mapping[str, Any]]) -> Summary:
    by_kind: dict[str, list[Mapping[str, Any]]] = {kind: [] for kind in PAYMENT_OBJECTS}
    for snapshot in snapshots:
        by_kind[snapshot["object"]].append(snapshot)
    intents, charges = by_kind["payment_intent"], by_kind["charge"]
    refunds, disputes = by_kind["refund"], by_kind["dispute"]
    intent = max(intents, key=lambda s: s["key"], default=None)
    latest_charge = max(charges, key=lambda s: s["key"], default=None)
    session = max(by_kind[CHECKOUT_SESSION], key=lambda s: s["key"], default=None)
    source = intent or latest_charge or session or {}

    captured = sum(c["amount_captured"] for c in charges)
    if intent is not None:
        captured = max(captured, intent["amount_received"])
    if session is not None and session["paid"]:
        captured = max(captured, session["amount"] or 0)
    refunded = sum(_refunded_of(c, refunds) for c in charges)
    refunded += _refunds_of_unknown_charges(charges, refunds)
    if charges or intent is not None or session is not None:
        # Nothing beyond what was taken is given back (a released authorization is no refund).
        refunded = min(refunded, captured)

    status = _attempt_status(intent, charges)
    if session is not None:
        status = _with_session(session, status)
    if status is None and (refunds or disputes):
        status = Status.SUCCEEDED  # a refund or a dispute means money was taken
    if status == Status.SUCCEEDED:
        status = _after_success(refunded, captured, disputes)
    return Summary(
        status=status,
        amount=source.get("amount"),
        amount_captured=captured,
        amount_refunded=refunded,
        currency=source.get("currency") or "",
    )


def _attempt_status(
    intent: Mapping[str, Any] | None, charges: list[Mapping[str, Any]]
) -> str | None:
    """Where the payment itself stands, before refunds and disputes."""
    if (intent and intent["status"] == "succeeded") or any(c["captured"] for c in charges):
        return Status.SUCCEEDED
    if any(c["expired"] for c in charges):
        return Status.EXPIRED
    if (intent and intent["status"] == "canceled") or any(c["released"] for c in charges):
        return Status.CANCELED
    # Not final: the newest word of the PaymentIntent and its charges, by time, then order.
    attempts = []
    if intent is not None:
        status = Status.FAILED if intent["failed"] else _PI_STATUS.get(intent["status"])
        if status is not None:
            attempts.append((intent["at"], _ATTEMPT_ORDER[status], status))
    for charge in charges:
        status = {
            "pending": Status.PROCESSING,
            "failed": Status.FAILED,
            "succeeded": Status.REQUIRES_CAPTURE,
        }.get(charge["status"])
        if status is not None:
            attempts.append((charge["at"], _ATTEMPT_ORDER[status], status))
    return max(attempts)[2] if attempts else None


def _with_session(session: Mapping[str, Any], attempt: str | None) -> str:
    """Where a payment made through a Checkout Session stands, before refunds and disputes.

    Money taken (by the session's or the PaymentIntent's word) comes first; then the delayed
    payment's failure, the session's expiry, a completed session still unpaid (the debit
    is processing, unless the attempt says more), and an open session (the customer's
    latest attempt, else pending).
    """
    if attempt == Status.SUCCEEDED or session["paid"]:
        return Status.SUCCEEDED
    if session["failed"]:
        return Status.FAILED
    if session["status"] == "expired":
        return Status.EXPIRED
    if session["status"] == "complete":
        return attempt if attempt in _UNPAID_ATTEMPTS else Status.PROCESSING
    return attempt or Status.PENDING


def _after_success(refunded: int, captured: int, disputes: list[Mapping[str, Any]]) -> str:
    """The status of a payment whose money was taken: disputes first, then refunds."""
    if any(d["status"] not in _DISPUTE_CLOSED for d in disputes):
        return Status.DISPUTED
    closed = max(disputes, key=lambda d: d["key"], default=None)
    if closed is not None:
        return Status.DISPUTE_WON if closed["status"] in _DISPUTE_WON else Status.DISPUTE_LOST
    if refunded <= 0:
        return Status.SUCCEEDED
    return Status.REFUNDED if refunded >= captured else Status.PARTIALLY_REFUNDED


def _refunded_of(charge: Mapping[str, Any], refunds: list[Mapping[str, Any]]) -> int:
    """Money given back to the customer out of what ``charge`` captured.

    Refunds known one by one count while they have not failed or been canceled. The
    charge's own ``amount_refunded`` adds the refunds not known one by one: it counted every
    refund created up to its snapshot that had not failed by then, and, before API
    2025-03-31, the uncaptured rest of a partial capture (no refund to the customer; a
    refund object of exactly that amount, if Stripe sent one, is taken for it). A refund
    that failed in the same second as the snapshot was counted by it only if it fits.
    """
    rest = _released_as_refund(charge)
    own = sorted(
        (r for r in refunds if r["charge"] == charge["id"]), key=lambda r: (r["created"], r["id"])
    )
    if rest:
        rest_refund = next((r for r in own if _live(r) and r["amount"] == rest), None)
        own = [r for r in own if r is not rest_refund]
    live = sum(r["amount"] for r in own if _live(r))
    in_snapshot = max(0, charge["amount_refunded"] - rest)
    at = charge["at"]
    # Certainly in the snapshot: made before it and not failed by then. Made, or failed, in
    # its very second: before it or after, one cannot tell; take the ones that explain most
    # of its sum, so that the fewest refunds are left unseen.
    counted = sum(r["amount"] for r in own if r["created"] < at and (_live(r) or r["at"] > at))
    unsure = [
        r["amount"]
        for r in own
        if (r["created"] == at and (_live(r) or r["at"] >= at))
        or (r["created"] < at and not _live(r) and r["at"] == at)
    ]
    counted += _best_fit(unsure, in_snapshot - counted)
    return live + max(0, in_snapshot - counted)


def _best_fit(amounts: list[int], room: int) -> int:
    """The largest sum of some of ``amounts`` that is at most ``room``.

    Exact for a few amounts; beyond that, largest first (a bound on the work whoever sent
    the events).
    """
    if room <= 0 or not amounts:
        return 0
    if len(amounts) <= 10:
        sums = {0}
        for amount in amounts:
            sums |= {total + amount for total in sums if total + amount <= room}
        return max(sums)
    best = 0
    for amount in sorted(amounts, reverse=True):
        if best + amount <= room:
            best += amount
    return best


def _live(refund: Mapping[str, Any]) -> bool:
    return refund["status"] not in _REFUND_VOID


def _released_as_refund(charge: Mapping[str, Any]) -> int:
    """The uncaptured rest of a partial capture that Stripe refunded (API before 2025-03-31)."""
    amount = charge["amount"]
    if not charge["captured"] or amount is None or charge["amount_captured"] >= amount:
        return 0
    version = charge["api_version"]
    old_api = bool(version) and version < RELEASE_API_VERSION
    # Unknown version: the rest was refunded when the charge reports more than it captured.
    if old_api or (not version and charge["amount_refunded"] > charge["amount_captured"]):
        return amount - charge["amount_captured"]
    return 0


def _refunds_of_unknown_charges(
    charges: list[Mapping[str, Any]], refunds: list[Mapping[str, Any]]
) -> int:
    """Live refunds of charges the state has no snapshot of."""
    known = {c["id"] for c in charges}
    return sum(
        r["amount"] for r in refunds if r["charge"] not in known and r["status"] not in _REFUND_VOID
    )


# --- plumbing ------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _amount(value: Any) -> int | None:
    """``value`` if it is an amount (a non-negative integer that fits a BigIntegerField)."""
    if _is_int(value) and 0 <= value <= 2**63 - 1:
        return value
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _currency(value: Any) -> str:
    return value.lower() if isinstance(value, str) and len(value) == 3 else ""


def _id_of(value: Any) -> str | None:
    """An id from a field that holds either an id or an expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None
