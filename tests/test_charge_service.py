"""The transaction row the charge service records, and its race with webhooks (SPEC §3).

A webhook for a charge can be handled before the create call's response is recorded. The
replay of an ``Idempotency-Key`` makes that order reproducible: the charge is made first
(straight at the stand-in), its webhook is ingested, then the bridge's service makes "the
same" charge with the same key and records the response Stripe replays.
"""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from django_stripe_bridge import charges
from django_stripe_bridge.exceptions import StripeCardError
from django_stripe_bridge.ingest import ingest_event
from django_stripe_bridge.models import StripeTransaction
from tests.charge_fixtures import *  # noqa: F403
from tests.factories import make_event

pytestmark = [pytest.mark.django_db, pytest.mark.standin]

PARAMS = {"amount": 1000, "currency": "usd", "source": "tok_visa"}


def charge_first(standin, key):
    """A charge made at the stand-in with ``key``, as if the bridge's request were in flight."""
    charge = standin.client().v1.charges.create(PARAMS, {"idempotency_key": key})
    return charge.to_dict()


def test_the_row_is_created_from_the_response(bridge_stripe):
    user = get_user_model().objects.create_user("ann")
    charge = charges.create_charge(token="tok_visa", amount=1000, user=user)

    tx = StripeTransaction.objects.get(pk=charge["id"])
    assert (tx.kind, tx.status, tx.amount, tx.currency) == ("charge", "succeeded", 1000, "usd")
    assert tx.user == user
    assert tx.idempotency_key
    assert tx.amount_captured == 1000
    # The response is folded in as known at the charge's creation.
    assert tx.payment_state().objects[charge["id"]]["at"] == charge["created"]


def test_a_newer_webhook_handled_first_is_not_rolled_back(bridge_stripe):
    charge = charge_first(bridge_stripe, "race-1")
    refunded = {**charge, "amount_refunded": 1000, "refunded": True}
    ingest_event(make_event("charge.refunded", refunded, created=charge["created"] + 5))

    user = get_user_model().objects.create_user("bob")
    replayed = charges.create_charge(
        token="tok_visa", amount=1000, idempotency_key="race-1", user=user
    )

    assert replayed["id"] == charge["id"] and replayed["status"] == "succeeded"
    tx = StripeTransaction.objects.get(pk=charge["id"])
    assert tx.status == "refunded"  # the webhook's, not the response's
    assert tx.amount_refunded == 1000
    assert tx.payment_state().objects[charge["id"]]["at"] == charge["created"] + 5
    # What only the bridge knows is filled in.
    assert (tx.user, tx.idempotency_key) == (user, "race-1")


def test_an_earlier_webhook_handled_first_is_moved_forward(bridge_stripe):
    charge = charge_first(bridge_stripe, "race-2")
    ingest_event(
        make_event("charge.pending", {**charge, "status": "pending"}, created=charge["created"])
    )
    assert StripeTransaction.objects.get(pk=charge["id"]).status == "processing"

    charges.create_charge(token="tok_visa", amount=1000, idempotency_key="race-2")

    assert StripeTransaction.objects.get(pk=charge["id"]).status == "succeeded"


def test_a_late_older_webhook_does_not_roll_the_response_back(bridge_stripe):
    charge = charges.create_charge(token="tok_visa", amount=1000)
    late = make_event("charge.pending", {**charge, "status": "pending"}, created=charge["created"])

    result = ingest_event(late)

    assert result.created  # stored, and published, as every event
    assert StripeTransaction.objects.get(pk=charge["id"]).status == "succeeded"


def test_the_webhook_that_follows_the_response_still_moves_it_on(bridge_stripe):
    charge = charges.create_charge(token="tok_visa", amount=1000)
    refund = {**charge, "amount_refunded": 300}
    ingest_event(make_event("charge.refunded", refund, created=charge["created"] + 1))

    tx = StripeTransaction.objects.get(pk=charge["id"])
    assert (tx.status, tx.amount_refunded) == ("partially_refunded", 300)


def test_a_decline_records_the_failed_charge(bridge_stripe):
    with pytest.raises(StripeCardError) as caught:
        charges.create_charge(token="tok_chargeDeclined", amount=700, currency="EUR")

    tx = StripeTransaction.objects.get(pk=caught.value.error["charge"])
    assert (tx.kind, tx.status, tx.amount, tx.currency) == ("charge", "failed", 700, "eur")


def test_a_payment_intent_is_recorded_before_it_is_confirmed(bridge_stripe):
    intent = charges.create_payment_intent(amount=1000, payment_method="pm_card_visa")
    tx = StripeTransaction.objects.get(pk=intent["id"])
    assert (tx.kind, tx.status) == ("payment_intent", "pending")

    confirmed = charges.create_payment_intent(
        amount=1000, payment_method="pm_card_visa", confirm=True, idempotency_key="pi-1"
    )
    assert StripeTransaction.objects.get(pk=confirmed["id"]).status == "succeeded"


def test_the_confirm_key_is_derived_and_bounded():
    assert charges.confirm_idempotency_key("k") == "k:confirm"
    long_key = charges.confirm_idempotency_key("k" * 255)
    assert len(long_key) <= 255 and long_key == charges.confirm_idempotency_key("k" * 255)


@pytest.mark.django_db(transaction=True)
def test_a_webhook_and_the_response_at_the_same_moment_make_one_row(bridge_stripe):
    """Both paths run at once in two threads; one row, with the newer status, results."""
    charge = charge_first(bridge_stripe, "race-3")
    event = make_event(
        "charge.refunded", {**charge, "amount_refunded": 1000}, created=charge["created"] + 5
    )
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(target):
        try:
            barrier.wait(5)
            target()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(lambda: ingest_event(event, publish=False),)),
        threading.Thread(
            target=run,
            args=(
                lambda: charges.create_charge(
                    token="tok_visa", amount=1000, idempotency_key="race-3"
                ),
            ),
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert errors == []
    tx = StripeTransaction.objects.get(pk=charge["id"])
    assert (tx.status, tx.idempotency_key) == ("refunded", "race-3")
