"""Idempotency keys are scoped to their client: the user, else the bridge's signed cookie.

Client B sending client A's ``Idempotency-Key`` (an order id is easy to guess) must get
neither A's object (its ``client_secret``!) nor a 409 that tells it A's amount.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from django_stripe_bridge import charges
from django_stripe_bridge.models import StripeTransaction
from django_stripe_bridge.views import CLIENT_SCOPE_COOKIE
from tests.charge_fixtures import *  # noqa: F403
from tests.charge_fixtures import post_json

pytestmark = [pytest.mark.django_db, pytest.mark.standin]

INTENT = {"amount": 1000, "payment_method": "pm_card_visa", "confirm": True}
VISA = {"token": "tok_visa", "amount": 1000}


def test_client_b_never_gets_client_as_payment_intent(bridge_stripe):
    alice, bob = Client(), Client()
    mine = post_json(alice, "payment-intents", INTENT, idempotency_key="order-1")
    theirs = post_json(bob, "payment-intents", INTENT, idempotency_key="order-1")

    assert mine.status_code == theirs.status_code == 200, theirs.content
    assert theirs.json()["id"] != mine.json()["id"]
    assert mine.json()["client_secret"] not in theirs.content.decode()
    assert mine.json()["id"] not in theirs.content.decode()
    # Bob's answer carries his key back, not a key that would reach Alice's scope.
    assert theirs["Idempotency-Key"] == "order-1"


def test_client_b_does_not_learn_client_as_amount_from_a_conflict(bridge_stripe):
    alice, bob = Client(), Client()
    assert post_json(alice, "charge", VISA, idempotency_key="order-2").status_code == 200
    probe = post_json(bob, "charge", {**VISA, "amount": 999}, idempotency_key="order-2")

    assert probe.status_code == 200, probe.content
    assert probe.json()["amount"] == 999
    assert "1000" not in probe.content.decode()


def test_a_replay_and_a_conflict_stay_within_the_clients_own_scope(bridge_stripe):
    alice, bob = Client(), Client()
    first = post_json(alice, "charge", VISA, idempotency_key="order-3")
    post_json(bob, "charge", VISA, idempotency_key="order-3")
    again = post_json(alice, "charge", VISA, idempotency_key="order-3")
    conflict = post_json(alice, "charge", {**VISA, "amount": 5}, idempotency_key="order-3")

    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert conflict.status_code == 409
    assert conflict.json()["error"]["type"] == "idempotency_error"
    # One charge for Alice (replayed once, refused once) and one for Bob.
    assert len(bridge_stripe.client().v1.charges.list().data) == 2
    assert StripeTransaction.objects.count() == 2


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

    assert first.status_code == retried.status_code == bobs.status_code == 200
    assert retried.json()["id"] == first.json()["id"]
    assert bobs.json()["id"] != first.json()["id"]
    assert StripeTransaction.objects.get(pk=first.json()["id"]).user == alice
    assert CLIENT_SCOPE_COOKIE not in first.cookies  # the user is the scope


def test_an_anonymous_client_gets_a_signed_scope_cookie(bridge_stripe):
    client = Client()
    response = post_json(client, "charge", VISA, idempotency_key="order-4")

    cookie = response.cookies[CLIENT_SCOPE_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert cookie["path"] == "/api/services/Stripe/"
    assert int(cookie["max-age"]) >= 24 * 3600  # Stripe keeps keys for 24 hours
    # Stripe got a key derived from the client's and the scope, never the client's own.
    tx = StripeTransaction.objects.get()
    assert tx.idempotency_key not in ("", "order-4")
    assert tx.idempotency_key.startswith("sbk_")
    # The same client keeps its scope: the retry is a replay.
    assert post_json(client, "charge", VISA, idempotency_key="order-4").json()["id"] == tx.pk


def test_a_forged_or_copied_unsigned_scope_is_a_new_scope(bridge_stripe):
    alice = Client()
    mine = post_json(alice, "charge", VISA, idempotency_key="order-5")
    signed = mine.cookies[CLIENT_SCOPE_COOKIE].value
    token = signed.split(":")[0]

    for forged in (token, token + ":bad-signature", ""):
        mallory = Client()
        mallory.cookies[CLIENT_SCOPE_COOKIE] = forged
        theirs = post_json(mallory, "charge", VISA, idempotency_key="order-5")
        assert theirs.status_code == 200
        assert theirs.json()["id"] != mine.json()["id"]
        assert theirs.cookies[CLIENT_SCOPE_COOKIE].value.split(":")[0] != token


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
