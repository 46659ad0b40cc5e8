"""No client can slow another: hostile clients against a real Daphne process (SPEC §5).

* a heavy-selector attacker's events keep an unrelated request under 1 s;
* a frame flood is cut off (``rate_limited``, close 1008), grows the server by less than
  100 MiB and leaves it idle within 5 s after the client goes;
* a replay flood (40 connections subscribing to made-up ids) keeps another client's
  replay under 1.5 s and new handshakes under 2 s — on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests import services
from tests.factories import charge_object, make_event
from tests.live import LiveServer, run_daphne
from tests.test_scaleout import SECRET, post_webhook, recv_json

ENV = {"STRIPE_WEBHOOK_SECRET": SECRET, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "limits"}


# Latencies and the server's CPU under attack: alone under xdist (tests/conftest.py).
pytestmark = pytest.mark.serial


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def ws(server: LiveServer, query: str = ""):
    return connect(
        f"{server.ws_url}/ws/stripe/{query}",
        origin=server.url,
        open_timeout=10,
        ping_interval=None,
        max_queue=None,
    )


def timed_get(server: LiveServer, path: str = "/admin/login/") -> float:
    started = time.monotonic()
    with urllib.request.urlopen(server.url + path, timeout=10) as response:
        response.read()
    return time.monotonic() - started


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    # The in-memory layer (REDIS_URL empty): the limits are the consumer's, not Redis's.
    with run_daphne(env={**ENV, "REDIS_URL": ""}) as live:
        yield live


async def send_paced(conn, frames: list[dict], burst: int = 40, rate: float = 15.0) -> None:
    """Send ``frames`` as fast as the frame-rate limit allows (a patient attacker). The burst
    leaves 20 of the server's 60 tokens spare: on a loaded machine sends that were due
    apart can reach the server together."""
    for n, frame in enumerate(frames):
        if n >= burst:
            await asyncio.sleep(1 / rate)
        await conn.send(json.dumps(frame))


async def test_heavy_selectors_do_not_stall_other_requests(server):
    """30 connections x 100 subscriptions of ~4 KB selectors pinned to the attacker's own
    transaction, each a worst case for LIKE (1.2 ms to match): without a per-connection
    budget every event of that transaction would hold the event loop for seconds."""
    tx = "ch_heavy"
    terms = [f"event_id LIKE '{'%e' * 55}Z{i}'" for i in range(30)]
    selector = f"id = '{tx}' AND ({' OR '.join(terms)})"
    assert len(selector) <= 4096
    frames = [
        {"action": "subscribe", "subscription": f"s{n}", "replay": "none", "selector": selector}
        for n in range(100)
    ]
    attackers = [await ws(server) for _ in range(30)]
    await asyncio.gather(*(send_paced(conn, frames) for conn in attackers))
    for conn in attackers:  # every frame answered: what follows measures the events alone
        answers = [json.loads(await recv_json_raw(conn)) for _ in frames]
        kinds = {a["type"] if a["type"] != "error" else a["code"] for a in answers}
        assert kinds == {"subscribed", "limit_exceeded"}

    async def fire() -> None:
        for _ in range(5):
            event = make_event(
                "charge.updated", charge_object(tx), event_id=f"evt_{time.time_ns()}"
            )
            await asyncio.to_thread(post_webhook, server, event)

    firing = asyncio.ensure_future(fire())
    latencies = []
    while not firing.done():
        latencies.append(await asyncio.to_thread(timed_get, server))
    await firing
    assert max(latencies) < 1.0, latencies
    for conn in attackers:
        await conn.close()


async def recv_json_raw(conn) -> str:
    async with asyncio.timeout(10):
        return await conn.recv()


async def test_frame_flood_is_cut_off_and_costs_little(server):
    pid = server.process.pid
    before = rss_mib(pid)
    peak = before
    async with ws(server) as conn:
        frames = 0
        closed = None
        frame = json.dumps({"action": "subscribe", "selector": "id = 'ch_flood'", "replay": "none"})
        unsub = json.dumps({"action": "unsubscribe", "subscription": "sub-1"})
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                await conn.send(frame if frames % 2 == 0 else unsub)
                frames += 1
                if frames % 500 == 0:
                    peak = max(peak, rss_mib(pid))
                    await asyncio.sleep(0)
        except ConnectionClosed as exc:
            closed = exc
        if closed is None:
            await asyncio.wait_for(conn.wait_closed(), 10)
        errors = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                reply = json.loads(await conn.recv())
                if reply["type"] == "error":
                    errors.append(reply["code"])
        # 1008, or 4008 under Daphne, whose websocket library refuses to send 1008.
        assert info.value.rcvd is not None and info.value.rcvd.code in (1008, 4008)
        assert "rate_limited" in errors
    peak = max(peak, rss_mib(pid))
    assert peak - before < 100, (before, peak)
    # The client is gone: within 5 s the server is idle (under 5% of a core over 1 s).
    idle = False
    stop = time.monotonic() + 5
    while time.monotonic() < stop and not idle:
        start_cpu = cpu_seconds(pid)
        await asyncio.sleep(1.0)
        idle = cpu_seconds(pid) - start_cpu < 0.05
    assert idle
    assert await asyncio.to_thread(timed_get, server) < 1.0


@contextlib.contextmanager
def scratch_postgres() -> Iterator[str]:
    """A PostgreSQL database of its own for a live server (created, then dropped)."""
    url = os.environ.get("TEST_POSTGRES_URL") or services.DEFAULT_POSTGRES_URL
    if not services.reachable(url, 5432):
        services.missing(f"PostgreSQL is not reachable at {url} (TEST_POSTGRES_URL)")
    import psycopg

    parsed = urlparse(url)
    name = f"{(parsed.path.lstrip('/') or 'test')}_limits_{os.getpid()}"
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield parsed._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_replay_flood_does_not_delay_other_clients(server, database):
    if database == "postgresql":
        with (
            scratch_postgres() as url,
            run_daphne(env={**ENV, "REDIS_URL": "", "DATABASE_URL": url}) as live,
        ):
            await replay_flood(live)
    else:
        await replay_flood(server)


async def replay_flood(server: LiveServer) -> None:
    tx = f"ch_victim_{time.time_ns()}"
    await asyncio.to_thread(post_webhook, server, make_event("charge.succeeded", charge_object(tx)))
    made_up = " , ".join(f"'ch_madeup_{i:03d}'" for i in range(100))
    flooders = [await ws(server) for _ in range(40)]

    frames = [
        {"action": "subscribe", "subscription": f"f{n}", "replay": "all",
         "selector": f"id IN ({made_up})"}
        for n in range(100)
    ]  # fmt: skip
    flooding = asyncio.gather(*(send_paced(conn, frames) for conn in flooders))
    await asyncio.sleep(1.0)  # the flood is under way
    started = time.monotonic()
    async with ws(server, f"?selector=id%20%3D%20'{tx}'&replay=latest") as victim:
        handshake = time.monotonic() - started
        assert (await recv_json(victim))["type"] == "subscribed"
        replayed = await recv_json(victim)
        replay_time = time.monotonic() - started
    assert replayed["replayed"] is True and replayed["headers"]["id"] == tx
    assert handshake < 2.0, handshake
    assert replay_time < 1.5, replay_time
    await flooding
    for conn in flooders:
        await conn.close()
