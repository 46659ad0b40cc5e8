"""``manage.py stripe_bridge_rebuild``: derive every transaction's state again from its events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from django_stripe_bridge.events import TRANSACTION_OBJECTS, transaction_kind_of
from django_stripe_bridge.models import StripeEvent, StripeTransaction
from django_stripe_bridge.payment_state import PaymentState


class Command(BaseCommand):
    help = (
        "Fold every stored event into its transaction's state again and store the status and "
        "amounts that follow. Run it once after upgrading from a version that kept no states; "
        "running it again changes nothing. Sends no signals and publishes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "transaction_ids",
            nargs="*",
            metavar="TRANSACTION_ID",
            help="only these (ch_…, pi_…, cs_…)",
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help="forget the stored states first (also what create calls recorded) and derive "
            "each from its events alone",
        )

    def handle(self, *args: Any, transaction_ids: list[str], reset: bool, **options: Any) -> None:
        ids = sorted(set(transaction_ids) or set(self._all_ids()))
        total, changed = len(ids), 0
        self.stdout.write(f"Rebuilding {total} transaction(s) ...")
        for done, tx_id in enumerate(ids, 1):
            if self._rebuild(tx_id, reset=reset):
                changed += 1
            if done % 500 == 0 or done == total:
                self.stdout.write(f"  {done}/{total} done, {changed} changed")
        self.stdout.write(self.style.SUCCESS(f"Rebuilt {total} transaction(s); {changed} changed."))

    def _all_ids(self) -> Iterator[str]:
        yield from StripeTransaction.objects.values_list("pk", flat=True)
        yield from (
            StripeEvent.objects.filter(object_type__in=TRANSACTION_OBJECTS)
            .exclude(transaction_id="")
            .values_list("transaction_id", flat=True)
            .distinct()
        )

    def _rebuild(self, tx_id: str, *, reset: bool) -> bool:
        existing = StripeTransaction.objects.filter(pk=tx_id).first()
        if existing is not None and not existing.holds_state:
            # A linked session: its PaymentIntent's row holds the payment's state.
            return self._rebuild(existing.linked_id, reset=reset)
        linked = self._linked_session(tx_id)
        ids = [tx_id, linked] if linked else [tx_id]
        events = StripeEvent.objects.filter(transaction_id__in=ids)
        with transaction.atomic():
            rows = StripeTransaction.objects.lock_all(
                dict.fromkeys(ids, events.filter(livemode=True).exists())
            )
            tx = rows[tx_id]
            before = (tx.status, tx.amount, tx.amount_captured, tx.amount_refunded, tx.currency)
            state = PaymentState() if reset else tx.payment_state()
            session = rows.get(linked) if linked else None
            if session is not None and not reset:
                state.merge(session.payment_state())
            for row in events.only("payload").order_by("created", "id").iterator(chunk_size=200):
                state.apply(row.payload)
            fields = tx.take_state(state)
            if tx.kind != transaction_kind_of(tx_id):
                tx.kind = transaction_kind_of(tx_id)
                fields.append("kind")
            if session is not None:
                self._link(session, tx)
                fields.append("linked_id")
            tx.save(update_fields=[*fields, "updated_at"])
        return before != (tx.status, tx.amount, tx.amount_captured, tx.amount_refunded, tx.currency)

    def _linked_session(self, tx_id: str) -> str | None:
        """The Checkout Session paid through ``tx_id``: as linked, else as its events say."""
        linked = StripeTransaction.objects.filter(pk=tx_id).values_list("linked_id", flat=True)
        if linked.first():
            return linked.first()
        sessions = StripeEvent.objects.filter(
            transaction_id=tx_id, object_type="checkout.session"
        ).exclude(object_id=tx_id)
        return sessions.values_list("object_id", flat=True).order_by("created", "id").first()

    def _link(self, session: StripeTransaction, tx: StripeTransaction) -> None:
        """Join ``session`` to ``tx`` (if it was not) and show ``tx``'s status on it."""
        session.linked_id, tx.linked_id = tx.pk, session.pk
        session.kind = StripeTransaction.Kind.CHECKOUT_SESSION
        for field in ("status", "amount", "amount_captured", "amount_refunded", "currency"):
            setattr(session, field, getattr(tx, field))
        session.save()
