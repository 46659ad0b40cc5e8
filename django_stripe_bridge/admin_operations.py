"""Admin actions for staff operations on a transaction: capture, cancel, refund.

Each action shows a confirmation page for one transaction (with an amount for a partial
capture or refund), then calls ``operations``. The page never
changes the transaction: Stripe's webhooks do. Staff need the "Can change Stripe
transaction" permission (superusers have it).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import operations
from .exceptions import OperationRefused, StripeRequestError
from .models import StripeTransaction
from .money import format_amount, parse_amount
from .operations import Operation

_TOKEN = re.compile(r"^[0-9a-f]{32}$")

_TITLES = {
    Operation.CAPTURE: gettext_lazy("Capture a payment"),
    Operation.CANCEL: gettext_lazy("Cancel an authorization"),
    Operation.REFUND: gettext_lazy("Refund a payment"),
}


class OperationForm(forms.Form):
    """What staff confirm: an optional amount (capture, refund), a refund reason, and a token
    that makes a repeated submission of the same page one operation at Stripe."""

    amount = forms.CharField(
        label=gettext_lazy("Amount"),
        required=False,
        max_length=32,
        help_text=gettext_lazy("Leave empty for the whole amount. Example: 12.50"),
    )
    reason = forms.ChoiceField(
        label=gettext_lazy("Reason"),
        required=False,
        choices=[("", "—"), *((reason, reason) for reason in operations.REFUND_REASONS)],
    )
    token = forms.CharField(widget=forms.HiddenInput)

    def __init__(
        self, operation: Operation, transaction: StripeTransaction, data: Any = None
    ) -> None:
        super().__init__(data, initial={"token": uuid.uuid4().hex})
        self.operation = operation
        self.transaction = transaction
        if operation == Operation.CANCEL:
            del self.fields["amount"]
        if operation != Operation.REFUND:
            del self.fields["reason"]

    def clean_amount(self) -> int | None:
        text = self.cleaned_data.get("amount", "").strip()
        if not text:
            return None
        try:
            return parse_amount(text, self.transaction.currency or "usd")
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_token(self) -> str:
        token = self.cleaned_data["token"]
        if not _TOKEN.match(token):
            raise forms.ValidationError(_("The form is out of date: open it again."))
        return str(token)


class PaymentOperationsMixin:
    """Actions on a ``ModelAdmin`` of ``StripeTransaction``."""

    operation_template = "admin/django_stripe_bridge/stripetransaction/payment_operation.html"

    def has_payment_operations_permission(self, request: HttpRequest) -> bool:
        opts = StripeTransaction._meta
        return bool(request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}"))

    @admin.action(
        description=gettext_lazy("Capture the authorization…"),
        permissions=["payment_operations"],
    )
    def capture_payment(
        self, request: HttpRequest, queryset: QuerySet[StripeTransaction]
    ) -> TemplateResponse | None:
        return self._operate(request, queryset, Operation.CAPTURE)

    @admin.action(
        description=gettext_lazy("Cancel the authorization…"),
        permissions=["payment_operations"],
    )
    def cancel_authorization(
        self, request: HttpRequest, queryset: QuerySet[StripeTransaction]
    ) -> TemplateResponse | None:
        return self._operate(request, queryset, Operation.CANCEL)

    @admin.action(description=gettext_lazy("Refund…"), permissions=["payment_operations"])
    def refund_payment(
        self, request: HttpRequest, queryset: QuerySet[StripeTransaction]
    ) -> TemplateResponse | None:
        return self._operate(request, queryset, Operation.REFUND)

    # --- plumbing ---------------------------------------------------------------------------

    def _operate(
        self, request: HttpRequest, queryset: QuerySet[StripeTransaction], operation: Operation
    ) -> TemplateResponse | None:
        selected = list(queryset[:2])
        if len(selected) != 1:
            self.message_user(  # type: ignore[attr-defined]
                request,
                _("Select exactly one transaction for this operation."),
                messages.ERROR,
            )
            return None
        transaction = selected[0]
        confirmed = "confirm" in request.POST
        form = OperationForm(operation, transaction, request.POST if confirmed else None)
        if confirmed:
            if form.is_valid():
                done = self._run(request, form)
                if done:
                    return None  # back to the list, with the message
            else:
                errors = "; ".join(
                    f"{form.fields[name].label if name in form.fields else name}: {error}"
                    for name, field_errors in form.errors.items()
                    for error in field_errors
                )
                self.message_user(  # type: ignore[attr-defined]
                    request, not_sent(operation, transaction, errors), messages.ERROR
                )
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "title": _TITLES[operation],
            "opts": StripeTransaction._meta,
            "transaction": transaction,
            "amount_display": format_amount(transaction.amount, transaction.currency),
            "refunded_display": format_amount(transaction.amount_refunded, transaction.currency),
            "operation": operation.value,
            "form": form,
            "action": request.POST.get("action", ""),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, self.operation_template, context)

    def _run(self, request: HttpRequest, form: OperationForm) -> bool:
        transaction, operation = form.transaction, form.operation
        amount = form.cleaned_data.get("amount")
        key = operations.operation_key(operation, transaction, form.cleaned_data["token"])
        try:
            if operation == Operation.CAPTURE:
                result = operations.capture(transaction, amount, idempotency_key=key)
            elif operation == Operation.CANCEL:
                result = operations.cancel(transaction, idempotency_key=key)
            else:
                reason = form.cleaned_data.get("reason") or None
                result = operations.refund(transaction, amount, reason=reason, idempotency_key=key)
        except OperationRefused as exc:
            self.message_user(  # type: ignore[attr-defined]
                request, not_sent(operation, transaction, str(exc)), messages.ERROR
            )
            return False
        except StripeRequestError as exc:
            self.message_user(  # type: ignore[attr-defined]
                request, stripe_refused(operation, transaction, exc), messages.ERROR
            )
            return False
        shown = format_amount(amount, transaction.currency) if amount is not None else _("in full")
        self.message_user(  # type: ignore[attr-defined]
            request,
            _(
                "Asked Stripe to %(operation)s %(id)s (%(amount)s): %(object)s %(status)s. "
                "The status changes when Stripe's webhook arrives."
            )
            % {
                "operation": operation.value,
                "id": transaction.pk,
                "amount": shown,
                "object": result.get("object", "object"),
                "status": result.get("status", ""),
            },
            messages.SUCCESS,
        )
        return True


# The two ways an operation fails, each in one wording that says whether Stripe was asked.


def not_sent(operation: Operation, transaction: StripeTransaction, reason: str) -> str:
    """The bridge refused the operation: Stripe was not asked to do it."""
    return _("Not sent to Stripe: the %(operation)s of %(id)s was refused here. %(reason)s") % {
        "operation": operation.value,
        "id": transaction.pk,
        "reason": reason,
    }


def stripe_refused(
    operation: Operation, transaction: StripeTransaction, error: StripeRequestError
) -> str:
    """Stripe was asked, and refused or did not answer."""
    values = {"operation": operation.value, "id": transaction.pk, "message": error.message}
    if error.http_status is None:
        return (
            _(
                "Sent to Stripe, which did not answer the %(operation)s of %(id)s: %(message)s "
                "Confirm again to ask once more: the same confirmation is never done twice."
            )
            % values
        )
    return _("Sent to Stripe, which refused to %(operation)s %(id)s: %(message)s") % values
