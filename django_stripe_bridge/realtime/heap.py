"""Keeping Python's cyclic garbage collector off the objects of settled connections.

Each open websocket holds ~190 objects that the cyclic garbage collector tracks (the
server's protocol and transport, Channels' consumer and session, the bridge's engine…):
~3.7 million at 20,000 sockets. A full collection visits every one of them, 2.2 to 2.6 s on
the reference machine, and the process serves nothing meanwhile. CPython runs one whenever
the objects promoted to its oldest generation since the last reach a quarter of that
generation; Daphne's once-a-second pass over its connections promotes ~30,000 objects a
second, so there it came every ~30 s: 8% of the time stalled (bench/RESULTS.md, "20,000
sockets on one process").

Once the connections of a process have settled (no new one for ``SETTLE`` seconds, or
``MAX_DELAY`` seconds after the first new one), the heap is collected once and frozen
(``gc.freeze()``: every tracked object moves to the permanent generation, which collections
skip), and what survives each full collection after that is frozen too: a full collection
then visits only what was made since the one before, milliseconds. Frozen objects are still
freed by reference counting, but a closed connection's objects refer to each other
(protocol and transport, consumer and engine), as may other objects that die after they
were frozen, and only a collection frees those. So once the connections closed since the
freeze reach a quarter of those open at it (CPython's own measure for a full collection),
or ``THAW_INTERVAL`` after the last collection of it, the heap is unfrozen, collected once
and frozen again: a full collection every 10 minutes rather than every 30 seconds.

Nothing is done below ``GC_FREEZE_CONNECTIONS`` open connections in the process (a full
collection is short there), nor when the permanent generation was filled by someone else
(a pre-fork server that froze its heap before forking).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from ..conf import bridge_settings

logger = logging.getLogger(__name__)

#: Seconds without a new connection after which the heap counts as settled.
SETTLE = 1.0
#: Longest wait for a freeze while new connections keep coming (seconds).
MAX_DELAY = 10.0
#: Closed connections, as a share of those open at the last freeze, that call for a collection.
CLOSED_SHARE = 0.25
#: Longest time between two collections of the frozen heap (seconds).
THAW_INTERVAL = 600.0


class Heap:
    """The process's connections as the garbage collector sees them."""

    def __init__(self) -> None:
        self.open = 0
        #: Connections open at the last freeze, and closed since.
        self.frozen = 0
        self.closed = 0
        #: Whether the permanent generation is ours (filled by ``settle()``).
        self.ours = False
        #: The permanent generation was filled by someone else: leave it alone.
        self.foreign = False
        #: Whether ``THAW_INTERVAL`` has passed since the heap was last collected.
        self.expired = False
        self._refreezing = False
        self._expiry: asyncio.TimerHandle | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadline = 0.0

    def opened(self) -> None:
        """Count a connection in; a freeze follows once the connections settle."""
        self.open += 1
        if _enabled(self.open) and not self.ours:
            self._schedule()

    def gone(self) -> None:
        """Count a connection out; enough of them gone, a collection follows."""
        self.open = max(self.open - 1, 0)
        if self.ours:
            self.closed += 1
            if self._thaw_due():
                self._schedule()

    def settle(self) -> None:
        """Collect the heap once and freeze it (again, if what is frozen holds too much that
        only a collection frees)."""
        self._handle = None
        if self.foreign or (self.ours and not self._thaw_due()):
            return
        if self.ours:
            gc.unfreeze()
            self.ours = False
        if not _enabled(self.open):
            return  # few connections left: the interpreter collects on its own
        if gc.get_freeze_count():
            self.foreign = True
            logger.info("The heap was frozen by someone else; the bridge leaves it alone.")
            return
        gc.collect()  # nothing dead is frozen
        gc.freeze()
        self.ours, self.expired = True, False
        self.frozen, self.closed = self.open, 0
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_later(THAW_INTERVAL, self._expire)
        if self.after_collection not in gc.callbacks:
            gc.callbacks.append(self.after_collection)

    def after_collection(self, phase: str, info: dict[str, int]) -> None:
        """A ``gc.callbacks`` hook: after a full collection, freeze what it left.

        Daphne promotes objects to the oldest generation fast enough for a full collection
        every few seconds; each visits only what is not frozen, and freezing its survivors
        keeps the next one as short. Frozen on the next turn of the loop, when the objects
        of whatever the collection interrupted are gone.
        """
        if phase != "stop" or info.get("generation") != 2 or not self.ours:
            return
        if self._loop is not None and not self._refreezing:
            self._refreezing = True
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._refreeze)

    def _refreeze(self) -> None:
        self._refreezing = False
        if self.ours:
            gc.freeze()

    def _expire(self) -> None:
        # Objects frozen by _refreeze() that died in a cycle since: their growth cannot be
        # told without a walk over everything frozen (0.5 s at 20,000 sockets), so they are
        # collected on a clock instead.
        self._expiry = None
        self.expired = True
        self._schedule()

    def _thaw_due(self) -> bool:
        return (
            self.expired
            or not _enabled(self.open)
            or self.closed >= max(self.frozen * CLOSED_SHARE, 1)
        )

    def _schedule(self) -> None:
        if self.foreign:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._handle is None or self._loop is not loop or self._handle.cancelled():
            self._deadline = now + MAX_DELAY
        else:
            self._handle.cancel()
        self._loop = loop
        self._handle = loop.call_at(min(now + SETTLE, self._deadline), self.settle)

    def reset(self) -> None:
        """Forget the counts and unfreeze what was frozen here (for tests)."""
        for handle in (self._handle, self._expiry):
            if handle is not None:
                handle.cancel()
        if self.ours:
            gc.unfreeze()
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self.after_collection)
        self.__init__()  # type: ignore[misc]


def _enabled(open_connections: int) -> bool:
    threshold = bridge_settings.GC_FREEZE_CONNECTIONS
    return bool(threshold) and open_connections >= threshold


#: The process's one heap (the garbage collector is the interpreter's).
heap = Heap()
