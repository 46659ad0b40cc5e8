"""The objects of settled connections are kept out of the cyclic garbage collector's
generations (``realtime/heap.py``): at 19,800 sockets a full collection over them stalled
the process for 2.2 to 2.6 s every ~30 s under Daphne (bench/bench_sockets.py)."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
from django.conf import settings
from django.test import override_settings

from django_stripe_bridge.realtime import heap as heap_module
from django_stripe_bridge.realtime.engine import Engine
from django_stripe_bridge.realtime.heap import heap
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import open_client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.serial]


@pytest.fixture
def freeze_at(monkeypatch):
    """``GC_FREEZE_CONNECTIONS`` set to the value given, a short settle time, and the
    process's heap as it was afterwards."""
    monkeypatch.setattr(heap_module, "SETTLE", 0.05)
    heap.reset()
    overrides = []

    def set_threshold(count):
        override = override_settings(
            STRIPE_BRIDGE={**settings.STRIPE_BRIDGE, "GC_FREEZE_CONNECTIONS": count}
        )
        override.enable()
        overrides.append(override)

    yield set_threshold
    heap.reset()
    gc.unfreeze()
    for override in overrides:
        override.disable()


def tracked(objects) -> list[bool]:
    """Whether each of ``objects`` is in one of the collector's generations (not frozen)."""
    ids = {id(o) for o in gc.get_objects()}
    return [id(o) in ids for o in objects]


async def engines_of(clients) -> list[weakref.ref[Engine]]:
    return [weakref.ref(o) for o in gc.get_objects() if isinstance(o, Engine) and not o.closed]


async def test_settled_connections_are_frozen_and_closed_ones_still_collected(freeze_at):
    freeze_at(3)
    clients = [await open_client() for _ in range(4)]
    for n, client in enumerate(clients):
        assert (await client.subscribe(f"id = 'ch_heap_{n}'", replay="none"))["type"] == (
            "subscribed"
        )
    engines = await engines_of(clients)
    assert len(engines) == 4
    await asyncio.sleep(0.3)
    # Settled: the connections' objects are in the permanent generation, which collections
    # skip; before, every full collection visited them.
    assert heap.ours and gc.get_freeze_count() > 0
    assert tracked([e() for e in engines]) == [False] * 4
    # What survives a full collection is frozen as well: the next visits only newer objects.
    survivors = [[n] for n in range(100)]
    gc.collect()
    await asyncio.sleep(0)
    assert tracked(survivors) == [False] * 100

    # A quarter of them closed: the heap is collected once and frozen again, so that what
    # the closed connection holds (its objects refer to each other) is freed.
    await clients[0].close()
    await asyncio.sleep(0.3)
    assert sum(e() is None for e in engines) == 1
    assert heap.ours and heap.frozen == 3 and heap.closed == 0
    for client in clients[1:]:
        assert (await client.request({"action": "ping"}))["type"] == "pong"
        await client.close()
    await asyncio.sleep(0.3)
    # Below the threshold the heap is the interpreter's again, and everything is collected.
    assert not heap.ours and gc.get_freeze_count() == 0
    gc.collect()
    assert all(e() is None for e in engines)


async def test_below_the_threshold_nothing_is_frozen(freeze_at):
    freeze_at(10)
    clients = [await open_client() for _ in range(3)]
    await asyncio.sleep(0.3)
    assert not heap.ours and gc.get_freeze_count() == 0
    for client in clients:
        await client.close()


async def test_a_heap_frozen_by_someone_else_is_left_alone(freeze_at):
    freeze_at(2)
    gc.freeze()  # a pre-fork server's, say
    frozen = gc.get_freeze_count()
    clients = [await open_client() for _ in range(3)]
    await asyncio.sleep(0.3)
    assert heap.foreign and not heap.ours
    for client in clients:
        await client.close()
    await asyncio.sleep(0.3)
    # Not unfrozen by the bridge (reference counting frees a few frozen objects meanwhile).
    assert gc.get_freeze_count() > frozen * 0.9


async def test_off_with_none(freeze_at):
    freeze_at(None)
    clients = [await open_client() for _ in range(3)]
    await asyncio.sleep(0.3)
    assert gc.get_freeze_count() == 0
    for client in clients:
        await client.close()


class Cyclic:
    """An object in a reference cycle: only a collection frees it."""

    def __init__(self) -> None:
        self.me = self


async def test_what_dies_frozen_is_collected_on_a_clock(freeze_at, monkeypatch):
    monkeypatch.setattr(heap_module, "THAW_INTERVAL", 0.3)
    freeze_at(2)
    clients = [await open_client() for _ in range(2)]
    await asyncio.sleep(0.2)
    assert heap.ours
    cyclic = Cyclic()
    gone = weakref.ref(cyclic)
    gc.collect()
    await asyncio.sleep(0)
    assert tracked([cyclic]) == [False]  # frozen after the full collection
    del cyclic
    gc.collect()
    assert gone() is not None  # frozen garbage: collections skip it
    await asyncio.sleep(0.6)
    # THAW_INTERVAL later the heap was collected once and frozen again.
    assert gone() is None
    assert heap.ours and not heap.expired
    for client in clients:
        await client.close()
