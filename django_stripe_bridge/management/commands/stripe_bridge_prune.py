"""``manage.py stripe_bridge_prune``: delete old events, keeping each transaction's latest, and
old idempotency-key claims."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from django_stripe_bridge.models import IdempotencyKey, StripeEvent

from ._timeparse import parse_point_in_time

#: Rows deleted per transaction, so a large prune never holds long locks.
BATCH_SIZE = 1000
#: Claims of idempotency keys are kept at least this long: Stripe keeps keys for 24 hours.
CLAIM_LIFETIME = timedelta(hours=24)


def prunable_events(cutoff: Any) -> QuerySet[StripeEvent]:
    """Events created before ``cutoff`` that are not the latest event of their transaction."""
    later = StripeEvent.objects.filter(transaction_id=OuterRef("transaction_id")).filter(
        Q(created__gt=OuterRef("created")) | Q(created=OuterRef("created"), pk__gt=OuterRef("pk"))
    )
    return StripeEvent.objects.filter(created__lt=cutoff).filter(
        Q(transaction_id="") | Exists(later)
    )


def prunable_claims(cutoff: Any) -> QuerySet[IdempotencyKey]:
    """Claims of idempotency keys made before ``cutoff``, and more than a day ago."""
    return IdempotencyKey.objects.filter(
        created_at__lt=min(cutoff, timezone.now() - CLAIM_LIFETIME)
    )


class Command(BaseCommand):
    help = (
        "Delete stored Stripe events created before a point in time (e.g. --older-than 90d). "
        "The latest event of every transaction is kept, so replay and the admin still show "
        "its current state. Claims of idempotency keys made before then (and more than a "
        "day ago) go too."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            required=True,
            metavar="AGE",
            help="a duration (90d, 12h, 2w) or an ISO date (2024-01-31)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
        )

    def handle(self, *args: Any, older_than: str, dry_run: bool, **options: Any) -> None:
        self.verbosity = int(options["verbosity"])
        cutoff = parse_point_in_time(older_than, "--older-than")
        candidates = prunable_events(cutoff)
        claims = prunable_claims(cutoff)
        if dry_run:
            count = candidates.count()
            self.stdout.write(
                f"Would delete {count} event(s) created before {cutoff:%Y-%m-%d %H:%M:%S %Z} "
                f"and {claims.count()} idempotency key claim(s) (dry run: nothing deleted)."
            )
            return
        deleted = self._delete(candidates, StripeEvent)
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {deleted} event(s) created before {cutoff:%Y-%m-%d %H:%M:%S %Z}; "
                "kept the latest event of each transaction."
            )
        )
        released = self._delete(claims, IdempotencyKey)
        self.stdout.write(self.style.SUCCESS(f"Deleted {released} idempotency key claim(s)."))

    def _delete(self, candidates: QuerySet[Any], model: Any) -> int:
        deleted = 0
        while True:
            with transaction.atomic():
                batch = list(candidates.values_list("pk", flat=True)[:BATCH_SIZE])
                if not batch:
                    break
                deleted += model.objects.filter(pk__in=batch).delete()[0]
            if self.verbosity >= 2:
                self.stdout.write(f"… deleted {deleted} so far")
        return deleted
