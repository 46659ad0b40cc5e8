"""Payment state end to end: the bridge's API, the offline Stripe, staff operations in the
admin, Stripe's events ingested as the webhook stores them, and a websocket subscriber.

The subscriber is told what a shop must act on: an authorization is ``requires_capture``
(not paid), a partial capture makes it ``succeeded`` with the captured amount, and a refund
that fails later takes a refunded payment back to ``succeeded`` with nothing refunded.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client as HttpClient
from django.urls import reverse

from django_stripe_bridge import stripe_api
from django_stripe_bridge.ingest import ingest_event
from django_stripe_bridge.models import StripeTransaction
from tests.charge_fixtures import *  # noqa: F403
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import open_client
from tests.test_operations import confirm

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.standin]


def deliver_webhooks() -> list[str]:
    """Ingest (and publish) every event the stand-in has that is not stored yet."""
    events = list(reversed(list(stripe_api.list_events())))
    return [e["type"] for e in events if ingest_event(e).created]


def create_intent(**fields: Any) -> dict[str, Any]:
    response = HttpClient().post(
        reverse("stripe_bridge:payment-intents"),
        {"amount": 2000, "currency": "usd", "confirm": True, **fields},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return response.json()


def staff_client() -> HttpClient:
    user = get_user_model().objects.create_superuser("staff", password="x")
    client = HttpClient()
    client.force_login(user)
    return client


async def statuses_until(client: Any, wanted: str, limit: int = 12) -> list[str]:
    """The statuses of the messages the subscriber gets, up to the first ``wanted``."""
    seen: list[str] = []
    while wanted not in seen:
        assert len(seen) < limit, f"never told {wanted!r}: {seen}"
        frame = await client.recv(timeout=5)
        assert frame["type"] == "message", frame
        seen.append(frame["headers"]["status"])
    return seen


async def test_an_authorization_is_captured_in_part_from_the_admin(bridge_stripe: Any) -> None:
    intent = await sync_to_async(create_intent)(
        payment_method="pm_card_visa", capture_method="manual"
    )
    assert intent["status"] == "requires_capture"
    subscriber = await open_client()
    await subscriber.subscribe(f"id = '{intent['id']}'", subscription="s", replay="latest")

    await sync_to_async(deliver_webhooks)()
    assert (await statuses_until(subscriber, "requires_capture"))[-1] == "requires_capture"
    tx = await StripeTransaction.objects.aget(pk=intent["id"])
    assert (tx.status, tx.amount, tx.amount_captured) == ("requires_capture", 2000, 0)

    staff = await sync_to_async(staff_client)()
    answer = await sync_to_async(confirm)(staff, "capture_payment", tx, amount="12.00")
    assert answer.status_code == 200
    # The action wrote nothing: Stripe's webhooks move the status.
    assert (await StripeTransaction.objects.aget(pk=tx.pk)).status == "requires_capture"

    assert "charge.captured" in await sync_to_async(deliver_webhooks)()
    assert (await statuses_until(subscriber, "succeeded"))[-1] == "succeeded"
    tx = await StripeTransaction.objects.aget(pk=tx.pk)
    assert (tx.status, tx.amount, tx.amount_captured, tx.amount_refunded) == (
        "succeeded",
        2000,
        1200,
        0,
    )
    await subscriber.close()


async def test_a_refund_that_fails_ends_back_at_succeeded(bridge_stripe: Any) -> None:
    intent = await sync_to_async(create_intent)(payment_method="pm_card_refundFail")
    assert intent["status"] == "succeeded"
    subscriber = await open_client()
    await subscriber.subscribe(f"id = '{intent['id']}'", subscription="s", replay="none")
    await sync_to_async(deliver_webhooks)()
    await statuses_until(subscriber, "succeeded")

    tx = await StripeTransaction.objects.aget(pk=intent["id"])
    staff = await sync_to_async(staff_client)()
    await sync_to_async(confirm)(staff, "refund_payment", tx, amount="", reason="")
    await sync_to_async(deliver_webhooks)()
    await statuses_until(subscriber, "refunded")
    assert (await StripeTransaction.objects.aget(pk=tx.pk)).amount_refunded == 2000

    await sync_to_async(bridge_stripe.settle)()  # the card's bank refuses the refund
    assert "refund.failed" in await sync_to_async(deliver_webhooks)()
    assert (await statuses_until(subscriber, "succeeded"))[-1] == "succeeded"
    tx = await StripeTransaction.objects.aget(pk=tx.pk)
    assert (tx.status, tx.amount_captured, tx.amount_refunded) == ("succeeded", 2000, 0)
    await subscriber.close()
