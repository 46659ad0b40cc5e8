"""The real-time channel end to end on both transports, websocket and Server-Sent Events,
against live Daphne and Uvicorn processes (issue 18): live status, replay, policy, limits,
two processes over Redis, layer state loss, and exact resume after a killed connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from tests.factories import charge_object, make_event
from tests.live import LiveServer, run_server
from tests.realtime_fixtures import unique_prefix
from tests.test_client_limits import scratch_postgres
from tests.test_scaleout import SECRET, post_webhook
from tests.transports import TRANSPORTS, open_stream

pytestmark = pytest.mark.redis

ENV = {"STRIPE_WEBHOOK_SECRET": SECRET, "STRIPE_API_KEY": "sk_test_transports"}


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def prefix() -> str:
    return unique_prefix()


@pytest.fixture(scope="module")
def servers(
    server_kind: str, redis_url: str, prefix: str
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two processes of one site: one database, one Redis."""
    env = {**ENV, "REDIS_URL": redis_url, "CHANNELS_REDIS_PREFIX": prefix}
    with run_server(server_kind, env) as a:
        shared = {**env, "DATABASE_URL": f"sqlite:///{a.database_path}"}
        with run_server(server_kind, shared) as b:
            yield a, b


def tx_id() -> str:
    return f"ch_{uuid.uuid4().hex[:12]}"


def event(tx: str, kind: str = "charge.succeeded", **fields) -> dict:
    return make_event(kind, charge_object(tx, **fields), event_id=f"evt_{uuid.uuid4().hex}")


async def post(server: LiveServer, body: dict) -> None:
    await asyncio.to_thread(post_webhook, server, body)


async def test_webhook_reaches_a_subscriber_live(servers, transport):
    a, _ = servers
    tx = tx_id()
    conn = await open_stream(transport, a, f"id = '{tx}'", "none")
    assert (await conn.recv())["type"] == "subscribed"
    sent = event(tx)
    await post(a, sent)
    frame = await conn.recv()
    assert (frame["type"], frame["replayed"]) == ("message", False)
    assert (frame["headers"]["event_id"], frame["headers"]["status"]) == (sent["id"], "succeeded")
    assert frame["cursor"].isdigit()
    await conn.close()


async def test_webhook_on_one_process_reaches_a_subscriber_on_the_other(servers, transport):
    a, b = servers
    tx = tx_id()
    conn = await open_stream(transport, b, f"id = '{tx}'", "none")
    assert (await conn.recv())["type"] == "subscribed"
    sent = event(tx)
    await post(a, sent)
    assert (await conn.recv())["headers"]["event_id"] == sent["id"]
    await conn.close()


@pytest.mark.parametrize("mode", ["latest", "all"])
async def test_replay(servers, transport, mode):
    a, b = servers
    tx = tx_id()
    first, second = event(tx, "charge.pending", status="pending"), event(tx)
    await post(a, first)
    await post(a, second)
    conn = await open_stream(transport, b, f"id = '{tx}'", mode)
    assert (await conn.recv())["type"] == "subscribed"
    expected = [first["id"], second["id"]] if mode == "all" else [second["id"]]
    frames = [await conn.recv() for _ in expected]
    assert [f["headers"]["event_id"] for f in frames] == expected
    assert all(f["replayed"] for f in frames)
    assert frames[-1]["headers"]["status"] == "succeeded"
    await conn.close()


async def test_policy_refusal(servers, transport):
    a, _ = servers
    conn = await open_stream(transport, a, "amount > 0", "none")
    frame = await conn.recv()
    assert (frame["type"], frame["code"], frame["subscription"]) == (
        "error",
        "forbidden",
        "default",
    )
    if transport == "sse":  # an error ends the stream
        assert await conn.event() is None
    await conn.close()


async def test_a_client_subscribing_in_a_loop_is_limited(servers, transport):
    """One budget per client, ``FRAME_BURST`` (60) at once: subscribe frames on a websocket,
    stream opens on SSE. Past it: ``rate_limited`` (websocket, then closed) or 429."""
    _, b = servers
    tx = tx_id()
    if transport == "ws":
        conn = await open_stream("ws", b, None)
        for n in range(80):
            try:
                await conn.ws.send(json.dumps({"action": "ping", "subscription": f"s{n}"}))
            except ConnectionClosed:
                break  # closed over the limit before all 80 were written: what it should do
        frames = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                frames.append(await conn.recv())
        assert frames[-1]["code"] == "rate_limited"
        return
    streams = await asyncio.gather(
        *(open_stream("sse", b, f"id = '{tx}'", "none") for _ in range(150))
    )
    statuses = [conn.status for conn in streams]
    assert statuses.count(200) >= 60
    assert statuses.count(429) >= 40, statuses
    refused = next(conn for conn in streams if conn.status == 429)
    assert refused.headers["retry-after"] == "1"
    assert json.loads(refused.body)["error"]["code"] == "rate_limited"
    for conn in streams:
        await conn.close()


async def test_layer_state_loss_is_recovered(servers, transport, redis_url, prefix):
    import redis.asyncio as aioredis

    a, _ = servers
    tx = tx_id()
    conn = await open_stream(transport, a, f"id = '{tx}'", "none")
    assert (await conn.recv())["type"] == "subscribed"
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)  # every membership of this site is gone
    finally:
        await client.aclose()
    sent = event(tx)
    await post(a, sent)
    # The probe notices within LAYER_PROBE_INTERVAL (10 s) + 5 s and the stream catches up.
    frame = await conn.recv(timeout=30)
    assert frame["headers"]["event_id"] == sent["id"]
    await conn.close()


# -- exact resume ---------------------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_killed_client_resumes_exactly(server_kind, redis_url, transport, database):
    """The client is killed (no goodbye) while its stream is live; 200 events of its
    subscription are stored meanwhile; it comes back with its last cursor and gets exactly
    those 200, in order, none twice, then live events again."""
    env = {**ENV, "REDIS_URL": redis_url, "CHANNELS_REDIS_PREFIX": unique_prefix()}
    if database == "postgresql":
        with scratch_postgres() as url, run_server(server_kind, {**env, "DATABASE_URL": url}) as s:
            await resume_after_kill(s, transport)
    else:
        with run_server(server_kind, env) as s:
            await resume_after_kill(s, transport)


async def resume_after_kill(server: LiveServer, transport: str) -> None:
    tx = tx_id()
    conn = await open_stream(transport, server, f"id = '{tx}'", "none")
    assert (await conn.recv())["type"] == "subscribed"
    before = [event(tx, "charge.updated", amount=1000 + n) for n in range(5)]
    for body in before:
        await post(server, body)
    got = [await conn.recv() for _ in before]
    assert [f["headers"]["event_id"] for f in got] == [b["id"] for b in before]
    cursor = got[-1]["cursor"]
    conn.kill()

    missed = [event(tx, "charge.updated", amount=2000 + n) for n in range(200)]
    started = time.monotonic()
    for body in missed:
        await post(server, body)
    assert time.monotonic() - started < 120

    back = await open_stream(transport, server, f"id = '{tx}'", "none", since=cursor)
    answer = await back.recv()
    assert (answer["type"], answer["recovered"]) == ("subscribed", True)
    frames = [await back.recv() for _ in missed]
    assert [f["headers"]["event_id"] for f in frames] == [b["id"] for b in missed]
    cursors = [int(f["cursor"]) for f in frames]
    assert cursors == sorted(set(cursors)) and cursors[0] > int(cursor)
    live = event(tx, "charge.refunded", amount_refunded=1000)
    await post(server, live)
    frame = await back.recv()
    assert (frame["headers"]["event_id"], frame["replayed"]) == (live["id"], False)
    if transport == "sse":
        assert back.last_id == frame["cursor"]
    await back.close()


async def test_unknown_cursor_is_not_recovered_and_replays_latest(servers, transport):
    a, _ = servers
    tx = tx_id()
    sent = event(tx)
    await post(a, sent)
    conn = await open_stream(transport, a, f"id = '{tx}'", "none", since="999999999")
    answer = await conn.recv()
    assert (answer["type"], answer["recovered"]) == ("subscribed", False)
    frame = await conn.recv()
    assert (frame["headers"]["event_id"], frame["replayed"]) == (sent["id"], True)
    await conn.close()


async def test_open_streams_end_when_the_server_shuts_down(server_kind, redis_url):
    """SIGTERM: each open stream ends — with ``service_restart`` where the server lets the
    stream finish (Uvicorn waits for open responses), by the connection closing where it
    cancels them (Daphne) — and the server exits promptly, without a traceback."""
    import signal

    env = {**ENV, "REDIS_URL": redis_url, "CHANNELS_REDIS_PREFIX": unique_prefix()}
    with run_server(server_kind, env) as server:
        streams = [await open_stream("sse", server, f"id = '{tx_id()}'", "none") for _ in range(3)]
        for conn in streams:
            assert (await conn.recv())["type"] == "subscribed"
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for conn in streams:
            fields = await conn.event()
            if fields is not None:
                assert fields["event"] == "error" and "service_restart" in fields["data"]
                assert await conn.event() is None
            elif server_kind == "uvicorn":
                pytest.fail("Uvicorn lets a stream finish: it should say why it ends")
        await asyncio.to_thread(server.process.wait, 10)
        assert time.monotonic() - started < 5, server.log()[-2000:]
        log = server.log()
        # Hypercorn may log its own connection tasks being cancelled; none of ours.
        ours = [t for t in log.split("Traceback")[1:] if "django_stripe_bridge/" in t[:4000]]
        assert not ours, log[-3000:]
        if server_kind in ("daphne", "uvicorn"):
            assert "Traceback" not in log, log[-3000:]


async def test_listen_command_resumes_from_since(servers, transport):
    """``python -m django_stripe_bridge.listen [--sse] --since <cursor>``: the events after
    the cursor, then live ones, one JSON line each."""
    import subprocess
    import sys

    from tests.live import ROOT
    from tests.transports import EVENTS_PATH

    a, _ = servers
    tx = tx_id()
    conn = await open_stream(transport, a, f"id = '{tx}'", "none")
    assert (await conn.recv())["type"] == "subscribed"
    bodies = [event(tx, "charge.updated", amount=1000 + n) for n in range(3)]
    for body in bodies:
        await post(a, body)
    first = await conn.recv()
    await conn.close()
    url = f"{a.url}{EVENTS_PATH}" if transport == "sse" else f"{a.ws_url}/ws/stripe/"
    command = [sys.executable, "-m", "django_stripe_bridge.listen", url, "--quiet"]
    command += ["--selector", f"id = '{tx}'", "--since", first["cursor"]]
    command += ["--sse"] if transport == "sse" else []
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        lines = [await asyncio.to_thread(process.stdout.readline) for _ in bodies[1:]]
        got = [json.loads(line)["headers"]["event_id"] for line in lines]
        assert got == [b["id"] for b in bodies[1:]]
        live = event(tx, "charge.refunded", amount_refunded=1000)
        await post(a, live)
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 15)
        assert json.loads(line)["headers"]["event_id"] == live["id"]
    finally:
        process.terminate()
        process.wait(10)
