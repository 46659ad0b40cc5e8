"""An ``Idempotency-Key`` belongs to the client that first used it: the user, else the bridge's
signed cookie, else (a first request, before any cookie) the request's content.

- A retry of the same request never pays twice, even when the answer that set the cookie was
  lost (the red team's double charge: two charges for one ``order-43-x``).
- Client B sending client A's key (an order id is easy to guess) gets neither A's object
  (its ``client_secret``!) nor a new payment, nor a 409 that tells it A's amount.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import include, path

from django_stripe_bridge import charges, idempotency
from django_stripe_bridge.models import IdempotencyKey, StripeTransaction
from django_stripe_bridge.views import CLIENT_SCOPE_COOKIE, REPLAY_HEADER
from tests.charge_fixtures import *  # noqa: F403
from tests.charge_fixtures import bridge_settings_for, post_json, stripe_key_for

pytestmark = [pytest.mark.django_db, pytest.mark.standin, pytest.mark.urls(__name__)]

INTENT = {"amount": 1000, "payment_method": "pm_card_visa", "confirm": True}
UNCONFIRMED = {"amount": 1000}  # a body anyone could guess
VISA = {"token": "tok_visa", "amount": 1000}
BODIES = {"charge": VISA, "payment-intents": INTENT}


@idempotency.ensure_client_scope
def payment_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<form>pay</form>")


@idempotency.ensure_client_scope
async def async_payment_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<form>pay</form>")


# The page that hosts the payment, as a site would mount it (see test_the_page_...).
urlpatterns = [
    path("pay/", payment_page),
    path("pay-async/", async_payment_page),
    path("api/services/Stripe/", include("django_stripe_bridge.urls")),
]


def made(bridge_stripe: Any, endpoint: str) -> list[Any]:
    """What Stripe holds for ``endpoint``: the charges, or the PaymentIntents."""
    stripe = bridge_stripe.client().v1
    objects = stripe.charges if endpoint == "charge" else stripe.payment_intents
    return list(objects.list().data)


def lost_response_retry(endpoint: str, body: dict[str, Any], key: str) -> tuple[Any, Any]:
    """A client's first request (no cookie), whose answer (and its Set-Cookie) is lost, then
    its retry: as a browser that never got the cookie sends it."""
    first = post_json(Client(), endpoint, body, idempotency_key=key)
    retry = post_json(Client(), endpoint, body, idempotency_key=key)
    return first, retry


# --- a retry never pays twice ----------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["charge", "payment-intents"])
def test_a_retry_after_a_lost_first_response_pays_once(bridge_stripe, endpoint):
    first, retry = lost_response_retry(endpoint, BODIES[endpoint], "order-43-x")

    assert first.status_code == retry.status_code == 200, retry.content
    assert retry.json()["id"] == first.json()["id"]
    assert retry.json()["status"] == first.json()["status"] == "succeeded"
    assert len(made(bridge_stripe, endpoint)) == 1  # was 2: 2000 captured for one order
    assert StripeTransaction.objects.count() == 1


def test_the_retry_is_answered_without_secrets(bridge_stripe):
    first, retry = lost_response_retry("payment-intents", UNCONFIRMED, "cart-1")
    mine, again = first.json(), retry.json()

    assert mine["client_secret"].startswith(mine["id"] + "_secret_")
    assert again == {**mine, "client_secret": None, "next_action": None}
    assert mine["client_secret"] not in retry.content.decode()
    assert retry[REPLAY_HEADER] == "summary"
    assert REPLAY_HEADER not in first
    assert retry["Idempotency-Key"] == "cart-1"


def test_a_charge_retry_is_answered_with_its_documented_fields_only(bridge_stripe):
    first, retry = lost_response_retry("charge", {**VISA, "receipt_email": "a@example.com"}, "k")

    charge = first.json()
    assert "payment_method_details" in charge and charge["receipt_email"] == "a@example.com"
    assert retry.json() == {
        name: charge[name]
        for name in (
            *("id", "object", "amount", "amount_refunded", "currency", "status", "paid"),
            *("captured", "created", "livemode", "payment_intent", "failure_code"),
            "failure_message",
        )
    }


def test_a_retry_that_comes_with_a_cookie_got_meanwhile_still_pays_once(bridge_stripe):
    """The page was opened again in between (it set a cookie), then the same request."""
    first = post_json(Client(), "payment-intents", INTENT, idempotency_key="cart-2")
    browser = Client()
    browser.get("/pay/", follow=False)
    retry = post_json(browser, "payment-intents", INTENT, idempotency_key="cart-2")

    assert retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"]
    assert retry.json()["client_secret"] is None
    assert len(made(bridge_stripe, "payment-intents")) == 1


@pytest.mark.django_db(transaction=True)
def test_a_failed_first_attempt_keeps_its_claim_under_atomic_requests(
    bridge_stripe, settings, closed_port_url
):
    """Stripe unreachable (the charge may or may not exist): the claim stays, even when
    ATOMIC_REQUESTS would roll the request back, so the retry keeps the key."""
    api_base = settings.STRIPE_BRIDGE["API_BASE"]
    bridge_settings_for(settings, API_BASE=closed_port_url)
    connections["default"].settings_dict["ATOMIC_REQUESTS"] = True
    try:
        down = post_json(Client(), "charge", VISA, idempotency_key="order-44")
    finally:
        connections["default"].settings_dict["ATOMIC_REQUESTS"] = False
    assert down.status_code == 502
    [claimed] = IdempotencyKey.objects.all()

    bridge_settings_for(settings, API_BASE=api_base)
    first, retry = lost_response_retry("charge", VISA, "order-44")
    assert first.json()["id"] == retry.json()["id"]
    assert len(made(bridge_stripe, "charge")) == 1
    assert StripeTransaction.objects.get().idempotency_key == claimed.stripe_key


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("endpoint", ["charge", "payment-intents"])
def test_retries_sent_while_the_first_request_runs_pay_once(bridge_stripe, endpoint):
    """A client that gives up waiting and sends again at once, four times, without cookies."""
    barrier, answers = threading.Barrier(4), []

    def send() -> None:
        try:
            barrier.wait()
            answers.append(post_json(Client(), endpoint, BODIES[endpoint], idempotency_key="k"))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(answers) == 4
    assert len(made(bridge_stripe, endpoint)) == 1
    paid = {answer.json()["id"] for answer in answers if answer.status_code == 200}
    assert len(paid) == 1
    for answer in answers:
        if answer.status_code != 200:
            # Stripe still ran the first: "retry in a moment", never "use a new key".
            assert answer.status_code == 409, answer.content
            assert answer.json()["error"]["code"] == "request_in_progress"
    assert IdempotencyKey.objects.count() == 1


def test_a_request_refused_as_invalid_claims_nothing(bridge_stripe):
    refused = post_json(Client(), "charge", {**VISA, "amount": -5}, idempotency_key="order-45")
    assert refused.status_code == 400
    assert not IdempotencyKey.objects.exists()
    corrected = post_json(Client(), "charge", VISA, idempotency_key="order-45")
    assert corrected.status_code == 200


# --- another client gets neither the object nor a new one -----------------------------------


def assert_refused(response: Any, *secrets: str) -> None:
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["type"] == "idempotency_error"
    assert error["code"] == "idempotency_key_in_use"
    assert error["message"] == idempotency.CONFLICT_MESSAGE
    for secret in secrets:
        assert secret not in response.content.decode()


def scoped_client() -> Client:
    """A browser that opened the payment page first: it has its scope cookie."""
    client = Client()
    assert CLIENT_SCOPE_COOKIE in client.get("/pay/").cookies
    return client


@pytest.mark.parametrize("endpoint", ["charge", "payment-intents"])
@pytest.mark.parametrize("bob_is", ["anonymous", "another browser", "signed in"])
def test_another_client_reusing_the_key_gets_neither_the_object_nor_a_new_one(
    bridge_stripe, endpoint, bob_is
):
    alice = scoped_client()
    body = BODIES[endpoint]
    mine = post_json(alice, endpoint, body, idempotency_key="order-1")
    assert mine.status_code == 200

    bob = Client() if bob_is == "anonymous" else scoped_client()
    if bob_is == "signed in":
        bob.force_login(get_user_model().objects.create_user("bob"))
    same = post_json(bob, endpoint, body, idempotency_key="order-1")
    other = post_json(bob, endpoint, {**body, "amount": 999}, idempotency_key="order-1")

    secrets = [mine.json()["id"]]
    if endpoint == "payment-intents":
        secrets.append(mine.json()["client_secret"])
    for theirs in (same, other):
        assert_refused(theirs, *secrets)
    assert "1000" not in other.content.decode()  # not even Alice's amount
    assert len(made(bridge_stripe, endpoint)) == 1
    # Alice's own retry is still her payment, in full.
    again = post_json(alice, endpoint, body, idempotency_key="order-1")
    assert again.json() == mine.json()


def test_a_guessed_key_and_body_never_reveal_the_client_secret(bridge_stripe):
    """Alice had no cookie yet and her body is guessable: Bob may learn her PaymentIntent's
    id and status (as he could poll them), never its client_secret."""
    alice = Client()
    mine = post_json(alice, "payment-intents", UNCONFIRMED, idempotency_key="order-2")
    secret = mine.json()["client_secret"]
    for bob in (Client(), scoped_client()):
        theirs = post_json(bob, "payment-intents", UNCONFIRMED, idempotency_key="order-2")
        assert theirs.status_code == 200
        assert theirs.json()["client_secret"] is None
        assert secret not in theirs.content.decode()
        guess = post_json(bob, "payment-intents", {"amount": 999}, idempotency_key="order-2")
        assert_refused(guess, secret, mine.json()["id"])
    # Alice, whose answer set her cookie, still gets hers.
    again = post_json(alice, "payment-intents", UNCONFIRMED, idempotency_key="order-2")
    assert again.json()["client_secret"] == secret
    assert len(made(bridge_stripe, "payment-intents")) == 1


def test_a_replay_by_another_user_does_not_make_the_payment_theirs(bridge_stripe):
    post_json(Client(), "charge", VISA, idempotency_key="order-3")
    bob = Client()
    bob.force_login(get_user_model().objects.create_user("bob"))
    assert post_json(bob, "charge", VISA, idempotency_key="order-3").status_code == 200
    assert StripeTransaction.objects.get().user is None


def test_a_replay_and_a_conflict_stay_within_the_clients_own_scope(bridge_stripe):
    alice = scoped_client()
    first = post_json(alice, "charge", VISA, idempotency_key="order-4")
    again = post_json(alice, "charge", VISA, idempotency_key="order-4")
    conflict = post_json(alice, "charge", {**VISA, "amount": 5}, idempotency_key="order-4")

    assert again.status_code == 200
    assert again.json() == first.json()
    assert REPLAY_HEADER not in again
    assert conflict.status_code == 409
    assert conflict.json()["error"]["type"] == "idempotency_error"
    assert len(made(bridge_stripe, "charge")) == 1
    assert StripeTransaction.objects.count() == 1


def test_a_signed_in_user_is_one_scope_on_every_device(bridge_stripe):
    users = get_user_model().objects
    alice, bob = users.create_user("alice"), users.create_user("bob")
    phone, laptop, other = Client(), Client(), Client()
    phone.force_login(alice)
    laptop.force_login(alice)
    other.force_login(bob)

    first = post_json(phone, "payment-intents", INTENT, idempotency_key="cart-9")
    retried = post_json(laptop, "payment-intents", INTENT, idempotency_key="cart-9")
    bobs = post_json(other, "payment-intents", INTENT, idempotency_key="cart-9")

    assert first.status_code == retried.status_code == 200
    assert retried.json() == first.json()  # client_secret included: the same user
    assert_refused(bobs, first.json()["client_secret"])
    assert StripeTransaction.objects.get(pk=first.json()["id"]).user == alice
    assert CLIENT_SCOPE_COOKIE not in first.cookies  # the user is the scope


def test_a_forged_or_copied_unsigned_scope_is_no_scope(bridge_stripe):
    alice = scoped_client()
    mine = post_json(alice, "charge", VISA, idempotency_key="order-5")
    signed = mine.cookies[CLIENT_SCOPE_COOKIE].value
    token = signed.split(":")[0]

    for forged in (token, token + ":bad-signature", ""):
        mallory = Client()
        mallory.cookies[CLIENT_SCOPE_COOKIE] = forged
        theirs = post_json(mallory, "charge", VISA, idempotency_key="order-5")
        assert_refused(theirs, mine.json()["id"])
        assert theirs.cookies[CLIENT_SCOPE_COOKIE].value.split(":")[0] != token
    assert len(made(bridge_stripe, "charge")) == 1


# --- the scope cookie ------------------------------------------------------------------------


def test_the_page_that_hosts_the_payment_sets_the_scope_before_any_payment(bridge_stripe):
    browser = Client()
    page = browser.get("/pay/")
    cookie = page.cookies[CLIENT_SCOPE_COOKIE]
    assert cookie["path"] == "/api/services/Stripe/"
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    # Opened again, the page keeps the scope it gave.
    assert CLIENT_SCOPE_COOKIE not in browser.get("/pay/").cookies

    first = post_json(browser, "payment-intents", UNCONFIRMED, idempotency_key="cart-3")
    assert first.cookies[CLIENT_SCOPE_COOKIE].value.split(":")[0] == cookie.value.split(":")[0]
    # The answer is lost, the cookie is not: the retry gets the whole answer again.
    browser.cookies[CLIENT_SCOPE_COOKIE] = cookie.value
    retry = post_json(browser, "payment-intents", UNCONFIRMED, idempotency_key="cart-3")
    assert retry.json() == first.json()
    assert retry.json()["client_secret"]
    # And the same body without the cookie is someone else.
    assert_refused(
        post_json(Client(), "payment-intents", UNCONFIRMED, idempotency_key="cart-3"),
        first.json()["client_secret"],
    )


def test_an_async_page_gives_the_scope_too(bridge_stripe):
    cookie = Client().get("/pay-async/").cookies[CLIENT_SCOPE_COOKIE]
    assert cookie["path"] == "/api/services/Stripe/"


@pytest.mark.urls("demo_project.urls")
def test_the_demo_page_gives_the_scope(bridge_stripe):
    cookie = Client().get("/").cookies[CLIENT_SCOPE_COOKIE]
    assert cookie["path"] == "/api/services/Stripe/"


def test_an_anonymous_client_gets_a_signed_scope_cookie(bridge_stripe):
    client = Client()
    response = post_json(client, "charge", VISA, idempotency_key="order-6")

    cookie = response.cookies[CLIENT_SCOPE_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert cookie["path"] == "/api/services/Stripe/"
    assert int(cookie["max-age"]) >= 24 * 3600  # Stripe keeps keys for 24 hours
    # Stripe got a key derived from the client's and the scope, never the client's own.
    tx = StripeTransaction.objects.get()
    assert tx.idempotency_key == stripe_key_for(client, "order-6")
    assert tx.idempotency_key.startswith("sbk_")
    # The same client keeps its scope: the retry is a replay, in full.
    again = post_json(client, "charge", VISA, idempotency_key="order-6")
    assert again.json() == response.json()


def test_the_claim_holds_digests_only(bridge_stripe):
    client = Client()
    post_json(client, "charge", VISA, idempotency_key="order-7")
    token = client.cookies[CLIENT_SCOPE_COOKIE].value.split(":")[0]
    [claimed] = IdempotencyKey.objects.values()
    assert "order-7" not in str(claimed) and token not in str(claimed)
    assert len(claimed["key_digest"]) == len(claimed["content_digest"]) == 64


def test_scoped_keys_differ_by_scope_and_fit_stripes_limit():
    key = "k" * 255
    one = charges.scoped_idempotency_key(key, "user:1")
    assert one == charges.scoped_idempotency_key(key, "user:1")
    assert one != charges.scoped_idempotency_key(key, "user:2")
    # Where the scope ends is unambiguous: "user:1" + ":2…" is not "user:1:2" + "…".
    assert charges.scoped_idempotency_key("2:x", "user:1") != charges.scoped_idempotency_key(
        "x", "user:1:2"
    )
    assert len(one) <= 255 and len(charges.confirm_idempotency_key(one)) <= 255


def test_content_digest_is_canonical():
    one = idempotency.content_digest("charge", {"amount": 1000, "token": "tok_visa"})
    assert one == idempotency.content_digest("charge", {"token": "tok_visa", "amount": 1000})
    assert one != idempotency.content_digest(
        "payment-intents", {"amount": 1000, "token": "tok_visa"}
    )
    assert one != idempotency.content_digest("charge", {"amount": 1001, "token": "tok_visa"})
