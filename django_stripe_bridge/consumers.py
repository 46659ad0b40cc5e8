"""Import path kept: the websocket consumer lives in :mod:`django_stripe_bridge.realtime.websocket`."""

from .realtime.websocket import StripeEventConsumer

__all__ = ["StripeEventConsumer"]
