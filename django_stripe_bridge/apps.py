from django.apps import AppConfig
from django.core.signals import request_started
from django.utils.translation import gettext_lazy as _


class StripeBridgeConfig(AppConfig):
    """Registers the bridge's system checks and starts the outbox relay with the first publish
    or request."""

    name = "django_stripe_bridge"
    label = "django_stripe_bridge"
    verbose_name = _("Stripe bridge")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # checks: imported to register the system checks.
        from . import checks, messaging, outbox, thin  # noqa: F401

        if outbox.ensure_relay not in messaging.before_publish:
            messaging.before_publish.append(outbox.ensure_relay)
        if thin.relay_round not in outbox.round_work:
            outbox.round_work.append(thin.relay_round)
        # A restarted process relays (and fetches the thin events left waiting) from its first
        # request, not only from its first publish: it may publish nothing for a long while.
        request_started.connect(outbox.start_relay_on_request, dispatch_uid="stripe_bridge_relay")
