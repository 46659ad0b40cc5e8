"""``POST checkout-sessions`` through the real stripe library against the offline stand-in."""

from __future__ import annotations

import pytest
import requests

from django_stripe_bridge import checkout
from django_stripe_bridge.models import StripeTransaction
from django_stripe_bridge.testing import TEST_API_KEY
from tests.charge_fixtures import *  # noqa: F403
from tests.charge_fixtures import bridge_settings_for, json_server, post_json, stripe_key_for

pytestmark = [pytest.mark.django_db, pytest.mark.standin]

SUCCESS = "https://shop.example/paid?session={CHECKOUT_SESSION_ID}"
BODY = {"amount": 2500, "currency": "eur", "name": "T-shirt"}


@pytest.fixture
def shop(bridge_stripe, settings):
    bridge_settings_for(
        settings,
        CHECKOUT_SUCCESS_URL=SUCCESS,
        CHECKOUT_CANCEL_URL="/cart",
        CHECKOUT_REDIRECT_HOSTS=["shop.example", ".example.org"],
    )
    return bridge_stripe


def standin_session(standin, session_id):
    return standin.client().v1.checkout.sessions.retrieve(session_id)


def test_a_session_answers_where_to_send_the_customer(shop, csrf_client):
    response = post_json(csrf_client, "checkout-sessions", BODY)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"id", "url", "status", "payment_status", "expires_at"}
    assert body["id"].startswith("cs_") and body["url"].startswith(shop.base_url)
    assert (body["status"], body["payment_status"]) == ("open", "unpaid")
    assert response["Cache-Control"] == "no-store"
    assert TEST_API_KEY not in response.content.decode()
    session = standin_session(shop, body["id"])
    assert session.success_url == SUCCESS
    assert session.cancel_url == "http://testserver/cart"  # a path, made absolute
    assert (session.amount_total, session.currency) == (2500, "eur")
    tx = StripeTransaction.objects.get(pk=body["id"])
    assert (tx.kind, tx.status, tx.amount, tx.currency) == (
        "checkout_session",
        "pending",
        2500,
        "eur",
    )
    assert tx.idempotency_key


def test_line_items_capture_method_email_metadata_and_types_reach_stripe(shop, csrf_client):
    plan = shop.client().v1.plans.create(
        {"id": "price_tee", "amount": 900, "currency": "usd", "interval": "month",
         "product": {"name": "Tee"}}
    )  # fmt: skip
    body = {
        "line_items": [{"price": plan.id, "quantity": 2}],
        "customer_email": "jo@example.com",
        "metadata": {"order": "42"},
        "capture_method": "manual",
        "payment_method_types": ["card", "sepa_debit"],
        "success_url": "https://pay.example.org/ok?s={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/cart",
    }
    response = post_json(csrf_client, "checkout-sessions", body)
    assert response.status_code == 200, response.content
    session = standin_session(shop, response.json()["id"])
    assert (session.amount_total, session.currency) == (1800, "usd")
    assert session.customer_email == "jo@example.com"
    assert session.metadata.to_dict() == {"order": "42"}
    assert list(session.payment_method_types) == ["card", "sepa_debit"]
    assert session.success_url == body["success_url"] and session.cancel_url == body["cancel_url"]
    # Paid on the page, the authorization is only held (capture_method reached Stripe).
    requests.post(session.url, data={"method": "card_success"}, allow_redirects=False, timeout=10)
    intent = shop.client().v1.payment_intents.retrieve(
        standin_session(shop, session.id).payment_intent
    )
    assert intent.status == "requires_capture"
    assert intent.metadata.to_dict() == {"order": "42"}


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/steal",
        "https://shop.example@evil.example/",
        "https://shop.example.evil.example/",
        "//evil.example/",
        "javascript:alert(1)",
        "https://shop.example\\@evil.example",
        "https://SHOP.example/",
        "https://shop.example /x",
        "http://evil.example:443@shop.example",
    ],
)
@pytest.mark.parametrize("field", ["success_url", "cancel_url"])
def test_no_open_redirect(shop, csrf_client, url, field):
    response = post_json(csrf_client, "checkout-sessions", {**BODY, field: url})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == field
    assert not shop.client().v1.checkout.sessions.list().data


def test_a_wildcard_allowed_host_allows_no_redirect(bridge_stripe, csrf_client, settings):
    """ALLOWED_HOSTS = ['*'] (the test settings): only the hosts named besides are accepted."""
    bridge_settings_for(settings, CHECKOUT_SUCCESS_URL=SUCCESS)
    assert "*" in settings.ALLOWED_HOSTS
    response = post_json(csrf_client, "checkout-sessions", {**BODY, "success_url": SUCCESS})
    assert response.status_code == 400
    assert "CHECKOUT_REDIRECT_HOSTS" in response.json()["error"]["message"]
    settings.ALLOWED_HOSTS = ["*", "shop.example"]
    response = post_json(csrf_client, "checkout-sessions", {**BODY, "success_url": SUCCESS})
    assert response.status_code == 200


def test_without_a_success_url_anywhere_it_is_400_naming_the_setting(bridge_stripe, csrf_client):
    response = post_json(csrf_client, "checkout-sessions", BODY)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "success_url" and "CHECKOUT_SUCCESS_URL" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"amount": 2500}, "name"),
        ({"name": "T-shirt"}, "amount"),
        ({**BODY, "line_items": [{"price": "price_1"}]}, "line_items"),
        ({"line_items": [{"price": "price_1"}], "currency": "usd"}, "currency"),
        ({"line_items": []}, "line_items"),
        ({"line_items": [{"price": "price_1", "quantity": 0}]}, "line_items[0][quantity]"),
        ({"line_items": [{"price": "prod_1"}]}, "line_items[0][price]"),
        ({"line_items": [{"price": "price_1", "tax": 1}]}, "line_items[0]"),
        ({**BODY, "amount": "2500"}, "amount"),
        ({**BODY, "capture_method": "later"}, "capture_method"),
        ({**BODY, "payment_method_types": ["card", "card"]}, "payment_method_types"),
        ({**BODY, "payment_method_types": "card"}, "payment_method_types"),
        ({**BODY, "customer_email": "nope"}, "customer_email"),
        ({**BODY, "mode": "subscription"}, "mode"),
        ({**BODY, "cancel_url": {}}, "cancel_url"),  # was a 500
        ({**BODY, "success_url": 7}, "success_url"),
        ({"line_items": [{"price": "price_1", "quantity": 1.5}]}, "line_items[0][quantity]"),
    ],
)
def test_bad_input_is_400_naming_the_parameter(shop, csrf_client, body, param):
    response = post_json(csrf_client, "checkout-sessions", body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param


def test_a_whole_float_quantity_is_an_integer(shop, csrf_client):
    shop.client().v1.plans.create(
        {"id": "price_two", "amount": 500, "currency": "usd", "interval": "month",
         "product": {"name": "Two"}}
    )  # fmt: skip
    body = {"line_items": [{"price": "price_two", "quantity": 2.0}]}
    response = post_json(csrf_client, "checkout-sessions", body)
    assert response.status_code == 200, response.content


def test_an_unknown_price_is_stripes_400_naming_it(shop, csrf_client):
    body = {"line_items": [{"price": "price_missing", "quantity": 1}]}
    response = post_json(csrf_client, "checkout-sessions", body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "line_items[0][price]"


def test_the_same_idempotency_key_twice_makes_one_session(shop, csrf_client):
    first = post_json(csrf_client, "checkout-sessions", BODY, idempotency_key="cart-9")
    again = post_json(csrf_client, "checkout-sessions", BODY, idempotency_key="cart-9")
    assert first.json()["id"] == again.json()["id"]
    assert len(shop.client().v1.checkout.sessions.list().data) == 1
    tx = StripeTransaction.objects.get()
    assert tx.idempotency_key == stripe_key_for(csrf_client, "cart-9")
    changed = post_json(
        csrf_client, "checkout-sessions", {**BODY, "amount": 900}, idempotency_key="cart-9"
    )
    assert changed.status_code == 409


def test_the_throttle_applies(shop, csrf_client, settings):
    bridge_settings_for(settings, CHARGE_THROTTLE_RATE="1/min")
    assert post_json(csrf_client, "checkout-sessions", BODY).status_code == 200
    assert post_json(csrf_client, "checkout-sessions", BODY).status_code == 429


def test_a_malformed_upstream_session_is_502_and_nothing_is_stored(shop, csrf_client, settings):
    answer = b'{"id": "cs_test_1", "object": "checkout.session", "status": "weird"}'
    with json_server(200, answer) as url:
        bridge_settings_for(settings, API_BASE=url)
        response = post_json(csrf_client, "checkout-sessions", BODY)
    assert response.status_code == 502
    assert not StripeTransaction.objects.exists()


def test_redirect_url_pattern_is_the_schemas(shop, client):
    schema = client.get("/api/services/Stripe/schema?format=json").json()
    request = schema["components"]["schemas"]["CheckoutSessionRequest"]
    pattern = request["properties"]["success_url"]["anyOf"][0]["pattern"]
    assert pattern == checkout.redirect_url_pattern()
    assert "oneOf" in request and request["additionalProperties"] is False
