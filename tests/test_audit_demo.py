"""SPEC §7: the demo settings read the environment; ``./run demo`` picks the Stripe to use."""

from __future__ import annotations

import importlib.util
import urllib.error
import urllib.request
from types import ModuleType

import pytest

from demo_project.run import uses_configured_stripe
from tests.live import ROOT, run_daphne

VARIABLES = (
    "STRIPE_API_KEY",
    "STRIPE_PUBLISHABLE_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "DATABASE_URL",
    "REDIS_URL",
    "STRIPE_CHARGE_THROTTLE_RATE",
    "DJANGO_DEBUG",
    "DJANGO_ALLOWED_HOSTS",
    "DJANGO_SECRET_KEY",
)


def demo_settings(monkeypatch: pytest.MonkeyPatch, tmp_path, **env: str) -> ModuleType:
    """``demo_project/settings.py`` executed afresh with exactly ``env`` set."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEMO_VAR_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(
        "audit_demo_settings", ROOT / "demo_project" / "settings.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_defaults_run_everything_locally(monkeypatch, tmp_path):
    demo = demo_settings(monkeypatch, tmp_path)
    assert demo.DEBUG is True
    assert demo.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert demo.DATABASES["default"]["NAME"] == str(tmp_path / "demo.sqlite3")
    assert demo.CHANNEL_LAYERS["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert demo.STRIPE_BRIDGE["API_KEY"] is None
    assert demo.STRIPE_BRIDGE["WEBHOOK_SECRETS"] == []
    assert demo.STRIPE_BRIDGE["CHARGE_THROTTLE_RATE"] == "10/min"
    assert set(demo.ALLOWED_HOSTS) == {"127.0.0.1", "localhost", "[::1]"}


def test_every_variable_is_read(monkeypatch, tmp_path):
    demo = demo_settings(
        monkeypatch,
        tmp_path,
        STRIPE_API_KEY="sk_test_demo",
        STRIPE_PUBLISHABLE_KEY="pk_test_demo",
        STRIPE_WEBHOOK_SECRET="whsec_new, whsec_old",
        STRIPE_API_BASE="http://127.0.0.1:8420",
        DATABASE_URL="postgres://bridge:pw@db.example:5433/payments",
        REDIS_URL="redis://cache.example:6380/2",
        STRIPE_CHARGE_THROTTLE_RATE="1000/min",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="production-secret",
        DJANGO_ALLOWED_HOSTS="shop.example, api.shop.example",
    )
    assert demo.STRIPE_BRIDGE["API_KEY"] == "sk_test_demo"
    assert demo.STRIPE_BRIDGE["PUBLISHABLE_KEY"] == "pk_test_demo"
    assert demo.STRIPE_BRIDGE["WEBHOOK_SECRETS"] == ["whsec_new", "whsec_old"]
    assert demo.STRIPE_BRIDGE["API_BASE"] == "http://127.0.0.1:8420"
    assert demo.STRIPE_BRIDGE["CHARGE_THROTTLE_RATE"] == "1000/min"
    db = demo.DATABASES["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["HOST"], db["PORT"], db["USER"]) == (
        "payments",
        "db.example",
        5433,
        "bridge",
    )
    assert db["OPTIONS"]["pool"]  # ASGI: pooled connections, not one per request
    layer = demo.CHANNEL_LAYERS["default"]
    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    (host,) = layer["CONFIG"]["hosts"]
    assert host["address"] == "redis://cache.example:6380/2"
    assert host["socket_timeout"] > 10  # longer than channels-redis's blocking receive
    assert demo.DEBUG is False
    assert demo.ALLOWED_HOSTS == ["shop.example", "api.shop.example"]


@pytest.mark.parametrize("value", ["off", "OFF", "none"])
def test_the_throttle_can_be_turned_off(monkeypatch, tmp_path, value):
    demo = demo_settings(monkeypatch, tmp_path, STRIPE_CHARGE_THROTTLE_RATE=value)
    assert demo.STRIPE_BRIDGE["CHARGE_THROTTLE_RATE"] is None


@pytest.mark.parametrize(("value", "debug"), [("0", False), ("false", False), ("1", True)])
def test_django_debug(monkeypatch, tmp_path, value, debug):
    demo = demo_settings(monkeypatch, tmp_path, DJANGO_DEBUG=value, DJANGO_SECRET_KEY="k" * 50)
    assert demo.DEBUG is debug


def test_production_like_demo_needs_its_own_secret_key(monkeypatch, tmp_path):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY"):
        demo_settings(monkeypatch, tmp_path, DJANGO_DEBUG="0")
    assert "demo-only" in demo_settings(monkeypatch, tmp_path).SECRET_KEY


def test_a_sqlite_url_gets_the_settings_for_concurrent_webhooks(monkeypatch, tmp_path):
    demo = demo_settings(monkeypatch, tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/other.db")
    db = demo.DATABASES["default"]
    assert db["NAME"] == f"{tmp_path}/other.db"
    assert db["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


@pytest.mark.parametrize(
    ("env", "configured"),
    [
        ({}, False),
        ({"STRIPE_API_KEY": ""}, False),
        ({"STRIPE_API_KEY": "sk_test_real"}, True),
        ({"STRIPE_API_KEY": "rk_live_real"}, True),
        # Another Stripe-compatible server is used as given, not replaced by the stand-in.
        ({"STRIPE_API_KEY": "sk_test_123", "STRIPE_API_BASE": "http://127.0.0.1:12111"}, True),
    ],
)
def test_run_demo_embeds_the_stand_in_only_without_a_key(env, configured):
    assert uses_configured_stripe(env) is configured


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_production_like_demo_under_daphne():
    """DJANGO_DEBUG=0: the page and its static files are served, errors show no debug page."""
    env = {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "production-like-secret-key",
        "STRIPE_API_KEY": "",
        "STRIPE_WEBHOOK_SECRET": "whsec_prod",
    }
    with run_daphne(env=env) as server:
        status, page = _get(server.url + "/")
        assert status == 200
        assert "stripe-bridge.js" in page
        status, script = _get(server.url + "/static/django_stripe_bridge/stripe-bridge.js")
        assert status == 200 and "StripeBridge" in script
        status, text = _get(server.url + "/no/such/page")
        assert status == 404
        assert "Traceback" not in text and "DEBUG = True" not in text
        status, schema = _get(server.url + "/api/services/Stripe/schema")
        assert status == 200 and schema.startswith("openapi: 3")
        status, body = _get(server.url + "/api/services/Stripe/schema?format=json")
        assert status == 200 and body.startswith("{")
