"""Webhook view (placeholder until the webhook endpoint lands)."""

from .views import _NotYet as WebhookView  # noqa: F401
