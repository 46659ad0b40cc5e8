"""A Redis blip loses no live event: two server processes, Redis killed and started again at once.

Servers A and B (both Daphne, then both Uvicorn) share one SQLite database and a Redis of
the test's own, on each channels-redis layer. Sockets on both subscribe to transactions; a
stream of signed webhooks goes to both servers, and half-way through it Redis is killed
(SIGKILL) and started again on the same port at once. With the pub/sub layer the
subscribing connections come back by themselves, and Redis dropped what was published
while they were away; the core layer loses its group memberships. Either way every socket
must end with every event of its transactions exactly once (live, or caught up from the
database with ``"replayed": true``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import ClientConnection

from tests import services
from tests.factories import charge_object, make_event
from tests.live import LiveServer, free_port, run_server
from tests.test_scaleout import SECRET, post_webhook, recv_json, ws_connect

pytestmark = pytest.mark.redis

IDS = [f"ch_blip_{n}" for n in range(8)]
#: Events per transaction id. A socket pins 4 ids: 80 events, under the 128 a connection
#: remembers to drop repeats (docs/websocket-protocol.md), so exactly once is the promise.
PER_ID = 20
#: Events posted before Redis is killed.
KILL_AFTER = 60
#: Seconds every socket has, after the stream, to hold every event.
SETTLE = 45.0


@pytest.fixture(params=["pubsub", "core"])
def layer(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def redis_server() -> Iterator[services.PrivateRedis]:
    with services.PrivateRedis(free_port()) as redis:
        yield redis


@pytest.fixture
def servers(
    server_kind: str, layer: str, redis_server: services.PrivateRedis
) -> Iterator[tuple[LiveServer, LiveServer]]:
    env = {
        "REDIS_URL": redis_server.url,
        "CHANNELS_REDIS_PUBSUB": "1" if layer == "pubsub" else "0",
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "STRIPE_API_KEY": "sk_test_blip",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "blip",
    }
    with run_server(server_kind, env, access_log=False) as a:
        shared = {**env, "DATABASE_URL": f"sqlite:///{a.database_path}"}
        with run_server(server_kind, shared, access_log=False) as b:
            yield a, b


async def collect(ws: ClientConnection, into: list[dict]) -> None:
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("type") == "message":
            into.append(frame)


def post_stream(
    servers: tuple[LiveServer, ...], redis: services.PrivateRedis, events: list[dict]
) -> None:
    """Post every event, alternating servers; kill and restart Redis after ``KILL_AFTER``."""
    for n, event in enumerate(events):
        if n == KILL_AFTER:
            redis.restart_at_once()
        post_webhook(servers[n % 2], event)
        time.sleep(0.01)


async def test_instant_redis_restart_loses_no_live_event(servers, redis_server, layer):
    a, b = servers
    halves = [IDS[:4], IDS[4:]]
    sockets: list[tuple[ClientConnection, list[str], list[dict]]] = []
    for server in (a, b):
        for ids in halves:
            selector = "id IN ({})".format(", ".join(f"'{tx_id}'" for tx_id in ids))
            ws = await ws_connect(server, selector)
            assert (await recv_json(ws))["type"] == "subscribed"
            sockets.append((ws, ids, []))
    readers = [asyncio.ensure_future(collect(ws, frames)) for ws, _, frames in sockets]
    events = [
        make_event("charge.updated", charge_object(tx_id), event_id=f"evt_blip_{n}_{tx_id}")
        for n in range(PER_ID)
        for tx_id in IDS
    ]

    def expected(ids: list[str]) -> set[str]:
        return {e["id"] for e in events if e["data"]["object"]["id"] in ids}

    await asyncio.sleep(1.0)  # each process's watch has had a good probe
    try:
        await asyncio.to_thread(post_stream, (a, b), redis_server, events)

        def complete() -> bool:
            return all(
                expected(ids) <= {f["headers"]["event_id"] for f in frames}
                for _, ids, frames in sockets
            )

        deadline = time.monotonic() + SETTLE
        while not complete() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # time for a repeat to show
    finally:
        for reader in readers:
            reader.cancel()
        for ws, _, _ in sockets:
            await ws.close()

    report = []
    for n, (_, ids, frames) in enumerate(sockets):
        got = Counter(f["headers"]["event_id"] for f in frames)
        want = expected(ids)
        lost, repeated = want - set(got), {e for e, c in got.items() if c > 1}
        caught_up = sum(f["replayed"] for f in frames)
        report.append(
            f"socket {n}: {len(lost)} lost, {len(repeated)} repeated, {caught_up} replayed"
        )
        assert not set(got) - want, "an event of another transaction"
    summary = "; ".join(report)
    assert all(" 0 lost, 0 repeated" in line for line in report), (
        f"{summary}\nA:\n{a.log()[-2000:]}\nB:\n{b.log()[-2000:]}"
    )
