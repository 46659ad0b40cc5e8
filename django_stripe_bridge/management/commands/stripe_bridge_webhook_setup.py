"""``manage.py stripe_bridge_webhook_setup``: register this site's webhook with Stripe."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_stripe_bridge import stripe_api
from django_stripe_bridge.conf import SETTING_NAME
from django_stripe_bridge.exceptions import StripeBridgeError


class Command(BaseCommand):
    help = (
        "Register a webhook endpoint URL with Stripe (or the localstripe stand-in named by "
        "API_BASE) and print the signing secret to put in STRIPE_BRIDGE['WEBHOOK_SECRETS']."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            required=True,
            help="the public URL of the webhook, e.g. "
            "https://example.com/api/services/Stripe/webhooks/handler",
        )
        parser.add_argument(
            "--event",
            action="append",
            dest="events",
            metavar="TYPE",
            help="an event type to receive (repeatable); default: every event ('*')",
        )
        parser.add_argument("--description", default="django-stripe-bridge")
        parser.add_argument(
            "--secret-only",
            action="store_true",
            help="print only the secret (for scripts: SECRET=$(manage.py … --secret-only))",
        )

    def handle(
        self,
        *args: Any,
        url: str,
        events: list[str] | None,
        description: str,
        secret_only: bool,
        **options: Any,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise CommandError(f"--url {url!r} must be an absolute http(s) URL.")
        try:
            secret = stripe_api.register_webhook(url, events=events, description=description)
        except StripeBridgeError as exc:
            raise CommandError(f"Could not register the webhook: {exc}") from exc
        if secret_only:
            self.stdout.write(secret)
            return
        self.stdout.write(self.style.SUCCESS(f"Registered the webhook endpoint {url}"))
        self.stdout.write(f"Events: {', '.join(events) if events else 'every event (*)'}")
        self.stdout.write(
            "Configure its signing secret (keep it out of version control):\n"
            f"  STRIPE_WEBHOOK_SECRET={secret}\n"
            f"  or {SETTING_NAME}['WEBHOOK_SECRETS'] = [\"{secret}\"]\n"
            "While rotating, list the old and the new secret: either may sign."
        )
