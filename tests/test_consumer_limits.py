"""Per-connection limits of the consumer (settings with safe defaults), in process."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import override_settings

from django_stripe_bridge import metrics
from django_stripe_bridge.consumers import StripeEventConsumer
from django_stripe_bridge.realtime import engine as consumer_module
from django_stripe_bridge.selectors import Selector
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import charge_event, ingest, open_client

# Timings (the frame rate, the event loop's gaps): alone under xdist (tests/conftest.py).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.serial]


def bridge(**values):
    return override_settings(STRIPE_BRIDGE={**settings.STRIPE_BRIDGE, **values})


async def test_over_the_frame_rate_an_error_then_close_1008():
    with bridge(MAX_FRAMES_PER_SECOND=5, FRAME_BURST=10):
        refused = metrics.snapshot()["connections_rate_limited"]
        client = await open_client()
        for _ in range(12):
            await client.send({"action": "ping"})
        answers = [await client.recv() for _ in range(10)]
        assert {a["type"] for a in answers} == {"pong"}
        error = await client.recv()
        assert (error["type"], error["code"]) == ("error", "rate_limited")
        closing = await client.communicator.receive_output(timeout=2)
        assert closing == {"type": "websocket.close", "code": 1008}
        assert metrics.snapshot()["connections_rate_limited"] == refused + 1


async def test_frames_within_the_rate_are_all_served():
    with bridge(MAX_FRAMES_PER_SECOND=50, FRAME_BURST=5):
        client = await open_client()
        for _ in range(20):
            assert (await client.request({"action": "ping"}))["type"] == "pong"
            await asyncio.sleep(0.03)  # 33 frames/s: under the rate, above the burst
        await client.close()


async def test_selector_budget_per_connection():
    with bridge(MAX_SELECTOR_CHARS_PER_CONNECTION=100):
        client = await open_client()
        selector = "id = 'ch_budget' AND amount > 1"  # 32 characters + 'stripe'
        assert (await client.subscribe(selector, subscription="a"))["type"] == "subscribed"
        assert (await client.subscribe(selector, subscription="b"))["type"] == "subscribed"
        refused = await client.subscribe(selector, subscription="c")
        assert (refused["code"], refused["subscription"]) == ("limit_exceeded", "c")
        assert "100 characters" in refused["message"]
        # Unsubscribing gives the characters back.
        await client.request({"action": "unsubscribe", "subscription": "a"})
        assert (await client.subscribe(selector, subscription="c"))["type"] == "subscribed"
        await client.close()


async def test_matching_yields_to_the_event_loop(monkeypatch):
    """20 subscriptions that take 10 ms each to match (the fault injected): the event loop
    is never held for the whole 200 ms, other tasks run between them."""
    client = await open_client()
    for n in range(20):
        await client.subscribe(f"id = 'ch_slice' AND amount > {n}", subscription=f"s{n}")
    original = Selector.matches

    def slow_matches(self, headers):
        time.sleep(0.010)
        return original(self, headers)

    gaps = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    await asyncio.sleep(0.1)
    monkeypatch.setattr(Selector, "matches", slow_matches)
    task = asyncio.ensure_future(ticker())
    await ingest(charge_event("charge.succeeded", "ch_slice", amount=1000))
    frames = await client.messages(20)
    task.cancel()
    monkeypatch.setattr(Selector, "matches", original)
    assert {f["subscription"] for f in frames} == {f"s{n}" for n in range(20)}
    assert max(gaps) < 0.1, sorted(gaps)[-8:]  # 20 x 10 ms would be 200 ms in one go
    await client.close()


async def test_open_sockets_and_subscriptions_are_counted():
    before = metrics.snapshot()
    client = await open_client()
    await client.subscribe("id = 'ch_count'", subscription="a")
    now = metrics.snapshot()
    assert now["websockets_open"] == before["websockets_open"] + 1
    assert now["subscriptions"] == before["subscriptions"] + 1
    await client.close()
    await asyncio.sleep(0.05)
    after = metrics.snapshot()
    assert (after["websockets_open"], after["subscriptions"]) == (
        before["websockets_open"],
        before["subscriptions"],
    )


class SlowReplay(StripeEventConsumer):
    async def load_replay(self, ids, mode, selector):
        await asyncio.sleep(1.0)
        return await super().load_replay(ids, mode, selector)


async def test_held_back_events_are_bounded(monkeypatch):
    monkeypatch.setattr(consumer_module, "MAX_HELD_BACK", 2)
    client = await open_client(consumer=SlowReplay)
    assert (await client.subscribe("id = 'ch_held'", replay="latest"))["type"] == "subscribed"
    for n in range(3):
        await ingest(charge_event("charge.updated", "ch_held", amount=1000 + n))
    closing = await client.communicator.receive_output(timeout=3)
    assert closing == {"type": "websocket.close", "code": 1013}


async def test_a_failing_layer_receive_is_retried_and_the_socket_stays_open(monkeypatch):
    """The layer's receive() raises twice (the fault injected): Channels would close the
    socket; the consumer retries and the next event still arrives."""
    layer = get_channel_layer()
    real_receive = layer.receive
    failures = 2

    async def flaky_receive(channel):
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("Redis went away")
        return await real_receive(channel)

    monkeypatch.setattr(layer, "receive", flaky_receive)
    client = await open_client()
    await client.subscribe("id = 'ch_flaky'", replay="none")
    await asyncio.sleep(0.5)  # both failures and their retries happen
    assert failures == 0
    await ingest(charge_event("charge.succeeded", "ch_flaky"))
    assert (await client.recv(timeout=5))["headers"]["id"] == "ch_flaky"
    await client.close()
