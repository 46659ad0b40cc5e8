"""``POST charge`` through the real stripe library against the offline stand-in (SPEC §4)."""

from __future__ import annotations

import json
import logging
import time

import pytest
from django.contrib.auth import get_user_model

from django_stripe_bridge.models import StripeTransaction
from tests.charge_fixtures import *  # noqa: F403
from tests.charge_fixtures import (
    API,
    TEST_API_KEY,
    bridge_settings_for,
    json_server,
    post_json,
    stripe_key_for,
)

pytestmark = [pytest.mark.django_db, pytest.mark.standin]

VISA = {"token": "tok_visa", "amount": 1000}


def standin_charges(standin):
    return standin.client().v1.charges.list({"limit": 100}).data


# --- success ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["charge", "charge/"])
def test_a_token_is_charged_and_its_transaction_recorded(bridge_stripe, csrf_client, path):
    response = post_json(csrf_client, path, {**VISA, "description": "Order 42"})

    assert response.status_code == 200, response.content
    charge = response.json()
    assert charge["id"].startswith("ch_")
    assert charge["object"] == "charge"
    assert (charge["amount"], charge["currency"]) == (1000, "usd")
    assert charge["status"] == "succeeded" and charge["paid"] is True
    assert charge["description"] == "Order 42"
    assert response["Cache-Control"] == "no-store"

    tx = StripeTransaction.objects.get(pk=charge["id"])
    assert (tx.kind, tx.status, tx.amount, tx.currency) == ("charge", "succeeded", 1000, "usd")
    assert tx.user is None
    # The bridge made a key (a UUID) and sent Stripe its scoped form.
    assert len(response["Idempotency-Key"]) == 36
    assert tx.idempotency_key == stripe_key_for(csrf_client, response["Idempotency-Key"])
    assert tx.amount_captured == 1000
    assert charge["id"] in tx.payment_state().objects


def test_the_seed_request_works_as_written(bridge_stripe, csrf_client):
    """The README's curl: no Accept header, anonymous, no CSRF token."""
    response = csrf_client.post(
        f"{API}/charge",
        '{"amount": 1000, "token": "tok_visa"}',
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response.json()["id"].startswith("ch_")
    assert response.json()["status"] == "succeeded"


def test_a_one_element_array_body_is_accepted(bridge_stripe, csrf_client):
    response = post_json(csrf_client, "charge", [VISA])
    assert response.status_code == 200
    assert response.json()["amount"] == 1000


def test_amount_with_a_zero_fraction_currency_and_metadata_are_passed_on(
    bridge_stripe, csrf_client
):
    body = {
        "token": "tok_mastercard",
        "amount": 2500.0,
        "currency": "EUR",
        "metadata": {"order": "42", "k" * 40: "v" * 500},
        "receipt_email": "jenny@example.com",
    }
    response = post_json(csrf_client, "charge", body)
    assert response.status_code == 200, response.content
    charge = response.json()
    assert (charge["amount"], charge["currency"]) == (2500, "eur")
    assert charge["metadata"]["order"] == "42"
    assert charge["receipt_email"] == "jenny@example.com"


def test_the_default_currency_setting_is_used(bridge_stripe, csrf_client, settings):
    bridge_settings_for(settings, DEFAULT_CURRENCY="gbp")
    response = post_json(csrf_client, "charge", VISA)
    assert response.json()["currency"] == "gbp"


# --- declines --------------------------------------------------------------------------------

DECLINES = [
    ("tok_chargeDeclined", "card_declined", "generic_decline"),
    ("tok_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("tok_chargeDeclinedLostCard", "card_declined", "lost_card"),
    ("tok_chargeDeclinedStolenCard", "card_declined", "stolen_card"),
    ("tok_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ("tok_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
    ("tok_chargeDeclinedProcessingError", "processing_error", "processing_error"),
    ("tok_chargeDeclinedFraudulent", "card_declined", "fraudulent"),
    ("tok_visa_chargeDeclinedVelocityLimitExceeded", "card_declined", "card_velocity_exceeded"),
]


@pytest.mark.parametrize(("token", "code", "decline_code"), DECLINES)
def test_a_decline_is_402_with_its_codes_and_the_failed_charge(
    bridge_stripe, csrf_client, token, code, decline_code
):
    response = post_json(csrf_client, "charge", {"token": token, "amount": 1000})

    assert response.status_code == 402, response.content
    error = response.json()["error"]
    assert error["type"] == "card_error"
    assert (error["code"], error["decline_code"]) == (code, decline_code)
    assert error["message"]
    assert error["charge"].startswith("ch_")
    # The failed charge exists at Stripe, and its transaction can be followed.
    assert [c.id for c in standin_charges(bridge_stripe)] == [error["charge"]]
    tx = StripeTransaction.objects.get(pk=error["charge"])
    assert (tx.status, tx.amount, tx.currency) == ("failed", 1000, "usd")


# --- idempotency -----------------------------------------------------------------------------


def test_the_same_idempotency_key_twice_charges_once(bridge_stripe, csrf_client):
    first = post_json(csrf_client, "charge", VISA, idempotency_key="order-42-attempt-1")
    again = post_json(csrf_client, "charge", VISA, idempotency_key="order-42-attempt-1")

    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert len(standin_charges(bridge_stripe)) == 1
    tx = StripeTransaction.objects.get()
    assert tx.idempotency_key == stripe_key_for(csrf_client, "order-42-attempt-1")


def test_the_key_used_is_in_the_response(bridge_stripe, csrf_client, settings, closed_port_url):
    made = post_json(csrf_client, "charge", VISA)
    tx = StripeTransaction.objects.get(pk=made.json()["id"])
    assert tx.idempotency_key == stripe_key_for(csrf_client, made["Idempotency-Key"])
    given = post_json(csrf_client, "charge", VISA, idempotency_key="mine")
    assert given["Idempotency-Key"] == "mine"
    # After a 502 the client can retry with the key the bridge made.
    bridge_settings_for(settings, API_BASE=closed_port_url)
    failed = post_json(csrf_client, "charge", VISA)
    assert failed.status_code == 502
    assert len(failed["Idempotency-Key"]) == 36


def test_without_a_key_two_requests_are_two_charges(bridge_stripe, csrf_client):
    first = post_json(csrf_client, "charge", VISA)
    second = post_json(csrf_client, "charge", VISA)
    assert first.json()["id"] != second.json()["id"]
    assert StripeTransaction.objects.count() == 2


def test_a_key_reused_with_another_body_is_409(bridge_stripe, csrf_client):
    assert post_json(csrf_client, "charge", VISA, idempotency_key="k-1").status_code == 200
    response = post_json(csrf_client, "charge", {**VISA, "amount": 2000}, idempotency_key="k-1")

    assert response.status_code == 409
    assert response.json()["error"]["type"] == "idempotency_error"
    assert len(standin_charges(bridge_stripe)) == 1


@pytest.mark.parametrize("key", ["", " padded ", "x" * 256, "caf\u00e9"])
def test_a_malformed_idempotency_key_is_400(bridge_stripe, csrf_client, key):
    response = csrf_client.post(
        f"{API}/charge",
        json.dumps(VISA),
        content_type="application/json",
        headers={"Idempotency-Key": key},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"


# --- refused by Stripe -----------------------------------------------------------------------


def test_an_unknown_token_is_400_naming_the_token(bridge_stripe, csrf_client):
    response = post_json(csrf_client, "charge", {"token": "tok_doesNotExist", "amount": 1000})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "token")
    assert "tok_doesNotExist" in error["message"]


def test_an_amount_below_stripes_minimum_is_400_naming_the_amount(bridge_stripe, csrf_client):
    response = post_json(csrf_client, "charge", {"token": "tok_visa", "amount": 10})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "amount"
    assert StripeTransaction.objects.count() == 0


# --- bad input -------------------------------------------------------------------------------

BAD_BODIES = [
    ({"amount": 1000}, "token"),
    ({"token": "", "amount": 1000}, "token"),
    ({"token": None, "amount": 1000}, "token"),
    ({"token": 123, "amount": 1000}, "token"),
    ({"token": ["tok_visa"], "amount": 1000}, "token"),
    ({"token": "tok visa", "amount": 1000}, "token"),
    ({"token": "t" * 256, "amount": 1000}, "token"),
    ({"token": "tok_visa"}, "amount"),
    ({"token": "tok_visa", "amount": None}, "amount"),
    ({"token": "tok_visa", "amount": 10.5}, "amount"),
    ({"token": "tok_visa", "amount": True}, "amount"),
    ({"token": "tok_visa", "amount": -1}, "amount"),
    ({"token": "tok_visa", "amount": 0}, "amount"),
    ({"token": "tok_visa", "amount": "1000"}, "amount"),
    ({"token": "tok_visa", "amount": 100_000_000}, "amount"),
    ({"token": "tok_visa", "amount": 1e300}, "amount"),
    ({**VISA, "currency": "us"}, "currency"),
    ({**VISA, "currency": "usdd"}, "currency"),
    ({**VISA, "currency": "u$d"}, "currency"),
    ({**VISA, "currency": 840}, "currency"),
    ({**VISA, "metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
    ({**VISA, "metadata": {"k" * 41: "v"}}, "metadata"),
    ({**VISA, "metadata": {"a[b]": "v"}}, "metadata"),
    ({**VISA, "metadata": {"order": 42}}, "metadata[order]"),
    ({**VISA, "metadata": {"order": None}}, "metadata[order]"),
    ({**VISA, "metadata": {"order": "v" * 501}}, "metadata[order]"),
    ({**VISA, "metadata": ["order", "42"]}, "metadata"),
    ({**VISA, "metadata": "order=42"}, "metadata"),
    ({**VISA, "receipt_email": "not-an-email"}, "receipt_email"),
    ({**VISA, "receipt_email": 5}, "receipt_email"),
    ({**VISA, "description": "d" * 1001}, "description"),
    ({**VISA, "description": 5}, "description"),
    ({**VISA, "curency": "eur"}, "curency"),
    ("tok_visa", "body"),
    (1000, "body"),
    (None, "body"),
    ([], "body"),
    ([VISA, VISA], "body"),
    (["tok_visa"], "body"),
]


@pytest.mark.parametrize(("body", "param"), BAD_BODIES)
def test_bad_input_is_400_naming_the_parameter(bridge_stripe, csrf_client, body, param):
    response = post_json(csrf_client, "charge", body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]
    assert standin_charges(bridge_stripe) == []  # refused before reaching Stripe


def test_a_missing_field_has_code_parameter_missing(bridge_stripe, csrf_client):
    error = post_json(csrf_client, "charge", {"amount": 1000}).json()["error"]
    assert error["code"] == "parameter_missing"
    assert error["message"] == "Missing required parameter 'token'."


def test_currencies_setting_limits_the_currency(bridge_stripe, csrf_client, settings):
    bridge_settings_for(settings, CURRENCIES=["usd", "eur"])
    assert post_json(csrf_client, "charge", {**VISA, "currency": "EUR"}).status_code == 200
    response = post_json(csrf_client, "charge", {**VISA, "currency": "gbp"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "currency"
    assert "usd, eur" in response.json()["error"]["message"]


def test_min_and_max_amount_settings_are_applied(bridge_stripe, csrf_client, settings):
    bridge_settings_for(settings, MIN_AMOUNT=500, MAX_AMOUNT=5000)
    for amount, expected in ((499, 400), (500, 200), (5000, 200), (5001, 400)):
        response = post_json(csrf_client, "charge", {**VISA, "amount": amount})
        assert response.status_code == expected, (amount, response.content)


@pytest.mark.parametrize(
    "raw", [b"{", b'{"token": "tok_visa", "amount": 1000', b"\xff\xfe", b'{"amount": NaN}']
)
def test_malformed_json_is_400_naming_the_body(bridge_stripe, csrf_client, raw):
    response = csrf_client.post(f"{API}/charge", raw, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "body")


def test_an_empty_body_is_400_naming_the_token(bridge_stripe, csrf_client):
    response = csrf_client.post(f"{API}/charge", b"", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "token"


def test_a_huge_body_is_413(bridge_stripe, csrf_client):
    body = {**VISA, "description": "x" * 200_000}
    response = post_json(csrf_client, "charge", body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/plain", '{"token": "tok_visa", "amount": 1000}'),
        ("application/x-www-form-urlencoded", "token=tok_visa&amount=1000"),
        ("application/xml", "<charge/>"),
    ],
)
def test_another_content_type_is_415(bridge_stripe, csrf_client, content_type, data):
    response = csrf_client.post(f"{API}/charge", data, content_type=content_type)
    assert response.status_code == 415
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "unsupported_media_type")


def test_get_is_405_in_the_error_shape(bridge_stripe, csrf_client):
    response = csrf_client.get(f"{API}/charge", HTTP_ACCEPT="text/html")
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "method_not_allowed"


# --- Stripe unreachable, slow, failing; the bridge not configured ----------------------------


def test_stripe_down_is_502(bridge_stripe, csrf_client, settings, closed_port_url):
    bridge_settings_for(settings, API_BASE=closed_port_url, TIMEOUT=2)
    started = time.monotonic()
    response = post_json(csrf_client, "charge", VISA)
    assert response.status_code == 502
    assert time.monotonic() - started < 2
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "stripe_unavailable")
    assert StripeTransaction.objects.count() == 0


def test_stripe_hanging_is_502_within_the_timeout(
    bridge_stripe, csrf_client, settings, hanging_server
):
    bridge_settings_for(settings, API_BASE=hanging_server, TIMEOUT=0.5, MAX_NETWORK_RETRIES=0)
    started = time.monotonic()
    response = post_json(csrf_client, "charge", VISA)
    elapsed = time.monotonic() - started
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "stripe_unavailable"
    assert 0.4 < elapsed < 3


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"error": {"type": "api_error", "message": "Something went wrong."}}'),
        (503, b"<html>Service Unavailable</html>"),
        (200, b"this is not json"),
        (429, b'{"error": {"type": "invalid_request_error", "code": "rate_limit"}}'),
    ],
)
def test_a_failing_stripe_is_502(bridge_stripe, csrf_client, settings, status, body):
    with json_server(status, body) as url:
        bridge_settings_for(settings, API_BASE=url)
        response = post_json(csrf_client, "charge", VISA)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error"


@pytest.mark.parametrize("api_key", [None, ""])
def test_not_configured_is_503(bridge_stripe, csrf_client, settings, api_key):
    bridge_settings_for(settings, API_KEY=api_key)
    response = post_json(csrf_client, "charge", VISA)
    assert response.status_code == 503
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "not_configured")
    assert "API_KEY" not in error["message"]  # the setting's name is for the log, not clients


def test_a_key_stripe_refuses_is_503(bridge_stripe, csrf_client, settings):
    body = b'{"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}'
    with json_server(401, body) as url:
        bridge_settings_for(settings, API_BASE=url)
        response = post_json(csrf_client, "charge", VISA)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_configured"


# --- throttling and permissions --------------------------------------------------------------


def test_the_throttle_answers_429_with_retry_after(bridge_stripe, csrf_client, settings):
    bridge_settings_for(settings, CHARGE_THROTTLE_RATE="2/min")
    assert post_json(csrf_client, "charge", VISA).status_code == 200
    assert post_json(csrf_client, "payment-intents", {"amount": 1000}).status_code == 200
    response = post_json(csrf_client, "charge", VISA)

    assert response.status_code == 429
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "rate_limit")
    assert 0 < int(response["Retry-After"]) <= 60
    assert len(standin_charges(bridge_stripe)) == 1
    # Another client IP has its own budget.
    other = post_json(csrf_client, "charge", VISA, REMOTE_ADDR="10.1.2.3")
    assert other.status_code == 200


def test_a_throttle_rate_of_none_disables_it(bridge_stripe, csrf_client, settings):
    bridge_settings_for(settings, CHARGE_THROTTLE_RATE=None)
    statuses = {
        post_json(csrf_client, "charge", {**VISA, "amount": 100}).status_code for _ in range(12)
    }
    assert statuses == {200}


def test_a_malformed_throttle_rate_is_503_not_500(bridge_stripe, csrf_client, settings):
    bridge_settings_for(settings, CHARGE_THROTTLE_RATE="lots")
    response = post_json(csrf_client, "charge", VISA)
    assert response.status_code == 503


def test_charge_permission_classes_can_require_a_login(bridge_stripe, csrf_client, settings):
    bridge_settings_for(
        settings, CHARGE_PERMISSION_CLASSES=["rest_framework.permissions.IsAuthenticated"]
    )
    response = post_json(csrf_client, "charge", VISA)
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "permission_denied")
    assert standin_charges(bridge_stripe) == []


def _login(client, username="jenny"):
    user = get_user_model().objects.create_user(username, password="pw")
    client.force_login(user)
    client.cookies["csrftoken"] = "a" * 32
    return user


def test_the_authenticated_user_is_recorded(bridge_stripe, csrf_client, settings):
    bridge_settings_for(
        settings, CHARGE_PERMISSION_CLASSES=["rest_framework.permissions.IsAuthenticated"]
    )
    user = _login(csrf_client)
    response = post_json(csrf_client, "charge", VISA, HTTP_X_CSRFTOKEN="a" * 32)
    assert response.status_code == 200, response.content
    assert StripeTransaction.objects.get(pk=response.json()["id"]).user == user


def test_a_session_user_needs_the_csrf_token(bridge_stripe, csrf_client):
    _login(csrf_client)
    response = post_json(csrf_client, "charge", VISA)
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert standin_charges(bridge_stripe) == []


# --- the secret key stays secret -------------------------------------------------------------


def test_the_secret_key_is_in_no_log_record_and_no_response(
    bridge_stripe, csrf_client, settings, caplog, closed_port_url
):
    caplog.set_level(logging.DEBUG)
    bodies = [
        post_json(csrf_client, "charge", VISA),
        post_json(csrf_client, "charge", {"token": "tok_chargeDeclined", "amount": 1000}),
        post_json(csrf_client, "charge", {"token": "tok_nope", "amount": 1000}),
        post_json(csrf_client, "charge", VISA, idempotency_key="k"),
        post_json(csrf_client, "charge", {**VISA, "amount": 999}, idempotency_key="k"),
        post_json(csrf_client, "payment-intents", {"amount": 1000}),
    ]
    bridge_settings_for(settings, API_BASE=closed_port_url)
    bodies.append(post_json(csrf_client, "charge", VISA))
    with json_server(
        401, b'{"error": {"message": "Invalid API Key provided: ' + TEST_API_KEY.encode() + b'"}}'
    ) as url:
        bridge_settings_for(settings, API_BASE=url)
        bodies.append(post_json(csrf_client, "charge", VISA))

    assert [r.status_code for r in bodies] == [200, 402, 400, 200, 409, 200, 502, 503]
    assert caplog.records, "expected the stripe library and the bridge to log"
    secret_part = TEST_API_KEY[len("sk_test_") :]
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + str(record.exc_text or "")
        assert secret_part not in text, record
    for response in bodies:
        assert secret_part not in response.content.decode()
