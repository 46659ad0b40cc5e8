"""One reader per event loop on channels-redis's core layer (``realtime/layer_receive.py``):
idle websockets wait on their own buffers, not on the layer's receive lock, so that a
delivery costs the same with 20,000 of them as with 10 (bench/bench_sockets.py)."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import override_settings

from django_stripe_bridge import messaging
from django_stripe_bridge.conf import bridge_settings
from django_stripe_bridge.realtime import layer_receive
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import charge_event, core_redis_layer, ingest, open_client

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
async def core_layer(redis_url):
    async with core_redis_layer(redis_url) as layer:
        yield layer


def waiting_on_lock(layer) -> int:
    lock = layer.receive_lock
    return len(lock._waiters or ()) if lock is not None else 0


@pytest.mark.parametrize("watch", [True, False], ids=["with-layer-watch", "pump-alone"])
async def test_idle_sockets_wait_on_their_buffers_and_one_pump_reads(core_layer, watch):
    # Without the layer watch (its probe off) the pump is the only reader of the sockets'
    # Redis key: it must read that key, not one of its own.
    interval = bridge_settings.LAYER_PROBE_INTERVAL if watch else None
    with override_settings(
        STRIPE_BRIDGE={**settings.STRIPE_BRIDGE, "LAYER_PROBE_INTERVAL": interval}
    ):
        await sockets_on_the_pump(*core_layer, readers=2 if watch else 1)


async def sockets_on_the_pump(layer, prefix, redis, readers):
    clients = [await open_client() for _ in range(20)]
    for n, client in enumerate(clients):
        await client.subscribe(f"id = 'ch_pump_{n}'", subscription="s", replay="none")
    await asyncio.sleep(0.2)
    # The receive() on the layer are the pump's and the layer watch's (recovery.py); before,
    # one more per socket, each waiting on the lock, whose queue every delivery searched.
    assert layer.receive_count == readers
    assert waiting_on_lock(layer) <= 1

    await ingest(charge_event("charge.succeeded", "ch_pump_7"))
    assert (await clients[7].recv(timeout=5))["headers"]["id"] == "ch_pump_7"
    assert await clients[3].nothing(0.3)
    await ingest(charge_event("charge.succeeded", "ch_pump_3"))
    assert (await clients[3].recv(timeout=5))["headers"]["id"] == "ch_pump_3"

    sockets = set()
    for n in range(len(clients)):
        group = messaging.transaction_group(f"ch_pump_{n}")
        sockets |= {name.decode() for name in await redis.zrange(f"{prefix}:group:{group}", 0, -1)}
    assert len(sockets) == 20 and sockets <= set(layer.receive_buffer)

    for client in clients:
        await client.close()
    await asyncio.sleep(0.2)
    # The pump stopped with the last socket, and no socket's buffer is left behind.
    assert layer.receive_count == 0
    assert sockets & set(layer.receive_buffer) == set()
    assert list(layer.receive_buffer) == []


async def test_the_pump_is_only_for_the_core_layer():
    # The in-memory layer (the tests' default) and any other are read by receive() as before.
    assert not layer_receive.pumped(get_channel_layer())
    assert not layer_receive.attach(get_channel_layer())
