"""Import path kept for settings files: see ``django_stripe_bridge.realtime.layers``."""

from .realtime.layers import (
    BLOCKING_RECEIVE,
    CONNECT_TIMEOUT,
    CORE_BACKEND,
    PUBSUB_BACKEND,
    SOCKET_TIMEOUT,
    receive_timeout_problem,
    receiving_connections,
    redis_channel_layer,
    redis_default_socket_timeout,
)

__all__ = [
    "BLOCKING_RECEIVE",
    "CONNECT_TIMEOUT",
    "CORE_BACKEND",
    "PUBSUB_BACKEND",
    "SOCKET_TIMEOUT",
    "receive_timeout_problem",
    "receiving_connections",
    "redis_channel_layer",
    "redis_default_socket_timeout",
]
