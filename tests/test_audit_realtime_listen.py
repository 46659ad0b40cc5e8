"""Audit of the Python client (SPEC §5, "Clients"): reconnect with backoff."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.server import ServerConnection

from django_stripe_bridge import listen as listen_module
from django_stripe_bridge.listen import ListenError, listen
from tests.test_listen import ScriptedServer, message, start


async def subscribed_then_closed(server: ScriptedServer, ws: ServerConnection) -> None:
    """What the server does while its database is down: subscribed, then replay fails."""
    frame = await server.subscribe_frame(ws)
    await ws.send(json.dumps({"type": "subscribed", "subscription": frame["subscription"]}))
    await ws.close(1011)


async def deliver(server: ScriptedServer, ws: ServerConnection) -> None:
    await server.subscribe_frame(ws)
    await ws.send(message("evt_done"))
    await ws.wait_closed()


async def test_closing_right_after_subscribed_counts_as_a_failed_attempt():
    scripted = ScriptedServer([subscribed_then_closed] * 5)
    ws_server, url = await start(scripted)
    with pytest.raises(ListenError, match="gave up after 3"):
        async with asyncio.timeout(5):
            async for _ in listen(url, selector="id = 'ch_1'", max_attempts=3, min_delay=0.01):
                pass
    ws_server.close()
    assert len(scripted.received) == 3


async def test_backoff_grows_while_the_server_closes_right_after_subscribed(monkeypatch):
    attempts: list[int] = []

    def record(attempt: int, base: float, cap: float) -> float:
        attempts.append(attempt)
        return 0.001

    monkeypatch.setattr(listen_module, "backoff_delay", record)
    ws_server, url = await start(ScriptedServer([subscribed_then_closed] * 4 + [deliver]))
    async with asyncio.timeout(5):
        async for _ in listen(url, selector="id = 'ch_1'"):
            break
    ws_server.close()
    assert attempts == [0, 1, 2, 3]


async def test_a_stable_connection_resets_the_backoff(monkeypatch):
    attempts: list[int] = []

    def record(attempt: int, base: float, cap: float) -> float:
        attempts.append(attempt)
        return 0.001

    async def stable_then_closed(server: ScriptedServer, ws: ServerConnection) -> None:
        frame = await server.subscribe_frame(ws)
        await ws.send(json.dumps({"type": "subscribed", "subscription": frame["subscription"]}))
        await asyncio.sleep(0.15)
        await ws.close(1012)

    monkeypatch.setattr(listen_module, "backoff_delay", record)
    monkeypatch.setattr(listen_module, "STABLE_AFTER", 0.1)
    scripts = [subscribed_then_closed, subscribed_then_closed, stable_then_closed, deliver]
    ws_server, url = await start(ScriptedServer(scripts))
    async with asyncio.timeout(5):
        async for _ in listen(url, selector="id = 'ch_1'"):
            break
    ws_server.close()
    assert attempts == [0, 1, 0]
