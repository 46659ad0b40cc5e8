"""Audit of SPEC §5's first sentence: the demo serves ``ws/stripe/`` (under Daphne and
Uvicorn) with ``AuthMiddlewareStack`` and an origin check."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.live import LiveServer, run_server
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import FRAME_TIMEOUT, session_cookie

WAIT = 10.0


@pytest.fixture(scope="module")
def demo_server(server_kind: str) -> Iterator[LiveServer]:
    env = {"STRIPE_WEBHOOK_SECRET": "whsec_audit", "STRIPE_API_KEY": "sk_test_a"}
    with run_server(server_kind, env) as s:
        yield s


@pytest.mark.parametrize("path", ["/ws/stripe/", "/ws/stripe"])
async def test_demo_refuses_a_foreign_origin_and_serves_its_own(demo_server, path):
    url = demo_server.ws_url + path
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, origin="http://evil.example", open_timeout=WAIT):
            pass
    assert info.value.response.status_code == 403
    async with connect(url, origin=demo_server.url, open_timeout=WAIT) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"action": "ping"}))
        async with asyncio.timeout(WAIT):
            assert json.loads(await ws.recv()) == {"type": "pong"}


@pytest.mark.django_db(transaction=True)
async def test_demo_websocket_knows_the_session_user():
    """A broad selector needs staff under the default policy: the demo's stack must carry
    the logged-in user from the session cookie to the consumer."""
    from demo_project.asgi import application

    user = await database_sync_to_async(get_user_model().objects.create_user)(
        "audit-staff", password="x", is_staff=True
    )
    cookie = await database_sync_to_async(session_cookie)(user)
    answers = []
    for headers in ([], [(b"cookie", cookie.encode())]):
        communicator = WebsocketCommunicator(
            application,
            "/ws/stripe/",
            headers=[(b"origin", b"http://testserver"), (b"host", b"testserver"), *headers],
        )
        connected, _ = await communicator.connect(timeout=FRAME_TIMEOUT)
        assert connected
        await communicator.send_json_to({"action": "subscribe", "subscription": "all"})
        answers.append((await communicator.receive_json_from(timeout=FRAME_TIMEOUT))["type"])
        await communicator.disconnect()
    assert answers == ["error", "subscribed"]
