"""``manage.py stripe_bridge_thin``: fetch and fold the thin events waiting in the queue."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_stripe_bridge import thin
from django_stripe_bridge.models import ThinEvent


class Command(BaseCommand):
    help = (
        "Fetch the thin events (Event Destinations) whose fetch is due: the full event, then "
        "its snapshot event or related object, ingested like a webhook's. Failed fetches are "
        "retried with backoff; --loop keeps doing it (a worker beside the server)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="keep draining until stopped")
        parser.add_argument(
            "--interval", type=float, default=2.0, help="seconds between rounds with --loop"
        )

    def handle(self, *args: Any, loop: bool, interval: float, **options: Any) -> None:
        while True:
            result = thin.drain()
            if options["verbosity"] >= 1 and result != thin.DrainResult():
                self.stdout.write(
                    f"Thin events: {result.done} folded, {result.retried} to retry, "
                    f"{result.refused} refused, {result.quarantined} quarantined."
                )
            if not loop:
                break
            time.sleep(interval)
        if options["verbosity"] >= 1:
            waiting = ThinEvent.objects.filter(status=ThinEvent.Status.PENDING).count()
            self.stdout.write(f"{waiting} thin event(s) waiting.")
