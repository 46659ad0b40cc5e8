"""Replay fairness: connections replaying ``all`` over 100 ids cannot starve a newcomer's first
replay (issue 16). Ordering is asserted rather than wall time, so that a loaded machine
cannot make these flaky; ``bench/bench_replay_storm.py`` measures the full 40 x 100 storm.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from django.test import override_settings

from django_stripe_bridge.realtime import replay
from django_stripe_bridge.realtime.replay_queue import FairQueue
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import charge_event, ingest, open_client

IDS = [f"ch_storm_{n:03d}" for n in range(100)]
PER_ID = 2
STORM = 12


class Owner:
    """A stand-in connection."""


def test_an_owner_that_has_been_reading_goes_after_a_newcomer():
    queue = FairQueue(1, "test-fair")
    gate = threading.Event()
    served: list[str] = []
    storm = [Owner() for _ in range(5)]

    def work(name: str, seconds: float = 0.0):
        def run() -> None:
            time.sleep(seconds)
            served.append(name)

        return run

    # Each storm connection has had a read of 20 ms; then one holds the thread.
    for n, owner in enumerate(storm):
        queue.submit(owner, work(f"warm-{n}", 0.02)).result()
    holding = threading.Event()

    def hold() -> None:
        holding.set()
        gate.wait()

    queue.submit(Owner(), hold)
    assert holding.wait(5)
    for n, owner in enumerate(storm):
        queue.submit(owner, work(f"storm-{n}"))
    newcomer = Owner()
    last = queue.submit(newcomer, work("newcomer"))
    assert queue.waiting()[0] is newcomer
    gate.set()
    last.result(timeout=5)
    assert served[5] == "newcomer", served


async def test_send_in_turns_lets_a_small_replay_through_a_big_one():
    log: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        busy = time.perf_counter() + 0.0002  # a frame's cost on the event loop
        while time.perf_counter() < busy:
            pass
        log.append(message["name"])

    big = [asyncio.ensure_future(replay.send_in_turns([{"name": "big"}] * 500, send))]
    await asyncio.sleep(0)  # the big replay has started sending
    big += [asyncio.ensure_future(replay.send_in_turns([{"name": "big"}] * 500, send))]
    await asyncio.sleep(0)  # and another one waits for a turn
    # A replay bigger than a turn waits for one turn of each; a small one for none.
    await replay.send_in_turns([{"name": "medium"}] * (replay.SMALL_REPLAY + 1), send)
    assert log.count("big") < 200, "the medium replay waited for a turn each, not the whole"
    medium_done = len(log)
    await replay.send_in_turns([{"name": "small"}], send)
    assert len(log) == medium_done + 1, "the small replay went at once"
    await asyncio.gather(*big)
    assert log.count("big") == 1000


@pytest.fixture
def one_replay_thread():
    bridge = {"REPLAY_THREADS": 1, "SUBSCRIBE_POLICY": "open"}
    saved = replay._queue
    replay._queue = None
    from django.conf import settings

    with override_settings(STRIPE_BRIDGE={**settings.STRIPE_BRIDGE, **bridge}):
        yield
    replay._queue = saved


@pytest.mark.django_db(transaction=True)
async def test_a_newcomers_first_replay_is_not_queued_behind_a_storm(one_replay_thread):
    for n in range(PER_ID):
        for tx_id in IDS:
            await ingest(charge_event("charge.updated", tx_id, amount=1000 + n))
    await ingest(charge_event("charge.succeeded", "ch_newcomer"))
    selector = "id IN ({})".format(", ".join(f"'{tx_id}'" for tx_id in IDS))
    storm = [await open_client() for _ in range(STORM)]
    for client in storm:
        await client.send({"action": "subscribe", "selector": selector, "replay": "all"})
    newcomer = await open_client()
    assert (await newcomer.subscribe("id = 'ch_newcomer'", replay="all"))["type"] == "subscribed"
    frame = await newcomer.recv(timeout=60)
    assert frame["replayed"] is True
    # What the storm had been sent by the time the newcomer had its replay.
    sent_before = sum(client.communicator.output_queue.qsize() for client in storm)
    total = STORM * (1 + len(IDS) * PER_ID)
    assert sent_before < total / 2, f"the newcomer waited for {sent_before} of {total} frames"

    # The storm's replays, read in parts, are whole and in order.
    for client in storm:
        frames = await client.messages(1 + len(IDS) * PER_ID, timeout=60)
        assert frames[0]["type"] == "subscribed"
        replayed = frames[1:]
        assert all(f["replayed"] for f in replayed)
        order = [(f["headers"]["created"], f["headers"]["event_id"]) for f in replayed]
        assert len({f["headers"]["event_id"] for f in replayed}) == len(IDS) * PER_ID
        created = [c for c, _ in order]
        assert created == sorted(created)
        await client.close()
    await newcomer.close()
