"""Import path kept: the consumer lives in :mod:`django_stripe_bridge.realtime.websocket`."""

from .realtime.websocket import StripeEventConsumer

__all__ = ["StripeEventConsumer"]
