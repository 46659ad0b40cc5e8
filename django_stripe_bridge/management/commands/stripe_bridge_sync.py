"""``manage.py stripe_bridge_sync``: ingest the events Stripe has that the webhook missed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_stripe_bridge import ingest, stripe_api
from django_stripe_bridge.events import is_account_id
from django_stripe_bridge.exceptions import InvalidEvent, StripeBridgeError
from django_stripe_bridge.models import StripeEvent

from ._timeparse import parse_point_in_time

#: Stripe's retry window for webhooks: what a missed delivery may still be waiting on.
DEFAULT_SINCE = "3d"
#: Events checked against the database per query.
CHUNK = 100


def _of_account(events: Iterable[dict[str, Any]], account: str | None) -> Iterator[dict[str, Any]]:
    """A connected account's events, each naming it as a Connect webhook would.

    They were listed with the platform's key and that account's ``Stripe-Account``: the
    account is the server's own request, not anything a client said.
    """
    for event in events:
        if account is not None and isinstance(event, dict):
            event.setdefault("account", account)
        yield event


def _check_account(event: dict[str, Any], account: str | None) -> None:
    """Refuse an event listed for one connected account that names another, as the thin
    events' fetch does: an event is stored under the account it was listed for or not at all.
    """
    named = event.get("account") if isinstance(event, dict) else None
    if account is not None and named != account:
        raise InvalidEvent(f"it names account {str(named)[:40]!r}, not {account}")


def _chunks(events: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for event in events:
        chunk.append(event)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Command(BaseCommand):
    help = (
        "Page through Stripe's Events API and ingest the events never received by the "
        "webhook, through the same path as the webhook (no duplicates; new events are "
        "published and signalled). Stripe keeps events for 30 days. The platform's own "
        "events by default; --account for a connected account's, --all-accounts for the "
        "platform's and every connected account's."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since",
            default=DEFAULT_SINCE,
            help=f"a duration back from now (3d, 12h, 30m) or an ISO date/datetime; "
            f"default {DEFAULT_SINCE} (Stripe's webhook retry window)",
        )
        parser.add_argument(
            "--type",
            action="append",
            dest="types",
            metavar="TYPE",
            help="only events of this type (repeatable)",
        )
        parser.add_argument(
            "--account",
            action="append",
            dest="accounts",
            metavar="ACCT",
            help="a connected account (acct_…) whose events to sync, with Stripe-Account "
            "(repeatable); instead of the platform's",
        )
        parser.add_argument(
            "--all-accounts",
            action="store_true",
            help="the platform's events and those of every connected account it has",
        )

    def handle(
        self,
        *args: Any,
        since: str,
        types: list[str] | None,
        accounts: list[str] | None,
        all_accounts: bool,
        **options: Any,
    ) -> None:
        self.verbosity = int(options["verbosity"])
        start = parse_point_in_time(since, "--since")
        for account in accounts or ():
            if not is_account_id(account):
                raise CommandError(f"--account {account[:60]!r} is not an account id (acct_…).")
        if accounts and all_accounts:
            raise CommandError("Give --account or --all-accounts, not both.")
        sources: list[str | None] = list(accounts) if accounts else [None]
        if all_accounts:
            try:
                sources += [
                    a["id"] for a in stripe_api.list_accounts() if is_account_id(a.get("id"))
                ]
            except StripeBridgeError as exc:
                raise CommandError(f"Could not list the connected accounts: {exc}") from exc
        for source in sources:
            self.sync(start, types, source)

    def sync(self, start: dt.datetime, types: list[str] | None, account: str | None) -> None:
        """Ingest the missing events of the platform (``account=None``) or of one account."""
        whose = f"connected account {account}" if account else "the platform"
        # A site without Connect reads of "Stripe's events", as it always did.
        label = f"{whose}'s Stripe events" if account else "Stripe's events"
        if self.verbosity >= 1:
            self.stdout.write(f"Fetching {label} created since {start:%Y-%m-%d %H:%M:%S %Z}…")
        checked = 0
        missing: list[dict[str, Any]] = []
        try:
            events = stripe_api.list_events(since=start, types=types, stripe_account=account)
            for chunk in _chunks(_of_account(events, account), CHUNK):
                ids = [event.get("id") for event in chunk]
                stored = set(
                    StripeEvent.objects.filter(event_id__in=ids).values_list("event_id", flat=True)
                )
                missing += [event for event in chunk if event.get("id") not in stored]
                checked += len(chunk)
                if self.verbosity >= 1:
                    self.stdout.write(f"  checked {checked} event(s), {len(missing)} missing")
        except StripeBridgeError as exc:
            raise CommandError(f"Could not list {label}: {exc}") from exc

        # Stripe lists newest first; ingest oldest first, as the webhooks would have come.
        missing.sort(key=lambda event: (event.get("created") or 0, str(event.get("id"))))
        ingested = invalid = 0
        for event in missing:
            try:
                _check_account(event, account)
                result = ingest.ingest_event(event)
            except InvalidEvent as exc:
                invalid += 1
                self.stderr.write(f"{event.get('id')}: skipped, not a valid event: {exc}")
                continue
            if result.created:
                ingested += 1
                if self.verbosity >= 2:
                    self.stdout.write(f"  ingested {result.event.event_id} ({result.event.type})")
        summary = (
            f"Checked {checked} event(s) of {whose} since "
            f"{start.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC: "
            f"ingested {ingested}, {checked - len(missing)} already stored"
        )
        if invalid:
            raise CommandError(f"{summary}, {invalid} invalid.")
        self.stdout.write(self.style.SUCCESS(summary + "."))
