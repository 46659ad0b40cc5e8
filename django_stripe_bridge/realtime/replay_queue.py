"""The replay threads, serving the connections' reads fairly (start-time fair queueing).

A plain thread pool serves reads first come, first served: 40 connections that keep asking
for big replays keep its queue full, and a new client's first replay waits behind all of
them. Here every read is queued under its owner (a connection) with a start tag: the
owner's finish tag if it is still ahead, else the queue's clock. The threads take the
smallest tag first; the clock moves to the tag of each read taken, and the owner's finish
tag moves on by the seconds its read took. A connection that has been reading is thus
served after those that have not, in proportion to the time its reads took, and a
newcomer's first read goes next: it waits only for the reads already running. Long reads
are cut into short ones by their caller (``read_replay()``)
so that those are short too.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class _Anyone:
    """The owner of reads submitted without one (they share a single turn)."""


ANYONE = _Anyone()


class FairQueue:
    """Runs submitted functions on ``threads`` daemon threads, fairly between owners."""

    def __init__(self, threads: int, name: str) -> None:
        self.threads = max(1, threads)
        self.name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Any, Callable[[], Any], Future[Any]]] = []
        self._order = itertools.count()
        self._clock = 0.0
        # Owners are the consumers: their tags go with them.
        self._finish: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._started = 0

    def submit(self, owner: Any, function: Callable[[], T]) -> Future[T]:
        """Queue ``function()`` for ``owner`` (hashable and weakly referenceable)."""
        future: Future[T] = Future()
        context = contextvars.copy_context()
        with self._cond:
            start = max(self._clock, self._finish.get(owner, 0.0))
            entry = (start, next(self._order), owner, lambda: context.run(function), future)
            heapq.heappush(self._heap, entry)
            if self._started < self.threads:
                self._started += 1
                name = f"{self.name}_{self._started}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
            self._cond.notify()
        return future

    def waiting(self) -> list[Any]:
        """Owners of the queued reads, in the order they will be served."""
        with self._cond:
            return [entry[2] for entry in sorted(self._heap)]

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                start, _, owner, function, future = heapq.heappop(self._heap)
                self._clock = max(self._clock, start)
            if not future.set_running_or_notify_cancel():
                continue  # its caller went away while it waited
            began = time.perf_counter()
            try:
                result = function()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                spent = time.perf_counter() - began
                with self._cond:
                    self._finish[owner] = max(self._finish.get(owner, 0.0), start) + spent
