"""Messages on the channel layer: headers, the summary payload, groups, publishing, failures."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from unittest import mock

import pytest
from channels.layers import BaseChannelLayer
from django.core.management import call_command
from django.test import Client, override_settings

from django_stripe_bridge import messaging
from django_stripe_bridge.ingest import ingest_event
from django_stripe_bridge.messaging import (
    EVENT_MESSAGE_TYPE,
    broadcast_group,
    build_data,
    build_headers,
    publish_event,
    transaction_group,
)
from django_stripe_bridge.models import StripeEvent
from tests.factories import charge_object, make_event
from tests.live import ROOT
from tests.webhook_fixtures import *  # noqa: F403
from tests.webhook_fixtures import (
    PAYLOADS_DIR,
    event_body,
    fresh_event,
    load_payload,
    redis_layer_settings,
    sign_payload,
)

CAPTURED = sorted(path.stem for path in PAYLOADS_DIR.glob("*.json"))
SECRET = "whsec_tests_primary"

#: Keys that carry personal or card data; none may appear in a summary payload.
PERSONAL_KEYS = {
    "billing_details",
    "email",
    "receipt_email",
    "address",
    "name",
    "phone",
    "shipping",
    "fingerprint",
    "last4",
    "exp_month",
    "exp_year",
    "payment_method_details",
    "source",
    "customer",
    "metadata",
    "description",
    "payment_method",
    "client_secret",
}


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def _store(event: dict[str, Any]) -> StripeEvent:
    return ingest_event(event, publish=False).event


@pytest.mark.django_db
@pytest.mark.parametrize("name", CAPTURED)
def test_headers_of_captured_events(name: str) -> None:
    row = _store(fresh_event(name))
    headers = build_headers(row, "succeeded")
    assert set(headers) == {
        "id",
        "type",
        "event_id",
        "object",
        "status",
        "account",
        "amount",
        "currency",
        "livemode",
        "created",
    }
    obj = row.payload["data"]["object"]
    assert headers["id"] == row.transaction_id and headers["id"]
    assert headers["type"] == row.type and headers["event_id"] == row.event_id
    assert headers["object"] == obj["object"]
    assert headers["amount"] == obj["amount"] and headers["currency"] == obj["currency"]
    assert headers["livemode"] is False
    assert headers["created"] == row.payload["created"]
    assert isinstance(headers["created"], int)
    json.dumps(headers)  # plain JSON types only


@pytest.mark.django_db
def test_the_amount_header_is_the_events_own_objects_as_documented() -> None:
    """docs/selectors.md: a refund's event carries the refund's amount, the charge's event
    the charge's, a dispute's event the disputed amount."""
    charge = charge_object("ch_amounts", amount=1000, amount_refunded=400, refunded=False)
    refund = {"id": "re_1", "object": "refund", "amount": 400, "currency": "usd"}
    refund |= {"charge": "ch_amounts", "status": "succeeded"}
    dispute = {"id": "dp_1", "object": "dispute", "amount": 250, "currency": "usd"}
    dispute |= {"charge": "ch_amounts", "status": "needs_response", "reason": "fraudulent"}
    amounts = {
        event_type: build_headers(_store(make_event(event_type, obj)), None)["amount"]
        for event_type, obj in (
            ("charge.refunded", charge),
            ("refund.created", refund),
            ("charge.dispute.created", dispute),
        )
    }
    assert amounts == {
        "charge.refunded": 1000,
        "refund.created": 400,
        "charge.dispute.created": 250,
    }
    documented = (ROOT / "docs" / "selectors.md").read_text()
    assert "`refund.*` or `charge.refund.updated` event carries the refund's" in documented


@pytest.mark.django_db
@pytest.mark.parametrize("name", CAPTURED)
def test_summary_payload_holds_no_personal_data(name: str) -> None:
    event = fresh_event(name)
    row = _store(event)
    data = build_data(row)
    assert set(data) == {"event_id", "type", "created", "livemode", "object"}
    assert not (_keys(data) & PERSONAL_KEYS), _keys(data) & PERSONAL_KEYS
    obj = event["data"]["object"]
    summary = data["object"]
    for key in ("id", "object", "amount", "currency", "status"):
        assert summary[key] == obj[key]
    text = json.dumps(data)
    card = obj.get("payment_method_details", {}).get("card", {})
    if card.get("fingerprint"):
        assert card["fingerprint"] not in text


@pytest.mark.django_db
def test_summary_keeps_the_payment_state() -> None:
    row = _store(fresh_event("charge.refunded.partial"))
    summary = build_data(row)["object"]
    for key in ("amount_refunded", "paid", "captured", "refunded", "failure_code"):
        assert key in summary
    assert summary["outcome"]["seller_message"]


@pytest.mark.django_db
def test_last_payment_error_is_reduced_to_its_codes() -> None:
    event = fresh_event("payment_intent.payment_failed")
    event["data"]["object"]["last_payment_error"] = {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
        "payment_method": {"id": "pm_1", "billing_details": {"email": "x@example.com"}},
    }
    error = build_data(_store(event))["object"]["last_payment_error"]
    assert error == {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
    }


@pytest.mark.django_db
def test_full_payload_is_the_whole_event(settings: Any) -> None:
    settings.STRIPE_BRIDGE = {**settings.STRIPE_BRIDGE, "MESSAGE_PAYLOAD": "full"}
    event = fresh_event("charge.succeeded")
    assert build_data(_store(event)) == event


@pytest.mark.django_db
def test_status_header_is_the_transactions_status_after_the_event(
    in_memory_layer: None, channel_receiver: Any, django_capture_on_commit_callbacks: Any
) -> None:
    receiver = channel_receiver(transaction_group("ch_order"))
    refunded = make_event(
        "charge.refunded", charge_object("ch_order", amount_refunded=1000), created=200
    )
    late = make_event("charge.succeeded", charge_object("ch_order"), created=100)
    with django_capture_on_commit_callbacks(execute=True):
        ingest_event(refunded)
    with django_capture_on_commit_callbacks(execute=True):
        ingest_event(late)
    first, second = receiver.receive(), receiver.receive()
    assert (first["headers"]["type"], first["headers"]["status"]) == ("charge.refunded", "refunded")
    # The late event is still published, with the status it did not change.
    assert (second["headers"]["type"], second["headers"]["status"]) == (
        "charge.succeeded",
        "refunded",
    )


# -- groups --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tx_id", ["ch_1Cmms9I56A1133zjexAcwndb", "pi_x", "ch_" + "a" * 200, "odd id/with*chars", "é"]
)
def test_group_names_are_valid_channels_groups(tx_id: str) -> None:
    layer = BaseChannelLayer()
    for group in (transaction_group(tx_id), broadcast_group()):
        assert layer.require_valid_group_name(group)
    assert transaction_group(tx_id) == transaction_group(tx_id)
    assert transaction_group(tx_id) != transaction_group(tx_id + "x")


# -- publishing ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_new_event_is_published_to_its_transaction_and_broadcast_groups(
    in_memory_layer: None, channel_receiver: Any
) -> None:
    event = fresh_event("charge.succeeded")
    tx_id = event["data"]["object"]["id"]
    pinned = channel_receiver(transaction_group(tx_id))
    broad = channel_receiver(broadcast_group())
    other = channel_receiver(transaction_group("ch_someone_else"))

    row = ingest_event(event).event
    message = pinned.receive()
    assert message == broad.receive()
    other.receive_nothing()
    assert set(message) == {
        "type",
        "event_pk",
        "event_id",
        "transaction_id",
        "headers",
        "data",
        "sent_at",  # when it was handed to the layer, for the delivery-delay histogram
    }
    assert abs(message["sent_at"] - time.time()) < 5
    assert message["type"] == EVENT_MESSAGE_TYPE
    assert (message["event_pk"], message["event_id"]) == (row.pk, event["id"])
    assert message["transaction_id"] == tx_id
    assert message["headers"]["status"] == "succeeded"
    assert StripeEvent.objects.get(pk=row.pk).published_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_is_not_published_again(in_memory_layer: None, channel_receiver: Any) -> None:
    event = fresh_event("charge.succeeded")
    receiver = channel_receiver(broadcast_group())
    ingest_event(event)
    ingest_event(event)
    receiver.receive()
    receiver.receive_nothing()


@pytest.mark.django_db
def test_without_a_channel_layer_nothing_is_published() -> None:
    row = _store(fresh_event("charge.succeeded"))
    with override_settings(CHANNEL_LAYERS={}):
        assert publish_event(row) is False
    assert StripeEvent.objects.get(pk=row.pk).published_at is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "layers",
    [
        {"default": {"BACKEND": "no.such.Backend"}},
        {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": "bad"}},
    ],
    ids=["unknown-backend", "bad-config"],
)
def test_a_misconfigured_layer_never_raises(
    layers: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    row = _store(fresh_event("charge.succeeded"))
    with override_settings(CHANNEL_LAYERS=layers), caplog.at_level(logging.WARNING):
        assert publish_event(row) is False
    assert StripeEvent.objects.get(pk=row.pk).published_at is None
    assert "stripe_bridge_republish --unpublished" in caplog.text


@pytest.mark.django_db
def test_a_layer_that_times_out_counts_as_failed(in_memory_layer: None) -> None:
    import asyncio

    async def hang(*args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(10)

    row = _store(fresh_event("charge.succeeded"))
    layer = messaging.get_layer()
    with (
        mock.patch.object(messaging, "PUBLISH_TIMEOUT", 0.2),
        mock.patch.object(layer, "group_send", hang),
    ):
        assert publish_event(row) is False
    assert StripeEvent.objects.get(pk=row.pk).published_at is None


# -- the channel layer down during a webhook -----------------------------------------------


def _deliver(event: dict[str, Any]) -> Any:
    body = event_body(event)
    return Client().post(
        "/api/services/Stripe/webhooks/handler",
        body,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(body, SECRET)},
    )


@pytest.mark.django_db(transaction=True)
def test_layer_down_during_webhook_then_republish_unpublished(
    channel_receiver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    event = fresh_event("charge.succeeded")
    tx_id = event["data"]["object"]["id"]
    # Redis "stopped": channels-redis pointed at a port nothing listens on.
    with (
        override_settings(CHANNEL_LAYERS=redis_layer_settings("redis://127.0.0.1:1/0")),
        caplog.at_level(logging.WARNING, logger="django_stripe_bridge"),
    ):
        response = _deliver(event)
    assert response.status_code == 200, response.content
    assert response.json() == {"received": True, "duplicate": False}
    row = StripeEvent.objects.get(event_id=event["id"])
    assert row.published_at is None
    assert any("outbox relay publishes it" in r.getMessage() for r in caplog.records)

    # The layer is back: republish reaches a subscriber, and marks the row.
    with override_settings(
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    ):
        receiver = channel_receiver(transaction_group(tx_id))
        call_command("stripe_bridge_republish", "--unpublished", stdout=_Sink())
        message = receiver.receive()
    assert message["event_id"] == event["id"]
    assert message["headers"]["status"] == "succeeded"
    assert StripeEvent.objects.get(pk=row.pk).published_at is not None


@pytest.mark.django_db(transaction=True)
def test_group_send_raising_during_webhook(in_memory_layer: None) -> None:
    event = fresh_event("charge.succeeded")
    layer = messaging.get_layer()
    with mock.patch.object(layer, "group_send", side_effect=ConnectionError("redis gone")):
        response = _deliver(event)
    assert response.status_code == 200
    assert StripeEvent.objects.get(event_id=event["id"]).published_at is None


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_publish_and_republish_through_redis(redis_url: str, channel_receiver: Any) -> None:
    event = fresh_event("charge.succeeded")
    tx_id = event["data"]["object"]["id"]
    layers = redis_layer_settings(redis_url)
    with override_settings(CHANNEL_LAYERS=layers):
        receiver = channel_receiver(transaction_group(tx_id))
        assert _deliver(event).status_code == 200
        first = receiver.receive()
        call_command("stripe_bridge_republish", event["id"], stdout=_Sink())
        again = receiver.receive()
    assert first["event_id"] == again["event_id"] == event["id"]
    assert first["headers"] == again["headers"]
    assert StripeEvent.objects.get(event_id=event["id"]).published_at is not None


class _Sink:
    """A stdout for commands whose output a test does not read."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def test_captured_payloads_are_real_stripe_events() -> None:
    from django_stripe_bridge.events import validate_event

    assert len(CAPTURED) >= 8
    for name in CAPTURED:
        event = load_payload(name)
        validate_event(event)
        assert name == event["type"] or name.startswith(event["type"] + ".")
