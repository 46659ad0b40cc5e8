"""The consumer on channels-redis: memberships renewed before ``group_expiry``, and left on close.

The group keys are inspected directly in Redis (``<prefix>:group:<name>`` sorted sets, the
score being the time of the last join).
"""

from __future__ import annotations

import asyncio

import pytest

from django_stripe_bridge import messaging
from django_stripe_bridge.consumers import StripeEventConsumer
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import charge_event, core_redis_layer, ingest, open_client

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


class NoRenewal(StripeEventConsumer):
    def refresh_interval(self):
        return None


@pytest.fixture
async def redis_layer(redis_url):
    """The default channel layer switched to channels-redis, with a 2 s ``group_expiry``."""
    async with core_redis_layer(redis_url, group_expiry=2) as (_, prefix, client):
        yield prefix, client


async def test_membership_is_renewed_before_group_expiry(redis_layer):
    prefix, redis = redis_layer
    key = f"{prefix}:group:{messaging.transaction_group('ch_redis')}"
    renewing = await open_client()
    lapsing = await open_client(consumer=NoRenewal)
    for client in (renewing, lapsing):
        await client.subscribe("id = 'ch_redis'", subscription="s1", replay="none")
    joined = dict(await redis.zrange(key, 0, -1, withscores=True))
    assert len(joined) == 2

    await asyncio.sleep(3.2)
    renewed = dict(await redis.zrange(key, 0, -1, withscores=True))
    # One member joined again (a newer score); the other's membership is past group_expiry.
    advanced = sorted(renewed[member] - joined[member] for member in joined)
    assert advanced[0] == 0 and advanced[1] > 1
    assert await redis.ttl(key) > 0

    await ingest(charge_event("charge.succeeded", "ch_redis"))
    assert (await renewing.recv(timeout=5))["headers"]["id"] == "ch_redis"
    assert await lapsing.nothing(0.3)

    await renewing.close()
    await lapsing.close()
    assert await redis.zcard(key) == 0


async def test_unsubscribe_and_close_leave_redis_groups(redis_layer):
    prefix, redis = redis_layer
    a_key = f"{prefix}:group:{messaging.transaction_group('ch_ra')}"
    b_key = f"{prefix}:group:{messaging.transaction_group('ch_rb')}"
    client = await open_client()
    await client.subscribe("id = 'ch_ra'", subscription="a", replay="none")
    await client.subscribe("id IN ('ch_ra', 'ch_rb')", subscription="b", replay="none")
    assert (await redis.zcard(a_key), await redis.zcard(b_key)) == (1, 1)
    await client.request({"action": "unsubscribe", "subscription": "a"})
    assert (await redis.zcard(a_key), await redis.zcard(b_key)) == (1, 1)
    await client.close()
    assert (await redis.zcard(a_key), await redis.zcard(b_key)) == (0, 0)
