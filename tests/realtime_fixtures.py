"""Shared helpers and fixtures of the real-time tests (consumer, replay, policy, scale-out).

Import them into a test module with ``from tests.realtime_fixtures import *  # noqa``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import re_path

from django_stripe_bridge.consumers import StripeEventConsumer
from django_stripe_bridge.ingest import IngestResult, ingest_event
from django_stripe_bridge.routing import websocket_urlpatterns
from tests.factories import charge_object, make_event

__all__ = [
    "FRAME_TIMEOUT",
    "WS_PATH",
    "Client",
    "charge_event",
    "dumps",
    "flush_channel_layer",
    "ingest",
    "make_app",
    "open_client",
    "session_cookie",
    "unique_prefix",
    "until",
]

#: Default wait for a frame that should come (seconds); every wait in these tests is bounded.
FRAME_TIMEOUT = 2.0
WS_PATH = "/ws/stripe/"


def make_app(consumer: type[StripeEventConsumer] | None = None) -> Any:
    """The websocket application as a site serves it: sessions, then the app's routes."""
    if consumer is None:
        return AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
    return AuthMiddlewareStack(URLRouter([re_path(r"^ws/stripe/?$", consumer.as_asgi())]))


class Client:
    """A ``WebsocketCommunicator`` that speaks the protocol's JSON frames."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator

    async def send(self, frame: Any) -> None:
        await self.communicator.send_json_to(frame)

    async def send_text(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def recv(self, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        return await self.communicator.receive_json_from(timeout=timeout)

    async def request(self, frame: Any, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        await self.send(frame)
        return await self.recv(timeout)

    async def subscribe(self, selector: str | None = None, **fields: Any) -> dict[str, Any]:
        """Send a subscribe frame and return the answer (``subscribed`` or ``error``)."""
        frame = {"action": "subscribe", **fields}
        if selector is not None:
            frame["selector"] = selector
        return await self.request(frame)

    async def messages(self, count: int, timeout: float = FRAME_TIMEOUT) -> list[dict[str, Any]]:
        """The next ``count`` frames."""
        return [await self.recv(timeout) for _ in range(count)]

    async def drain(self, count: int, quiet: float = 0.3) -> list[dict[str, Any]]:
        """The next ``count`` frames, checking that no other frame follows within ``quiet``."""
        frames = await self.messages(count)
        extra = []
        while not await self.communicator.receive_nothing(timeout=quiet):
            extra.append(await self.recv())
        assert not extra, f"{len(extra)} more frames than the {count} expected: {extra}"
        return frames

    async def nothing(self, timeout: float = 0.3) -> bool:
        return await self.communicator.receive_nothing(timeout=timeout)

    async def close(self) -> None:
        await self.communicator.disconnect()


async def open_client(
    path: str = WS_PATH, *, cookie: str | None = None, consumer: Any = None
) -> Client:
    """Connect a :class:`Client` (with a session cookie, when given) and check it is accepted."""
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(make_app(consumer), path, headers=headers)
    connected, _ = await communicator.connect(timeout=FRAME_TIMEOUT)
    assert connected
    return Client(communicator)


def session_cookie(user: Any) -> str:
    """A ``Cookie`` header value that logs ``user`` in (through a real session)."""
    from django.conf import settings
    from django.test import Client as HttpClient

    http = HttpClient()
    http.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={http.cookies[settings.SESSION_COOKIE_NAME].value}"


def charge_event(
    event_type: str, charge_id: str, *, created: int | None = None, **fields: Any
) -> dict[str, Any]:
    """A Stripe event about charge ``charge_id``."""
    status = {"charge.failed": "failed", "charge.pending": "pending"}.get(event_type, "succeeded")
    fields.setdefault("status", status)
    return make_event(event_type, charge_object(charge_id, **fields), created=created)


async def ingest(event: dict[str, Any]) -> IngestResult:
    """Store an event through the real ingest path (it publishes after commit)."""
    return await database_sync_to_async(ingest_event)(event)


@pytest.fixture(autouse=True)
async def flush_channel_layer() -> AsyncIterator[None]:
    """Start and end each test with an empty in-memory channel layer."""
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        await layer.flush()
    yield
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        await layer.flush()


def unique_prefix() -> str:
    """A channels-redis ``prefix`` no other test run uses."""
    return f"sbtest{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def core_redis_layer(redis_url: str, **config: Any) -> AsyncIterator[tuple[Any, str, Any]]:
    """The default channel layer switched to channels-redis's core layer under a prefix of
    its own (``config`` adds to its CONFIG): ``(layer, prefix, redis client)``; the
    prefix's keys are deleted afterwards."""
    import redis.asyncio as aioredis
    from django.test import override_settings

    prefix = unique_prefix()
    backend = "channels_redis.core.RedisChannelLayer"
    config = {"hosts": [redis_url], "prefix": prefix, **config}
    client = aioredis.from_url(redis_url)
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": backend, "CONFIG": config}}):
        try:
            yield get_channel_layer(), prefix, client
        finally:
            await get_channel_layer().close_pools()
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


async def until(predicate: Any, timeout: float = FRAME_TIMEOUT) -> None:
    """Wait, letting the event loop run, until ``predicate()`` is true (or fail)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)
