"""Import path kept for ``SUBSCRIBE_POLICY`` dotted paths: see
``django_stripe_bridge.realtime.policy``."""

from .realtime.policy import (
    BUILTIN_POLICIES,
    MAX_PINNED_IDS,
    accounts_of,
    get_policy,
    is_staff,
    may_subscribe,
    open_policy,
    pinned_policy,
    staff_policy,
    within_own_accounts,
)

__all__ = [
    "BUILTIN_POLICIES",
    "MAX_PINNED_IDS",
    "accounts_of",
    "get_policy",
    "is_staff",
    "may_subscribe",
    "open_policy",
    "pinned_policy",
    "staff_policy",
    "within_own_accounts",
]
