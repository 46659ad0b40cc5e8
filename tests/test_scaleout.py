"""Scale-out over Redis (SPEC §5), with real server processes and real sockets.

Two server processes (both Daphne, then both Uvicorn) share one SQLite database and one
Redis (channels-redis, under a prefix of their own): a webhook received by server A
reaches a websocket client of server B. Then 1,000 subscribed sockets close, half cleanly
and half by vanishing, and channels-redis must hold no group membership for any of them.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect

from django_stripe_bridge.testing import sign_payload
from tests.factories import charge_object, make_event
from tests.live import LiveServer, run_server
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import unique_prefix

pytestmark = pytest.mark.redis

SECRET = "whsec_scaleout_tests"
WAIT = 10.0  # seconds any single expected frame may take across processes
SOCKETS = 1000


@pytest.fixture(scope="module")
def prefix() -> str:
    return unique_prefix()


@pytest.fixture(scope="module")
def servers(
    server_kind: str, redis_url: str, prefix: str
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Servers A and B: one database, one Redis, one channels-redis prefix."""
    env = {
        "REDIS_URL": redis_url,
        "CHANNELS_REDIS_PREFIX": prefix,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "STRIPE_API_KEY": "sk_test_scaleout",
    }
    with run_server(server_kind, env) as a:
        shared = {**env, "DATABASE_URL": f"sqlite:///{a.database_path}"}
        with run_server(server_kind, shared) as b:
            assert b.env["DATABASE_URL"] == a.env["DATABASE_URL"]
            yield a, b


@pytest.fixture
async def redis_client(redis_url: str, prefix: str):
    client = aioredis.from_url(redis_url)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def post_webhook(server: LiveServer, event: dict) -> dict:
    body = json.dumps(event).encode()
    request = urllib.request.Request(
        server.url + "/api/services/Stripe/webhooks/handler",
        data=body,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": sign_payload(body, SECRET),
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        assert response.status == 200, server.log()
        return json.loads(response.read())


def ws_connect(server: LiveServer, selector: str, replay: str = "none") -> connect:
    url = f"{server.ws_url}/ws/stripe/?selector={quote(selector)}&replay={replay}"
    return connect(url, origin=server.url, open_timeout=WAIT, ping_interval=None)


async def recv_json(ws: ClientConnection, timeout: float = WAIT) -> dict:
    async with asyncio.timeout(timeout):
        return json.loads(await ws.recv())


async def test_webhook_on_one_server_reaches_a_subscriber_on_another(servers):
    a, b = servers
    async with ws_connect(b, "id = 'ch_x'") as ws:
        assert (await recv_json(ws))["type"] == "subscribed"
        event = make_event("charge.succeeded", charge_object("ch_x"))
        assert await asyncio.to_thread(post_webhook, a, event) == {
            "received": True,
            "duplicate": False,
        }
        frame = await recv_json(ws)
        assert frame["type"] == "message", frame
        assert frame["replayed"] is False  # live, through Redis: replay was off
        assert frame["headers"]["event_id"] == event["id"]
        assert frame["headers"]["status"] == "succeeded"
        # Server B reads the database server A wrote: a new subscriber gets it replayed.
        async with ws_connect(b, "id = 'ch_x'", replay="latest") as late:
            assert (await recv_json(late))["type"] == "subscribed"
            replayed = await recv_json(late)
            assert replayed["replayed"] is True
            assert replayed["headers"]["event_id"] == event["id"]


async def test_closed_sockets_leave_no_group_membership(servers, prefix, redis_client):
    """1,000 subscribed sockets close, cleanly or by vanishing: Redis keeps none of them."""
    _, b = servers
    started = time.monotonic()
    ids = [f"ch_leak_{i % 250:03d}" for i in range(SOCKETS)]
    limit = asyncio.Semaphore(100)

    async def open_one(tx: str) -> ClientConnection:
        async with limit:
            ws = await ws_connect(b, f"id = '{tx}'")
            assert (await recv_json(ws))["type"] == "subscribed"
            return ws

    sockets = await asyncio.gather(*(open_one(tx) for tx in ids))

    async def memberships() -> dict[bytes, int]:
        keys = [k async for k in redis_client.scan_iter(match=f"{prefix}:group:*", count=1000)]
        # The server's own probe of the layer (recovery.py) is not a socket's membership.
        keys = [k for k in keys if b":group:stripe_bridge.sentinel." not in k]
        return {key: await redis_client.zcard(key) for key in keys}

    held = await memberships()
    group = f"{prefix}:group:stripe_bridge.tx.ch_leak_000".encode()
    assert held[group] == SOCKETS // 250
    assert sum(held.values()) == SOCKETS, "every socket holds one membership"

    clean, vanishing = sockets[::2], sockets[1::2]
    for ws in vanishing:
        ws.transport.abort()  # no closing handshake: the client just disappears
    await asyncio.gather(*(ws.close() for ws in clean))

    deadline = time.monotonic() + 20
    while (left := sum((await memberships()).values())) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert left == 0, f"{left} group memberships left behind\n{b.log()[-3000:]}"
    assert time.monotonic() - started < 60


def test_concurrent_duplicates_across_processes_are_stored_once(servers):
    """The same events delivered many times at once to both processes (each one batching
    what it receives): every event is created exactly once, every delivery answered 200."""
    from concurrent.futures import ThreadPoolExecutor

    events = [
        make_event("charge.succeeded", charge_object(f"ch_dup_{n}"), event_id=f"evt_dup_{n}")
        for n in range(10)
    ]
    deliveries = [(server, event) for event in events for server in servers for _ in range(3)]
    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(lambda d: post_webhook(*d), deliveries))
    created = [d[1]["id"] for d, a in zip(deliveries, answers, strict=True) if not a["duplicate"]]
    assert all(a["received"] is True for a in answers)
    assert sorted(created) == sorted(e["id"] for e in events)
