"""Recovery from channel-layer state loss: a real ``FLUSHDB`` of a Redis database the test owns.

The open socket must get, without doing anything, the event published while its group
memberships were gone (by catch-up replay) and every later event live — each exactly once.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import override_settings

from django_stripe_bridge import metrics
from django_stripe_bridge.layers import redis_channel_layer
from tests import services
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
