"""The websocket protocol of SPEC §5: every client frame, every server frame, every error code."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import Client, charge_event, ingest, open_client

pytestmark = pytest.mark.django_db(transaction=True)


async def assert_usable(client: Client) -> None:
    """The connection is still open and answers."""
    assert await client.request({"action": "ping"}) == {"type": "pong"}


async def expect_error(client: Client, frame, code: str, subscription=None) -> dict:
    answer = await client.request(frame)
    assert answer["type"] == "error", answer
    assert answer["code"] == code, answer
    assert answer["subscription"] == subscription
    assert isinstance(answer["message"], str) and answer["message"]
    await assert_usable(client)
    return answer


# -- connecting, ping ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws/stripe/", "/ws/stripe"])
async def test_path_with_and_without_trailing_slash(path):
    client = await open_client(path)
    assert await client.request({"action": "ping"}) == {"type": "pong"}
    await client.close()


# -- subscribe / unsubscribe --------------------------------------------------------------


async def test_subscribe_echoes_subscription_channel_and_selector():
    client = await open_client()
    answer = await client.subscribe("id = 'ch_echo'", subscription="s1", channel="stripe")
    assert answer == {
        "type": "subscribed",
        "subscription": "s1",
        "channel": "stripe",
        "selector": "id = 'ch_echo'",
    }
    await client.close()


async def test_subscribe_defaults_channel_and_names_the_subscription():
    client = await open_client()
    first = await client.subscribe("id = 'ch_a'")
    second = await client.subscribe("id = 'ch_b'")
    assert first["channel"] == second["channel"] == "stripe"
    assert first["subscription"] and second["subscription"]
    assert first["subscription"] != second["subscription"]
    # The generated name works like a chosen one.
    answer = await client.request({"action": "unsubscribe", "subscription": first["subscription"]})
    assert answer == {"type": "unsubscribed", "subscription": first["subscription"]}
    await client.close()


async def test_message_frame_shape():
    client = await open_client()
    await client.subscribe("id = 'ch_shape'", subscription="s1", replay="none")
    await ingest(charge_event("charge.succeeded", "ch_shape", created=1_700_000_000))
    frame = await client.recv()
    keys = {"type", "subscription", "channel", "headers", "data", "replayed", "cursor"}
    assert set(frame) == keys
    assert frame["type"] == "message"
    assert frame["subscription"] == "s1"
    assert frame["channel"] == "stripe"
    assert frame["replayed"] is False
    assert frame["headers"] == {
        "id": "ch_shape",
        "type": "charge.succeeded",
        "event_id": frame["data"]["event_id"],
        "object": "charge",
        "status": "succeeded",
        "amount": 1000,
        "currency": "usd",
        "livemode": False,
        "created": 1_700_000_000,
        "account": None,
    }
    assert frame["data"]["object"]["id"] == "ch_shape"
    await client.close()


async def test_unsubscribe_stops_delivery():
    client = await open_client()
    await client.subscribe("id = 'ch_unsub'", subscription="s1", replay="none")
    answer = await client.request({"action": "unsubscribe", "subscription": "s1"})
    assert answer == {"type": "unsubscribed", "subscription": "s1"}
    await ingest(charge_event("charge.succeeded", "ch_unsub"))
    assert await client.nothing()
    # The name is free again.
    assert (await client.subscribe("id = 'ch_unsub'", subscription="s1"))["type"] == "subscribed"
    await client.close()


async def test_unknown_subscription():
    client = await open_client()
    await expect_error(
        client, {"action": "unsubscribe", "subscription": "nope"}, "unknown_subscription", "nope"
    )
    await client.close()


async def test_subscription_exists():
    client = await open_client()
    await client.subscribe("id = 'ch_1'", subscription="s1")
    frame = {"action": "subscribe", "selector": "id = 'ch_2'", "subscription": "s1"}
    await expect_error(client, frame, "subscription_exists", "s1")
    await client.close()


@override_settings(STRIPE_BRIDGE={"MAX_SUBSCRIPTIONS_PER_CONNECTION": 2})
async def test_too_many_subscriptions():
    client = await open_client()
    await client.subscribe("id = 'ch_1'", subscription="s1")
    await client.subscribe("id = 'ch_2'", subscription="s2")
    frame = {"action": "subscribe", "selector": "id = 'ch_3'", "subscription": "s3"}
    await expect_error(client, frame, "too_many_subscriptions", "s3")
    # Unsubscribing one makes room again.
    await client.request({"action": "unsubscribe", "subscription": "s1"})
    assert (await client.subscribe("id = 'ch_3'", subscription="s3"))["type"] == "subscribed"
    await client.close()


# -- channels -----------------------------------------------------------------------------


async def test_transaction_shorthand_channel():
    client = await open_client()
    answer = await client.subscribe(subscription="s1", channel="stripe/ch_short", replay="none")
    assert answer == {
        "type": "subscribed",
        "subscription": "s1",
        "channel": "stripe/ch_short",
        "selector": "id = 'ch_short'",
    }
    await ingest(charge_event("charge.succeeded", "ch_other"))
    await ingest(charge_event("charge.succeeded", "ch_short"))
    frame = await client.recv()
    assert frame["channel"] == "stripe/ch_short"
    assert frame["headers"]["id"] == "ch_short"
    assert await client.nothing()
    await client.close()


async def test_shorthand_with_a_selector_narrows_it():
    client = await open_client()
    answer = await client.subscribe(
        "amount > 5000", subscription="s1", channel="stripe/ch_sh2", replay="none"
    )
    assert answer["selector"] == "id = 'ch_sh2' AND (amount > 5000)"
    await ingest(charge_event("charge.succeeded", "ch_sh2", amount=100))
    await ingest(charge_event("charge.refunded", "ch_sh2", amount=9000, amount_refunded=9000))
    frame = await client.recv()
    assert frame["headers"]["type"] == "charge.refunded"
    assert await client.nothing()
    await client.close()


async def test_shorthand_quotes_are_escaped():
    client = await open_client()
    answer = await client.subscribe(subscription="s1", channel="stripe/it's")
    assert answer["selector"] == "id = 'it''s'"
    await client.close()


@pytest.mark.parametrize("channel", ["other", "stripe/", "Stripe", "stripes", ""])
async def test_unknown_channel(channel):
    client = await open_client()
    frame = {"action": "subscribe", "channel": channel, "subscription": "s1"}
    await expect_error(client, frame, "unknown_channel", "s1")
    await client.close()


@override_settings(STRIPE_BRIDGE={"CHANNEL": "payments"})
async def test_channel_name_follows_the_setting():
    client = await open_client()
    answer = await client.subscribe("id = 'ch_1'", subscription="s1", channel="payments")
    assert answer["channel"] == "payments"
    frame = {"action": "subscribe", "channel": "stripe", "subscription": "s2"}
    await expect_error(client, frame, "unknown_channel", "s2")
    await client.close()


# -- selectors ----------------------------------------------------------------------------


async def test_invalid_selector_names_the_column():
    client = await open_client()
    frame = {"action": "subscribe", "selector": "id = 'ch_1' AND AND", "subscription": "s1"}
    answer = await expect_error(client, frame, "invalid_selector", "s1")
    assert "column 17" in answer["message"]
    await client.close()


async def test_malformed_broad_selector_is_invalid_not_forbidden():
    client = await open_client()
    frame = {"action": "subscribe", "selector": "amount >", "subscription": "s1"}
    await expect_error(client, frame, "invalid_selector", "s1")
    await client.close()


async def test_invalid_selector_with_shorthand_reports_the_clients_column():
    client = await open_client()
    frame = {
        "action": "subscribe",
        "channel": "stripe/ch_1",
        "selector": "amount >",
        "subscription": "s1",
    }
    answer = await expect_error(client, frame, "invalid_selector", "s1")
    assert "column 9" in answer["message"]
    await client.close()


async def test_over_long_selector():
    client = await open_client()
    selector = "id = 'ch_1' AND " + " AND ".join(["amount > 1"] * 400)
    frame = {"action": "subscribe", "selector": selector, "subscription": "s1"}
    answer = await expect_error(client, frame, "invalid_selector", "s1")
    assert "column 4097" in answer["message"]
    await client.close()


async def test_selector_filters_on_headers():
    client = await open_client()
    await client.subscribe(
        "id IN ('ch_f1', 'ch_f2') AND amount >= 500 AND status = 'succeeded'",
        subscription="s1",
        replay="none",
    )
    await ingest(charge_event("charge.succeeded", "ch_f1", amount=100))
    await ingest(charge_event("charge.failed", "ch_f2", amount=900))
    await ingest(charge_event("charge.succeeded", "ch_f3", amount=900))
    await ingest(charge_event("charge.succeeded", "ch_f2", amount=900, created=2_000_000_000))
    frame = await client.recv()
    # ch_f2 failed first; the later success (created later) moves it to succeeded.
    assert (frame["headers"]["id"], frame["headers"]["status"]) == ("ch_f2", "succeeded")
    assert await client.nothing()
    await client.close()


# -- bad frames ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "{",
        "[]",
        '["subscribe"]',
        '"subscribe"',
        "42",
        "null",
        "{}",
        '{"action": 1}',
        '{"action": "dance"}',
        '{"action": null}',
        "[" * 20000 + "]" * 20000,
    ],
    ids=lambda t: t[:20],
)
async def test_bad_frames(text):
    client = await open_client()
    await client.send_text(text)
    answer = await client.recv()
    assert answer["type"] == "error" and answer["code"] == "bad_frame", answer
    assert answer["subscription"] is None
    await assert_usable(client)
    await client.close()


@pytest.mark.parametrize(
    ("frame", "subscription"),
    [
        ({"action": "subscribe", "subscription": 5}, None),
        ({"action": "subscribe", "subscription": ""}, None),
        ({"action": "subscribe", "subscription": "x" * 101}, None),
        ({"action": "subscribe", "subscription": ["s1"]}, None),
        ({"action": "subscribe", "subscription": "s1", "selector": 5}, "s1"),
        ({"action": "subscribe", "subscription": "s1", "selector": ["id = 'a'"]}, "s1"),
        ({"action": "subscribe", "subscription": "s1", "channel": 5}, "s1"),
        ({"action": "subscribe", "subscription": "s1", "replay": "everything"}, "s1"),
        ({"action": "subscribe", "subscription": "s1", "replay": True}, "s1"),
        ({"action": "unsubscribe"}, None),
        ({"action": "unsubscribe", "subscription": 7}, None),
    ],
)
async def test_wrong_types_are_bad_frames(frame, subscription):
    client = await open_client()
    await expect_error(client, frame, "bad_frame", subscription)
    await client.close()


async def test_binary_frame_is_bad():
    client = await open_client()
    await client.communicator.send_to(bytes_data=b'{"action": "ping"}')
    answer = await client.recv()
    assert answer["code"] == "bad_frame"
    await assert_usable(client)
    await client.close()


async def test_frame_over_64_kib_is_refused():
    client = await open_client()
    padding = "x" * (64 * 1024)
    await client.send_text(json.dumps({"action": "ping", "padding": padding}))
    answer = await client.recv()
    assert answer["code"] == "bad_frame"
    assert "65536" in answer["message"]
    # Multi-byte characters count in bytes: 22,000 characters of 3 bytes each > 64 KiB.
    await client.send_text(json.dumps({"action": "ping", "p": "€" * 22_000}, ensure_ascii=False))
    assert (await client.recv())["code"] == "bad_frame"
    # Just under the limit is fine.
    await client.send_text(json.dumps({"action": "ping", "padding": "x" * 60_000}))
    assert await client.recv() == {"type": "pong"}
    await client.close()


async def test_unknown_fields_are_ignored():
    client = await open_client()
    answer = await client.request({"action": "ping", "id": 3, "extra": {"a": 1}})
    assert answer == {"type": "pong"}
    await client.close()


async def test_errors_leave_subscriptions_working():
    client = await open_client()
    await client.subscribe("id = 'ch_keep'", subscription="s1", replay="none")
    await client.send_text("garbage")
    assert (await client.recv())["code"] == "bad_frame"
    await client.send({"action": "subscribe", "selector": "((", "subscription": "s2"})
    assert (await client.recv())["code"] == "invalid_selector"
    await ingest(charge_event("charge.succeeded", "ch_keep"))
    frame = await client.recv()
    assert frame["type"] == "message" and frame["subscription"] == "s1"
    await client.close()


# -- subscription from the query string ---------------------------------------------------


async def test_query_string_subscribes_as_default():
    client = await open_client("/ws/stripe/?selector=id%20%3D%20%27ch_q%27&replay=none")
    answer = await client.recv()
    assert answer == {
        "type": "subscribed",
        "subscription": "default",
        "channel": "stripe",
        "selector": "id = 'ch_q'",
    }
    await ingest(charge_event("charge.succeeded", "ch_q"))
    frame = await client.recv()
    assert frame["subscription"] == "default" and frame["headers"]["id"] == "ch_q"
    await client.close()


async def test_query_string_shorthand_channel():
    client = await open_client("/ws/stripe?channel=stripe%2Fch_qc")
    answer = await client.recv()
    assert answer["channel"] == "stripe/ch_qc" and answer["selector"] == "id = 'ch_qc'"
    await client.close()


async def test_query_string_errors_keep_the_connection_open():
    client = await open_client("/ws/stripe/?selector=id%20%3D")
    answer = await client.recv()
    assert answer["type"] == "error" and answer["code"] == "invalid_selector"
    assert answer["subscription"] == "default"
    await assert_usable(client)
    client2 = await open_client("/ws/stripe/?selector=")
    answer = await client2.recv()
    assert answer["code"] == "forbidden" and answer["subscription"] == "default"
    await assert_usable(client2)
    await client.close()
    await client2.close()


async def test_no_query_string_no_subscription():
    client = await open_client("/ws/stripe/?foo=bar")
    assert await client.nothing(0.2)
    await client.close()
