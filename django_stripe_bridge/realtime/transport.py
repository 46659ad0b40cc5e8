"""What every transport (websocket, Server-Sent Events) gives the engine, with the hooks
both share: reading replays, shaping a ``message`` frame, renewing groups."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from django.contrib.auth.models import AnonymousUser

from .. import metrics
from ..selectors import Selector
from . import recovery, replay, resume
from .frames import FrameError
from .subscription import Subscription

logger = logging.getLogger(__name__)

#: Longest pause between retries of a failing channel-layer receive (seconds).
RECEIVE_RETRY_MAX_DELAY = 5.0
_last_receive_log = 0.0


class Transport:
    """Base of the transports: the engine's view of one client connection.

    A transport sets ``channel_layer``, ``channel_name`` and ``scope``, and implements
    ``send_frame()`` and ``close_with()``.
    """

    __slots__ = ()  # a transport with slots of its own (the SSE stream) has no __dict__

    channel_layer: Any
    channel_name: str
    scope: Any

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

    async def load_resume(
        self, ids: frozenset[str], selector: Selector, after: int | None
    ) -> list[dict[str, Any]] | None:
        """Stored events of ``ids`` after the cursor ``after``, in order; ``None`` if the
        resume cannot be complete."""
        return await replay.run_in_replay_thread(
            resume.resume_messages, ids, selector, after, owner=self
        )

    async def send_message(
        self, subscription: Subscription, message: dict[str, Any], *, replayed: bool
    ) -> None:
        """Send one event to the client as a ``message`` frame of ``subscription``."""
        await self.send_frame(message_frame(subscription, message, replayed=replayed))
        if not replayed:
            metrics.observe_delivery(message)

    def refresh_interval(self) -> float | None:
        """Seconds between re-joins of the groups: half the layer's ``group_expiry``."""
        expiry = getattr(self.channel_layer, "group_expiry", None)
        if not isinstance(expiry, int | float) or expiry <= 0:
            return None
        return max(expiry / 2, 0.5)

    @property
    def user(self) -> Any:
        """The connection's user (``AnonymousUser`` without a session)."""
        return self.scope.get("user") or AnonymousUser()

    # -- what a transport implements ------------------------------------------------------

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Send one frame to the client (nothing once the connection is closing)."""
        raise NotImplementedError

    async def close_with(self, code: int) -> None:
        """Close the connection with a websocket close ``code``."""
        raise NotImplementedError

    # -- plumbing -------------------------------------------------------------------------

    async def send_error(self, error: FrameError) -> None:
        """Send an ``error`` frame; the connection stays open."""
        metrics.incr("frames_refused")
        await self.send_frame(error.frame())


def message_frame(
    subscription: Subscription, message: dict[str, Any], *, replayed: bool
) -> dict[str, Any]:
    """The ``message`` frame of one event for ``subscription``."""
    return {
        "type": "message",
        "subscription": subscription.name,
        "channel": subscription.channel,
        "headers": message.get("headers") or {},
        "data": message.get("data"),
        "replayed": replayed,
        "cursor": resume.cursor_of(message),
    }


class Closable(Protocol):
    closed: bool


class RetryingReceive:
    """``receive`` that retries, with back-off, while it raises and ``owner.closed`` is false.

    A failing read (Redis restarting, a read timeout) must not close the connection: it stays
    open and what it missed meanwhile is recovered (see recovery.py). One per connection: an
    object of two slots rather than a closure and a lambda.
    """

    __slots__ = ("owner", "receive")

    def __init__(self, receive: Callable[[], Awaitable[Any]], owner: Closable) -> None:
        self.receive = receive
        self.owner = owner

    async def __call__(self) -> Any:
        delay = 0.1
        while True:
            try:
                return await self.receive()
            except Exception as exc:
                if self.owner.closed:
                    raise
                _log_receive_failure(exc)
                recovery.receive_failed()  # what was in flight is caught up
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECEIVE_RETRY_MAX_DELAY)


def _log_receive_failure(exc: Exception) -> None:
    # Every connection of the process sees the same failure: log it at most every 10 s.
    global _last_receive_log
    now = time.monotonic()
    if now - _last_receive_log >= 10:
        _last_receive_log = now
        logger.warning(
            "Channel-layer receive failed (%s: %s); retrying, connections stay open.",
            type(exc).__name__,
            exc,
        )
