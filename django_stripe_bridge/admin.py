"""Read-only admin for events and transactions, with staff operations on transactions
(capture, cancel, refund: ``admin_operations``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from .admin_operations import PaymentOperationsMixin
from .ingest import timestamp_to_datetime
from .models import (
    MAX_PUBLISH_ATTEMPTS,
    QuarantinedEvent,
    StripeEvent,
    StripeTransaction,
    ThinEvent,
)
from .money import format_amount
from .payment_state import status_of_event


class ReadOnlyAdminMixin:
    """Stripe is the source of truth: rows are browsed here, never edited."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A deleted event would be ingested again as new by stripe_bridge_sync, and a deleted
        # transaction would lose the ordering of its statuses: stripe_bridge_prune is the way.
        return False


class AccountFilter(admin.SimpleListFilter):
    """The platform's own payments, or one connected account's (the accounts seen so far)."""

    title = _("connected account")
    parameter_name = "account"
    #: Accounts listed in the filter at most (search by ``acct_…`` finds the others).
    MAX_CHOICES = 100

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        accounts = (
            model_admin.model.objects.exclude(account="")
            .order_by("account")
            .values_list("account", flat=True)
            .distinct()[: self.MAX_CHOICES]
        )
        return [("-", str(_("platform (none)"))), *((a, a) for a in accounts)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(account="" if value == "-" else value)


class PublishingFilter(admin.SimpleListFilter):
    """Where an event stands with the channel layer; "given up" lists the events the layer
    refused to carry ``MAX_PUBLISH_ATTEMPTS`` times, which the relay no longer sends."""

    title = _("publishing")
    parameter_name = "publishing"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("published", _("published")),
            ("pending", _("pending")),
            ("refused", _("refused by the layer")),
            ("given_up", _("given up")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        unpublished = queryset.filter(published_at__isnull=True)
        return {
            "published": queryset.filter(published_at__isnull=False),
            "pending": unpublished.filter(publish_attempts__lt=MAX_PUBLISH_ATTEMPTS),
            "refused": unpublished.filter(publish_attempts__gt=0),
            "given_up": unpublished.filter(publish_attempts__gte=MAX_PUBLISH_ATTEMPTS),
        }.get(self.value() or "", queryset)


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "event_id",
        "type",
        "transaction_id",
        "event_status",
        "livemode",
        "created",
        "received_at",
        "publishing",
    )
    list_filter = (
        "type",
        "livemode",
        PublishingFilter,
        ("created", admin.DateFieldListFilter),
        AccountFilter,
    )
    search_fields = ("=event_id", "=transaction_id", "=object_id", "=account")
    date_hierarchy = "created"
    list_per_page = 50
    show_full_result_count = False
    actions = ["republish"]
    fields = (
        "event_id",
        "type",
        "transaction_id",
        "object_type",
        "object_id",
        "account",
        "livemode",
        "api_version",
        "created",
        "received_at",
        "published_at",
        "publish_attempts",
        "publish_error",
        "pretty_payload",
    )
    readonly_fields = fields

    @admin.display(description=_("status"))
    def event_status(self, obj: StripeEvent) -> str:
        """The status this event alone tells of its payment (``charge.refunded`` → refunded),
        else the object's own status."""
        status = status_of_event(obj.payload) or obj.payload["data"]["object"].get("status")
        return status if isinstance(status, str) else "—"

    @admin.display(description=_("publishing"))
    def publishing(self, obj: StripeEvent) -> str:
        """Published, pending, or refused by the channel layer (and whether the relay gave up)."""
        if obj.published_at is not None:
            return str(_("published"))
        if obj.unpublishable:
            return str(_("given up: refused %(n)d times") % {"n": obj.publish_attempts})
        if obj.publish_attempts:
            return str(_("refused %(n)d times, retrying") % {"n": obj.publish_attempts})
        return str(_("pending"))

    @admin.display(description=_("payload"))
    def pretty_payload(self, obj: StripeEvent) -> str:
        text = json.dumps(obj.payload, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)

    def has_republish_permission(self, request: HttpRequest) -> bool:
        """Sending events to every subscriber again is a change, though no row is edited:
        the model's change permission (which this read-only admin never uses to edit)."""
        opts = self.opts
        return bool(request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}"))

    @admin.action(description=_("Republish selected events"), permissions=["republish"])
    def republish(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        from .messaging import publish_event

        events = list(queryset.order_by("created", "id"))
        sent = sum(publish_event(event) for event in events)
        level = messages.SUCCESS if sent == len(events) else messages.WARNING
        self.message_user(
            request,
            _("Republished %(sent)d of %(total)d events.")
            % {
                "sent": sent,
                "total": len(events),
            },
            level,
        )


@admin.register(StripeTransaction)
class StripeTransactionAdmin(PaymentOperationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    actions = ["capture_payment", "cancel_authorization", "refund_payment"]
    list_display = (
        "id",
        "kind",
        "status",
        "amount_display",
        "captured_display",
        "refunded_display",
        "account",
        "livemode",
        "user",
        "created_at",
    )
    list_filter = (
        "status",
        "kind",
        "livemode",
        ("created_at", admin.DateFieldListFilter),
        AccountFilter,
    )
    search_fields = ("=id", "=account")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    fields = (
        "id",
        "kind",
        "status",
        "amount_display",
        "captured_display",
        "refunded_display",
        "account",
        "livemode",
        "user",
        "idempotency_key",
        "created_at",
        "updated_at",
        "object_list",
        "event_list",
    )
    readonly_fields = fields

    @admin.display(description=_("amount"), ordering="amount")
    def amount_display(self, obj: StripeTransaction) -> str:
        return format_amount(obj.amount, obj.currency)

    @admin.display(description=_("captured"), ordering="amount_captured")
    def captured_display(self, obj: StripeTransaction) -> str:
        return format_amount(obj.amount_captured, obj.currency) if obj.amount_captured else "—"

    @admin.display(description=_("refunded"), ordering="amount_refunded")
    def refunded_display(self, obj: StripeTransaction) -> str:
        return format_amount(obj.amount_refunded, obj.currency) if obj.amount_refunded else "—"

    @admin.display(description=_("Stripe objects"))
    def object_list(self, obj: StripeTransaction) -> str:
        """The latest known state of each Stripe object the status derives from."""
        snapshots = sorted(obj.payment_state().objects.values(), key=lambda s: s["key"])
        return _table(
            (_("object"), _("type"), _("status"), _("as of")),
            (
                (s["id"], s["object"], s.get("status") or "—", timestamp_to_datetime(s["at"]))
                for s in snapshots
            ),
        )

    @admin.display(description=_("events"))
    def event_list(self, obj: StripeTransaction) -> str:
        return _table(
            (_("event"), _("type"), _("created at Stripe"), _("received")),
            (
                (
                    format_html(
                        '<a href="{}">{}</a>',
                        reverse("admin:django_stripe_bridge_stripeevent_change", args=[event.pk]),
                        event.event_id,
                    ),
                    event.type,
                    event.created,
                    event.received_at,
                )
                for event in obj.events()[:200]
            ),
        )


@admin.register(QuarantinedEvent)
class QuarantinedEventAdmin(admin.ModelAdmin):
    """Events the database refused to store (docs/webhooks.md, "Poison events"): read, fix
    the cause, then delete the row (and resend the event from Stripe's Dashboard)."""

    list_display = (
        "event_id",
        "type",
        "transaction_id",
        "deliveries",
        "first_received_at",
        "last_received_at",
        "error_summary",
    )
    list_filter = ("type",)
    search_fields = ("=event_id", "=transaction_id")
    fields = (
        "event_id",
        "type",
        "transaction_id",
        "deliveries",
        "first_received_at",
        "last_received_at",
        "error",
        "payload",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("error"))
    def error_summary(self, obj: QuarantinedEvent) -> str:
        return obj.error if len(obj.error) <= 80 else obj.error[:79] + "…"


def _table(header: Iterable[Any], rows: Iterable[Iterable[Any]]) -> str:
    """An HTML table of ``rows`` (escaped), or a dash when there are none."""
    body = [format_html_join("", "<td>{}</td>", ((cell,) for cell in row)) for row in rows]
    if not body:
        return "—"
    head = format_html_join("", "<th>{}</th>", ((cell,) for cell in header))
    lines = format_html_join("", "<tr>{}</tr>", ((line,) for line in body))
    return format_html("<table><tr>{}</tr>{}</table>", head, lines)


@admin.register(ThinEvent)
class ThinEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Thin event notifications and their fetch: waiting, done, refused or quarantined (and
    why; a quarantined one's event is under quarantined events)."""

    list_display = (
        "event_id",
        "type",
        "context",
        "status",
        "attempts",
        "next_attempt_at",
        "stripe_event_id",
        "received_at",
    )
    list_filter = ("status", "endpoint", ("received_at", admin.DateFieldListFilter))
    search_fields = ("=event_id", "=context", "=stripe_event_id")
    list_per_page = 50
    show_full_result_count = False
    fields = (
        "event_id",
        "type",
        "context",
        "endpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "stripe_event_id",
        "received_at",
        "done_at",
        "notification",
    )
    readonly_fields = fields
