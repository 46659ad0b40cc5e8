"""Helpers and fixtures shared by the webhook, ingest, messaging and command tests.

Import them into a test module with ``from tests.webhook_fixtures import *  # noqa``.
Event payloads captured from the Stripe stand-in live in ``tests/payloads/<type>.json``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test import override_settings

from django_stripe_bridge import signals
from django_stripe_bridge.testing import sign_payload

__all__ = [
    "PAYLOADS_DIR",
    "SignalLog",
    "channel_receiver",
    "event_body",
    "fresh_event",
    "load_payload",
    "redis_layer_settings",
    "run_concurrently",
    "sign_payload",
    "signal_log",
]

PAYLOADS_DIR = Path(__file__).resolve().parent / "payloads"

_ids = itertools.count(1)


def load_payload(name: str) -> dict[str, Any]:
    """A captured event payload, e.g. ``load_payload("charge.succeeded")``."""
    return json.loads((PAYLOADS_DIR / f"{name}.json").read_text())


def fresh_event(name: str, **changes: Any) -> dict[str, Any]:
    """A captured event with a new, unique ``evt_`` id; ``changes`` update the event.

    ``obj`` (a dict) updates ``data.object`` instead.
    """
    event = copy.deepcopy(load_payload(name))
    event["id"] = f"evt_t{uuid.uuid4().hex[:16]}{next(_ids)}"
    obj = changes.pop("obj", None)
    event.update(changes)
    if obj:
        event["data"]["object"].update(obj)
    return event


def event_body(event: dict[str, Any]) -> bytes:
    """The bytes Stripe would send for ``event``."""
    return json.dumps(event, indent=2).encode()


def run_concurrently(target: Callable[[int], Any], count: int, timeout: float = 30) -> list[Any]:
    """Run ``target(i)`` in ``count`` threads released together; its results, in order.

    Each thread closes its database connections, so test teardown is not blocked.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout)
            results[index] = target(index)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        raise AssertionError(f"concurrent calls did not finish within {timeout}s")
    if errors:
        raise errors[0]
    return results


@dataclass
class SignalLog:
    """The bridge's signals as received, with whether a transaction was open at the time."""

    received: list[dict[str, Any]] = field(default_factory=list)
    status_changes: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_received(self, sender: Any, **kwargs: Any) -> None:
        with self.lock:
            self.received.append({**kwargs, "in_atomic": _in_atomic()})

    def on_status(self, sender: Any, **kwargs: Any) -> None:
        with self.lock:
            self.status_changes.append({**kwargs, "in_atomic": _in_atomic()})

    @property
    def created(self) -> list[dict[str, Any]]:
        return [entry for entry in self.received if entry["created"]]


def _in_atomic() -> bool:
    return connections["default"].in_atomic_block


@pytest.fixture
def signal_log() -> Iterator[SignalLog]:
    """Records ``event_received`` and ``transaction_status_changed``."""
    log = SignalLog()
    signals.event_received.connect(log.on_received, dispatch_uid="tests-signal-log")
    signals.transaction_status_changed.connect(log.on_status, dispatch_uid="tests-signal-log")
    yield log
    signals.event_received.disconnect(dispatch_uid="tests-signal-log")
    signals.transaction_status_changed.disconnect(dispatch_uid="tests-signal-log")


def redis_layer_settings(url: str) -> dict[str, Any]:
    """``CHANNEL_LAYERS`` for channels-redis at ``url``, with a prefix of its own."""
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [url], "prefix": f"sbt{uuid.uuid4().hex[:8]}"},
        }
    }


class LoopThread:
    """An event loop running in a thread of its own, for channel-layer calls from tests.

    channels-redis binds its receive machinery to one event loop, so a subscriber must not
    hop between the loops ``async_to_sync`` makes: every call of a receiver runs here.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout + 5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"channel layer call did not finish within {timeout}s") from None

    def stop(self) -> None:
        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(_cancel_all(), 5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class ChannelReceiver:
    """A channel on the layer that joined some groups; collects what reaches it."""

    def __init__(self, layer: Any, groups: list[str], loop: LoopThread) -> None:
        self.layer = layer
        self.groups = groups
        self.loop = loop
        self.channel = loop.run(layer.new_channel())
        for group in groups:
            loop.run(layer.group_add(group, self.channel))

    def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next message, or ``TimeoutError`` after ``timeout`` seconds."""

        async def _receive() -> dict[str, Any]:
            try:
                async with asyncio.timeout(timeout):
                    return await self.layer.receive(self.channel)
            except Exception as exc:
                # redis-py reports the cancelled read as its own TimeoutError.
                if "Timeout" in type(exc).__name__:
                    raise TimeoutError(f"no message within {timeout}s") from exc
                raise

        return self.loop.run(_receive(), timeout)

    def receive_nothing(self, wait: float = 0.3) -> None:
        """Assert that no message arrives within ``wait`` seconds."""
        try:
            message = self.receive(wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message: {message}")

    def close(self) -> None:
        for group in self.groups:
            self.loop.run(self.layer.group_discard(group, self.channel), 5)


@pytest.fixture
def channel_receiver() -> Iterator[Callable[..., ChannelReceiver]]:
    """``channel_receiver(group, …)`` joins the configured layer's groups in this process."""
    from channels.layers import get_channel_layer

    loop = LoopThread()
    made: list[ChannelReceiver] = []

    def make(*groups: str, layer: Any = None) -> ChannelReceiver:
        receiver = ChannelReceiver(layer or get_channel_layer(), list(groups), loop)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        with contextlib.suppress(Exception):  # best effort: the layer may be gone
            receiver.close()
    loop.stop()


@pytest.fixture
def in_memory_layer() -> Iterator[None]:
    """A fresh in-memory channel layer for this test."""
    with override_settings(
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    ):
        yield


__all__ += ["ChannelReceiver", "LoopThread", "in_memory_layer"]


# -- the Stripe stand-in -------------------------------------------------------------------

#: Seconds between a stand-in event and its webhook delivery in these tests.
STANDIN_WEBHOOK_DELAY = 0.3


def _plugin_enabled() -> bool:
    """Whether the root conftest enables the stand-in's pytest plugin (its fixtures)."""
    from tests import conftest

    return "django_stripe_bridge.testing.pytest_plugin" in getattr(conftest, "pytest_plugins", ())


if not _plugin_enabled():

    @pytest.fixture(scope="session")
    def stripe_standin() -> Iterator[Any]:
        """The session's offline Stripe stand-in (until the plugin is enabled in conftest)."""
        from django_stripe_bridge.testing import StripeStandIn
        from django_stripe_bridge.testing.pytest_plugin import require_standin

        require_standin()
        with StripeStandIn(webhook_delay=STANDIN_WEBHOOK_DELAY) as standin:
            yield standin

    @pytest.fixture
    def stripe_standin_clean(stripe_standin: Any) -> Any:
        """The stand-in with no objects, events, idempotency keys or webhooks."""
        stripe_standin.reset(webhooks=True)
        return stripe_standin

    __all__ += ["stripe_standin", "stripe_standin_clean"]


@pytest.fixture
def bridge_on_standin(stripe_standin_clean: Any, settings: Any) -> Any:
    """The stand-in, emptied, with ``STRIPE_BRIDGE`` pointed at it; yields the stand-in."""
    from django_stripe_bridge.testing import TEST_API_KEY

    settings.STRIPE_BRIDGE = {
        **settings.STRIPE_BRIDGE,
        "API_KEY": TEST_API_KEY,
        "API_BASE": stripe_standin_clean.base_url,
        "MAX_NETWORK_RETRIES": 0,
    }
    return stripe_standin_clean


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


__all__ += ["STANDIN_WEBHOOK_DELAY", "bridge_on_standin", "wait_for"]
