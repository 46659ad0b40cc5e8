"""Each failure message names the action that failed and what retrying it does.

Only a payment has an Idempotency-Key that makes a retry safe; registering a webhook,
listing events and reading a transaction must not promise that "a payment is never made
twice" (issue 11). Faults are real: a closed loopback port, a server answering 500.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError
from django.test import Client

from django_stripe_bridge import stripe_api
from django_stripe_bridge.exceptions import StripeUnavailable
from tests.live import free_port

PAYMENT_PROMISE = "a payment is never made twice"


class _Failing(http.server.BaseHTTPRequestHandler):
    def _fail(self) -> None:
        body = b'{"error": {"type": "api_error", "message": "internal"}}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _fail

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def failing_stripe() -> Iterator[str]:
    """A Stripe API base on loopback that answers every request with HTTP 500."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def offline_base() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


@pytest.fixture(params=["offline", "server_error"])
def broken_stripe(request, settings, failing_stripe) -> str:
    base = offline_base() if request.param == "offline" else failing_stripe
    settings.STRIPE_BRIDGE = {
        **settings.STRIPE_BRIDGE,
        "API_BASE": base,
        "MAX_NETWORK_RETRIES": 0,
        "TIMEOUT": 5,
    }
    return request.param


def test_webhook_setup_says_to_register_again_not_to_retry_a_payment(broken_stripe):
    with pytest.raises(CommandError) as raised:
        call_command("stripe_bridge_webhook_setup", "--url", "https://example.com/hook")
    message = str(raised.value)
    assert message.startswith("Could not register the webhook: Stripe ")
    assert "register again" in message
    assert PAYMENT_PROMISE not in message and "Idempotency-Key" not in message


@pytest.mark.django_db
def test_sync_says_reading_changes_nothing(broken_stripe):
    with pytest.raises(CommandError) as raised:
        call_command("stripe_bridge_sync", "--since", "1d")
    message = str(raised.value)
    assert "Could not list Stripe's events" in message
    assert "reading changes nothing at Stripe" in message
    assert PAYMENT_PROMISE not in message and "Idempotency-Key" not in message


def test_a_payment_still_says_to_retry_with_the_same_key(broken_stripe):
    with pytest.raises(StripeUnavailable) as raised:
        stripe_api.create_charge(
            {"amount": 1000, "currency": "usd", "source": "tok_visa"}, idempotency_key="k1"
        )
    assert "Retry with the same Idempotency-Key" in str(raised.value)
    assert PAYMENT_PROMISE in str(raised.value)


@pytest.mark.django_db
def test_a_database_outage_on_a_read_says_retry_later(client: Client):
    with mock.patch(
        "django_stripe_bridge.models.StripeTransaction.objects.filter",
        side_effect=OperationalError("db down"),
    ):
        answer = client.get("/api/services/Stripe/transactions/ch_1")
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "database_unavailable"
    assert error["message"] == "The database is unavailable. Retry later."


@pytest.mark.django_db
def test_a_database_outage_on_a_charge_says_retry_with_the_same_key(client: Client):
    with mock.patch(
        "django_stripe_bridge.views.charges.create_charge",
        side_effect=OperationalError("db down"),
    ):
        answer = client.post(
            "/api/services/Stripe/charge",
            {"amount": 1000, "token": "tok_visa"},
            content_type="application/json",
        )
    assert answer.status_code == 503, answer.content
    assert "Retry with the same Idempotency-Key" in answer.json()["error"]["message"]
