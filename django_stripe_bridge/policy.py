"""Import path kept for ``SUBSCRIBE_POLICY`` dotted paths: see
:mod:`django_stripe_bridge.realtime.policy`."""

from .realtime.policy import (
    BUILTIN_POLICIES,
    MAX_PINNED_IDS,
    get_policy,
    is_staff,
    may_subscribe,
    open_policy,
    pinned_policy,
    staff_policy,
)

__all__ = [
    "BUILTIN_POLICIES",
    "MAX_PINNED_IDS",
    "get_policy",
    "is_staff",
    "may_subscribe",
    "open_policy",
    "pinned_policy",
    "staff_policy",
]
