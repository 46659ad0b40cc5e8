"""Audit of SPEC §5 against the consumer: promises no other module pinned down exactly.

Each test names the sentence of §5 (or of docs/websocket-protocol.md) it holds the code to.
"""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from django_stripe_bridge.consumers import StripeEventConsumer
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import charge_event, ingest, open_client, until

pytestmark = pytest.mark.django_db(transaction=True)


# -- replay "latest" and webhooks that land while the client subscribes -------------------


class _HoldBack(StripeEventConsumer):
    """Ingests ``racers`` after joining and before reading, and waits for their live copies."""

    racers: list[dict] = []
    live: list[str] = []

    async def stripe_event(self, message):
        type(self).live.append(message["event_id"])
        await super().stripe_event(message)

    async def load_replay(self, ids, mode, selector):
        for event in type(self).racers:
            await ingest(event)
        await until(lambda: len(type(self).live) == len(type(self).racers))
        return await super().load_replay(ids, mode, selector)


async def test_latest_replay_never_leaves_an_older_status_last():
    """Two webhooks of one payment land between join and read (Stripe sends them together).

    'latest' replays the newest; the older one is still delivered once (§5: "delivered
    exactly once"), but before the replayed one, in the order the server processed them,
    so the last status the client sees is the transaction's current one.
    """
    created = charge_event("charge.pending", "ch_pair", created=1_700_000_000)
    succeeded = charge_event("charge.succeeded", "ch_pair", created=1_700_000_005)

    class Consumer(_HoldBack):
        racers = [created, succeeded]
        live: list[str] = []

    client = await open_client(consumer=Consumer)
    answer = await client.subscribe("id = 'ch_pair'", subscription="s1", replay="latest")
    assert answer["type"] == "subscribed"
    frames = await client.drain(2)
    got = [(f["headers"]["event_id"], f["headers"]["status"], f["replayed"]) for f in frames]
    assert got == [
        (created["id"], "processing", False),
        (succeeded["id"], "succeeded", True),
    ]
    await client.close()


async def test_latest_replay_sends_newer_held_back_events_after_it():
    stored = await ingest(charge_event("charge.succeeded", "ch_after", created=1_700_000_000))
    refunded = charge_event(
        "charge.refunded", "ch_after", created=1_700_000_009, amount_refunded=1000
    )

    class Consumer(StripeEventConsumer):
        async def load_replay(self, ids, mode, selector):
            messages = await super().load_replay(ids, mode, selector)
            # Read done; a newer webhook arrives before the replay is sent.
            await ingest(refunded)
            await until(lambda: bool(self.subscriptions["s1"].buffer))
            return messages

    client = await open_client(consumer=Consumer)
    await client.subscribe("id = 'ch_after'", subscription="s1", replay="latest")
    frames = await client.drain(2)
    got = [(f["headers"]["event_id"], f["headers"]["status"], f["replayed"]) for f in frames]
    assert got == [
        (stored.event.event_id, "succeeded", True),
        (refunded["id"], "refunded", False),
    ]
    await client.close()


# -- the stripe/<tx> shorthand --------------------------------------------------------------


@pytest.mark.parametrize(
    "selector",
    [
        "(" * 32 + "amount > 1" + ")" * 32,
        "NOT " * 32 + "livemode",
        "amount > 1 AND " * 272 + "amount > 2",
    ],
    ids=["32-parentheses", "32-nots", "4096-characters"],
)
async def test_shorthand_accepts_any_selector_that_is_valid_on_its_own(selector):
    """The limits apply to the selector the client sent, not to the text the shorthand
    builds around it (one level deeper, some characters longer)."""
    assert len(selector) <= 4096
    client = await open_client()
    answer = await client.subscribe(selector, subscription="s1", channel="stripe/ch_lim")
    assert answer["type"] == "subscribed", answer
    assert answer["selector"] == f"id = 'ch_lim' AND ({selector})"
    await client.close()


async def test_shorthand_limit_errors_name_the_clients_column():
    client = await open_client()
    deep = "(" * 33 + "livemode" + ")" * 33
    answer = await client.subscribe(deep, subscription="s1", channel="stripe/ch_lim")
    assert answer["code"] == "invalid_selector"
    assert answer["message"] == "nesting deeper than 32 levels at column 33"
    await client.close()


# -- server frames: exact keys and types -----------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code", "subscription"),
    [
        ({"action": "dance", "subscription": "s9"}, "bad_frame", "s9"),
        ({"action": "subscribe", "selector": "(("}, "invalid_selector", "sub-1"),
        ({"action": "subscribe", "subscription": "", "selector": "(("}, "bad_frame", None),
        ({"action": "unsubscribe", "subscription": "nope"}, "unknown_subscription", "nope"),
    ],
)
async def test_error_frame_has_exactly_the_spec_keys(frame, code, subscription):
    """§5: ``{"type": "error", "code": …, "message": "…", "subscription": "s1"}``."""
    client = await open_client()
    answer = await client.request(frame)
    assert set(answer) == {"type", "code", "message", "subscription"}
    assert (answer["type"], answer["code"], answer["subscription"]) == (
        "error",
        code,
        subscription,
    )
    assert await client.request({"action": "ping"}) == {"type": "pong"}
    await client.close()


@pytest.mark.parametrize("livemode", [False, True])
async def test_header_types_on_the_wire(livemode):
    """§5: ``livemode`` (boolean), ``created`` (integer seconds), ``amount`` an integer."""
    client = await open_client()
    await client.subscribe("id = 'ch_types'", subscription="s1", replay="none")
    event = charge_event("charge.succeeded", "ch_types", created=1_700_000_123)
    event["livemode"] = livemode
    await ingest(event)
    frame = await client.communicator.receive_from()
    headers = json.loads(frame)["headers"]
    assert headers["livemode"] is livemode
    assert type(headers["created"]) is int and headers["created"] == 1_700_000_123
    assert type(headers["amount"]) is int
    assert f'"livemode":{"true" if livemode else "false"}' in frame
    await client.close()


# -- defaults of the subscribe frame ---------------------------------------------------------


@override_settings(STRIPE_BRIDGE={"CHANNEL": "payments", "REPLAY": "none"})
async def test_channel_and_replay_default_to_the_settings():
    """§5: ``channel`` defaults to the channel (``CHANNEL``), ``replay`` to ``REPLAY``."""
    await ingest(charge_event("charge.succeeded", "ch_def"))
    client = await open_client()
    answer = await client.subscribe("id = 'ch_def'")
    assert answer == {
        "type": "subscribed",
        "subscription": "sub-1",
        "channel": "payments",
        "selector": "id = 'ch_def'",
    }
    short = await client.subscribe(channel="payments/ch_def")
    assert (short["channel"], short["selector"]) == ("payments/ch_def", "id = 'ch_def'")
    assert await client.nothing(0.2)  # REPLAY = "none": nothing stored is sent
    await client.close()


# -- the connection stays open after an error --------------------------------------------------


@override_settings(STRIPE_BRIDGE={"SUBSCRIBE_POLICY": "myproject.missing.policy"})
async def test_a_policy_that_cannot_be_imported_refuses_and_keeps_the_connection(caplog):
    """§5: "the connection stays open and usable after an error"; a policy that fails refuses
    (docs/websocket-protocol.md, Policy), and says why in the log."""
    client = await open_client()
    answer = await client.subscribe("id = 'ch_1'", subscription="s1")
    assert (answer["type"], answer["code"], answer["subscription"]) == ("error", "forbidden", "s1")
    assert await client.request({"action": "ping"}) == {"type": "pong"}
    await client.close()
    assert any("SUBSCRIBE_POLICY" in record.getMessage() for record in caplog.records)
