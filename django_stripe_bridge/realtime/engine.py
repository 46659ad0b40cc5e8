"""The subscription engine: one connection's subscriptions, whatever carries them.

How an event reaches a subscription exactly once:

* a selector that pins ``id`` joins one group per id, any other the broadcast group; a
  connection in both kinds of group gets two copies of an event and keeps the first;
* on subscribe the engine joins its groups *before* it reads stored events for replay,
  keeps the live events of that subscription aside while replay is read and sent, then
  sends those it did not replay (``django_stripe_bridge.realtime.holdback``);
* groups are joined again before the channel layer's ``group_expiry`` lapses
  (``django_stripe_bridge.realtime.groups``), and after the layer lost its state
  (``django_stripe_bridge.realtime.recovery``).

The engine knows subscriptions, never sockets: it talks to its
``Transport``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from .. import metrics
from ..conf import bridge_settings
from . import holdback, recovery, replay, selection
from .frames import MAX_SUBSCRIPTION_NAME, ErrorCode, FrameError, valid_name
from .groups import Groups
from .resume import parse_cursor
from .subscription import RecentKeys, Subscription, event_key

if TYPE_CHECKING:
    from .transport import Transport

logger = logging.getLogger(__name__)

#: How many recent events a connection remembers to drop the second copy of an event that
#: reached it through two groups (a transaction's and the broadcast group).
RECENT_EVENTS = 128
#: Live events one subscription may hold back while its replay is read; past that the
#: connection is closed (1013, try again later) rather than buffer without bound.
MAX_HELD_BACK = 1000
#: Matching an event against a connection's subscriptions yields to the event loop after
#: this many seconds, so no connection holds the loop for long.
MATCH_SLICE = 0.002
#: Longest pause between attempts to join the groups while the layer does not answer.
REJOIN_MAX_DELAY = 5.0


#: The engine's attributes: one engine per connection, 20,000 a process and more, so no
#: ``__dict__`` (docs/scaling.md).
ENGINE_SLOTS = (
    "__weakref__",
    "_generated",
    "_recent",
    "_rejoin",
    "_replay_slot",
    "_selector_chars",
    "closed",
    "groups",
    "subscriptions",
    "transport",
)


class Engine:
    """The subscriptions of one connection: subscribe, unsubscribe, deliver, recover, close."""

    __slots__ = ENGINE_SLOTS

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.subscriptions: dict[str, Subscription] = {}
        self.groups = Groups(transport)
        self.closed = False
        self._replay_slot: asyncio.Semaphore | None = None  # made with the first replay
        self._recent: RecentKeys | None = None  # made with the first event
        self._generated = 0
        self._selector_chars = 0
        self._rejoin: asyncio.Task[None] | None = None

    @property
    def replay_slot(self) -> asyncio.Semaphore:
        """One replay read at a time per connection."""
        self._replay_slot = self._replay_slot or asyncio.Semaphore(1)
        return self._replay_slot

    def start(self) -> None:
        """Have the loop's layer watch recover this connection after layer state loss."""
        recovery.watch(self, self.transport.channel_layer)

    # -- requests -------------------------------------------------------------------------

    async def handle(self, frame: dict[str, Any]) -> None:
        """Act on one client request (``subscribe``, ``unsubscribe``, ``ping``)."""
        action = frame.get("action")
        name = frame.get("subscription")
        try:
            if action == "subscribe":
                await self.subscribe(frame)
            elif action == "unsubscribe":
                await self.unsubscribe(frame)
            elif action == "ping":
                await self.transport.send_frame({"type": "pong"})
            else:
                raise FrameError(
                    ErrorCode.BAD_FRAME, "'action' must be 'subscribe', 'unsubscribe' or 'ping'."
                )
        except FrameError as error:
            if error.subscription is None and valid_name(name):
                error.subscription = name
            await self.transport.send_error(error)

    async def subscribe(self, frame: dict[str, Any]) -> None:
        """Add a subscription; answer ``subscribed`` and start its replay."""
        name = self._subscription_name(frame, generate=True)
        channel, text, mode = selection.request_fields(frame, name)
        if name in self.subscriptions:
            raise FrameError(
                ErrorCode.SUBSCRIPTION_EXISTS,
                f"Subscription {name!r} exists on this connection; unsubscribe first or "
                "choose another name.",
                name,
            )
        limit = bridge_settings.MAX_SUBSCRIPTIONS_PER_CONNECTION
        if len(self.subscriptions) >= limit:
            raise FrameError(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                f"At most {limit} subscriptions per connection; unsubscribe one first.",
                name,
            )
        # Checked on the text as sent, before compiling: a refusal costs next to nothing.
        budget = bridge_settings.MAX_SELECTOR_CHARS_PER_CONNECTION
        size = len(text or "") + len(channel)
        if self._selector_chars + size > budget:
            raise FrameError(
                ErrorCode.LIMIT_EXCEEDED,
                f"The selectors of one connection may total {budget} characters; this one "
                f"has {size} and {self._selector_chars} are in use. Unsubscribe or use "
                "shorter selectors.",
                name,
            )
        selector = selection.compile_for(channel, text, name)
        await selection.police(self.transport.user, selector, name)

        since = selection.resume_cursor(frame, name)
        groups, ids = selection.routing(selector)
        sub = Subscription(name, channel, selector, groups)
        sub.ids = ids
        resuming = bool(ids) and since is not None
        replaying = resuming or (bool(ids) and mode != replay.NONE)
        if replaying:
            sub.buffer = deque()
        sub.size = size
        self.subscriptions[name] = sub
        self._selector_chars += size
        metrics.incr("subscriptions")
        # Join first, read later: an event committed in between arrives live and is kept
        # aside in sub.buffer, so nothing falls between the replay and the live stream.
        if not await self.groups.join(groups):
            self._join_later()
        if resuming and ids is not None:
            # Whether the resume is complete is known once it is read: the task answers.
            resume = holdback.resume_then_live(self, sub, ids, parse_cursor(since))
            sub.task = asyncio.ensure_future(resume)
            return
        await self.send_subscribed(sub, recovered=False if since is not None else None)
        if replaying and ids is not None:
            sub.task = asyncio.ensure_future(holdback.replay_then_live(self, sub, ids, mode))

    async def send_subscribed(self, sub: Subscription, *, recovered: bool | None = None) -> None:
        """Answer a ``subscribe``; ``recovered`` says, when it asked to resume, whether the
        resume is complete."""
        frame: dict[str, Any] = {
            "type": "subscribed",
            "subscription": sub.name,
            "channel": sub.channel,
            "selector": sub.selector.text,
        }
        if recovered is not None:
            frame["recovered"] = recovered
        await self.transport.send_frame(frame)

    async def unsubscribe(self, frame: dict[str, Any]) -> None:
        """Remove a subscription; answer ``unsubscribed``."""
        name = self._subscription_name(frame, generate=False)
        sub = self.subscriptions.pop(name, None)
        if sub is None:
            raise FrameError(
                ErrorCode.UNKNOWN_SUBSCRIPTION,
                f"No subscription {name!r} on this connection.",
                name,
            )
        if sub.task is not None:
            sub.task.cancel()
        self._selector_chars -= sub.size
        metrics.incr("subscriptions", -1)
        await self.groups.leave(sub.groups)
        await self.transport.send_frame({"type": "unsubscribed", "subscription": name})

    def _subscription_name(self, frame: dict[str, Any], *, generate: bool) -> str:
        name = frame.get("subscription")
        while name is None and generate:
            self._generated += 1
            name = f"sub-{self._generated}"
            if name in self.subscriptions:
                name = None
        if not valid_name(name):
            raise FrameError(
                ErrorCode.BAD_FRAME,
                f"'subscription' must be a non-empty string of at most {MAX_SUBSCRIPTION_NAME} "
                "characters.",
            )
        assert isinstance(name, str)
        return name

    # -- live events ----------------------------------------------------------------------

    async def deliver(self, message: dict[str, Any]) -> None:
        """Deliver a live event to each subscription it matches, once."""
        key = event_key(message)
        if self.seen(key):
            return
        headers = message.get("headers") or {}
        loop = asyncio.get_running_loop()
        slice_end = loop.time() + MATCH_SLICE
        for sub in list(self.subscriptions.values()):
            if loop.time() > slice_end:
                await asyncio.sleep(0)  # let other connections and requests run
                slice_end = loop.time() + MATCH_SLICE
                if sub.name not in self.subscriptions:
                    continue
            if not sub.selector.matches(headers):
                continue
            if sub.buffer is not None:
                if len(sub.buffer) >= MAX_HELD_BACK:
                    logger.warning("Too many live events held back during replay; closing.")
                    await self.transport.close_with(1013)
                    await self.close()
                    return
                sub.buffer.append(message)
            elif sub.guard is not None and holdback.guarded(sub, key):
                continue
            else:
                await self.transport.send_message(sub, message, replayed=False)

    async def deliver_batch(self, message: dict[str, Any]) -> None:
        """Deliver a batch of live events (the broadcast group's), in order."""
        events = message.get("events")
        for event in events if isinstance(events, list) else []:
            if isinstance(event, dict):
                await self.deliver(event)

    def seen(self, key: Hashable) -> bool:
        """Remember ``key``; whether it was already seen among the recent events."""
        if self._recent is None:
            self._recent = RecentKeys(RECENT_EVENTS)
        return self._recent.seen(key)

    # -- recovery and close ---------------------------------------------------------------

    async def recover(self, since: Any) -> bool:
        """Join every group again, then replay what pinned subscriptions missed since ``since``.

        Called by the loop's ``LayerWatch``;
        whether the groups could be joined (if not, it is called again).
        """
        if self.closed or self.transport.channel_layer is None:
            return True
        delivered = self._recent.remembered() if self._recent is not None else frozenset()
        subs = [s for s in self.subscriptions.values() if s.ids and s.buffer is None]
        for sub in subs:
            sub.buffer = deque()  # join first, read later, as on subscribe
        try:
            await self.groups.rejoin()
        except Exception:
            for sub in subs:
                await holdback.go_live(self, sub, set())
            return False
        for sub in subs:
            sub.task = asyncio.ensure_future(holdback.catch_up(self, sub, since, delivered))
        return True

    def _join_later(self) -> None:
        """The layer did not answer a join: join again until it does, then catch up."""
        if self._rejoin is None or self._rejoin.done():
            since = timezone.now() - dt.timedelta(seconds=recovery.REPLAY_MARGIN)
            self._rejoin = asyncio.ensure_future(self._rejoin_until_joined(since))

    async def _rejoin_until_joined(self, since: dt.datetime) -> None:
        delay = 0.5
        while not self.closed:
            await asyncio.sleep(delay)
            delay = min(delay * 2, REJOIN_MAX_DELAY)
            if any(s.buffer is not None for s in self.subscriptions.values()):
                continue  # a replay is under way: catch up after it
            if await self.recover(since):
                return

    async def close(self) -> None:
        """Stop replays and timers and leave every group; safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        recovery.unwatch(self)
        if self._rejoin is not None:
            self._rejoin.cancel()
        metrics.incr("subscriptions", -len(self.subscriptions))
        for sub in self.subscriptions.values():
            if sub.task is not None:
                sub.task.cancel()
        self.subscriptions.clear()
        await self.groups.close()
