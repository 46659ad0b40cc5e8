"""The websocket end of the ``stripe`` channel: subscriptions, replay and live events.

Protocol (docs/websocket-protocol.md): the client sends ``subscribe``, ``unsubscribe`` and
``ping`` frames; the server answers ``subscribed``, ``unsubscribed``, ``pong``, ``error``,
and sends a ``message`` frame for each event that matches a subscription.

How an event reaches a subscription exactly once:

* a selector that pins ``id`` joins one group per id, any other the broadcast group; a
  connection in both kinds of group gets two copies of an event and keeps the first;
* on subscribe the consumer joins its groups *before* it reads stored events for replay,
  keeps the live events of that subscription aside while replay is read and sent, then
  sends those it did not replay (with ``latest``, those older than the replayed event go
  before it); live copies of replayed events that arrive later are dropped too;
* groups are joined again before the channel layer's ``group_expiry`` lapses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import weakref
from collections import deque
from collections.abc import Hashable
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth.models import AnonymousUser

from . import messaging, metrics, outbox, policy, recovery, replay
from .closed_input import DropInputAfterClose
from .conf import REPLAY_MODES, bridge_settings
from .selectors import Selector, SelectorError, compile_selector, pin_id

logger = logging.getLogger(__name__)

#: Client frames larger than this (in bytes, UTF-8) are refused with ``bad_frame``.
MAX_FRAME_BYTES = 64 * 1024
#: Longest subscription name a client may choose.
MAX_SUBSCRIPTION_NAME = 100
#: A selector pinning more ids than this (possible for staff) listens on the broadcast group
#: and is not replayed, rather than joining a group per id.
MAX_GROUPS_PER_SUBSCRIPTION = policy.MAX_PINNED_IDS
#: How many recent events a connection remembers to drop the second copy of an event that
#: reached it through two groups (a transaction's and the broadcast group).
RECENT_EVENTS = 128
#: For how long live copies of replayed events are still dropped after replay (seconds).
#: A copy is normally dropped as soon as it arrives; this only bounds the memory of copies
#: that will never come (events published before the subscription joined its groups).
REPLAY_GUARD_SECONDS = 120.0
#: Seconds allowed for leaving the groups when a connection closes.
LEAVE_TIMEOUT = 5.0
#: Group joins and leaves in flight at once per process. A burst of connections (clients
#: coming back after a restart) would otherwise take more Redis connections than
#: channels-redis's pool holds (redis-py refuses the 101st by default).
MAX_CONCURRENT_GROUP_OPS = 32

#: Live events one subscription may hold back while its replay is read; past that the
#: connection is closed (1013, try again later) rather than buffer without bound.
MAX_HELD_BACK = 1000
#: Matching an event against a connection's subscriptions yields to the event loop after
#: this many seconds, so no connection holds the loop for long.
MATCH_SLICE = 0.002
#: Longest pause between retries of a failing channel-layer receive (seconds).
RECEIVE_RETRY_MAX_DELAY = 5.0
_last_receive_log = 0.0

_group_op_limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _group_op_limit() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    limit = _group_op_limits.get(loop)
    if limit is None:
        limit = _group_op_limits[loop] = asyncio.Semaphore(MAX_CONCURRENT_GROUP_OPS)
    return limit


class ErrorCode:
    """Values of ``code`` in ``error`` frames."""

    INVALID_SELECTOR = "invalid_selector"
    FORBIDDEN = "forbidden"
    BAD_FRAME = "bad_frame"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    UNKNOWN_SUBSCRIPTION = "unknown_subscription"
    SUBSCRIPTION_EXISTS = "subscription_exists"
    UNKNOWN_CHANNEL = "unknown_channel"
    LIMIT_EXCEEDED = "limit_exceeded"
    RATE_LIMITED = "rate_limited"


class FrameError(Exception):
    """A client frame that is refused with an ``error`` frame; the connection stays open."""

    def __init__(self, code: str, message: str, subscription: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.subscription = subscription


class Subscription:
    """One subscription of a connection: its selector, groups and replay state."""

    __slots__ = (
        "buffer",
        "channel",
        "groups",
        "guard",
        "guard_until",
        "ids",
        "name",
        "selector",
        "size",
        "task",
    )

    def __init__(self, name: str, channel: str, selector: Selector, groups: frozenset[str]):
        self.name = name
        self.channel = channel
        self.selector = selector
        self.groups = groups
        #: The ids it listens to through per-id groups (and replays); None on the broadcast.
        self.ids: frozenset[str] | None = None
        #: Characters it counts against ``MAX_SELECTOR_CHARS_PER_CONNECTION``.
        self.size = 0
        #: Live events held back while replay is read and sent; None once live.
        self.buffer: deque[dict[str, Any]] | None = None
        #: Keys of replayed events whose live copy has not been seen yet.
        self.guard: set[Hashable] | None = None
        self.guard_until = 0.0
        self.task: asyncio.Task[None] | None = None


def event_key(message: dict[str, Any]) -> Hashable:
    """What identifies an event across its copies: the row's pk, else the event id."""
    return message.get("event_pk") or message.get("event_id")


def _stored_order(message: dict[str, Any]) -> tuple[int, int]:
    """Where an event sorts among its transaction's stored events: Stripe's time, then arrival."""
    headers = message.get("headers") or {}
    return (headers.get("created") or 0, message.get("event_pk") or 0)


def _valid_name(name: Any) -> bool:
    return isinstance(name, str) and 0 < len(name) <= MAX_SUBSCRIPTION_NAME


def _dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), default=str)


class StripeEventConsumer(DropInputAfterClose, AsyncWebsocketConsumer):
    """Serve ``ws/stripe/``: subscriptions with selectors, replay, and live Stripe events."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subscriptions: dict[str, Subscription] = {}
        self._group_refs: dict[str, int] = {}
        self._recent: dict[Hashable, None] | None = None
        self._generated = 0
        self._refresh_handle: asyncio.TimerHandle | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._closed = False
        self._tokens = float(bridge_settings.FRAME_BURST)
        self._tokens_at = time.monotonic()
        self._selector_chars = 0
        self._replay_slot = asyncio.Semaphore(1)
        self._counted = False

    # -- hooks to override ----------------------------------------------------------------

    async def load_replay(
        self, ids: frozenset[str], mode: str, selector: Selector
    ) -> list[dict[str, Any]]:
        """Stored events to replay, as channel-layer messages, in the order to send them."""
        return await replay.read_replay(ids, mode, selector, owner=self)

    async def load_catch_up(
        self, ids: frozenset[str], selector: Selector, since: Any
    ) -> list[dict[str, Any]]:
        """Stored events of ``ids`` stored or published since ``since``, oldest first."""
        return await replay.read_replay(ids, replay.ALL, selector, owner=self, since=since)

    async def send_message(
        self, subscription: Subscription, message: dict[str, Any], *, replayed: bool
    ) -> None:
        """Send one event to the client as a ``message`` frame of ``subscription``."""
        await self.send_frame(
            {
                "type": "message",
                "subscription": subscription.name,
                "channel": subscription.channel,
                "headers": message.get("headers") or {},
                "data": message.get("data"),
                "replayed": replayed,
            }
        )

    def refresh_interval(self) -> float | None:
        """Seconds between re-joins of the groups: half the layer's ``group_expiry``."""
        expiry = getattr(self.channel_layer, "group_expiry", None)
        if not isinstance(expiry, int | float) or expiry <= 0:
            return None
        return max(expiry / 2, 0.5)

    # -- connection -----------------------------------------------------------------------

    @property
    def channel_receive(self) -> Any:
        return self._channel_receive

    @channel_receive.setter
    def channel_receive(self, receive: Any) -> None:
        # Channels sets this to the layer's receive() and closes the socket if it raises.
        # A failing read (Redis restarting, a read timeout) is retried instead: the socket
        # stays open and what it missed meanwhile is recovered (see recovery.py).
        async def receive_retrying() -> Any:
            delay = 0.1
            while True:
                try:
                    return await receive()
                except Exception as exc:
                    if self._closed:
                        raise
                    _log_receive_failure(exc)
                    recovery.receive_failed()  # what was in flight is caught up
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECEIVE_RETRY_MAX_DELAY)

        self._channel_receive = receive_retrying

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Also when the server cancels the consumer without a disconnect message.
            await self._close_down()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Events go straight to the handler: it touches no database, so the thread hop of
        # Channels' close_old_connections() for every event is not needed.
        if message.get("type") == messaging.EVENT_MESSAGE_TYPE:
            await self.stripe_event(message)
        elif message.get("type") == messaging.EVENTS_MESSAGE_TYPE:
            await self.stripe_events(message)
        else:
            await super().dispatch(message)

    async def connect(self) -> None:
        outbox.ensure_relay()
        await self.accept()
        self._counted = True
        metrics.incr("websockets_open")
        recovery.watch(self, self.channel_layer)
        query = self.scope.get("query_string", b"").decode("latin-1")
        params = parse_qs(query, keep_blank_values=True, encoding="utf-8")
        if "selector" in params or "channel" in params:
            frame: dict[str, Any] = {"action": "subscribe", "subscription": "default"}
            for key in ("selector", "channel", "replay"):
                if key in params:
                    frame[key] = params[key][-1]
            await self._handle(frame)

    async def disconnect(self, code: int) -> None:
        await self._close_down()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        if self._closed:
            return
        if not self._take_token():
            metrics.incr("frames_refused")
            metrics.incr("connections_rate_limited")
            rate = bridge_settings.MAX_FRAMES_PER_SECOND
            await self.send_error(
                FrameError(
                    ErrorCode.RATE_LIMITED,
                    f"More than {rate} frames per second; the connection is closed.",
                )
            )
            await self.close_with(1008)
            await self._close_down()  # frames still queued are dropped (closed_input.py)
            return
        try:
            frame = self._decode(text_data)
        except FrameError as error:
            await self.send_error(error)
            return
        await self._handle(frame)

    def _take_token(self) -> bool:
        """Token bucket: ``MAX_FRAMES_PER_SECOND`` on average, ``FRAME_BURST`` at once."""
        now = time.monotonic()
        rate = bridge_settings.MAX_FRAMES_PER_SECOND
        burst = bridge_settings.FRAME_BURST
        self._tokens = min(burst, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    # -- client frames --------------------------------------------------------------------

    def _decode(self, text: str | None) -> dict[str, Any]:
        if text is None:
            raise FrameError(ErrorCode.BAD_FRAME, "Binary frames are not accepted; send JSON text.")
        if len(text) > MAX_FRAME_BYTES // 4 and len(text.encode("utf-8")) > MAX_FRAME_BYTES:
            raise FrameError(
                ErrorCode.BAD_FRAME, f"Frame larger than {MAX_FRAME_BYTES} bytes refused."
            )
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            raise FrameError(ErrorCode.BAD_FRAME, "Frame is not valid JSON.") from None
        if not isinstance(frame, dict):
            raise FrameError(ErrorCode.BAD_FRAME, "Frame must be a JSON object.")
        return frame

    async def _handle(self, frame: dict[str, Any]) -> None:
        action = frame.get("action")
        name = frame.get("subscription")
        try:
            if action == "subscribe":
                await self.subscribe(frame)
            elif action == "unsubscribe":
                await self.unsubscribe(frame)
            elif action == "ping":
                await self.send_frame({"type": "pong"})
            else:
                raise FrameError(
                    ErrorCode.BAD_FRAME,
                    "'action' must be 'subscribe', 'unsubscribe' or 'ping'.",
                )
        except FrameError as error:
            if error.subscription is None and _valid_name(name):
                error.subscription = name
            await self.send_error(error)

    async def subscribe(self, frame: dict[str, Any]) -> None:
        """Handle a ``subscribe`` frame."""
        name = self._subscription_name(frame, generate=True)
        channel = frame.get("channel")
        if channel is None:
            channel = bridge_settings.CHANNEL
        if not isinstance(channel, str):
            raise FrameError(ErrorCode.BAD_FRAME, "'channel' must be a string.", name)
        text = frame.get("selector")
        if text is not None and not isinstance(text, str):
            raise FrameError(ErrorCode.BAD_FRAME, "'selector' must be a string.", name)
        mode = frame.get("replay")
        if mode is None:
            mode = bridge_settings.REPLAY
        if mode not in REPLAY_MODES:
            raise FrameError(
                ErrorCode.BAD_FRAME, "'replay' must be 'latest', 'all' or 'none'.", name
            )
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
        selector = self._compile(channel, text, name)
        user = self.scope.get("user") or AnonymousUser()
        if not await policy.may_subscribe(user, selector):
            raise FrameError(ErrorCode.FORBIDDEN, _forbidden_message(selector), name)

        pinned = selector.pinned_ids
        routed = pinned is not None and len(pinned) <= MAX_GROUPS_PER_SUBSCRIPTION
        groups = (
            frozenset(messaging.transaction_group(tx_id) for tx_id in pinned)
            if routed and pinned is not None
            else frozenset([messaging.broadcast_group()])
        )
        sub = Subscription(name, channel, selector, groups)
        if routed:
            sub.ids = pinned
        replaying = routed and mode != replay.NONE and bool(pinned)
        if replaying:
            sub.buffer = deque()
        sub.size = size
        self.subscriptions[name] = sub
        self._selector_chars += size
        metrics.incr("subscriptions")
        # Join first, read later: an event committed in between arrives live and is kept
        # aside in sub.buffer, so nothing falls between the replay and the live stream.
        await self._join(groups)
        await self.send_frame(
            {
                "type": "subscribed",
                "subscription": name,
                "channel": channel,
                "selector": selector.text,
            }
        )
        if replaying and pinned is not None:
            sub.task = asyncio.ensure_future(self._replay(sub, pinned, mode))

    async def unsubscribe(self, frame: dict[str, Any]) -> None:
        """Handle an ``unsubscribe`` frame."""
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
        await self._leave(sub.groups)
        await self.send_frame({"type": "unsubscribed", "subscription": name})

    def _subscription_name(self, frame: dict[str, Any], *, generate: bool) -> str:
        name = frame.get("subscription")
        while name is None and generate:
            self._generated += 1
            name = f"sub-{self._generated}"
            if name in self.subscriptions:
                name = None
        if not _valid_name(name):
            raise FrameError(
                ErrorCode.BAD_FRAME,
                f"'subscription' must be a non-empty string of at most {MAX_SUBSCRIPTION_NAME} "
                "characters.",
            )
        assert isinstance(name, str)
        return name

    def _compile(self, channel: str, text: str | None, name: str) -> Selector:
        base = bridge_settings.CHANNEL
        if channel != base and not (channel.startswith(base + "/") and channel != base + "/"):
            raise FrameError(
                ErrorCode.UNKNOWN_CHANNEL,
                f"Unknown channel {channel!r}: use {base!r} or '{base}/<transaction id>'.",
                name,
            )
        try:
            selector = compile_selector(text)
            if channel == base:
                return selector
            # 'stripe/<tx>' is shorthand for "id = '<tx>'", ANDed with any selector given.
            return pin_id(channel[len(base) + 1 :], selector)
        except SelectorError as exc:
            raise FrameError(ErrorCode.INVALID_SELECTOR, str(exc), name) from None

    # -- live events ----------------------------------------------------------------------

    async def stripe_event(self, message: dict[str, Any]) -> None:
        """Channel-layer handler: deliver an event to each subscription it matches, once."""
        key = event_key(message)
        if self._seen(key):
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
                    await self.close_with(1013)
                    await self._close_down()
                    return
                sub.buffer.append(message)
            elif sub.guard is not None and self._guarded(sub, key):
                continue
            else:
                await self.send_message(sub, message, replayed=False)

    async def stripe_events(self, message: dict[str, Any]) -> None:
        """Channel-layer handler: a batch of events (the broadcast group's), in order."""
        events = message.get("events")
        for event in events if isinstance(events, list) else []:
            if isinstance(event, dict):
                await self.stripe_event(event)

    def _seen(self, key: Hashable) -> bool:
        """Remember ``key``; whether it was already seen among the recent events."""
        if key is None:
            return False
        recent = self._recent
        if recent is None:
            recent = self._recent = {}
        elif key in recent:
            return True
        recent[key] = None
        if len(recent) > RECENT_EVENTS:
            del recent[next(iter(recent))]
        return False

    def _guarded(self, sub: Subscription, key: Hashable) -> bool:
        """Whether ``key`` is a live copy of an event already replayed to ``sub``."""
        assert sub.guard is not None
        loop = asyncio.get_running_loop()
        if loop.time() > sub.guard_until:
            sub.guard = None
            return False
        if key in sub.guard:
            sub.guard.discard(key)
            if not sub.guard:
                sub.guard = None
            return True
        return False

    # -- replay ---------------------------------------------------------------------------

    async def _replay(self, sub: Subscription, ids: frozenset[str], mode: str) -> None:
        try:
            async with self._replay_slot:  # one read at a time per connection
                messages = await self.load_replay(ids, mode, sub.selector)
        except Exception:
            # The client reconnects and subscribes again with replay; nothing is lost for good.
            logger.exception("Replay failed; closing the connection so the client retries.")
            await self.close_with(1011)
            return
        assert sub.buffer is not None
        if mode == replay.LATEST:
            # 'latest' replays one event per id, carrying the current status. Held-back live
            # events older than it were processed before it: they go first, so the last
            # status the client sees is the current one (a pair of webhooks that lands while
            # the client subscribes would otherwise end on the older status).
            await self._send_older_held_back(sub, messages)
        replayed = {event_key(message) for message in messages}
        await replay.send_in_turns(messages, lambda m: self.send_message(sub, m, replayed=True))
        # Live events that arrived meanwhile, except copies of what was just replayed. Events
        # arriving while these are sent join the buffer; the loop ends with it empty, and the
        # switch to live happens without an await in between.
        while sub.buffer:
            message = sub.buffer.popleft()
            key = event_key(message)
            if key in replayed:
                replayed.discard(key)
            else:
                await self.send_message(sub, message, replayed=False)
        sub.buffer = None
        sub.task = None
        if replayed:
            sub.guard = replayed
            sub.guard_until = asyncio.get_running_loop().time() + REPLAY_GUARD_SECONDS

    async def _send_older_held_back(
        self, sub: Subscription, messages: list[dict[str, Any]]
    ) -> None:
        """Send, as live, the held-back events older than the one replayed for their id."""
        assert sub.buffer is not None
        newest = {m.get("transaction_id"): _stored_order(m) for m in messages}
        older: list[dict[str, Any]] = []
        later: deque[dict[str, Any]] = deque()
        for message in sub.buffer:
            bound = newest.get(message.get("transaction_id"))
            if bound is not None and _stored_order(message) < bound:
                older.append(message)
            else:
                later.append(message)
        sub.buffer = later
        for message in older:
            await self.send_message(sub, message, replayed=False)

    # -- recovery from channel-layer state loss --------------------------------------------

    async def recover(self, since: Any) -> bool:
        """Join every group again, then replay what pinned subscriptions missed since ``since``.

        Called by the loop's :class:`~django_stripe_bridge.recovery.LayerWatch`; whether the
        groups could be joined (if not, it is called again).
        """
        if self._closed or self.channel_layer is None:
            return True
        delivered = frozenset(self._recent or ())
        subs = [s for s in self.subscriptions.values() if s.ids and s.buffer is None]
        for sub in subs:
            sub.buffer = deque()  # join first, read later, as on subscribe
        try:
            for group in list(self._group_refs):
                async with _group_op_limit():
                    await self.channel_layer.group_add(group, self.channel_name)
        except Exception:
            for sub in subs:
                await self._go_live(sub, set())
            return False
        for sub in subs:
            sub.task = asyncio.ensure_future(self._catch_up(sub, since, delivered))
        return True

    async def _catch_up(self, sub: Subscription, since: Any, delivered: frozenset[Any]) -> None:
        assert sub.ids is not None
        try:
            async with self._replay_slot:
                messages = await self.load_catch_up(sub.ids, sub.selector, since)
        except Exception:
            logger.exception("Catch-up replay failed; closing the connection so the client retries")
            await self.close_with(1011)
            return
        assert sub.buffer is not None
        held = {event_key(m) for m in sub.buffer}
        sent = set()
        for message in messages:
            key = event_key(message)
            if key in delivered or key in held or key in sent:
                continue
            sent.add(key)
            self._seen(key)  # a later live copy (a relay sending it again) is dropped
            await self.send_message(sub, message, replayed=True)
        await self._go_live(sub, sent)

    async def _go_live(self, sub: Subscription, skip: set[Any]) -> None:
        """Send the held-back live events (except ``skip``) and stop holding them back."""
        while sub.buffer:
            message = sub.buffer.popleft()
            if event_key(message) not in skip:
                await self.send_message(sub, message, replayed=False)
        sub.buffer = None
        sub.task = None

    # -- frames ---------------------------------------------------------------------------

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Send one JSON frame to the client."""
        if not self._closed:
            await self.send(text_data=_dumps(frame))

    async def close_with(self, code: int) -> None:
        """Close the websocket with ``code``, or ``4000 + code % 1000`` where the server
        refuses it (Daphne's websocket library sends only 1000 and 3000 to 4999)."""
        try:
            await self.close(code=code)
        except Exception:
            await self.close(code=4000 + code % 1000)

    async def send_error(self, error: FrameError) -> None:
        """Send an ``error`` frame; the connection stays open."""
        metrics.incr("frames_refused")
        await self.send_frame(
            {
                "type": "error",
                "code": error.code,
                "message": error.message,
                "subscription": error.subscription,
            }
        )

    # -- groups ---------------------------------------------------------------------------

    async def _join(self, groups: frozenset[str]) -> None:
        new = [g for g in groups if not self._group_refs.get(g)]
        for group in groups:
            self._group_refs[group] = self._group_refs.get(group, 0) + 1
        if self.channel_layer is None:
            return
        for group in new:
            async with _group_op_limit():
                await self.channel_layer.group_add(group, self.channel_name)
        if self._refresh_handle is None and self._group_refs:
            self._schedule_refresh()

    async def _leave(self, groups: frozenset[str]) -> None:
        gone = []
        for group in groups:
            count = self._group_refs.get(group, 0) - 1
            if count > 0:
                self._group_refs[group] = count
            else:
                self._group_refs.pop(group, None)
                gone.append(group)
        if self.channel_layer is None:
            return
        for group in gone:
            async with _group_op_limit():
                await self.channel_layer.group_discard(group, self.channel_name)
        if not self._group_refs:
            self._cancel_refresh()

    def _schedule_refresh(self) -> None:
        interval = self.refresh_interval()
        if interval is None:
            return
        # Jitter spreads the re-joins of connections that were opened together.
        delay = interval * random.uniform(0.8, 1.0)  # noqa: S311
        self._refresh_handle = asyncio.get_running_loop().call_later(delay, self._refresh_due)

    def _refresh_due(self) -> None:
        self._refresh_handle = None
        if not self._closed:
            self._refresh_task = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        """Join every group again, so memberships outlive ``group_expiry``."""
        try:
            for group in list(self._group_refs):
                async with _group_op_limit():
                    await self.channel_layer.group_add(group, self.channel_name)
        except Exception:
            logger.warning("Could not renew channel-layer groups; retrying later.", exc_info=True)
        finally:
            self._refresh_task = None
            if not self._closed and self._group_refs:
                self._schedule_refresh()

    def _cancel_refresh(self) -> None:
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
            self._refresh_handle = None
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            self._refresh_task = None

    async def _close_down(self) -> None:
        """Stop replays and timers and leave every group; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        recovery.unwatch(self)
        if self._counted:
            metrics.incr("websockets_open", -1)
        metrics.incr("subscriptions", -len(self.subscriptions))
        self._cancel_refresh()
        for sub in self.subscriptions.values():
            if sub.task is not None:
                sub.task.cancel()
        self.subscriptions.clear()
        groups, self._group_refs = list(self._group_refs), {}
        layer = getattr(self, "channel_layer", None)
        if layer is None or not groups:
            return
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT):
                for group in groups:
                    async with _group_op_limit():
                        await layer.group_discard(group, self.channel_name)
        except Exception:
            # Memberships left behind expire with the layer's group_expiry.
            logger.warning("Could not leave channel-layer groups on close.", exc_info=True)


def _log_receive_failure(exc: Exception) -> None:
    # Every socket of the process sees the same failure: log it at most every 10 s.
    global _last_receive_log
    now = time.monotonic()
    if now - _last_receive_log >= 10:
        _last_receive_log = now
        logger.warning(
            "Channel-layer receive failed (%s: %s); retrying, sockets stay open.",
            type(exc).__name__,
            exc,
        )


def _forbidden_message(selector: Selector) -> str:
    setting = bridge_settings.SUBSCRIBE_POLICY
    if setting == "pinned":
        return (
            "This selector needs a staff login: without one, a selector must pin id to at most "
            f"{policy.MAX_PINNED_IDS} transactions (id = '…' or id IN ('…', …))."
        )
    if setting == "staff":
        return "Subscriptions need a staff login (SUBSCRIBE_POLICY is 'staff')."
    return "The subscription policy refused this selector."
