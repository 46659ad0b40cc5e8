"""``manage.py stripe_bridge_republish``: send stored events to the channel layer again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_stripe_bridge.messaging import get_layer, publish_event
from django_stripe_bridge.models import MAX_PUBLISH_ATTEMPTS, StripeEvent


class Command(BaseCommand):
    help = (
        "Publish stored Stripe events to the channel layer again: the events named, or with "
        "--unpublished every event that never reached it (e.g. while Redis was down). "
        "Exits non-zero if some could not be published."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("event_ids", nargs="*", metavar="EVENT_ID", help="evt_… ids")
        parser.add_argument(
            "--unpublished",
            action="store_true",
            help="every stored event whose published_at is empty, oldest first",
        )

    def handle(self, *args: Any, event_ids: list[str], unpublished: bool, **options: Any) -> None:
        self.verbosity = int(options["verbosity"])
        if not event_ids and not unpublished:
            raise CommandError("Name the events to republish (evt_…), or pass --unpublished.")
        try:
            layer = get_layer()
        except Exception as exc:
            raise CommandError(f"The channel layer is misconfigured: {exc}") from exc
        if layer is None:
            raise CommandError(
                "No channel layer is configured (CHANNEL_LAYERS): there is nothing to publish to."
            )

        failed: list[str] = []
        published = 0
        if event_ids:
            found = {
                row.event_id: row for row in StripeEvent.objects.filter(event_id__in=event_ids)
            }
            for event_id in dict.fromkeys(event_ids):
                row = found.get(event_id)
                if row is None:
                    self.stderr.write(f"{event_id}: no such event is stored")
                    failed.append(event_id)
                elif self._publish(row):
                    published += 1
                else:
                    failed.append(event_id)
        given_up = 0
        if unpublished:
            rows = StripeEvent.objects.filter(published_at__isnull=True)
            # The layer refused these every time: they would fail a retrying script forever.
            given_up = rows.filter(publish_attempts__gte=MAX_PUBLISH_ATTEMPTS).count()
            rows = rows.filter(publish_attempts__lt=MAX_PUBLISH_ATTEMPTS)
            for row in rows.order_by("created", "id").iterator(chunk_size=500):
                if self._publish(row):
                    published += 1
                else:
                    failed.append(row.event_id)

        summary = f"Published {published} event(s)"
        if given_up:
            summary += (
                f"; skipped {given_up} the channel layer refused to carry (the admin lists "
                "them under 'publishing: given up'; name one to try it again)"
            )
        if failed:
            raise CommandError(f"{summary}; {len(failed)} failed: {', '.join(failed[:20])}")
        self.stdout.write(self.style.SUCCESS(summary + "."))

    def _publish(self, row: StripeEvent) -> bool:
        ok = publish_event(row)
        if self.verbosity >= 2 or not ok:
            stream = self.stdout if ok else self.stderr
            stream.write(f"{row.event_id}: {'published' if ok else 'could not be published'}")
        return ok
