"""``manage.py stripe_bridge_webhook_setup``: register this site's webhook with Stripe."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_stripe_bridge import stripe_api
from django_stripe_bridge.conf import SETTING_NAME
from django_stripe_bridge.exceptions import StripeBridgeError

#: What ``--thin`` subscribes to by default: the events a payment's status folds from (those
#: of every object ``payment_state`` reads: charges, PaymentIntents, refunds, disputes and
#: Checkout Sessions).
THIN_EVENTS = (
    "v1.charge.succeeded",
    "v1.charge.failed",
    "v1.charge.pending",
    "v1.charge.captured",
    "v1.charge.expired",
    "v1.charge.refunded",
    "v1.charge.updated",
    "v1.charge.refund.updated",
    "v1.refund.created",
    "v1.refund.updated",
    "v1.refund.failed",
    "v1.charge.dispute.created",
    "v1.charge.dispute.updated",
    "v1.charge.dispute.closed",
    "v1.payment_intent.created",
    "v1.payment_intent.succeeded",
    "v1.payment_intent.payment_failed",
    "v1.payment_intent.canceled",
    "v1.payment_intent.processing",
    "v1.payment_intent.requires_action",
    "v1.payment_intent.amount_capturable_updated",
    "v1.checkout.session.completed",
    "v1.checkout.session.async_payment_succeeded",
    "v1.checkout.session.async_payment_failed",
    "v1.checkout.session.expired",
)


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
            "--connect",
            action="store_true",
            help="a Connect endpoint: the connected accounts' events (each with 'account'); "
            "its secret goes in WEBHOOK_ENDPOINTS",
        )
        parser.add_argument(
            "--thin",
            action="store_true",
            help="an Event Destination (API v2) with thin payloads; --event names v1 event "
            "types (sent as v1.<type>), default the payment events the bridge folds",
        )
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
        connect: bool,
        thin: bool,
        **options: Any,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise CommandError(f"--url {url!r} must be an absolute http(s) URL.")
        try:
            if thin:
                events = [e if e.startswith("v1.") else f"v1.{e}" for e in events or THIN_EVENTS]
                secret = stripe_api.create_event_destination(
                    url, events=events, thin=True, connect=connect, description=description
                )
            else:
                secret = stripe_api.register_webhook(
                    url, events=events, description=description, connect=connect
                )
        except StripeBridgeError as exc:
            raise CommandError(f"Could not register the webhook: {exc}") from exc
        if secret_only:
            self.stdout.write(secret)
            return
        kind = "Event Destination (thin)" if thin else "webhook endpoint"
        whose = "the connected accounts'" if connect else "the platform's"
        self.stdout.write(self.style.SUCCESS(f"Registered the {kind} {url} for {whose} events"))
        self.stdout.write(f"Events: {', '.join(events) if events else 'every event (*)'}")
        if connect or thin:
            name = urlparse(url).path.rstrip("/").rsplit("/", 1)[-1]
            self.stdout.write(
                "Configure its signing secret (keep it out of version control), served at "
                f"webhooks/{name}:\n"
                f'  {SETTING_NAME}[\'WEBHOOK_ENDPOINTS\'] = {{"{name}": ["{secret}"]}}'
            )
            return
        self.stdout.write(
            "Configure its signing secret (keep it out of version control):\n"
            f"  STRIPE_WEBHOOK_SECRET={secret}\n"
            f"  or {SETTING_NAME}['WEBHOOK_SECRETS'] = [\"{secret}\"]\n"
            "While rotating, list the old and the new secret: either may sign."
        )
