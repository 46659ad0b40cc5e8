"""``StripeEvent`` (every event Stripe sent, once), ``StripeTransaction`` (its current state)
and ``IdempotencyKey`` (who first used a client's Idempotency-Key)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from . import batch_sql
from .events import transaction_kind_of
from .payment_state import PaymentState, Summary

#: Refusals by the channel layer after which the outbox relay skips an event for good.
MAX_PUBLISH_ATTEMPTS = 3


class StripeEvent(models.Model):
    """One Stripe event, stored exactly once, with the whole payload as received."""

    event_id = models.CharField(_("event id"), max_length=255, unique=True)
    transaction_id = models.CharField(_("transaction id"), max_length=255, blank=True)
    type = models.CharField(_("type"), max_length=100, db_index=True)
    object_type = models.CharField(_("object type"), max_length=100, blank=True)
    object_id = models.CharField(_("object id"), max_length=255, blank=True)
    livemode = models.BooleanField(_("live mode"), default=False)
    #: The connected account (``acct_…``) the event's payment belongs to; blank for the
    #: platform's own. Taken only from the verified event (``account_of()``).
    account = models.CharField(_("connected account"), max_length=255, blank=True)
    api_version = models.CharField(_("API version"), max_length=50, blank=True)
    created = models.DateTimeField(_("created at Stripe"))
    received_at = models.DateTimeField(_("received"), auto_now_add=True)
    payload = models.JSONField(_("payload"))
    published_at = models.DateTimeField(_("published"), null=True, blank=True)
    #: Times the channel layer refused to carry this event (it could not serialize it); at
    #: ``MAX_PUBLISH_ATTEMPTS`` the outbox relay stops trying.
    publish_attempts = models.PositiveSmallIntegerField(_("refused publishes"), default=0)
    publish_error = models.CharField(_("publish error"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("Stripe event")
        verbose_name_plural = _("Stripe events")
        ordering = ("-created", "-id")
        indexes = [
            # Replay and the admin's transaction inline: a transaction's events in order.
            models.Index(fields=["transaction_id", "created", "id"], name="stripe_evt_tx_created"),
            models.Index(fields=["-created", "-id"], name="stripe_evt_created"),
            # The admin's filter and a seller's view: one connected account's events.
            models.Index(fields=["account", "-created"], name="stripe_evt_account"),
            # `stripe_bridge_republish --unpublished`.
            models.Index(
                fields=["id"],
                condition=models.Q(published_at__isnull=True),
                name="stripe_evt_unpublished",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} ({self.type})"

    @property
    def created_timestamp(self) -> int:
        """Stripe's ``created`` as integer seconds, as in the payload."""
        return int(self.created.timestamp())

    @property
    def unpublishable(self) -> bool:
        """Whether the relay gave up on this event: the layer refused it every time."""
        return self.published_at is None and self.publish_attempts >= MAX_PUBLISH_ATTEMPTS


class StripeTransactionQuerySet(models.QuerySet["StripeTransaction"]):
    def lock(
        self, transaction_id: str, *, livemode: bool = False, account: str = ""
    ) -> StripeTransaction:
        """The transaction's row, created if missing, locked until the atomic block ends."""
        return self.lock_all({transaction_id: livemode}, {transaction_id: account})[transaction_id]

    def lock_all(
        self, livemode_of: Mapping[str, bool], account_of: Mapping[str, str] | None = None
    ) -> dict[str, StripeTransaction]:
        """The transactions named (id → livemode for a new row; ``account_of``: id → the
        connected account of a new row), created if missing and locked until the atomic
        block ends.

        The webhook ingest, the create calls and the rebuild all go through here, so two
        writers of one transaction apply one after the other; rows are created and locked in
        id order, so two writers of several never wait for each other in a circle.
        """
        return self.lock_all_later(livemode_of, account_of)()

    def lock_all_later(
        self, livemode_of: Mapping[str, bool], account_of: Mapping[str, str] | None = None
    ) -> Callable[[], dict[str, StripeTransaction]]:
        """``lock_all()``, sent now (queued, in a pipeline); what it returns, once the
        returned function is called."""
        if not livemode_of:
            return dict
        accounts = account_of or {}
        new = [
            self.model(
                id=tx_id,
                kind=transaction_kind_of(tx_id),
                livemode=livemode,
                account=accounts.get(tx_id, ""),
            )
            for tx_id, livemode in sorted(livemode_of.items())
        ]
        if batch_sql.supported(self.db):
            # One statement: insert the missing rows, lock and return all of them.
            stored = batch_sql.insert_and_lock_later(new, using=self.db)
            return lambda: {tx.pk: tx for tx in stored()}
        self.bulk_create(new, ignore_conflicts=True)
        locked = self.select_for_update().filter(pk__in=list(livemode_of)).order_by("pk")
        found: dict[str, StripeTransaction] = {tx.pk: tx for tx in locked}
        return lambda: found


class StripeTransaction(models.Model):
    """The current state of one charge, PaymentIntent or Checkout Session."""

    class Kind(models.TextChoices):
        CHARGE = "charge", _("Charge")
        PAYMENT_INTENT = "payment_intent", _("PaymentIntent")
        CHECKOUT_SESSION = "checkout_session", _("Checkout Session")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        REQUIRES_ACTION = "requires_action", _("Requires action")
        PROCESSING = "processing", _("Processing")
        REQUIRES_CAPTURE = "requires_capture", _("Requires capture")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        CANCELED = "canceled", _("Canceled")
        EXPIRED = "expired", _("Expired")
        PARTIALLY_REFUNDED = "partially_refunded", _("Partially refunded")
        REFUNDED = "refunded", _("Refunded")
        DISPUTED = "disputed", _("Disputed")
        DISPUTE_WON = "dispute_won", _("Dispute won")
        DISPUTE_LOST = "dispute_lost", _("Dispute lost")

    id = models.CharField(_("transaction id"), max_length=255, primary_key=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    amount = models.BigIntegerField(_("amount"), null=True, blank=True)
    amount_captured = models.BigIntegerField(_("amount captured"), default=0)
    amount_refunded = models.BigIntegerField(_("amount refunded"), default=0)
    currency = models.CharField(_("currency"), max_length=3, blank=True)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, blank=True)
    livemode = models.BooleanField(_("live mode"), default=False)
    #: The connected account (``acct_…``) the payment is for, blank for the platform's own:
    #: set once, by the server (a create call's policy-approved account) or a verified event.
    account = models.CharField(_("connected account"), max_length=255, blank=True)
    #: Made on the connected account itself (a direct charge: calls about it carry
    #: ``Stripe-Account``), not on the platform for it (a destination charge).
    direct = models.BooleanField(_("direct charge"), default=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="stripe_transactions",
    )
    idempotency_key = models.CharField(_("idempotency key"), max_length=255, blank=True)
    #: The other transaction of the same payment: a Checkout Session's PaymentIntent, and the
    #: PaymentIntent's session (docs/models.md, "Checkout Sessions"). The PaymentIntent's
    #: row holds the state; both rows show its status and amounts.
    linked_id = models.CharField(_("linked transaction"), max_length=255, blank=True)
    #: The latest known snapshot of each of the payment's Stripe objects
    #: (``PaymentState``): what the status derives from.
    state = models.JSONField(_("state"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = StripeTransactionQuerySet.as_manager()

    class Meta:
        verbose_name = _("Stripe transaction")
        verbose_name_plural = _("Stripe transactions")
        ordering = ("-created_at",)
        indexes = [
            models.Index(fields=["-created_at"], name="stripe_tx_created"),
            models.Index(fields=["account", "-created_at"], name="stripe_tx_account"),
        ]

    def __str__(self) -> str:
        return self.id

    def payment_state(self) -> PaymentState:
        """The snapshots this transaction's status derives from."""
        return PaymentState.from_json(self.state)

    def take_state(self, state: PaymentState) -> list[str]:
        """Store ``state`` and what it derives (status, amounts); the fields that changed."""
        summary: Summary = state.summary()
        self.state = state.to_json()
        changed = ["state"]
        values: dict[str, Any] = {
            "amount_captured": summary.amount_captured,
            "amount_refunded": summary.amount_refunded,
        }
        if summary.status is not None:
            values["status"] = summary.status
        if summary.amount is not None:
            values["amount"] = summary.amount
        if summary.currency:
            values["currency"] = summary.currency
        for field, value in values.items():
            if getattr(self, field) != value:
                setattr(self, field, value)
                changed.append(field)
        return changed

    @property
    def payment_ids(self) -> tuple[str, ...]:
        """The ids this payment is known by: its own, and its linked transaction's."""
        return (self.id, self.linked_id) if self.linked_id else (self.id,)

    @property
    def holds_state(self) -> bool:
        """Whether the payment's state is folded on this row (not on the linked one)."""
        return not (self.linked_id and self.kind == self.Kind.CHECKOUT_SESSION)

    def events(self) -> models.QuerySet[StripeEvent]:
        """The payment's events (the linked transaction's too), oldest first."""
        ids = self.payment_ids
        return StripeEvent.objects.filter(transaction_id__in=ids).order_by("created", "id")


class QuarantinedEvent(models.Model):
    """A signed event the database refused to store, kept apart for an operator.

    Its batch-mates are stored without it, and Stripe is answered 200 so that its retries
    do not go on for days (docs/webhooks.md). The payload is kept as ASCII JSON text, which
    any database stores whatever the event holds.
    """

    event_id = models.CharField(_("event id"), max_length=255, unique=True)
    type = models.CharField(_("type"), max_length=100, blank=True)
    transaction_id = models.CharField(_("transaction id"), max_length=255, blank=True)
    error = models.TextField(_("error"))
    payload = models.TextField(_("payload (JSON)"))
    deliveries = models.PositiveIntegerField(_("deliveries"), default=1)
    first_received_at = models.DateTimeField(_("first received"), auto_now_add=True)
    last_received_at = models.DateTimeField(_("last received"), auto_now=True)

    class Meta:
        verbose_name = _("quarantined Stripe event")
        verbose_name_plural = _("quarantined Stripe events")
        ordering = ("-last_received_at",)

    def __str__(self) -> str:
        return f"{self.event_id} ({self.type})"


class IdempotencyKey(models.Model):
    """Whose a client's ``Idempotency-Key`` is: claimed before the create call reaches Stripe
    (``idempotency``). Digests only, never the key or the scope."""

    #: SHA-256 of the client's key: one owner per key, whatever the endpoint.
    key_digest = models.CharField(_("key digest"), max_length=64, primary_key=True)
    #: SHA-256 of the owner's scope (``user:<pk>``, ``client:<token>``).
    scope_digest = models.CharField(_("scope digest"), max_length=64)
    #: SHA-256 of the operation and body when the first request came without a scope: the
    #: same request replays it (secrets withheld). Empty: only the owner's scope does.
    content_digest = models.CharField(_("content digest"), max_length=64, blank=True)
    #: The key Stripe is sent, for the owner's requests and content replays alike.
    stripe_key = models.CharField(_("Stripe idempotency key"), max_length=255)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")

    def __str__(self) -> str:
        return self.stripe_key


class ThinEvent(models.Model):
    """A thin event notification (Event Destinations, API v2), stored once when it arrives,
    and the durable queue of the fetches that turn it into a ``StripeEvent``."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DONE = "done", _("Done")
        REFUSED = "refused", _("Refused")
        #: The database refused the fetched event's data: kept as a ``QuarantinedEvent``.
        QUARANTINED = "quarantined", _("Quarantined")

    event_id = models.CharField(_("event id"), max_length=255, unique=True)
    type = models.CharField(_("type"), max_length=100)
    #: The notification's ``context``: the connected account it is about (blank: the platform).
    context = models.CharField(_("context"), max_length=255, blank=True)
    endpoint = models.CharField(_("endpoint"), max_length=40, blank=True)
    notification = models.JSONField(_("notification"))
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    #: When the next fetch may start (a claimed fetch pushes it on: a crash retries later).
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    #: The snapshot event the fetch stored (or found stored), once done.
    stripe_event_id = models.CharField(_("Stripe event"), max_length=255, blank=True)
    received_at = models.DateTimeField(_("received"), auto_now_add=True)
    done_at = models.DateTimeField(_("done"), null=True, blank=True)

    class Meta:
        verbose_name = _("thin event")
        verbose_name_plural = _("thin events")
        ordering = ("-received_at", "-id")
        indexes = [
            # The queue: pending notifications whose next attempt is due.
            models.Index(
                fields=["next_attempt_at", "id"],
                condition=models.Q(status="pending"),
                name="stripe_thin_due",
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_id} ({self.type}, {self.status})"
