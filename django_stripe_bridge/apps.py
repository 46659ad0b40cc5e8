from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class StripeBridgeConfig(AppConfig):
    """Registers the bridge's system checks and starts the outbox relay with the first publish."""

    name = "django_stripe_bridge"
    label = "django_stripe_bridge"
    verbose_name = _("Stripe bridge")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # checks: imported to register the system checks.
        from . import checks, messaging, outbox  # noqa: F401

        if outbox.ensure_relay not in messaging.before_publish:
            messaging.before_publish.append(outbox.ensure_relay)
