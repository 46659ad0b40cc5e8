"""Group commit: the webhook deliveries that arrive together share one database transaction.

Each request hands its verified event to ``GroupCommitter.submit()`` and waits. One task
per event loop takes every event waiting, stores them with
``ingest_events()`` (one transaction, one insert statement)
in the committer's own database thread, and answers each request with its own result — or,
when the batch failed, with the same error for all of them, having stored none. A batch
the database refuses for its data is split until only the events that cannot be stored
fail (``quarantine``): those are kept apart, the rest stored.
While one batch is being committed the next one gathers, so a lone request waits for
nobody and a burst pays for one commit per batch instead of one per event.

Publishing follows on the event loop, batch after batch in commit order, while the next
batch is being stored: a request is answered once its event is committed, not once it is
published (the outbox relay covers a process that dies in between). The events sent are
marked published together, in one statement, ``MARK_DELAY`` after the first of them was
sent (at once when ``MAX_BATCH`` wait): by the database thread just before the batch it
stores then, or on their own when none is due. Marking them with every batch cost each
batch a statement and a commit of its own; now a busy server pays one every ``MARK_DELAY``
(a trickle of webhooks, each its own batch, still pays a trip of its own for each mark).

The database thread keeps its connection from one batch to the next while more work waits,
and hands it back (to the pool, when there is one) when the work runs out. A committer whose
event loop stops while marks wait keeps it: it closes it when the committer is collected,
or at once with ``close_connections()`` (before a test database is dropped).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

from . import messaging
from .db import release_connections
from .exceptions import EventQuarantined
from .ingest import IngestResult, ingest_events
from .quarantine import ingest_isolating

if TYPE_CHECKING:
    from .models import StripeEvent

T = TypeVar("T")

#: Events stored in one transaction at most; more wait for the next batch.
MAX_BATCH = 200
#: Seconds the events sent wait to be marked published, all together: far below
#: ``OUTBOX_DELAY``, after which the relay sends them again.
MARK_DELAY = 0.25

Pending = tuple[Mapping[str, Any], "asyncio.Future[IngestResult]"]


class GroupCommitter:
    """Gathers events submitted on one event loop into batches, committed one at a time."""

    def __init__(
        self,
        ingest: Callable[..., list[IngestResult]] = ingest_events,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._ingest = ingest
        self.max_batch = max_batch
        self._pending: list[Pending] = []
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._to_publish: list[IngestResult] = []
        self._to_mark: list[StripeEvent] = []
        self._marks_due = False
        self._mark_timer: asyncio.TimerHandle | None = None
        # One thread for all of the committer's database work: it keeps one connection.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stripe-bridge-db")
        weakref.finalize(self, _retire, self._executor)
        _alive.add(self)
        self._publish_wakeup = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        #: Sizes of the batches committed so far (for tests and benchmarks).
        self.batch_sizes: list[int] = []

    async def submit(self, event: Mapping[str, Any]) -> IngestResult:
        """Store ``event`` with whatever else is waiting; its result once committed.

        Raises what storing the batch raised (an ``OperationalError``…): then nothing of the
        batch was stored; or ``EventQuarantined`` when the database refused this event
        for its data (it was kept apart, and its batch-mates stored without it).
        """
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        self._wake()
        # A client that gives up does not cancel the batch: the event is stored all the same.
        return await asyncio.shield(future)

    def _wake(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="stripe-bridge-group-commit")
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending or (self._to_mark and self._marks_due):
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                marks: list[StripeEvent] = []
                if self._marks_due:
                    marks, self._to_mark = self._to_mark, []
                    self._marks_due = False
                await self._commit(batch, marks)

    async def _commit(self, batch: list[Pending], marks: list[StripeEvent]) -> None:
        events = [event for event, _ in batch]
        try:
            results = await self._in_thread(self._store, events, marks)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if not batch:
            return
        self.batch_sizes.append(len(batch))
        stored: list[IngestResult] = []
        for (_, future), result in zip(batch, results, strict=True):
            if isinstance(result, Exception):  # kept apart, or not stored after a split
                if not future.done():
                    future.set_exception(result)
                continue
            stored.append(result)
            if not future.done():
                future.set_result(result)
        self._to_publish += [result for result in stored if result.created]
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.create_task(self._publish(), name="stripe-bridge-publish")
        self._publish_wakeup.set()

    async def _publish(self) -> None:
        while True:
            await self._publish_wakeup.wait()
            self._publish_wakeup.clear()
            while self._to_publish:
                results, self._to_publish = self._to_publish, []
                # Never raises: what is not sent stays for the outbox relay.
                sent = await messaging.asend_events([(r.event, r.transaction) for r in results])
                if sent:
                    self._to_mark += sent
                    self._mark_later()

    def _mark_later(self) -> None:
        """Have the events sent marked ``MARK_DELAY`` from now (at once when many wait)."""
        if self._marks_due:
            return
        if len(self._to_mark) >= self.max_batch:
            if self._mark_timer is not None:
                self._mark_timer.cancel()
            self._marks_now()
        elif self._mark_timer is None:
            loop = asyncio.get_running_loop()
            self._mark_timer = loop.call_later(MARK_DELAY, self._marks_now)

    def _marks_now(self) -> None:
        self._mark_timer = None
        self._marks_due = True
        self._wake()

    def _store(
        self, events: list[Mapping[str, Any]], marks: list[StripeEvent]
    ) -> list[IngestResult | Exception]:
        failed = True
        try:
            if marks:
                messaging.mark_published(marks)  # never raises
            results = ingest_isolating(events, ingest=self._ingest, publish=False)
            failed = any(
                isinstance(r, Exception) and not isinstance(r, EventQuarantined) for r in results
            )
            return results
        finally:
            # The connection stays while more work waits (the loop thread only adds to
            # these lists meanwhile, and runs this again for them); it goes back when the
            # work runs out, and a broken one goes at once.
            if failed or not (self._pending or self._to_mark):
                release_connections()

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await sync_to_async(function, thread_sensitive=False, executor=self._executor)(*args)


def _close_in_thread(executor: ThreadPoolExecutor) -> Future[None] | None:
    """Have ``executor``'s thread close its connections; ``None`` once the interpreter is
    exiting (it takes no more work then)."""
    try:
        return executor.submit(connections.close_all)
    except RuntimeError:
        return None


def _retire(executor: ThreadPoolExecutor) -> None:
    # The thread closes its connections before it ends: left to the garbage collector, they
    # would stay open until it gets round to them.
    _close_in_thread(executor)
    executor.shutdown(wait=False)


#: Every committer not yet collected, for ``close_connections()``.
_alive: weakref.WeakSet[GroupCommitter] = weakref.WeakSet()


def close_connections(timeout: float = 10.0) -> None:
    """Have every committer's database thread close its connections, and wait for it."""
    for committer in list(_alive):
        closed = _close_in_thread(committer._executor)
        if closed is not None:
            closed.result(timeout)


_committers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupCommitter] = (
    weakref.WeakKeyDictionary()
)


def get_committer() -> GroupCommitter:
    """The committer of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    committer = _committers.get(loop)
    if committer is None:
        committer = _committers[loop] = GroupCommitter()
    return committer
