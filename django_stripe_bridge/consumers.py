"""Import path kept: the consumer lives in ``django_stripe_bridge.realtime.websocket``."""

from .realtime.websocket import StripeEventConsumer

__all__ = ["StripeEventConsumer"]
