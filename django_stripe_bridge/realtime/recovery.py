"""Noticing that the channel layer lost its state or dropped its connection, and catching up.

A flush, an eviction, a fail-over to a replica without the keys or a Redis restart makes
channels-redis forget group memberships: the sockets stay open and hear nothing. Each event
loop that serves websockets runs one ``LayerWatch``. Every ``LAYER_PROBE_INTERVAL``
seconds it sends a probe to sentinel groups of its own (one per Redis shard) and waits for
it to come back. When it does not, the memberships are presumed lost: every consumer of the
loop joins its groups again and replays, for the ids it pins, the events stored or published
since the last good probe; events it already delivered are dropped by event id.

A probe cannot see a blip: Redis killed and restarted at once, or a connection cut and
opened again, between two probes. The pub/sub layer keeps its memberships in the process
and subscribes again on its own, so the next probe comes back, but Redis pub/sub dropped
whatever was published while the subscribing connection was away. So the watch also
listens for the connection itself: redis-py calls it back whenever the pub/sub layer's
subscribing connection connects again (``receiving_connections()``),
and ``receive_failed()`` is told when the core layer's ``receive()`` fails. Either runs
the same catch-up, from the last probe that came back before the drop, once a probe shows
the layer carries messages again (so the catch-up reads the store only after the
subscriptions are back: nothing falls in between).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
import weakref
from typing import Any, Protocol

from channels.layers import InMemoryChannelLayer
from django.utils import timezone

from .. import metrics
from ..conf import bridge_settings
from . import layers

logger = logging.getLogger(__name__)

#: ``type`` of the probe message (handled by the watch, never by a consumer).
PROBE_TYPE = "stripe_bridge.probe"
#: Seconds a probe may take to come back before the layer counts as having lost its state.
PROBE_TIMEOUT = 5.0
#: Seconds subtracted from the last good probe when choosing what to replay: covers clock
#: differences between processes and publishes still under way at that moment.
REPLAY_MARGIN = 10.0


class Recoverable(Protocol):
    async def recover(self, since: dt.datetime) -> bool: ...


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LayerWatch] = (
    weakref.WeakKeyDictionary()
)


def watch(consumer: Recoverable, layer: Any) -> None:
    """Register ``consumer`` with its event loop's watch (started on first use)."""
    interval = bridge_settings.LAYER_PROBE_INTERVAL
    # The in-memory layer's state lives and dies with the process: nothing to watch.
    if layer is None or not interval or isinstance(layer, InMemoryChannelLayer):
        return
    loop = asyncio.get_running_loop()
    current = _watches.get(loop)
    if current is None or current.layer is not layer or current.stopped:
        current = _watches[loop] = LayerWatch(layer)
    current.add(consumer)


def receive_failed() -> None:
    """Tell the running loop's watch that a ``receive()`` on the layer failed: the
    connection it reads from dropped, and what was in flight may be lost."""
    try:
        current = _watches.get(asyncio.get_running_loop())
    except RuntimeError:
        return
    if current is not None and not current.stopped:
        current.disrupted()


def unwatch(consumer: Recoverable) -> None:
    """Forget ``consumer``; the watch stops with its last consumer."""
    try:
        current = _watches.get(asyncio.get_running_loop())
    except RuntimeError:
        return
    if current is not None:
        current.discard(consumer)


def _sentinel_groups(layer: Any, token: str) -> list[str]:
    """Group names of this watch, at least one on each shard of a sharded layer."""
    shards = getattr(layer, "hosts", None)
    if shards is None:
        inner = getattr(layer, "_get_layer", None)
        shards = getattr(inner(), "_shards", None) if callable(inner) else None
    count = len(shards) if isinstance(shards, list | tuple) and shards else 1
    if count == 1:
        return [f"stripe_bridge.sentinel.{token}"]
    try:
        from channels_redis.utils import _consistent_hash
    except ImportError:  # pragma: no cover - a layer with several hosts is channels-redis
        return [f"stripe_bridge.sentinel.{token}.{i}" for i in range(count)]
    by_shard: dict[int, str] = {}
    for i in range(64 * count):
        name = f"stripe_bridge.sentinel.{token}.{i}"
        by_shard.setdefault(_consistent_hash(name, count), name)
        if len(by_shard) == count:
            break
    return list(by_shard.values())


def _due(joined: float | None, layer: Any) -> bool:
    """Whether the sentinel memberships are half-way to the layer's ``group_expiry``."""
    expiry = getattr(layer, "group_expiry", None)
    if joined is None or not isinstance(expiry, int | float) or expiry <= 0:
        return False
    return asyncio.get_running_loop().time() - joined > expiry / 2


class LayerWatch:
    """Probes the layer for one event loop and tells its consumers to recover."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.consumers: weakref.WeakSet[Any] = weakref.WeakSet()
        self.stopped = False
        self._task: asyncio.Task[None] | None = None
        self._arrived: dict[str, asyncio.Event] = {}
        self._started = timezone.now()
        #: Start of the last probe that came back (the layer carried messages then).
        self._last_ok: dt.datetime | None = None
        #: Set when a connection dropped: the catch-up starts there.
        self._disrupted_since: dt.datetime | None = None
        self._wake = asyncio.Event()
        #: Receiving connections this watch is called back by (weakly: they come and go).
        self._hooked: weakref.WeakSet[Any] = weakref.WeakSet()

    def add(self, consumer: Recoverable) -> None:
        self.consumers.add(consumer)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def discard(self, consumer: Recoverable) -> None:
        self.consumers.discard(consumer)
        if not self.consumers and self._task is not None:
            self.stopped = True
            self._task.cancel()
            self._task = None

    def disrupted(self) -> None:
        """A connection to the layer dropped: catch up from the last good probe before it."""
        if self._disrupted_since is None:
            # Messages that came back before the drop was noticed were carried: anything
            # lost was published after the last good probe.
            self._disrupted_since = self._last_ok or self._started
        self._wake.set()

    def _reconnected(self, connection: Any) -> None:
        # redis-py's connect callback: it runs after the connection has subscribed again.
        self.disrupted()

    def _hook_reconnects(self) -> None:
        for connection in layers.receiving_connections(self.layer):
            if connection not in self._hooked:
                # Kept as a weak method by redis-py: it goes with this watch.
                connection.register_connect_callback(self._reconnected)
                self._hooked.add(connection)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a connection drops meanwhile."""
        if self._disrupted_since is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
        self._wake.clear()

    async def _run(self) -> None:
        channel = await self.layer.new_channel()
        groups = _sentinel_groups(self.layer, uuid.uuid4().hex[:12])
        receiver = asyncio.ensure_future(self._receive(channel))
        lost_since: dt.datetime | None = None
        joined = await self._join(channel, groups)
        try:
            while True:
                self._hook_reconnects()
                start = timezone.now()
                if joined is not None and _due(joined, self.layer):
                    # Before the probe: memberships lost after this join fail the probe.
                    joined = await self._join(channel, groups)  # outlive group_expiry
                ok = joined is not None and await self._probe(groups)
                dropped, self._disrupted_since = self._disrupted_since, None
                if lost_since is None and dropped is not None:
                    lost_since = dropped
                    metrics.incr("layer_recoveries")
                    logger.warning(
                        "The connection to the channel layer dropped; sockets catch up from "
                        "the database on what was published while it was away."
                    )
                elif lost_since is None and not ok:
                    lost_since = self._last_ok or start
                    metrics.incr("layer_recoveries")
                    logger.warning(
                        "The channel layer lost its state (a probe did not come back); "
                        "sockets join their groups again and replay what they missed."
                    )
                elif lost_since is None:
                    self._last_ok = start
                elif dropped is not None:
                    lost_since = min(lost_since, dropped)
                if lost_since is not None:
                    joined = await self._join(channel, groups)
                    # A fresh probe, even after one that came back: the store is read only
                    # once the layer carries messages again, so nothing falls in between.
                    if (
                        joined is not None
                        and await self._probe(groups)
                        and await self._recover(lost_since)
                    ):
                        lost_since = None
                        self._last_ok = start
                        self._hook_reconnects()
                interval = bridge_settings.LAYER_PROBE_INTERVAL or 10.0
                if lost_since is None:
                    await self._pause(interval)
                else:
                    await asyncio.sleep(min(interval, 2.0))  # the layer may be back in a moment
        finally:
            receiver.cancel()
            # Memberships left behind expire with the layer's group_expiry.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(PROBE_TIMEOUT):
                    for group in groups:
                        await self.layer.group_discard(group, channel)

    async def _join(self, channel: str, groups: list[str]) -> float | None:
        """Join the sentinel groups; the loop time it was done, or None if that failed."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                for group in groups:
                    await self.layer.group_add(group, channel)
        except Exception:
            return None
        return asyncio.get_running_loop().time()

    async def _receive(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.disrupted()
                await asyncio.sleep(1.0)
                continue
            arrived = self._arrived.get(message.get("nonce"))
            if arrived is not None:
                arrived.set()

    async def _probe(self, groups: list[str]) -> bool:
        """Whether a probe sent to every sentinel group came back in time."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                waits = []
                for group in groups:
                    nonce = uuid.uuid4().hex
                    self._arrived[nonce] = event = asyncio.Event()
                    waits.append(event.wait())
                    await self.layer.group_send(group, {"type": PROBE_TYPE, "nonce": nonce})
                await asyncio.gather(*waits)
            return True
        except Exception:
            return False
        finally:
            self._arrived.clear()

    async def _recover(self, lost_since: dt.datetime) -> bool:
        """Ask every consumer to join again and replay; whether all of them managed."""
        since = lost_since - dt.timedelta(seconds=REPLAY_MARGIN)
        results = await asyncio.gather(
            *(consumer.recover(since) for consumer in list(self.consumers)),
            return_exceptions=True,
        )
        return all(result is True for result in results)
