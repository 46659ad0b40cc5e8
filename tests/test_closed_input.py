"""A flood stops costing when its connection is closed (issue 20, point 2): the frames the
client had sent before the server closed its socket are dropped, never handed to the
consumer, parsed or answered. The CPU and memory figures are in ``bench/bench_flood.py``.
"""

from __future__ import annotations

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import override_settings

from django_stripe_bridge import metrics
from django_stripe_bridge.consumers import StripeEventConsumer
from django_stripe_bridge.realtime.closed_input import DropInputAfterClose
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import open_client, until

pytestmark = pytest.mark.django_db(transaction=True)

FLOOD = 3000
BURST = 10


class CountingConsumer(StripeEventConsumer):
    """The app's consumer, counting the client frames it is handed."""

    handed = 0

    async def receive(self, text_data=None, bytes_data=None):
        type(self).handed += 1
        await super().receive(text_data, bytes_data)


async def test_a_flood_closed_by_the_rate_limit_leaves_no_work_queued():
    CountingConsumer.handed = 0
    dropped = metrics.snapshot()["frames_dropped_after_close"]
    bridge = {**settings.STRIPE_BRIDGE, "MAX_FRAMES_PER_SECOND": 5, "FRAME_BURST": BURST}
    with override_settings(STRIPE_BRIDGE=bridge):
        client = await open_client(consumer=CountingConsumer)
        subscribe = {"action": "subscribe", "selector": "id = 'ch_flood'", "replay": "none"}
        unsubscribe = {"action": "unsubscribe", "subscription": "f"}
        # Every frame is queued before the consumer reads the first (as a fast client's
        # frames are in Daphne's queue for the application).
        for n in range(FLOOD):
            await client.send({**subscribe, "subscription": "f"} if n % 2 == 0 else unsubscribe)
        assert client.communicator.input_queue.qsize() == FLOOD

        frames = []
        while (output := await client.communicator.receive_output(timeout=5))["type"] != (
            "websocket.close"
        ):
            frames.append(output)
        assert output == {"type": "websocket.close", "code": 1008}
        await until(client.communicator.input_queue.empty, timeout=10)

    # The burst was served, the next frame refused, and nothing after it was handed over.
    assert CountingConsumer.handed == BURST + 1
    assert len(frames) == BURST + 1 and '"rate_limited"' in frames[-1]["text"]
    assert metrics.snapshot()["frames_dropped_after_close"] - dropped == FLOOD - BURST - 1
    assert await client.nothing()


class Closer(DropInputAfterClose, AsyncWebsocketConsumer):
    """Echoes frames; closes the socket on ``bye``."""

    received: list[str] = []

    async def receive(self, text_data=None, bytes_data=None):
        type(self).received.append(text_data)
        if text_data == "bye":
            await self.close(code=4000)
        else:
            await self.send(text_data=text_data)


async def test_any_close_by_the_server_drops_what_the_client_sent_after():
    Closer.received = []
    communicator = WebsocketCommunicator(Closer.as_asgi(), "/ws/")
    assert (await communicator.connect())[0]
    for text in ["a", "b", "bye", "c", "d"]:
        await communicator.send_to(text_data=text)
    assert await communicator.receive_from() == "a"
    assert await communicator.receive_from() == "b"
    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4000}
    await until(communicator.input_queue.empty)
    assert Closer.received == ["a", "b", "bye"]
    # The disconnect still reaches the consumer: it ends.
    await communicator.send_input({"type": "websocket.disconnect", "code": 4000})
    await communicator.wait(timeout=2)
