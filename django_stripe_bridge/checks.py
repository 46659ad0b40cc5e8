"""System checks (``manage.py check``) for the ``STRIPE_BRIDGE`` settings."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

from asgiref.sync import async_to_sync
from django.apps import apps as django_apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.handlers.asgi import ASGIHandler
from django.utils.module_loading import import_string

from .conf import (
    DEFAULT_ENDPOINT,
    DEFAULTS,
    ENDPOINT_NAME,
    MESSAGE_PAYLOADS,
    REPLAY_MODES,
    SETTING_NAME,
    bridge_settings,
)
from .error_reports import SafeExceptionReporterFilter, hide_url_passwords
from .exceptions import ConfigurationError
from .realtime.layers import receive_timeout_problem
from .realtime.policy import get_policy

_IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"
_KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")
#: API keys that are sometimes pasted where a webhook signing secret (``whsec_…``) belongs.
_API_KEY_PREFIXES = ("sk_", "rk_", "pk_")
#: Seconds ``check --deploy`` waits for the channel layer to answer.
LAYER_CHECK_TIMEOUT = 3.0


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report ``STRIPE_BRIDGE`` settings that would break or weaken the bridge."""
    messages: list[CheckMessage] = []
    user_settings = getattr(settings, SETTING_NAME, None) or {}
    if not isinstance(user_settings, dict):
        return [
            Error(
                f"{SETTING_NAME} must be a dict.",
                hint=f"Set {SETTING_NAME} = {{'API_KEY': ..., 'WEBHOOK_SECRETS': [...]}}.",
                id="stripe_bridge.E001",
            )
        ]
    for name in sorted(set(user_settings) - set(DEFAULTS)):
        messages.append(
            Error(
                f"{SETTING_NAME}[{name!r}] is not a setting of django-stripe-bridge.",
                hint="Check the spelling; the settings are listed in docs/settings.md.",
                id="stripe_bridge.E002",
            )
        )

    api_key = user_settings.get("API_KEY")
    if not api_key:
        messages.append(
            Warning(
                f"{SETTING_NAME}['API_KEY'] is not set: the charge endpoints answer 503.",
                hint="Set it to your Stripe secret key (sk_test_… or sk_live_…), "
                "read from the environment, never committed.",
                id="stripe_bridge.W001",
            )
        )
    elif not isinstance(api_key, str) or not api_key.startswith(_KEY_PREFIXES):
        messages.append(
            Error(
                f"{SETTING_NAME}['API_KEY'] is not a Stripe secret or restricted key.",
                hint="Use a key starting with sk_test_, sk_live_, rk_test_ or rk_live_ "
                "(the publishable pk_… key goes in PUBLISHABLE_KEY).",
                id="stripe_bridge.E003",
            )
        )
    elif "_live_" in api_key and settings.DEBUG:
        messages.append(
            Warning(
                f"{SETTING_NAME}['API_KEY'] is a live key while DEBUG is on.",
                hint="Use a test key (sk_test_…) in development, or set DEBUG = False.",
                id="stripe_bridge.W004",
            )
        )

    if not bridge_settings.webhook_secrets:
        messages.append(
            Warning(
                f"{SETTING_NAME}['WEBHOOK_SECRETS'] is empty: every webhook will be refused.",
                hint="Set it to the signing secret (whsec_…) shown by 'stripe listen', the "
                "Dashboard, or 'manage.py stripe_bridge_webhook_setup'.",
                id="stripe_bridge.W002",
            )
        )

    misplaced = [
        secret
        for secret in bridge_settings.webhook_secrets
        if isinstance(secret, str) and secret.startswith(_API_KEY_PREFIXES)
    ]
    if misplaced:
        kinds = ", ".join(sorted({f"{secret[:3]}…" for secret in misplaced}))
        messages.append(
            Error(
                f"{SETTING_NAME}['WEBHOOK_SECRETS'] holds an API key ({kinds}), not a webhook "
                "signing secret: every webhook will be refused.",
                hint="A signing secret starts with whsec_: take it from 'stripe listen', the "
                "Dashboard's webhook endpoint, or 'manage.py stripe_bridge_webhook_setup'.",
                id="stripe_bridge.E009",
            )
        )

    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    default_layer = layers.get("default") if isinstance(layers, dict) else None
    if not default_layer:
        messages.append(
            Warning(
                "CHANNEL_LAYERS has no 'default' layer: real-time messaging is disabled.",
                hint="Configure channels_redis.core.RedisChannelLayer (pip install "
                "'django-stripe-bridge[redis]'); see docs/scaling.md.",
                id="stripe_bridge.W003",
            )
        )
    elif default_layer.get("BACKEND") == _IN_MEMORY_LAYER and not settings.DEBUG:
        messages.append(
            Warning(
                "The in-memory channel layer is in use while DEBUG is off.",
                hint="It works only inside one process and loses messages on restart; use "
                "channels_redis.core.RedisChannelLayer in production.",
                id="stripe_bridge.W005",
            )
        )

    for alias, layer in layers.items() if isinstance(layers, dict) else ():
        problem = isinstance(layer, dict) and receive_timeout_problem(layer)
        if problem:
            messages.append(
                Warning(
                    f"CHANNEL_LAYERS[{alias!r}]: {problem}.",
                    hint="Build the entry with django_stripe_bridge.layers.redis_channel_layer("
                    "REDIS_URL), or give each host dict a 'socket_timeout' of 15 or more; "
                    "see docs/scaling.md.",
                    id="stripe_bridge.W006",
                )
            )

    try:
        get_policy()
    except ConfigurationError as exc:
        messages.append(
            Error(
                str(exc),
                hint="Use 'pinned', 'open', 'staff' or the dotted path to a callable "
                "(user, selector, pinned_ids) -> bool.",
                id="stripe_bridge.E004",
            )
        )
    for name, allowed in (("MESSAGE_PAYLOAD", MESSAGE_PAYLOADS), ("REPLAY", REPLAY_MODES)):
        value = user_settings.get(name, DEFAULTS[name])
        if value not in allowed:
            messages.append(
                Error(
                    f"{SETTING_NAME}[{name!r}] = {value!r} is not one of {', '.join(allowed)}.",
                    hint=f"Set {SETTING_NAME}[{name!r}] to one of {', '.join(allowed)}.",
                    id="stripe_bridge.E005",
                )
            )
    return (
        messages
        + _check_limits(user_settings)
        + _check_numbers(user_settings)
        + _check_connect(user_settings)
    )


def _check_connect(user_settings: dict[str, Any]) -> list[CheckMessage]:
    """``WEBHOOK_ENDPOINTS`` of the wrong shape, and Connect hooks that cannot be imported."""
    messages: list[CheckMessage] = []
    endpoints = user_settings.get("WEBHOOK_ENDPOINTS", DEFAULTS["WEBHOOK_ENDPOINTS"])
    shape_hint = (
        "Use a dict of endpoint name → its signing secrets, served at webhooks/<name>: "
        "{'connect': ['whsec_…'], 'thin': ['whsec_…']} (docs/connect.md)."
    )
    if not isinstance(endpoints, dict):
        messages.append(
            Error(
                f"{SETTING_NAME}['WEBHOOK_ENDPOINTS'] must be a dict, not "
                f"{type(endpoints).__name__}.",
                hint=shape_hint,
                id="stripe_bridge.E020",
            )
        )
        endpoints = {}
    for name, secrets in endpoints.items():
        problem = None
        if not isinstance(name, str) or not re.fullmatch(ENDPOINT_NAME, name):
            problem = "is not a name of 1 to 40 letters, digits, '-' or '_'"
        elif name == DEFAULT_ENDPOINT:
            problem = "is the name of the endpoint whose secrets are WEBHOOK_SECRETS"
        elif isinstance(secrets, str):
            secrets = [secrets]
        if problem is None and (
            not isinstance(secrets, list | tuple)
            or not secrets
            or not all(isinstance(x, str) and x.startswith("whsec_") for x in secrets)
        ):
            problem = "must be a non-empty list of signing secrets (whsec_…)"
        if problem:
            messages.append(
                Error(
                    f"{SETTING_NAME}['WEBHOOK_ENDPOINTS'][{name!r}] {problem}.",
                    hint=shape_hint,
                    id="stripe_bridge.E020",
                )
            )
    for name, signature in (
        ("SUBSCRIBE_ACCOUNTS", "(user) -> the connected accounts (acct_…) the user may follow"),
        ("CONNECT_POLICY", "(request, account) -> a ConnectCharge, or None to refuse"),
    ):
        value = user_settings.get(name, DEFAULTS[name])
        if value is None or callable(value):
            continue
        try:
            hook = import_string(value) if isinstance(value, str) else value
        except ImportError as exc:
            hook, reason = None, f"cannot be imported: {exc}"
        else:
            reason = "is not callable"
        if not callable(hook):
            messages.append(
                Error(
                    f"{SETTING_NAME}[{name!r}] = {value!r} {reason}.",
                    hint=f"Set it to the dotted path of a callable {signature}, or None.",
                    id="stripe_bridge.E021",
                )
            )
    return messages


def _check_limits(user_settings: dict[str, Any]) -> list[CheckMessage]:
    """Currency and amount limits that contradict each other (the charge would ignore them)."""
    messages: list[CheckMessage] = []
    currencies = user_settings.get("CURRENCIES", DEFAULTS["CURRENCIES"])
    default = user_settings.get("DEFAULT_CURRENCY", DEFAULTS["DEFAULT_CURRENCY"])
    if currencies is not None and not isinstance(currencies, list | tuple | set | frozenset):
        messages.append(
            Error(
                f"{SETTING_NAME}['CURRENCIES'] = {currencies!r} is not a list.",
                hint="Set it to a list of three-letter codes such as ['usd', 'eur'], or None "
                "to allow any currency.",
                id="stripe_bridge.E006",
            )
        )
    elif currencies is not None:
        allowed = {str(code).lower() for code in currencies}
        if str(default).lower() not in allowed:
            messages.append(
                Error(
                    f"{SETTING_NAME}['DEFAULT_CURRENCY'] = {default!r} is not in "
                    f"{SETTING_NAME}['CURRENCIES']: a charge without 'currency' would use it.",
                    hint="Add it to CURRENCIES, or set DEFAULT_CURRENCY to one of "
                    f"{', '.join(sorted(allowed)) or '(none)'}.",
                    id="stripe_bridge.E006",
                )
            )
    low = user_settings.get("MIN_AMOUNT", DEFAULTS["MIN_AMOUNT"])
    high = user_settings.get("MAX_AMOUNT", DEFAULTS["MAX_AMOUNT"])
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) or not (
        1 <= low <= high
    ):
        messages.append(
            Error(
                f"{SETTING_NAME}['MIN_AMOUNT'] = {low!r} and ['MAX_AMOUNT'] = {high!r} are not "
                "an amount range: they must be integers with 1 <= MIN_AMOUNT <= MAX_AMOUNT.",
                hint="Amounts are in the smallest currency unit (1000 = 10.00 USD); the "
                "defaults are 1 and 99_999_999.",
                id="stripe_bridge.E007",
            )
        )
    return messages


#: What each numeric setting must be: (whole numbers only, least value, the least excluded,
#: ``None`` allowed).
_NUMBERS: dict[str, tuple[bool, float, bool, bool]] = {
    "MAX_NETWORK_RETRIES": (True, 0, False, False),
    "TIMEOUT": (False, 0, True, False),
    "WEBHOOK_TOLERANCE": (True, 1, False, False),
    "WEBHOOK_MAX_BYTES": (True, 1, False, False),
    "MAX_SUBSCRIPTIONS_PER_CONNECTION": (True, 1, False, False),
    "MAX_SELECTOR_CHARS_PER_CONNECTION": (True, 1, False, False),
    "MAX_FRAMES_PER_SECOND": (False, 0, True, False),
    "FRAME_BURST": (True, 1, False, False),
    "REPLAY_THREADS": (True, 1, False, False),
    "SSE_HEARTBEAT": (False, 0, True, False),
    "OUTBOX_DELAY": (False, 0, False, False),
    "OUTBOX_INTERVAL": (False, 0, True, False),
    "OUTBOX_BATCH": (True, 1, False, False),
    "LAYER_PROBE_INTERVAL": (False, 0, False, True),
    "GC_FREEZE_CONNECTIONS": (True, 0, False, True),
    "THIN_RETRY_DELAY": (False, 0, True, False),
    "THIN_MAX_RETRY_DELAY": (False, 0, True, False),
    "THIN_LEASE": (False, 0, True, False),
}


def _check_numbers(user_settings: dict[str, Any]) -> list[CheckMessage]:
    """Numeric settings of the wrong type or out of range (each would fail at its first use,
    in a request or a background thread, instead of at start-up)."""
    messages: list[CheckMessage] = []
    for name, (whole, least, excluded, optional) in _NUMBERS.items():
        value = user_settings.get(name, DEFAULTS[name])
        if value is None and optional:
            continue
        kinds = (int,) if whole else (int, float)
        in_range = (
            isinstance(value, kinds)
            and not isinstance(value, bool)
            and (value > least if excluded else value >= least)
        )
        if in_range:
            continue
        what = "a whole number" if whole else "a number"
        bound = f"above {least}" if excluded else f"of at least {least}"
        messages.append(
            Error(
                f"{SETTING_NAME}[{name!r}] = {value!r} is not {what} {bound}"
                + (" (or None)." if optional else "."),
                hint=f"The default is {DEFAULTS[name]!r}; docs/settings.md says what it does.",
                id="stripe_bridge.E008",
            )
        )
    relay = user_settings.get("OUTBOX_RELAY", DEFAULTS["OUTBOX_RELAY"])
    if not isinstance(relay, bool):
        messages.append(
            Error(
                f"{SETTING_NAME}['OUTBOX_RELAY'] = {relay!r} is not True or False.",
                hint="True runs the outbox relay in each server process (the default).",
                id="stripe_bridge.E008",
            )
        )
    return messages


# --- the server: can a websocket reach the bridge's consumer? --------------------------------

_ROUTE_HINT = (
    'In asgi.py, route "websocket" to URLRouter(django_stripe_bridge.routing.'
    "websocket_urlpatterns) inside a channels ProtocolTypeRouter (see the README)."
)


@register(Tags.compatibility)
def check_server(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report a site whose websockets cannot reach the bridge's consumer (they would 404)."""
    messages: list[CheckMessage] = []
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        messages.append(
            Warning(
                "ASGI_APPLICATION is not set: no ASGI server routes websockets to the bridge.",
                hint='Set ASGI_APPLICATION = "mysite.asgi.application" (your project\'s name). '
                + _ROUTE_HINT,
                id="stripe_bridge.W007",
            )
        )
    else:
        try:
            application = import_string(path)
        except Exception as exc:  # an asgi.py that fails to import: say why, do not crash
            messages.append(
                Warning(
                    f"ASGI_APPLICATION = {path!r} cannot be imported: {type(exc).__name__}: {exc}",
                    hint="Fix the module, or the dotted path to its 'application'.",
                    id="stripe_bridge.W007",
                )
            )
        else:
            if _reaches_consumer(application) is False:
                messages.append(
                    Warning(
                        f"ASGI_APPLICATION = {path!r} has no websocket route to the bridge's "
                        "consumer: ws/stripe/ answers 404.",
                        hint=_ROUTE_HINT,
                        id="stripe_bridge.W008",
                    )
                )
    if settings.DEBUG and not _runserver_speaks_websockets():
        messages.append(
            Warning(
                "runserver cannot serve websockets: 'daphne' is not in INSTALLED_APPS before "
                "'django.contrib.staticfiles', so the websocket answers 404 in development.",
                hint='Put "daphne" first in INSTALLED_APPS (pip install '
                "'django-stripe-bridge[server]').",
                id="stripe_bridge.W009",
            )
        )
    return messages


def _runserver_speaks_websockets() -> bool:
    # The first installed app that has a runserver command provides it.
    names = [config.name for config in django_apps.get_app_configs()]
    if "daphne" not in names:
        return False
    staticfiles = "django.contrib.staticfiles"
    return staticfiles not in names or names.index("daphne") < names.index(staticfiles)


def _reaches_consumer(app: Any, depth: int = 0) -> bool | None:
    """Whether ``app`` routes websockets to the bridge's consumer; ``None`` when it cannot
    be told (a wrapper this walk does not know), so that no site is warned wrongly."""
    from .realtime.websocket import StripeEventConsumer

    if depth > 30:
        return None
    consumer = getattr(app, "consumer_class", None)
    if isinstance(consumer, type):
        return issubclass(consumer, StripeEventConsumer)
    if isinstance(app, ASGIHandler):
        return False  # Django's own handler: HTTP only
    mapping = getattr(app, "application_mapping", None)
    if isinstance(mapping, dict):  # channels' ProtocolTypeRouter
        return "websocket" in mapping and _reaches_consumer(mapping["websocket"], depth + 1)
    routes = getattr(app, "routes", None)
    if isinstance(routes, list | tuple):  # channels' URLRouter
        return _any_route_reaches(routes, depth + 1)
    for name in ("inner", "application", "app"):  # channels' middleware, static files handlers
        child = getattr(app, name, None)
        if child is not None:
            return _reaches_consumer(child, depth + 1)
    return None


def _any_route_reaches(routes: list[Any] | tuple[Any, ...], depth: int) -> bool | None:
    found: list[bool | None] = []
    for route in routes:
        nested = getattr(route, "url_patterns", None)  # a URLResolver
        if isinstance(nested, list | tuple):
            found.append(_any_route_reaches(nested, depth + 1))
        else:
            found.append(_reaches_consumer(getattr(route, "callback", None), depth + 1))
    if True in found:
        return True
    return None if None in found else False


_FILTER_PATH = "django_stripe_bridge.error_reports.SafeExceptionReporterFilter"


@register(Tags.security)
def check_error_reports(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report a channel layer password that Django's error reports would show."""
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if hide_url_passwords(layers) == layers:
        return []
    path = settings.DEFAULT_EXCEPTION_REPORTER_FILTER
    try:
        reporter_filter = import_string(path)
    except ImportError:
        reporter_filter = None  # Django reports that itself, when it first needs the filter
    if isinstance(reporter_filter, type) and issubclass(
        reporter_filter, SafeExceptionReporterFilter
    ):
        return []
    return [
        Warning(
            "CHANNEL_LAYERS holds a URL with a password, which Django's error reports (the "
            "DEBUG page, the e-mails to ADMINS) show: DEFAULT_EXCEPTION_REPORTER_FILTER = "
            f"{path!r} does not hide it.",
            hint=f'Set DEFAULT_EXCEPTION_REPORTER_FILTER = "{_FILTER_PATH}" (or a subclass).',
            id="stripe_bridge.W010",
        )
    ]


# --- deployment: does the channel layer answer? -----------------------------------------------


@register(Tags.compatibility, deploy=True)
def check_layer_answers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report a default channel layer that does not answer (``check --deploy`` only).

    Sends one message to a group nobody joins, through a new instance of the layer, and
    waits ``LAYER_CHECK_TIMEOUT`` seconds. Without an answering layer every event stays
    unpublished and websockets cannot join their groups.
    """
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    default_layer = layers.get("default") if isinstance(layers, dict) else None
    if not isinstance(default_layer, dict) or default_layer.get("BACKEND") == _IN_MEMORY_LAYER:
        return []  # W003 and W005 speak of these
    from channels.layers import channel_layers

    try:
        layer = channel_layers.make_backend("default")
        async_to_sync(_send_to_nobody)(layer)
    except Exception as exc:  # any failure to reach the layer is what this check reports
        reason = "no answer" if isinstance(exc, TimeoutError) else type(exc).__name__
        return [
            Warning(
                f"The channel layer CHANNEL_LAYERS['default'] does not answer ({reason} within "
                f"{LAYER_CHECK_TIMEOUT:g} s): events are stored but not pushed, and websockets "
                "cannot subscribe.",
                hint="Start Redis, or point the layer's hosts (REDIS_URL) at a running one; "
                "see docs/scaling.md.",
                id="stripe_bridge.W011",
            )
        ]
    return []


async def _send_to_nobody(layer: Any) -> None:
    try:
        await asyncio.wait_for(
            layer.group_send("stripe_bridge.check", {"type": "stripe_bridge.check"}),
            LAYER_CHECK_TIMEOUT,
        )
    finally:
        # Close the connections this instance opened (channels-redis core, then pub/sub).
        with contextlib.suppress(Exception):
            if hasattr(layer, "close_pools"):
                await layer.close_pools()
            elif type(layer).__name__ == "RedisPubSubChannelLayer":
                await layer.flush()
