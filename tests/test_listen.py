"""``python -m django_stripe_bridge.listen``: the async client and the command line.

Reconnection is tested against a scripted websocket server in the test process (it drops
the first connection, then checks the client subscribes again with replay); the command
line end to end against a real Daphne serving the demo.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Iterator

import pytest
from websockets.asyncio.server import ServerConnection, serve

from django_stripe_bridge import listen as listen_module
from django_stripe_bridge.listen import (
    ListenError,
    SubscriptionRefused,
    backoff_delay,
    listen,
    websocket_url,
)
from django_stripe_bridge.testing import sign_payload
from tests.factories import charge_object, make_event
from tests.live import ROOT, LiveServer, run_daphne
from tests.realtime_fixtures import *  # noqa: F403

SECRET = "whsec_listen_tests"
WAIT = 10.0


def message(event_id: str, status: str = "succeeded", replayed: bool = False) -> str:
    return json.dumps(
        {
            "type": "message",
            "subscription": "listen",
            "channel": "stripe",
            "headers": {"id": "ch_1", "event_id": event_id, "status": status},
            "data": {"event_id": event_id},
            "replayed": replayed,
        }
    )


class ScriptedServer:
    """A websocket server that plays one script per connection and records what it got."""

    def __init__(self, scripts) -> None:
        self.scripts = list(scripts)
        self.received: list[dict] = []
        self.origins: list[str | None] = []

    async def handler(self, ws: ServerConnection) -> None:
        self.origins.append(ws.request.headers.get("Origin"))
        script = self.scripts.pop(0) if self.scripts else self.keep_open
        await script(self, ws)

    async def subscribe_frame(self, ws: ServerConnection) -> dict:
        frame = json.loads(await ws.recv())
        self.received.append(frame)
        return frame

    @staticmethod
    async def keep_open(server: ScriptedServer, ws: ServerConnection) -> None:
        await ws.wait_closed()


async def drop_after_two(server: ScriptedServer, ws: ServerConnection) -> None:
    frame = await server.subscribe_frame(ws)
    await ws.send(json.dumps({"type": "subscribed", "subscription": frame["subscription"]}))
    await ws.send(message("evt_1", "pending"))
    await ws.send(message("evt_2"))
    await ws.close(1012)  # service restart


async def replay_then_new(server: ScriptedServer, ws: ServerConnection) -> None:
    frame = await server.subscribe_frame(ws)
    await ws.send(json.dumps({"type": "subscribed", "subscription": frame["subscription"]}))
    await ws.send(message("evt_2", replayed=True))  # already seen: dropped
    await ws.send(json.dumps({"type": "pong"}))
    await ws.send(message("evt_3", "refunded"))
    await ws.wait_closed()


async def refuse(server: ScriptedServer, ws: ServerConnection) -> None:
    frame = await server.subscribe_frame(ws)
    await ws.send(
        json.dumps(
            {
                "type": "error",
                "code": "forbidden",
                "message": "This selector needs a staff login.",
                "subscription": frame["subscription"],
            }
        )
    )
    await ws.wait_closed()


async def start(server: ScriptedServer):
    ws_server = await serve(server.handler, "127.0.0.1", 0)
    port = ws_server.sockets[0].getsockname()[1]
    return ws_server, f"ws://127.0.0.1:{port}/ws/stripe/"


# -- the async client ---------------------------------------------------------------------


async def test_reconnects_and_resubscribes_with_replay_dropping_repeats():
    scripted = ScriptedServer([drop_after_two, replay_then_new])
    ws_server, url = await start(scripted)
    frames = []
    async with asyncio.timeout(WAIT):
        async for frame in listen(url, selector="id = 'ch_1'", replay="none", min_delay=0.05):
            frames.append(frame)
            if len(frames) == 3:
                break
    ws_server.close()
    assert [f["headers"]["event_id"] for f in frames] == ["evt_1", "evt_2", "evt_3"]
    first, second = scripted.received
    assert first == {
        "action": "subscribe",
        "subscription": "listen",
        "selector": "id = 'ch_1'",
        "replay": "none",
    }
    assert second == {**first, "replay": "latest"}
    assert scripted.origins[0] == url.split("/ws/")[0].replace("ws://", "http://")


async def test_replay_all_stays_all_after_a_reconnect():
    scripted = ScriptedServer([drop_after_two, replay_then_new])
    ws_server, url = await start(scripted)
    async with asyncio.timeout(WAIT):
        async for frame in listen(url, channel="stripe/ch_1", replay="all", min_delay=0.05):
            if frame["headers"]["event_id"] == "evt_3":
                break
    ws_server.close()
    assert [f.get("replay") for f in scripted.received] == ["all", "all"]
    assert scripted.received[0]["channel"] == "stripe/ch_1"


async def test_refused_subscription_raises():
    ws_server, url = await start(ScriptedServer([refuse]))
    with pytest.raises(SubscriptionRefused, match="forbidden") as info:
        async with asyncio.timeout(WAIT):
            async for _ in listen(url, selector="amount > 1"):
                pass
    ws_server.close()
    assert info.value.code == "forbidden"


async def test_gives_up_after_max_attempts():
    from tests.live import free_port

    url = f"ws://127.0.0.1:{free_port()}/ws/stripe/"
    with pytest.raises(ListenError, match="gave up after 2"):
        async with asyncio.timeout(WAIT):
            async for _ in listen(url, max_attempts=2, min_delay=0.01):
                pass


def test_websocket_url():
    assert websocket_url("http://example.com") == "ws://example.com/ws/stripe/"
    assert websocket_url("https://example.com/") == "wss://example.com/ws/stripe/"
    assert websocket_url("ws://h:8000/ws/stripe?x=1") == "ws://h:8000/ws/stripe?x=1"
    assert websocket_url("127.0.0.1:8000") == "ws://127.0.0.1:8000/ws/stripe/"
    with pytest.raises(ListenError, match="Not a websocket URL"):
        websocket_url("ftp://example.com")


def test_backoff_grows_is_capped_and_jittered():
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0)]:
        delays = {backoff_delay(attempt, 0.5, 30.0) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1


def test_missing_websockets_library_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "websockets.asyncio.client", None)
    url = "ws://127.0.0.1:9/ws/stripe/"
    assert listen_module.main([url, "--quiet", "--max-attempts", "1"]) == 1
    err = capsys.readouterr().err
    assert "websockets" in err and "pip install 'django-stripe-bridge[listen]'" in err
    assert "Traceback" not in err


# -- the command line ---------------------------------------------------------------------


async def run_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "django_stripe_bridge.listen",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_line(process: asyncio.subprocess.Process) -> dict:
    async with asyncio.timeout(WAIT):
        return json.loads(await process.stdout.readline())


async def stop(process: asyncio.subprocess.Process, sig: int = signal.SIGINT) -> str:
    process.send_signal(sig)
    async with asyncio.timeout(WAIT):
        _, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert b"Traceback" not in err
    return err.decode()


async def test_cli_prints_json_lines_reconnects_and_stops_on_ctrl_c():
    scripted = ScriptedServer([drop_after_two, replay_then_new])
    ws_server, url = await start(scripted)
    process = await run_cli(url, "--selector", "id = 'ch_1'", "--replay", "none")
    lines = [await read_line(process) for _ in range(3)]
    assert [line["headers"]["event_id"] for line in lines] == ["evt_1", "evt_2", "evt_3"]
    assert all(line["type"] == "message" for line in lines)
    err = await stop(process)
    assert "subscribed" in err and "reconnecting" in err
    ws_server.close()


async def test_cli_stops_on_sigterm():
    ws_server, url = await start(ScriptedServer([replay_then_new]))
    process = await run_cli(url, "--quiet")
    await read_line(process)
    assert await stop(process, signal.SIGTERM) == ""
    ws_server.close()


async def test_cli_gives_up_after_max_attempts():
    from tests.live import free_port

    process = await run_cli(f"ws://127.0.0.1:{free_port()}", "--max-attempts", "2")
    async with asyncio.timeout(WAIT):
        _, err = await process.communicate()
    assert process.returncode == 1
    assert "gave up after 2" in err.decode() and "Traceback" not in err.decode()


async def test_cli_exits_1_when_refused():
    ws_server, url = await start(ScriptedServer([refuse]))
    process = await run_cli(url, "--selector", "amount > 1")
    async with asyncio.timeout(WAIT):
        _, err = await process.communicate()
    assert process.returncode == 1
    assert "forbidden" in err.decode() and "Traceback" not in err.decode()
    ws_server.close()


@pytest.fixture(scope="module")
def demo_server() -> Iterator[LiveServer]:
    with run_daphne(env={"STRIPE_WEBHOOK_SECRET": SECRET, "STRIPE_API_KEY": "sk_test_listen"}) as s:
        yield s


async def test_cli_against_the_demo_server(demo_server):
    """End to end: a signed webhook to the demo reaches the command line's stdout."""
    import urllib.request

    process = await run_cli(
        demo_server.ws_url + "/ws/stripe/", "--channel", "stripe/ch_cli", "--replay", "none"
    )
    async with asyncio.timeout(WAIT):
        assert b"subscribed" in await process.stderr.readline()
    event = make_event("charge.succeeded", charge_object("ch_cli"))
    body = json.dumps(event).encode()
    request = urllib.request.Request(
        demo_server.url + "/api/services/Stripe/webhooks/handler",
        data=body,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": sign_payload(body, SECRET),
        },
    )
    response = await asyncio.to_thread(urllib.request.urlopen, request, timeout=WAIT)
    assert response.status == 200
    line = await read_line(process)
    assert line["channel"] == "stripe/ch_cli"
    assert line["headers"]["event_id"] == event["id"] and line["replayed"] is False
    await stop(process)
