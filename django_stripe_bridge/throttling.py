"""The rate limit of the create endpoints, per client IP: a defence against card testing."""

from __future__ import annotations

import re
from typing import Any

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from .conf import SETTING_NAME, bridge_settings
from .exceptions import ConfigurationError

_RATE = re.compile(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)")


class ChargeRateThrottle(SimpleRateThrottle):
    """``CHARGE_THROTTLE_RATE`` (e.g. ``"10/min"``) per client IP; ``None`` disables it.

    ``POST charge`` and ``POST payment-intents`` share one budget per IP, whoever is logged
    in: card testers rotate accounts more easily than addresses. The rate is read from the
    settings for every request, so a change applies at once. Behind a proxy, set DRF's
    ``NUM_PROXIES`` so that the client's address is taken from ``X-Forwarded-For``.
    """

    scope = "stripe_bridge_charge"

    def __init__(self) -> None:
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)

    def get_rate(self) -> str | None:
        rate = bridge_settings.CHARGE_THROTTLE_RATE
        if rate is not None and (not isinstance(rate, str) or not _RATE.fullmatch(rate)):
            raise ConfigurationError(
                f"{SETTING_NAME}['CHARGE_THROTTLE_RATE'] is {rate!r}: use 'number/period' "
                "such as '10/min' (period s, min, hour or day), or None to disable it."
            )
        return rate

    def get_ident(self, request: Any) -> str:
        # DRF trusts all of X-Forwarded-For when NUM_PROXIES is None: a client could make
        # up a new address for every request. Without NUM_PROXIES there is no proxy.
        if api_settings.NUM_PROXIES is None:
            return str(request.META.get("REMOTE_ADDR") or "")
        return str(super().get_ident(request))

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
