"""Per-client bounds hold on Server-Sent Events (issue 18), against live servers: 1,000 idle
streams cost no more memory per stream than websockets do (Daphne and Uvicorn); a client
that opens streams in a loop is limited, and meanwhile another client's stream gets its
event within 1 s."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.factories import charge_object, make_event
from tests.live import LiveServer, run_daphne, run_server
from tests.test_client_limits import rss_mib
from tests.test_scaleout import SECRET, post_webhook
from tests.transports import open_stream

ENV = {
    "STRIPE_WEBHOOK_SECRET": SECRET,
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "sse-bounds",
    "REDIS_URL": "",
}
STREAMS = 1000
#: Source addresses the streams come from (20 clients' worth each, within one client's
#: burst of 60 opens): 1,000 streams are 50 clients, as they would be in production.
CLIENTS = 50
#: KiB per connection the two figures may differ by and still count as equal: what the
#: same measurement varies by from run to run (the interpreter's memory grows by whole
#: arenas and pages, about 1 MiB over 1,000 connections, so ±1 KiB each).
NOISE_KIB = 1.0


def client_host(n: int) -> str:
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


async def idle_cost(server: LiveServer, transport: str) -> float:
    """MiB the server grows by per idle subscribed connection, over ``STREAMS`` of them."""
    await asyncio.sleep(1.0)
    before = rss_mib(server.process.pid)
    limit = asyncio.Semaphore(50)

    async def one(n: int):
        async with limit:
            conn = await open_stream(
                transport,
                server,
                f"id = 'ch_idle_{n:04d}'",
                "none",
                local_host=client_host(n % CLIENTS),
            )
            if transport == "sse":
                assert conn.status == 200, (conn.status, conn.body, n)
            assert (await conn.recv())["type"] == "subscribed"
            return conn

    conns = await asyncio.gather(*(one(n) for n in range(STREAMS)))
    await asyncio.sleep(2.0)
    after = rss_mib(server.process.pid)
    for conn in conns:
        conn.kill()
    return (after - before) / STREAMS


@pytest.mark.slow
async def test_idle_streams_cost_no_more_memory_than_websockets(server_kind):
    """Each transport in a fresh server process of its own, one after the other: both
    figures come from the same run. Served as documented, through ``with_stripe_webhook``
    (the demo's ``asgi.py``), a stream keeps nothing of its request."""
    with run_server(server_kind, ENV, access_log=False) as server:
        websocket = await idle_cost(server, "ws") * 1024
    with run_server(server_kind, ENV, access_log=False) as server:
        sse = await idle_cost(server, "sse") * 1024
    print(f"{server_kind}, per connection: websocket {websocket:.1f} KiB, SSE {sse:.1f} KiB")
    assert sse <= websocket + NOISE_KIB, (sse, websocket)


@pytest.mark.serial  # it measures latency: alone, not beside the rest of the suite
async def test_a_client_opening_streams_in_a_loop_does_not_slow_another():
    with run_daphne(env=ENV) as server:
        tx = f"ch_victim_{uuid.uuid4().hex[:8]}"
        victim = await open_stream("sse", server, f"id = '{tx}'", "none", local_host="127.0.9.9")
        assert (await victim.recv())["type"] == "subscribed"
        # A first webhook warms the server (its committer and connections) before the attack.
        await asyncio.to_thread(
            post_webhook, server, make_event("charge.pending", charge_object(tx))
        )
        assert (await victim.recv())["type"] == "message"
        statuses: list[int] = []
        stop = asyncio.Event()

        async def attacker() -> None:
            while not stop.is_set():
                conn = await open_stream(
                    "sse", server, "id = 'ch_x'", "none", local_host="127.0.8.8"
                )
                statuses.append(conn.status)
                await conn.close()

        attack_started = time.monotonic()
        attacking = [asyncio.create_task(attacker()) for _ in range(20)]
        await asyncio.sleep(3.0)
        latencies = []
        for n in range(3):
            body = make_event("charge.updated", charge_object(tx, amount=1000 + n))
            started = time.monotonic()
            await asyncio.to_thread(post_webhook, server, body)
            frame = await victim.recv()
            latencies.append(time.monotonic() - started)
            assert frame["headers"]["event_id"] == body["id"]
        stop.set()
        await asyncio.gather(*attacking)
        attack_time = time.monotonic() - attack_started
        await victim.close()
    # One budget for the client: FRAME_BURST (60) at once, then 20 a second.
    assert statuses.count(429) > 0, statuses
    assert statuses.count(200) <= 60 + 20 * attack_time + 5, (statuses.count(200), attack_time)
    assert max(latencies) < 1.0, latencies
