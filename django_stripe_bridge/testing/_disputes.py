"""Disputes and inquiries, as Stripe's test mode makes them.

A charge paid with a dispute test card (``pm_card_createDispute``,
``pm_card_createDisputeProductNotReceived``, ``pm_card_createDisputeInquiry`` and their
``tok_`` tokens) is disputed shortly after it is captured:

- a chargeback opens ``needs_response`` (``case_type: chargeback``): ``charge.dispute.created``
  then ``charge.dispute.funds_withdrawn`` (one balance transaction of ``-amount``);
- an inquiry opens ``warning_needs_response`` (``case_type: inquiry``, nothing withdrawn, the
  charge stays refundable): ``charge.dispute.created``.

Answering it (``POST /v1/disputes/{id}``, ``evidence[uncategorized_text]``) with Stripe's test
values decides it: ``winning_evidence`` → ``under_review`` then ``won`` (funds reinstated), or
for an inquiry ``warning_under_review`` then ``warning_closed``; ``losing_evidence`` →
``lost`` (an inquiry closes ``warning_closed``); ``escalate_inquiry_evidence`` turns an inquiry
into a chargeback (``needs_response``, funds withdrawn). ``POST /v1/disputes/{id}/close``
accepts it: ``lost`` (an inquiry: ``warning_closed``).
"""

from __future__ import annotations

import datetime
from typing import Any

from localstripe.resources import BalanceTransaction, StripeObject, try_convert_to_bool

from . import _later
from ._errors import invalid
from ._events import emit
from ._lists import list_page, unknown_params

#: Every field of a dispute's ``evidence`` hash.
EVIDENCE_FIELDS = (
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
)
OPEN = ("needs_response", "warning_needs_response")
UNDER_REVIEW = ("under_review", "warning_under_review")
#: Statuses in which the disputed charge cannot be refunded (a chargeback took the money).
CHARGED_BACK = ("needs_response", "under_review", "lost")
#: Visa reason codes for the reasons our test cards produce.
_NETWORK_REASON = {"fraudulent": "10.4", "product_not_received": "13.1"}
#: What a dispute fee costs in test mode (Stripe's US fee).
DISPUTE_FEE = 1500


class Dispute(StripeObject):
    """A dispute (``dp_…``) on a captured charge."""

    object = "dispute"
    _id_prefix = "dp_"

    def __init__(self, charge: Any, reason: str, inquiry: bool) -> None:
        super().__init__()
        card = (charge.payment_method_details or {}).get("card") or {}
        self.amount = charge.amount_captured
        self.balance_transactions: list[dict[str, Any]] = []
        self.charge = charge.id
        self.currency = charge.currency
        self.evidence: dict[str, Any] = dict.fromkeys(EVIDENCE_FIELDS)
        due = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=7)
        self.evidence_details = {
            "due_by": int(due.timestamp()),
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        }
        self.is_charge_refundable = inquiry
        self.metadata: dict[str, str] = {}
        self.payment_intent = charge.payment_intent
        self.payment_method_details = {
            "card": {
                "brand": card.get("brand", "visa"),
                "case_type": "inquiry" if inquiry else "chargeback",
                "network_reason_code": _NETWORK_REASON.get(reason, "10.4") if not inquiry else "10",
            },
            "type": "card",
        }
        self.reason = reason
        self.status = "warning_needs_response" if inquiry else "needs_response"
        self._standin_outcome: str | None = None

    @property
    def _inquiry(self) -> bool:
        return self.status.startswith("warning_")


def after_capture(charge: Any) -> None:
    """Queue the dispute a dispute test card's captured charge receives."""
    from ._lifecycle import card_of

    card = card_of(charge)
    if card is not None and card.dispute:
        reason, inquiry = card.dispute, card.inquiry
        _later.later(lambda: _open(charge, reason, inquiry))


def _open(charge: Any, reason: str, inquiry: bool) -> None:
    dispute = Dispute(charge, reason, inquiry)
    charge.disputed = True
    charge._standin_dispute = dispute
    emit("charge.dispute.created", dispute)
    if not inquiry:
        _withdraw(dispute)


def _balance(dispute: Any, amount: int, fee: int, description: str) -> None:
    txn = BalanceTransaction(
        amount=amount,
        currency=dispute.currency,
        description=description,
        exchange_rate=1.0,
        reporting_category="charge",
        source=dispute.charge,
        type="charge",
    )
    txn.type = "adjustment"
    txn.reporting_category = "dispute" if amount < 0 else "dispute_reversal"
    txn.source = dispute.id
    txn.fee = fee
    fee_detail = {"amount": fee, "currency": dispute.currency, "type": "stripe_fee"}
    txn.fee_details = [{**fee_detail, "description": "Dispute fee"}] if fee else []
    dispute.balance_transactions.append(txn._export())


def _withdraw(dispute: Any) -> None:
    _balance(dispute, -dispute.amount, DISPUTE_FEE, f"Chargeback withdrawal for {dispute.charge}")
    emit("charge.dispute.funds_withdrawn", dispute)


# --- the API ---------------------------------------------------------------------------------


def _retrieve(id: str) -> Any:
    return Dispute._api_retrieve(id)


def retrieve_dispute(id: str, **kwargs: Any) -> Any:
    """``GET /v1/disputes/{id}``."""
    unknown_params(kwargs)
    return _retrieve(id)


def list_disputes(**params: Any) -> Any:
    """``GET /v1/disputes``, newest first, filtered by ``charge``/``payment_intent``."""
    return list_page("dispute", "/v1/disputes", params, filters=("charge", "payment_intent"))


def update_dispute(
    id: str, evidence: Any = None, metadata: Any = None, submit: Any = None, **kwargs: Any
) -> Any:
    """``POST /v1/disputes/{id}``: store evidence and (unless ``submit=false``) submit it."""
    unknown_params(kwargs)
    dispute = _retrieve(id)
    submit_now = try_convert_to_bool(submit) if submit is not None else True
    if not isinstance(submit_now, bool):
        raise invalid(f"Invalid boolean: {submit}", param="submit")
    if evidence is not None:
        if not isinstance(evidence, dict):
            raise invalid("Invalid hash", param="evidence")
        for key in evidence:
            if key not in EVIDENCE_FIELDS:
                raise invalid(
                    f"Received unknown parameter: evidence[{key}]",
                    code="parameter_unknown",
                    param=f"evidence[{key}]",
                )
    if dispute.status not in OPEN:
        raise invalid(
            f"This dispute ({dispute.id}) has status {dispute.status}: evidence can only be "
            "given while it needs a response.",
        )
    if isinstance(metadata, dict):
        dispute.metadata.update(metadata)
    if evidence:
        dispute.evidence.update(evidence)
        dispute.evidence_details["has_evidence"] = True
    if submit_now:
        dispute.evidence_details["submission_count"] += 1
        dispute.status = "warning_under_review" if dispute._inquiry else "under_review"
        outcome = str(dispute.evidence.get("uncategorized_text") or "").strip()
        if outcome in ("winning_evidence", "losing_evidence", "escalate_inquiry_evidence"):
            _later.later(lambda: _decide(dispute, outcome))
    emit("charge.dispute.updated", dispute)
    return dispute


def _decide(dispute: Any, outcome: str) -> None:
    inquiry = dispute.status == "warning_under_review"
    if inquiry and outcome == "escalate_inquiry_evidence":
        dispute.status = "needs_response"
        dispute.is_charge_refundable = False
        dispute.payment_method_details["card"]["case_type"] = "chargeback"
        dispute.evidence_details["submission_count"] = 0
        emit("charge.dispute.updated", dispute)
        _withdraw(dispute)
        return
    if inquiry:
        _close(dispute, "warning_closed")
    elif outcome == "winning_evidence":
        _close(dispute, "won")
        _balance(dispute, dispute.amount, 0, f"Chargeback reversal for {dispute.charge}")
        emit("charge.dispute.funds_reinstated", dispute)
    elif outcome == "losing_evidence":
        _close(dispute, "lost")


def _close(dispute: Any, status: str) -> None:
    dispute.status = status
    emit("charge.dispute.closed", dispute)


def close_dispute(id: str, **kwargs: Any) -> Any:
    """``POST /v1/disputes/{id}/close``: accept the dispute (lost; an inquiry just closes)."""
    unknown_params(kwargs)
    dispute = _retrieve(id)
    if dispute.status not in OPEN:
        raise invalid(
            f"This dispute ({dispute.id}) has status {dispute.status}: only a dispute that "
            "needs a response can be closed."
        )
    _close(dispute, "warning_closed" if dispute._inquiry else "lost")
    return dispute


def routes() -> list[tuple[str, str, Any]]:
    """Routes to add to localstripe's ``extra_apis`` (before its server module loads)."""
    return [
        ("GET", "/v1/disputes", list_disputes),
        ("GET", "/v1/disputes/{id}", retrieve_dispute),
        ("POST", "/v1/disputes/{id}", update_dispute),
        ("POST", "/v1/disputes/{id}/close", close_dispute),
    ]
