"""Delivery rules of SPEC §5: routing by group, exactly once per subscription, the replay races,
group renewal past ``group_expiry``, and leaving every group on close."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.test import override_settings

from django_stripe_bridge import messaging
from django_stripe_bridge.consumers import StripeEventConsumer
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import charge_event, ingest, open_client, session_cookie, until

pytestmark = pytest.mark.django_db(transaction=True)

TX_GROUP = messaging.transaction_group
BROADCAST = messaging.broadcast_group()


@database_sync_to_async
def staff_cookie() -> str:
    user = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    return session_cookie(user)


def members(group: str) -> set[str]:
    """Channels in a group of the in-memory layer."""
    return set(get_channel_layer().groups.get(group, {}))


def frames_by_subscription(frames: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for frame in frames:
        assert frame["type"] == "message", frame
        out.setdefault(frame["subscription"], []).append(frame["headers"]["event_id"])
    return out


# -- routing ------------------------------------------------------------------------------


async def test_pinned_selector_joins_one_group_per_id():
    client = await open_client()
    await client.subscribe("id IN ('ch_g1', 'ch_g2') AND amount > 1", subscription="s1")
    assert len(members(TX_GROUP("ch_g1"))) == 1
    assert members(TX_GROUP("ch_g1")) == members(TX_GROUP("ch_g2"))
    assert not members(BROADCAST)
    await client.close()
    assert not members(TX_GROUP("ch_g1")) and not members(TX_GROUP("ch_g2"))


async def test_broad_selector_joins_the_broadcast_group():
    client = await open_client(cookie=await staff_cookie())
    await client.subscribe("amount > 100", subscription="s1")
    assert len(members(BROADCAST)) == 1
    await ingest(charge_event("charge.succeeded", "ch_b1", amount=50))
    await ingest(charge_event("charge.succeeded", "ch_b2", amount=500))
    frame = await client.recv()
    assert frame["headers"]["id"] == "ch_b2" and frame["replayed"] is False
    assert await client.nothing()
    await client.close()
    assert not members(BROADCAST)


async def test_other_transactions_are_not_delivered():
    client = await open_client()
    await client.subscribe("id = 'ch_mine'", subscription="s1", replay="none")
    await ingest(charge_event("charge.succeeded", "ch_theirs"))
    assert await client.nothing()
    await client.close()


async def test_events_arrive_in_the_order_processed():
    client = await open_client()
    await client.subscribe("id = 'ch_order'", subscription="s1", replay="none")
    kinds = ["charge.pending", "charge.succeeded", "charge.captured", "charge.refunded"]
    sent = [(await ingest(charge_event(kind, "ch_order"))).event.event_id for kind in kinds]
    frames = await client.messages(len(kinds))
    assert [f["headers"]["event_id"] for f in frames] == sent
    assert await client.nothing()
    await client.close()


async def test_each_subscription_gets_an_event_once_across_groups():
    """A connection in a transaction group and the broadcast group gets two copies: one counts."""
    client = await open_client(cookie=await staff_cookie())
    await client.subscribe("id = 'ch_dup'", subscription="pinned", replay="none")
    await client.subscribe("", subscription="broad")
    await client.subscribe("id = 'ch_dup' OR amount = 7", subscription="either")
    assert await client.nothing(0.1)
    first = (await ingest(charge_event("charge.succeeded", "ch_dup"))).event.event_id
    second = (await ingest(charge_event("charge.succeeded", "ch_else"))).event.event_id
    got = frames_by_subscription(await client.drain(4))
    assert got == {"pinned": [first], "broad": [first, second], "either": [first]}
    await client.close()


async def test_two_subscriptions_share_a_group_until_both_leave():
    client = await open_client()
    await client.subscribe("id = 'ch_ref'", subscription="a", replay="none")
    await client.subscribe("id = 'ch_ref' AND amount > 5", subscription="b", replay="none")
    await client.request({"action": "unsubscribe", "subscription": "a"})
    assert len(members(TX_GROUP("ch_ref"))) == 1
    await ingest(charge_event("charge.succeeded", "ch_ref"))
    frame = await client.recv()
    assert frame["subscription"] == "b"
    await client.request({"action": "unsubscribe", "subscription": "b"})
    assert not members(TX_GROUP("ch_ref"))
    await client.close()


async def test_pinned_to_nothing_joins_no_group():
    client = await open_client()
    answer = await client.subscribe("id = 'a' AND id = 'b'", subscription="s1")
    assert answer["type"] == "subscribed"
    assert not get_channel_layer().groups
    await client.close()


# -- leaving groups -----------------------------------------------------------------------


async def test_vanished_client_leaves_its_groups():
    """The consumer cancelled without a disconnect message still leaves its groups."""
    client = await open_client()
    await client.subscribe("id = 'ch_gone'", subscription="s1")
    assert members(TX_GROUP("ch_gone"))
    client.communicator.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await client.communicator.future
    assert not members(TX_GROUP("ch_gone"))


# -- the replay races ---------------------------------------------------------------------


def _recording(base: type[StripeEventConsumer]) -> type[StripeEventConsumer]:
    class Recording(base):  # type: ignore[misc, valid-type]
        live: list[tuple[str, bool]] = []

        async def stripe_event(self, message):
            sub = self.subscriptions.get("s1")
            buffered = sub is not None and sub.buffer is not None
            type(self).live.append((message["event_id"], buffered))
            await super().stripe_event(message)

    Recording.live = []
    return Recording


@pytest.mark.parametrize("mode", ["latest", "all"])
async def test_event_committed_between_join_and_read_is_delivered_once(mode):
    before = await ingest(charge_event("charge.pending", "ch_race", created=1_700_000_000))
    racer = charge_event("charge.succeeded", "ch_race", created=1_700_000_010)

    class JoinThenRead(_recording(StripeEventConsumer)):
        async def load_replay(self, ids, mode, selector):
            # Joined, not yet read: a webhook lands now and is published live.
            await ingest(racer)
            await until(lambda: type(self).live)  # its live copy reached the consumer
            return await super().load_replay(ids, mode, selector)

    client = await open_client(consumer=JoinThenRead)
    assert (await client.subscribe("id = 'ch_race'", subscription="s1", replay=mode))[
        "type"
    ] == "subscribed"
    expected = [before.event.event_id, racer["id"]] if mode == "all" else [racer["id"]]
    frames = await client.drain(len(expected))
    ids = [f["headers"]["event_id"] for f in frames]
    assert ids == expected
    assert all(f["replayed"] for f in frames)
    assert frames[-1]["headers"]["status"] == "succeeded"
    # The live copy did arrive, while replay was pending, and was dropped.
    assert JoinThenRead.live == [(racer["id"], True)]
    await client.close()


@pytest.mark.parametrize("mode", ["latest", "all"])
async def test_event_arriving_while_replay_is_sent_is_delivered_once(mode):
    stored = [
        await ingest(charge_event("charge.pending", "ch_busy", created=1_700_000_000)),
        await ingest(charge_event("charge.succeeded", "ch_busy", created=1_700_000_010)),
    ]
    newcomer = charge_event(
        "charge.refunded", "ch_busy", created=1_700_000_020, amount_refunded=1000
    )

    class SlowReplay(_recording(StripeEventConsumer)):
        fired = False

        async def send_message(self, subscription, message, *, replayed):
            await super().send_message(subscription, message, replayed=replayed)
            if replayed and not type(self).fired:
                type(self).fired = True
                # A new webhook, and a late live copy of the event just replayed.
                await ingest(newcomer)
                await self.channel_layer.group_send(TX_GROUP("ch_busy"), dict(message))
                await until(lambda: len(type(self).live) == 2)

    client = await open_client(consumer=SlowReplay)
    await client.subscribe("id = 'ch_busy'", subscription="s1", replay=mode)
    replayed = [r.event.event_id for r in stored] if mode == "all" else [stored[1].event.event_id]
    frames = await client.drain(len(replayed) + 1)
    got = [(f["headers"]["event_id"], f["replayed"]) for f in frames]
    assert got == [(e, True) for e in replayed] + [(newcomer["id"], False)]
    assert frames[-1]["headers"]["status"] == "refunded"
    # Both arrived during replay and were held back.
    assert [buffered for _, buffered in SlowReplay.live] == [True, True]
    await client.close()


async def test_late_live_copy_of_a_replayed_event_is_dropped():
    stored = await ingest(charge_event("charge.succeeded", "ch_late"))
    client = await open_client()
    await client.subscribe("id = 'ch_late'", subscription="s1", replay="latest")
    assert (await client.recv())["replayed"] is True
    assert await client.nothing(0.1)
    # A publisher that was slow delivers the live copy only now.
    row = stored.event
    await get_channel_layer().group_send(
        TX_GROUP("ch_late"), messaging.build_message(row, "succeeded")
    )
    assert await client.nothing()
    newer = await ingest(charge_event("charge.refunded", "ch_late", amount_refunded=1000))
    frame = await client.recv()
    assert (frame["headers"]["event_id"], frame["replayed"]) == (newer.event.event_id, False)
    await client.close()


# -- group expiry -------------------------------------------------------------------------


class NoRenewal(StripeEventConsumer):
    def refresh_interval(self):
        return None


@override_settings(
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"group_expiry": 2},
        }
    }
)
async def test_subscriptions_outlive_group_expiry():
    renewing = await open_client()
    lapsing = await open_client(consumer=NoRenewal)
    for client in (renewing, lapsing):
        await client.subscribe("id = 'ch_long'", subscription="s1", replay="none")
    await asyncio.sleep(3.2)
    await ingest(charge_event("charge.succeeded", "ch_long"))
    assert (await renewing.recv())["headers"]["id"] == "ch_long"
    # The control: without renewal the membership lapsed and the event was lost.
    assert await lapsing.nothing(0.2)
    await renewing.close()
    await lapsing.close()
    # No renewal after close brings the membership back.
    await asyncio.sleep(1.1)
    assert not members(TX_GROUP("ch_long"))


async def test_a_broadcast_batch_reaches_broad_and_pinned_subscribers_once_in_order():
    from django_stripe_bridge.ingest import ingest_events

    cookie = await staff_cookie()
    broad = await open_client(cookie=cookie)
    await broad.subscribe("amount > 0", subscription="all", replay="none")
    pinned = await open_client(cookie=cookie)
    await pinned.subscribe("id = 'ch_bat_1' OR amount > 0", subscription="both", replay="none")
    events = [
        charge_event("charge.succeeded", f"ch_bat_{n}", created=1_700_000_000 + n) for n in range(3)
    ]
    await database_sync_to_async(ingest_events)(events)
    got = [f["headers"]["event_id"] for f in await broad.messages(3)]
    assert got == [e["id"] for e in events]
    # In the transaction's group and in the broadcast batch: still delivered once.
    got = [f["headers"]["event_id"] for f in await pinned.messages(3)]
    assert sorted(got) == sorted(e["id"] for e in events)
    assert await broad.nothing() and await pinned.nothing()
    await broad.close()
    await pinned.close()
