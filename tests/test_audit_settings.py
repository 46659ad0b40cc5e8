"""SPEC §2: settings reach the Stripe client; the system checks guard what they cannot."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import override_settings

from django_stripe_bridge.checks import check_settings
from django_stripe_bridge.layers import redis_channel_layer
from django_stripe_bridge.models import StripeTransaction
from tests.charge_fixtures import *  # noqa: F403
from tests.charge_fixtures import TEST_API_KEY, post_json, stripe_key_for

CHARGE = {
    "id": "ch_audit_retry",
    "object": "charge",
    "amount": 1000,
    "amount_refunded": 0,
    "currency": "usd",
    "status": "succeeded",
    "paid": True,
    "captured": True,
    "created": 1_700_000_000,
    "livemode": False,
}


class FlakyStripe:
    """A Stripe API that fails the first ``failures`` requests with a retryable 500."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[dict[str, str]] = []

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                flaky.requests.append({k.lower(): v for k, v in self.headers.items()})
                if len(flaky.requests) <= flaky.failures:
                    status, body = 500, {"error": {"type": "api_error", "message": "Try again."}}
                else:
                    status, body = 200, CHARGE
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                if status == 500:
                    # Stripe says so on its retryable failures; the library then retries.
                    self.send_header("Stripe-Should-Retry", "true")
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


def _settings_without(settings: Any, url: str, *drop: str, **extra: Any) -> None:
    bridge = {k: v for k, v in settings.STRIPE_BRIDGE.items() if k not in drop}
    settings.STRIPE_BRIDGE = {**bridge, "API_KEY": TEST_API_KEY, "API_BASE": url, **extra}


@pytest.mark.django_db
def test_default_retries_resend_the_same_idempotency_key(settings, csrf_client):
    """MAX_NETWORK_RETRIES defaults to 2 and is safe: a retry repeats the create's key."""
    flaky = FlakyStripe(failures=1)
    with flaky.serve() as url:
        _settings_without(settings, url, "MAX_NETWORK_RETRIES", API_VERSION="2024-06-20")
        response = post_json(csrf_client, "charge", {"token": "tok_visa", "amount": 1000})

    assert response.status_code == 200, response.content
    assert len(flaky.requests) == 2
    keys = {request["idempotency-key"] for request in flaky.requests}
    assert keys == {stripe_key_for(csrf_client, response["Idempotency-Key"])}
    assert StripeTransaction.objects.get().idempotency_key == keys.pop()
    # API_VERSION pins the version of every call.
    assert {request["stripe-version"] for request in flaky.requests} == {"2024-06-20"}


@pytest.mark.django_db
def test_a_clients_idempotency_key_is_the_one_retried(settings, csrf_client):
    flaky = FlakyStripe(failures=2)
    with flaky.serve() as url:
        _settings_without(settings, url, "MAX_NETWORK_RETRIES")
        response = post_json(
            csrf_client, "charge", {"token": "tok_visa", "amount": 1000}, idempotency_key="o-7"
        )
    assert response.status_code == 200, response.content
    sent = [request["idempotency-key"] for request in flaky.requests]
    assert sent == [stripe_key_for(csrf_client, "o-7")] * 3


@pytest.mark.django_db
def test_max_network_retries_zero_means_one_attempt(settings, csrf_client):
    flaky = FlakyStripe(failures=1)
    with flaky.serve() as url:
        _settings_without(settings, url, MAX_NETWORK_RETRIES=0)
        response = post_json(csrf_client, "charge", {"token": "tok_visa", "amount": 1000})
    assert response.status_code == 502
    assert len(flaky.requests) == 1
    assert StripeTransaction.objects.count() == 0


# --- system checks beyond the listed ones ---------------------------------------------------

GOOD = {"API_KEY": "sk_test_x", "WEBHOOK_SECRETS": ["whsec_x"]}
REDIS_LAYER = {"default": redis_channel_layer("redis://localhost:6379/0")}


def _ids(**bridge: Any) -> set[str]:
    with override_settings(
        STRIPE_BRIDGE={**GOOD, **bridge}, CHANNEL_LAYERS=REDIS_LAYER, DEBUG=False
    ):
        return {message.id for message in check_settings()}


@pytest.mark.parametrize("key", ["rk_test_x", "rk_live_x", "sk_live_x"])
def test_restricted_and_live_keys_are_accepted(key):
    assert _ids(API_KEY=key) == set()


@pytest.mark.parametrize(
    ("bridge", "expected"),
    [
        ({"CURRENCIES": ["eur", "gbp"]}, {"stripe_bridge.E006"}),
        ({"CURRENCIES": ["EUR"], "DEFAULT_CURRENCY": "eur"}, set()),
        ({"CURRENCIES": ["usd", "eur"]}, set()),
        ({"CURRENCIES": None}, set()),
        ({"CURRENCIES": "usd"}, {"stripe_bridge.E006"}),
        ({"MIN_AMOUNT": 5000, "MAX_AMOUNT": 100}, {"stripe_bridge.E007"}),
        ({"MIN_AMOUNT": 0}, {"stripe_bridge.E007"}),
        ({"MIN_AMOUNT": 50, "MAX_AMOUNT": 50}, set()),
    ],
)
def test_currency_and_amount_limits_that_contradict_each_other(bridge, expected):
    """A default currency outside CURRENCIES, or an empty amount range, would be used anyway."""
    assert _ids(**bridge) == expected


@pytest.mark.parametrize(
    ("bridge", "expected"),
    [
        ({"REPLAY_THREADS": 0}, {"stripe_bridge.E008"}),
        ({"REPLAY_THREADS": 1}, set()),
        ({"REPLAY_THREADS": 2.0}, {"stripe_bridge.E008"}),  # a thread count is whole
        ({"MAX_FRAMES_PER_SECOND": "20"}, {"stripe_bridge.E008"}),
        ({"MAX_FRAMES_PER_SECOND": 0}, {"stripe_bridge.E008"}),  # above 0
        ({"MAX_FRAMES_PER_SECOND": 0.5}, set()),
        ({"FRAME_BURST": True}, {"stripe_bridge.E008"}),  # a bool is not a number here
        ({"OUTBOX_DELAY": 0}, set()),  # at least 0
        ({"OUTBOX_DELAY": -1}, {"stripe_bridge.E008"}),
        ({"OUTBOX_INTERVAL": 0}, {"stripe_bridge.E008"}),
        ({"OUTBOX_BATCH": None}, {"stripe_bridge.E008"}),
        ({"LAYER_PROBE_INTERVAL": None}, set()),  # turns the probe off
        ({"LAYER_PROBE_INTERVAL": 0}, set()),
        ({"LAYER_PROBE_INTERVAL": "10"}, {"stripe_bridge.E008"}),
        ({"WEBHOOK_MAX_BYTES": 0}, {"stripe_bridge.E008"}),
        ({"MAX_NETWORK_RETRIES": 0}, set()),
        ({"TIMEOUT": 0}, {"stripe_bridge.E008"}),
        ({"OUTBOX_RELAY": "yes"}, {"stripe_bridge.E008"}),
        ({"OUTBOX_RELAY": False}, set()),
    ],
)
def test_numeric_settings_of_the_wrong_type_or_range(bridge, expected):
    """Caught at start-up, not at first use in a request or a background thread."""
    assert _ids(**bridge) == expected


def test_a_numeric_setting_error_names_the_setting_the_value_and_the_bound():
    with override_settings(STRIPE_BRIDGE={**GOOD, "REPLAY_THREADS": 0}, DEBUG=False):
        (message,) = [m for m in check_settings() if m.id == "stripe_bridge.E008"]
    assert message.msg == "STRIPE_BRIDGE['REPLAY_THREADS'] = 0 is not a whole number of at least 1."
    assert "default is 4" in message.hint
    with override_settings(STRIPE_BRIDGE={**GOOD, "LAYER_PROBE_INTERVAL": -1}, DEBUG=False):
        (message,) = [m for m in check_settings() if m.id == "stripe_bridge.E008"]
    assert message.msg == (
        "STRIPE_BRIDGE['LAYER_PROBE_INTERVAL'] = -1 is not a number of at least 0 (or None)."
    )
    with override_settings(STRIPE_BRIDGE={**GOOD, "TIMEOUT": 0}, DEBUG=False):
        (message,) = [m for m in check_settings() if m.id == "stripe_bridge.E008"]
    assert message.msg == "STRIPE_BRIDGE['TIMEOUT'] = 0 is not a number above 0."
