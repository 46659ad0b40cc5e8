"""Checkout Sessions in the offline Stripe stand-in: the API, the hosted page, the events.

The customer's side is driven over HTTP, as a browser would (GET the session's ``url``, POST
the chosen way to pay, follow the redirects); the expected sequences are Stripe's documented
behaviour. The session objects are checked against the example of Stripe's own OpenAPI
fixtures (in the corpus), as the rest of the stand-in is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import stripe

from django_stripe_bridge.testing import StripeStandIn, pytest_plugin, run_stripe_standin
from tests.test_stripe_corpus import corpus  # noqa: F401 - the corpus fixture

pytestmark = pytest.mark.standin

SUCCESS = "https://shop.example/done?session={CHECKOUT_SESSION_ID}"
CANCEL = "https://shop.example/cart"


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StripeStandIn]:
    pytest_plugin.require_standin()
    home = tmp_path_factory.mktemp("standin-checkout")
    with run_stripe_standin(webhook_delay=0.05, async_delay=300, cwd=home) as running:
        yield running
        log = running.stderr_text()
    assert "Traceback" not in log, log


@pytest.fixture
def api(standin: StripeStandIn) -> stripe.StripeClient:
    standin.reset(webhooks=True)
    return standin.client(stripe_version="2025-03-31.basil")


def new_session(api: stripe.StripeClient, **extra: Any) -> Any:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "eur",
                    "unit_amount": 1250,
                    "product_data": {"name": "T-shirt"},
                },
                "quantity": 2,
            }
        ],
        "success_url": SUCCESS,
        "cancel_url": CANCEL,
        "customer_email": "jo@example.com",
        **extra,
    }
    return api.v1.checkout.sessions.create(params)


def pay(session: Any, method: str, *, authenticate: bool | None = None) -> requests.Response:
    """The customer's trip: the hosted page, a choice, the redirects (3-D Secure: answered)."""
    page = requests.get(session.url, timeout=10)
    assert page.status_code == 200 and f'value="{method}"' in page.text
    answer = requests.post(session.url, data={"method": method}, allow_redirects=False, timeout=10)
    if authenticate is not None:
        assert answer.status_code == 303 and "/_standin/3ds/" in answer.headers["Location"]
        three_ds = answer.headers["Location"]
        secret = re.search(r"client_secret=([^&]+)", three_ds)
        assert secret is not None
        action = "complete" if authenticate else "fail"
        answer = requests.post(
            three_ds.split("?")[0],
            data={"client_secret": requests.utils.unquote(secret.group(1)), "action": action},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code == 303
        answer = requests.get(answer.headers["Location"], allow_redirects=False, timeout=10)
    return answer


def types_of(api: stripe.StripeClient) -> list[str]:
    events = api.v1.events.list({"limit": 100}).auto_paging_iter()
    return [event.type for event in reversed(list(events))]


def session_events(api: stripe.StripeClient) -> list[dict[str, Any]]:
    events = reversed(list(api.v1.events.list({"limit": 100}).auto_paging_iter()))
    return [e.to_dict() for e in events if e.type.startswith("checkout.session.")]


def test_a_new_session_is_open_unpaid_with_the_stand_ins_page_and_no_payment_intent(api):
    session = new_session(api, metadata={"order": "42"})
    assert session.id.startswith("cs_test_")
    assert (session.object, session.mode, session.status) == ("checkout.session", "payment", "open")
    assert session.payment_status == "unpaid"
    assert session.amount_total == 2500 and session.currency == "eur"
    assert session.payment_intent is None  # made when the customer pays, since 2022-08-01
    assert session.url.endswith(f"/_standin/checkout/{session.id}")
    assert session.expires_at - session.created == 24 * 3600
    assert session.metadata.to_dict() == {"order": "42"}
    assert api.v1.checkout.sessions.retrieve(session.id).id == session.id
    assert types_of(api) == []  # Stripe sends no event for a new session


def test_before_2022_08_01_the_payment_intent_comes_with_the_session(standin):
    standin.reset(webhooks=True)
    old = standin.client(stripe_version="2020-08-27")
    session = new_session(old)
    assert session.payment_intent.startswith("pi_")


def test_the_session_object_has_the_fields_of_stripes_own_example(corpus):  # noqa: F811
    """Every field of Stripe's OpenAPI fixture that exists since 2023 (not previews)."""
    fixture = json.loads(
        (corpus / "spec" / "0039_single_checkout.session.completed.json").read_text()
    )
    expected = set(fixture["data"]["object"])
    previews = {
        "adaptive_pricing",
        "collected_information",
        "customer_account",
        "discounts",
        "integration_identifier",
        "managed_payments",
        "optional_items",
        "origin_context",
        "permissions",
        "presentment_details",
        "saved_payment_method_options",
        "wallet_options",
    }
    from django_stripe_bridge.testing._checkout import _NULL_FIELDS

    fields = set(_NULL_FIELDS) | {
        "after_expiration", "amount_subtotal", "amount_total", "automatic_tax", "cancel_url",
        "created", "currency", "custom_fields", "custom_text", "customer_email", "expires_at",
        "id", "invoice_creation", "livemode", "metadata", "mode", "object", "payment_intent",
        "payment_method_options", "payment_method_types", "payment_status",
        "phone_number_collection", "shipping_options", "status", "success_url",
        "total_details", "ui_mode", "url",
    }  # fmt: skip
    assert expected - previews <= fields


def test_a_card_payment_completes_the_session_paid_and_redirects_with_its_id(api):
    session = new_session(api)
    answer = pay(session, "card_success")
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"https://shop.example/done?session={session.id}"
    done = api.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status) == ("complete", "paid")
    intent = api.v1.payment_intents.retrieve(done.payment_intent)
    assert intent.status == "succeeded" and intent.amount == 2500
    assert types_of(api) == [
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "checkout.session.completed",
    ]
    (completed,) = session_events(api)
    obj = completed["data"]["object"]
    assert obj["status"] == "complete" and obj["payment_status"] == "paid"
    assert obj["payment_intent"] == intent.id
    assert completed["api_version"] == "2025-03-31.basil"


def test_a_declined_card_leaves_the_session_open_for_another_try_with_the_same_intent(api):
    session = new_session(api)
    answer = pay(session, "card_decline")
    assert answer.status_code == 200 and "Your card was declined." in answer.text
    still = api.v1.checkout.sessions.retrieve(session.id)
    assert still.status == "open" and still.payment_intent.startswith("pi_")
    assert pay(still, "card_success").status_code == 303
    done = api.v1.checkout.sessions.retrieve(session.id)
    assert done.payment_status == "paid" and done.payment_intent == still.payment_intent
    assert types_of(api) == [
        "payment_intent.created",
        "charge.failed",
        "payment_intent.payment_failed",
        "charge.succeeded",
        "payment_intent.succeeded",
        "checkout.session.completed",
    ]


@pytest.mark.parametrize("authenticate", [True, False])
def test_three_d_secure_on_the_page(api, authenticate):
    session = new_session(api)
    answer = pay(session, "card_3ds", authenticate=authenticate)
    done = api.v1.checkout.sessions.retrieve(session.id)
    if authenticate:
        assert answer.status_code == 303
        assert answer.headers["Location"].endswith(session.id)
        assert done.payment_status == "paid"
    else:
        assert answer.status_code == 200 and done.status == "open"
        assert "payment_intent.payment_failed" in types_of(api)


@pytest.mark.parametrize("method", ["delayed", "delayed_fail"])
def test_a_delayed_method_completes_unpaid_then_settles(api, standin, method):
    session = new_session(api, payment_method_types=["card", "sepa_debit"])
    answer = pay(session, method)
    assert answer.status_code == 303 and answer.headers["Location"].endswith(session.id)
    done = api.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status) == ("complete", "unpaid")
    assert api.v1.payment_intents.retrieve(done.payment_intent).status == "processing"
    assert standin.settle() == 1
    intent = api.v1.payment_intents.retrieve(done.payment_intent)
    final = [e["type"] for e in session_events(api)]
    if method == "delayed":
        assert intent.status == "succeeded"
        assert api.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"
        assert final == ["checkout.session.completed", "checkout.session.async_payment_succeeded"]
    else:
        assert intent.status == "requires_payment_method"
        assert final == ["checkout.session.completed", "checkout.session.async_payment_failed"]
    assert types_of(api)[:3] == [
        "payment_intent.created",
        "charge.pending",
        "payment_intent.processing",
    ]


def test_manual_capture_completes_the_session_unpaid_with_an_authorization(api):
    session = new_session(api, payment_intent_data={"capture_method": "manual"})
    pay(session, "card_success")
    done = api.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status) == ("complete", "unpaid")
    assert api.v1.payment_intents.retrieve(done.payment_intent).status == "requires_capture"


def test_expire_an_open_session_and_its_payment_intent(api):
    session = new_session(api)
    pay(session, "card_decline")  # an attempt made a PaymentIntent
    expired = api.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired"
    assert api.v1.payment_intents.retrieve(expired.payment_intent).status == "canceled"
    assert types_of(api)[-2:] == ["payment_intent.canceled", "checkout.session.expired"]
    with pytest.raises(stripe.InvalidRequestError, match="status of open"):
        api.v1.checkout.sessions.expire(session.id)
    assert 'value="card_success"' not in requests.get(session.url, timeout=10).text


def test_bad_requests_name_the_parameter(api):
    with pytest.raises(stripe.InvalidRequestError) as missing:
        api.v1.checkout.sessions.create({"mode": "payment", "success_url": SUCCESS})
    assert missing.value.param == "line_items"
    with pytest.raises(stripe.InvalidRequestError) as price:
        new_session(api, line_items=[{"price": "price_missing", "quantity": 1}])
    assert price.value.param == "line_items[0][price]"
    plan = api.v1.plans.create(
        {"id": "price_tee", "amount": 900, "currency": "usd", "interval": "month",
         "product": {"name": "Tee"}}
    )  # fmt: skip
    session = new_session(api, line_items=[{"price": plan.id, "quantity": 3}])
    assert session.amount_total == 2700 and session.currency == "usd"
