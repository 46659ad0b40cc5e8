"""Soak test on real Redis (marked ``slow``; CI runs it): idle sockets stay open and keep
receiving, on both channels-redis layers, with the demo's settings and the installed redis-py.

One idle period of 35 s, longer than every timeout in play (channels-redis's 5 s blocking
receive, redis-py's ``socket_timeout``, Daphne's 20 s websocket ping), serves every
assertion; then the layer's database is flushed and the same sockets must recover. The
servers use a Redis database the test owns (``services.owned_redis_url()``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection

from tests import services
from tests.factories import charge_object, make_event
from tests.live import LiveServer, run_daphne
from tests.test_scaleout import SECRET, post_webhook, recv_json, ws_connect

pytestmark = [pytest.mark.redis, pytest.mark.slow]

IDLE_SECONDS = 35
SOCKETS_PER_SERVER = 10


@pytest.fixture(scope="module")
def owned_redis(redis_url: str) -> str:
    return services.owned_redis_url()


@pytest.fixture(scope="module")
def servers(owned_redis: str) -> Iterator[dict[str, LiveServer]]:
    """A server on ``RedisChannelLayer`` and one on ``RedisPubSubChannelLayer``."""
    env = {"REDIS_URL": owned_redis, "STRIPE_WEBHOOK_SECRET": SECRET}
    with (
        run_daphne(env={**env, "CHANNELS_REDIS_PREFIX": "endurance-core"}) as core,
        run_daphne(
            env={**env, "CHANNELS_REDIS_PREFIX": "endurance-ps", "CHANNELS_REDIS_PUBSUB": "1"}
        ) as pubsub,
    ):
        yield {"core": core, "pubsub": pubsub}


async def open_sockets(server: LiveServer, tx: str) -> list[ClientConnection]:
    sockets = []
    for _ in range(SOCKETS_PER_SERVER):
        ws = await ws_connect(server, f"id = '{tx}'")
        assert (await recv_json(ws))["type"] == "subscribed"
        sockets.append(ws)
    return sockets


async def test_idle_sockets_stay_open_and_receive(servers, owned_redis):
    sockets = {name: await open_sockets(srv, f"ch_idle_{name}") for name, srv in servers.items()}
    started = time.monotonic()
    await asyncio.sleep(IDLE_SECONDS)
    for name, server in servers.items():
        event = make_event("charge.succeeded", charge_object(f"ch_idle_{name}"))
        await asyncio.to_thread(post_webhook, server, event)
        for ws in sockets[name]:
            frame = await recv_json(ws)
            assert frame["type"] == "message", (name, frame)
            assert frame["headers"]["event_id"] == event["id"]
        assert "1011" not in server.log() and "Traceback" not in server.log(), server.log()[-3000:]
    assert time.monotonic() - started >= IDLE_SECONDS

    # State loss: the layer's database is flushed. The event published right after it finds
    # no RedisChannelLayer group; each socket still gets it (by replay) within 60 s, then
    # later events live, each exactly once, with no action from the client.
    redis = aioredis.from_url(owned_redis)
    await redis.flushdb()
    await redis.aclose()
    for name, server in servers.items():
        tx = f"ch_idle_{name}"
        missed = make_event("charge.refunded", charge_object(tx, amount_refunded=1000))
        await asyncio.to_thread(post_webhook, server, missed)
        flushed = time.monotonic()
        for ws in sockets[name]:
            frame = await recv_json(ws, timeout=60)
            assert frame["headers"]["event_id"] == missed["id"], (name, frame)
        assert time.monotonic() - flushed < 60
        later = make_event("charge.updated", charge_object(tx, amount_refunded=1000))
        await asyncio.to_thread(post_webhook, server, later)
        for ws in sockets[name]:
            frame = await recv_json(ws)
            assert (frame["headers"]["event_id"], frame["replayed"]) == (later["id"], False)
        for ws in sockets[name]:
            with pytest.raises(TimeoutError):
                await recv_json(ws, timeout=0.5)  # nothing twice
    for group in sockets.values():
        for ws in group:
            await ws.close()
