"""The ``STRIPE_BRIDGE`` settings, with defaults, read through ``bridge_settings``.

Use it as ``from django_stripe_bridge.conf import bridge_settings`` and read
``bridge_settings.API_KEY``. Dotted paths in ``IMPORT_STRINGS`` are imported on
first access. The object reloads itself when a test changes ``STRIPE_BRIDGE``
with ``override_settings``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

SETTING_NAME = "STRIPE_BRIDGE"

DEFAULTS: dict[str, Any] = {
    "API_KEY": None,
    "PUBLISHABLE_KEY": None,
    "API_BASE": None,
    "API_VERSION": None,
    "MAX_NETWORK_RETRIES": 2,
    "TIMEOUT": 30,
    "WEBHOOK_SECRETS": [],
    "WEBHOOK_ENDPOINTS": {},
    "THIN_RELAY": True,
    "THIN_RETRY_DELAY": 1.0,
    "THIN_MAX_RETRY_DELAY": 3600.0,
    "THIN_LEASE": 120.0,
    "WEBHOOK_TOLERANCE": 300,
    "WEBHOOK_MAX_BYTES": 1024 * 1024,
    "DEFAULT_CURRENCY": "usd",
    "CURRENCIES": None,
    "MIN_AMOUNT": 1,
    "MAX_AMOUNT": 99_999_999,
    "CHARGE_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "CHARGE_THROTTLE_RATE": "10/min",
    "CHANNEL": "stripe",
    "SUBSCRIBE_POLICY": "pinned",
    "SUBSCRIBE_ACCOUNTS": None,
    "CONNECT_POLICY": None,
    "MESSAGE_PAYLOAD": "summary",
    "REPLAY": "latest",
    "MAX_SUBSCRIPTIONS_PER_CONNECTION": 100,
    "OUTBOX_RELAY": True,
    "OUTBOX_DELAY": 5.0,
    "OUTBOX_INTERVAL": 2.0,
    "OUTBOX_BATCH": 100,
    "LAYER_PROBE_INTERVAL": 10.0,
    "GC_FREEZE_CONNECTIONS": 1000,
    "MAX_SELECTOR_CHARS_PER_CONNECTION": 16384,
    "MAX_FRAMES_PER_SECOND": 20,
    "FRAME_BURST": 60,
    "REPLAY_THREADS": 4,
    "SSE_HEARTBEAT": 15.0,
    "METRICS_TOKEN": None,
    "CHECKOUT_SUCCESS_URL": None,
    "CHECKOUT_CANCEL_URL": None,
    "CHECKOUT_REDIRECT_HOSTS": None,
}

#: Settings holding dotted paths (or lists of them) that are imported on access.
IMPORT_STRINGS = {"CHARGE_PERMISSION_CLASSES"}

#: Policy names understood without an import; anything else is a dotted path.
SUBSCRIBE_POLICIES = ("pinned", "open", "staff")
#: Values of ``REPLAY`` (and of a subscribe frame's ``replay``).
REPLAY_MODES = ("latest", "all", "none")
#: The webhook endpoint whose secrets are ``WEBHOOK_SECRETS`` (``webhooks/handler``).
DEFAULT_ENDPOINT = "handler"
#: What a name in ``WEBHOOK_ENDPOINTS`` may be (it is a path segment: ``webhooks/<name>``).
ENDPOINT_NAME = r"[A-Za-z0-9_-]{1,40}"
#: Values of ``MESSAGE_PAYLOAD``.
MESSAGE_PAYLOADS = ("summary", "full")


def _import(value: Any, name: str) -> Any:
    if isinstance(value, str):
        try:
            return import_string(value)
        except ImportError as exc:
            from .exceptions import ConfigurationError

            raise ConfigurationError(
                f"Could not import {value!r} for {SETTING_NAME}[{name!r}]: {exc}"
            ) from exc
    if isinstance(value, list | tuple):
        return [_import(item, name) for item in value]
    return value


class BridgeSettings:
    """Attribute access to ``settings.STRIPE_BRIDGE`` with defaults filled in."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        return getattr(settings, SETTING_NAME, None) or {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"Invalid {SETTING_NAME} setting: {name!r}")
        if name not in self._cache:
            value = self.user_settings.get(name, DEFAULTS[name])
            if name in IMPORT_STRINGS:
                value = _import(value, name)
            self._cache[name] = value
        return self._cache[name]

    @property
    def webhook_secrets(self) -> list[str]:
        """``WEBHOOK_SECRETS`` as a list, also when a single string was given."""
        secrets = self.WEBHOOK_SECRETS or []
        return [secrets] if isinstance(secrets, str) else [s for s in secrets if s]

    def endpoint_secrets(self, name: str) -> list[str] | None:
        """The secrets of webhook endpoint ``name``: ``handler`` is ``WEBHOOK_SECRETS``, any
        other a key of ``WEBHOOK_ENDPOINTS``; ``None`` when there is no such endpoint."""
        if name == DEFAULT_ENDPOINT:
            return self.webhook_secrets
        endpoints = self.WEBHOOK_ENDPOINTS
        if not isinstance(endpoints, dict) or name not in endpoints:
            return None
        secrets = endpoints[name] or []
        if isinstance(secrets, str):
            return [secrets]
        if not isinstance(secrets, list | tuple):
            return []
        return [s for s in secrets if isinstance(s, str) and s]

    def reload(self) -> None:
        self._cache.clear()


bridge_settings = BridgeSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        bridge_settings.reload()


setting_changed.connect(_reload)
