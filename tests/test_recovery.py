"""Recovery from channel-layer state loss: a real ``FLUSHDB`` of a Redis database the test owns.

The open socket must get, without doing anything, the event published while its group
memberships were gone (by catch-up replay) and every later event live — each exactly once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from django_stripe_bridge import metrics
from django_stripe_bridge.layers import redis_channel_layer
from django_stripe_bridge.realtime import recovery
from tests import services
from tests.live import free_port
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import charge_event, ingest, open_client, unique_prefix

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

PROBE_INTERVAL = 0.5


@pytest.fixture
async def flushable_layer(redis_url):
    """channels-redis on the test's own Redis database, probed every half second."""
    url = services.owned_redis_url()
    layers = {"default": redis_channel_layer(url, prefix=unique_prefix())}
    client = aioredis.from_url(url)
    bridge = {**settings.STRIPE_BRIDGE}
    bridge["LAYER_PROBE_INTERVAL"] = PROBE_INTERVAL
    with override_settings(CHANNEL_LAYERS=layers, STRIPE_BRIDGE=bridge):
        try:
            yield client
        finally:
            await get_channel_layer().close_pools()
            await client.flushdb()
            await client.aclose()


async def test_socket_recovers_after_flushdb_exactly_once(flushable_layer):
    redis = flushable_layer
    client = await open_client()
    other = await open_client()
    await client.subscribe("id = 'ch_flush'", subscription="s", replay="none")
    await other.subscribe("id = 'ch_other'", subscription="o", replay="none")
    await asyncio.sleep(PROBE_INTERVAL * 2)  # a good probe: the watch knows the layer works

    before = await ingest(charge_event("charge.pending", "ch_flush", status="pending"))
    assert (await client.recv())["headers"]["event_id"] == before.event.event_id

    recoveries = metrics.snapshot()["layer_recoveries"]
    await redis.flushdb()  # every group membership is gone
    missed = await ingest(charge_event("charge.succeeded", "ch_flush"))
    started = time.monotonic()
    frame = await client.recv(timeout=60)
    assert frame["headers"]["event_id"] == missed.event.event_id
    assert frame["replayed"] is True  # recovered through replay, not the (lost) push
    assert time.monotonic() - started < 10
    assert metrics.snapshot()["layer_recoveries"] > recoveries

    # Joined again: later events arrive live, once; nothing already delivered comes again.
    later = await ingest(charge_event("charge.refunded", "ch_flush", amount_refunded=1000))
    frames = await client.drain(1, quiet=1.0)
    assert frames[0]["headers"]["event_id"] == later.event.event_id
    assert frames[0]["replayed"] is False
    assert await other.nothing(0.2)  # the other socket's transaction had no events

    await client.close()
    await other.close()


class Recorder:
    """A consumer that records what the watch asks it to catch up on."""

    def __init__(self) -> None:
        self.since: list[dt.datetime] = []

    async def recover(self, since: dt.datetime) -> bool:
        self.since.append(since)
        return True


@pytest.fixture
def killable_redis():
    with services.PrivateRedis(free_port()) as redis:
        yield redis


@pytest.mark.parametrize("pubsub", [True, False], ids=["pubsub", "core"])
async def test_a_dropped_connection_is_caught_up_from_before_the_drop(killable_redis, pubsub):
    """Redis killed and started again at once, long before the next probe: the watch hears
    of it from the connection itself (the pub/sub layer's reconnect, the core layer's failed
    receive) and asks for a catch-up that starts before the drop."""
    url = killable_redis.url
    layers = {"default": redis_channel_layer(url, pubsub=pubsub, prefix=unique_prefix())}
    bridge = {**settings.STRIPE_BRIDGE, "LAYER_PROBE_INTERVAL": 300}  # no probe in time
    with override_settings(CHANNEL_LAYERS=layers, STRIPE_BRIDGE=bridge):
        layer = get_channel_layer()
        consumer = Recorder()
        recovery.watch(consumer, layer)
        try:
            await asyncio.sleep(1.0)  # the first probe came back
            assert consumer.since == []
            dropped = timezone.now()
            killable_redis.restart_at_once()
            async with asyncio.timeout(20):
                while not consumer.since:
                    await asyncio.sleep(0.05)
            assert consumer.since[0] <= dropped - dt.timedelta(seconds=recovery.REPLAY_MARGIN)
            await asyncio.sleep(1.0)
            assert len(consumer.since) == 1, "one drop, one catch-up"
        finally:
            recovery.unwatch(consumer)
            close = getattr(layer, "close_pools", None) or layer.flush
            await close()
