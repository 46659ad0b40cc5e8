"""``django_stripe_bridge.stripe_api``: the client, the calls, and the translation of errors."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe

from django_stripe_bridge import stripe_api
from django_stripe_bridge.exceptions import (
    ConfigurationError,
    NotConfigured,
    StripeCardError,
    StripeIdempotencyConflict,
    StripeInvalidRequest,
    StripeUnavailable,
)
from tests.charge_fixtures import *  # noqa: F403
from tests.charge_fixtures import TEST_API_KEY, bridge_settings_for, json_server

# --- the client ------------------------------------------------------------------------------


def test_no_api_key_is_not_configured(settings):
    bridge_settings_for(settings, API_KEY=None)
    with pytest.raises(NotConfigured) as caught:
        stripe_api.get_stripe_client()
    assert isinstance(caught.value, ConfigurationError)
    assert "STRIPE_BRIDGE['API_KEY']" in str(caught.value)
    assert caught.value.status_code == 503
    assert "API_KEY" not in caught.value.error["message"]


def test_the_client_is_reused_until_a_setting_changes(settings):
    bridge_settings_for(settings, API_KEY="sk_test_one")
    client = stripe_api.get_stripe_client()
    assert stripe_api.get_stripe_client() is client
    bridge_settings_for(settings, TIMEOUT=5)
    assert stripe_api.get_stripe_client() is not client


def test_redact_masks_the_configured_key_and_anything_like_a_key(settings):
    bridge_settings_for(settings, API_KEY="sk_test_abcdefghijklmnop")
    text = stripe_api.redact("key sk_test_abcdefghijklmnop, other rk_live_XYZ123 and sk_live_42")
    assert "abcdefghijklmnop" not in text
    assert "XYZ123" not in text and "sk_live_42" not in text
    assert stripe_api.redact("no secret here") == "no secret here"


# --- calls against the stand-in --------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.standin
def test_create_charge_returns_a_plain_dict(bridge_stripe):
    charge = stripe_api.create_charge(
        {"amount": 1000, "currency": "usd", "source": "tok_visa"}, idempotency_key="k1"
    )
    assert type(charge) is dict
    assert charge["status"] == "succeeded"
    json.dumps(charge)  # plain JSON all the way down


@pytest.mark.django_db
@pytest.mark.standin
def test_errors_are_the_bridges_own(bridge_stripe):
    with pytest.raises(StripeCardError) as declined:
        stripe_api.create_charge(
            {"amount": 1000, "currency": "usd", "source": "tok_chargeDeclinedLostCard"},
            idempotency_key="k2",
        )
    assert declined.value.status_code == 402
    assert declined.value.error["decline_code"] == "lost_card"
    assert declined.value.request_id

    with pytest.raises(StripeInvalidRequest) as refused:
        stripe_api.create_charge({"amount": 1000, "currency": "usd"}, idempotency_key="k3")
    assert refused.value.status_code == 400


@pytest.mark.django_db
@pytest.mark.standin
def test_list_events_pages_through_newest_first(bridge_stripe):
    started = int(time.time())
    ids = [
        stripe_api.create_charge(
            {"amount": 100 * n + 50, "currency": "usd", "source": "tok_visa"},
            idempotency_key=f"ev-{n}",
        )["id"]
        for n in range(1, 4)
    ]

    events = list(stripe_api.list_events(types=["charge.succeeded"], page_size=1))

    assert [e["data"]["object"]["id"] for e in events] == ids[::-1]
    assert all(type(e) is dict and e["id"].startswith("evt_") for e in events)
    assert len(list(stripe_api.list_events(since=started - 60, page_size=2))) >= 3
    assert list(stripe_api.list_events(since=started + 3600)) == []


def test_list_events_raises_the_bridges_errors(settings, closed_port_url):
    bridge_settings_for(settings, API_BASE=closed_port_url, MAX_NETWORK_RETRIES=0)
    with pytest.raises(StripeUnavailable):
        list(stripe_api.list_events())


class _Capture(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.django_db
@pytest.mark.standin
def test_register_webhook_with_the_stand_in_returns_the_secret_it_signs_with(bridge_stripe):
    bridge_stripe.reset(webhooks=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    _Capture.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        secret = stripe_api.register_webhook(url, events=["charge.succeeded"])
        assert secret.startswith("whsec_")
        stripe_api.create_charge(
            {"amount": 1000, "currency": "usd", "source": "tok_visa"}, idempotency_key="wh"
        )
        deadline = time.monotonic() + 10
        while not _Capture.received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()
        server.server_close()
        bridge_stripe.reset(webhooks=True)

    assert len(_Capture.received) == 1
    headers, body = _Capture.received[0]
    assert json.loads(body)["type"] == "charge.succeeded"
    parts = dict(item.split("=", 1) for item in headers["Stripe-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(parts["v1"], expected.hexdigest())


def test_register_webhook_with_a_stripe_api_returns_stripes_secret(settings):
    endpoint = {"id": "we_1", "object": "webhook_endpoint", "secret": "whsec_from_stripe"}
    with json_server(200, json.dumps(endpoint).encode()) as url:
        bridge_settings_for(settings, API_BASE=url, API_KEY=TEST_API_KEY)
        assert stripe_api.register_webhook("https://example.com/hook") == "whsec_from_stripe"


# --- translation of stripe's errors ----------------------------------------------------------


def _body(**error):
    return {"error": error}


def test_a_card_error_keeps_its_codes_and_ids():
    exc = stripe.CardError(
        "Your card was declined.",
        None,
        "card_declined",
        http_status=402,
        json_body=_body(
            type="card_error",
            code="card_declined",
            decline_code="do_not_honor",
            charge="ch_1",
            payment_intent={"id": "pi_1", "object": "payment_intent"},
            message="Your card was declined.",
            doc_url="https://stripe.com/docs/error-codes/card-declined",
        ),
    )
    error = stripe_api.translate_error(exc)
    assert isinstance(error, StripeCardError)
    assert error.error == {
        "type": "card_error",
        "message": "Your card was declined.",
        "code": "card_declined",
        "decline_code": "do_not_honor",
        "charge": "ch_1",
        "payment_intent": "pi_1",
    }


@pytest.mark.parametrize(
    ("exc", "expected", "status"),
    [
        (
            stripe.IdempotencyError(
                "Keys for idempotent requests can only be used with the same parameters",
                http_status=400,
                json_body=_body(type="idempotency_error"),
            ),
            StripeIdempotencyConflict,
            409,
        ),
        (
            stripe.IdempotencyError(
                "There is currently another in-progress request using this Idempotent Key",
                http_status=409,
                json_body=_body(type="idempotency_error"),
            ),
            StripeIdempotencyConflict,
            409,
        ),
        (stripe.AuthenticationError("Invalid API Key", http_status=401), NotConfigured, 503),
        (
            stripe.PermissionError("This key lacks a permission", http_status=403),
            NotConfigured,
            503,
        ),
        (stripe.RateLimitError("Too many requests", http_status=429), StripeUnavailable, 502),
        (stripe.APIConnectionError("Network error"), StripeUnavailable, 502),
        (stripe.APIError("Something went wrong", http_status=500), StripeUnavailable, 502),
        (
            stripe.InvalidRequestError(
                "Invalid currency: xyz",
                "currency",
                "parameter_invalid",
                http_status=400,
                json_body=_body(type="invalid_request_error", param="currency"),
            ),
            StripeInvalidRequest,
            400,
        ),
    ],
)
def test_each_stripe_error_maps_to_a_bridge_error(exc, expected, status):
    error = stripe_api.translate_error(exc)
    assert type(error) is expected
    assert error.status_code == status
    assert error.error["type"] in ("api_error", "invalid_request_error", "idempotency_error")
    assert error.error["message"]


def test_a_message_holding_the_key_is_redacted(settings):
    bridge_settings_for(settings, API_KEY="sk_test_secretsecretsecret")
    exc = stripe.InvalidRequestError(
        "Invalid API Key provided: sk_test_secretsecretsecret", None, http_status=400
    )
    assert "secretsecret" not in stripe_api.translate_error(exc).error["message"]


@pytest.mark.parametrize(
    ("status", "code", "advice"),
    [(400, "idempotency_key_in_use", "Send a new key"), (409, "request_in_progress", "Retry")],
)
def test_an_idempotency_conflict_says_whether_to_wait_or_to_use_a_new_key(status, code, advice):
    exc = stripe.IdempotencyError(
        "Stripe's message", http_status=status, json_body=_body(type="idempotency_error")
    )
    error = stripe_api.translate_error(exc)
    assert error.status_code == 409
    assert error.error["code"] == code
    assert error.error["message"].startswith(advice) or f". {advice}" in error.error["message"]
