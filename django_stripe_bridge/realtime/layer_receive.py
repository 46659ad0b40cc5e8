"""One reader per event loop for channels-redis's ``RedisChannelLayer``.

The layer's ``receive(channel)`` elects a reader among the coroutines that wait: each waits
on the layer's receive lock *and* on its channel's buffer, and whoever holds the lock reads
Redis and fills the others' buffers. With 20,000 idle websockets the lock has 20,000
waiters, and every message delivered cancels the receiver's wait on the lock, which removes
it from the lock's queue of waiters: a scan of that queue, ~1.4 ms at 20,000 waiters on
the reference machine (0.25 ms at 10), on the event loop, per message; and each idle
connection kept two tasks for it (bench/RESULTS.md, "20,000 sockets on one process").

Here a pump per event loop takes the reader's role for good, through the layer's own
``receive()`` on a channel of its own to which nothing is sent, so the layer's reading,
backup queue and buffering are unchanged. Each connection then waits on its buffer only:
a delivery costs the same with 10 sockets or 20,000. The pump starts with the loop's first
websocket and stops with its last. Any other layer (the pub/sub layer, the in-memory one)
is read through its ``receive()`` as before.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from . import recovery

logger = logging.getLogger(__name__)

#: Longest pause between the pump's attempts while the layer's reads fail.
RETRY_MAX_DELAY = 5.0

_pumps: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, Pump]] = (
    weakref.WeakKeyDictionary()
)


def pumped(layer: Any) -> bool:
    """Whether ``layer`` is channels-redis's core layer, whose buffers the pump fills."""
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:
        return False
    return isinstance(layer, RedisChannelLayer) and isinstance(
        getattr(layer, "receive_buffer", None), dict
    )


def attach(layer: Any) -> bool:
    """Count a connection in to the running loop's pump of ``layer`` (started with the first);
    whether ``layer`` is pumped (then ``receive()`` reads its messages, and ``detach()``
    must follow when it closes)."""
    if not pumped(layer):
        return False
    pump = _pump(layer)
    pump.users += 1
    pump.run()
    return True


def detach(layer: Any) -> None:
    """Count a connection out; the pump stops with the last one."""
    pump = _pump(layer)
    pump.users = max(pump.users - 1, 0)
    if not pump.users:
        pump.stop()


async def receive(layer: Any, channel: str) -> Any:
    """The next message of ``channel``, a channel of this process, from its buffer (which the
    pump fills); the connection must be attached."""
    queue = layer.receive_buffer[channel]
    try:
        return await queue.get()
    except asyncio.CancelledError:
        # The connection is closing: its buffer goes with it, as the layer does.
        layer.receive_buffer.pop(channel, None)
        raise


def _pump(layer: Any) -> Pump:
    loop = asyncio.get_running_loop()
    pumps = _pumps.setdefault(loop, {})
    pump = pumps.get(id(layer))
    if pump is None or pump.layer is not layer:
        pump = pumps[id(layer)] = Pump(layer)
    return pump


class Pump:
    """Reads the layer for every connection of one event loop."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.users = 0
        self.task: asyncio.Task[None] | None = None

    def run(self) -> None:
        """Start reading, if not already."""
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._read())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def _read(self) -> None:
        # A channel like the connections' (same prefix): its reads are of their Redis key.
        channel = await self.layer.new_channel()
        delay = 0.1
        try:
            while True:
                try:
                    await self.layer.receive(channel)  # nothing comes here: it reads for others
                    delay = 0.1
                except Exception as exc:
                    # As a failed receive() of a connection: what was in flight is caught up.
                    logger.warning(
                        "Channel-layer receive failed (%s: %s); retrying, connections stay open.",
                        type(exc).__name__,
                        exc,
                    )
                    recovery.receive_failed()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_DELAY)
        finally:
            # Stopped while reading, the layer keeps the pump's (empty) buffer: drop it.
            self.layer.receive_buffer.pop(channel, None)
