from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class StripeBridgeConfig(AppConfig):
    """Registers the bridge's system checks."""

    name = "django_stripe_bridge"
    label = "django_stripe_bridge"
    verbose_name = _("Stripe bridge")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
