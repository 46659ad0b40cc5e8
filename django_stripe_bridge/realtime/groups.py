"""A connection's channel-layer groups: joined once however many subscriptions share them,
left with the last, and joined again before the layer's ``group_expiry`` lapses."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from typing import Any, Protocol

logger = logging.getLogger(__name__)

#: Seconds allowed for leaving the groups when a connection closes.
LEAVE_TIMEOUT = 5.0
#: Group joins and leaves in flight at once per process. A burst of connections (clients
#: coming back after a restart) would otherwise take more Redis connections than
#: channels-redis's pool holds (redis-py refuses the 101st by default).
MAX_CONCURRENT_GROUP_OPS = 32

_last_down_log = 0.0

_limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def group_op_limit() -> asyncio.Semaphore:
    """The event loop's bound on group joins and leaves in flight."""
    loop = asyncio.get_running_loop()
    limit = _limits.get(loop)
    if limit is None:
        limit = _limits[loop] = asyncio.Semaphore(MAX_CONCURRENT_GROUP_OPS)
    return limit


class Member(Protocol):
    """What a transport tells the groups: its layer, its channel and the refresh interval."""

    channel_layer: Any
    channel_name: str

    def refresh_interval(self) -> float | None: ...


class Groups:
    """Reference-counted group memberships of one connection's channel."""

    __slots__ = ("_refresh_handle", "_refresh_task", "closed", "member", "refs")

    def __init__(self, member: Member) -> None:
        self.member = member
        self.refs: dict[str, int] = {}
        self.closed = False
        self._refresh_handle: asyncio.TimerHandle | None = None
        self._refresh_task: asyncio.Task[None] | None = None

    async def join(self, groups: frozenset[str]) -> bool:
        """Count ``groups`` in and join the ones not joined yet; whether the layer took
        them (if not, they are counted and ``rejoin()`` joins them later)."""
        new = [g for g in groups if not self.refs.get(g)]
        for group in groups:
            self.refs[group] = self.refs.get(group, 0) + 1
        layer = self.member.channel_layer
        if layer is None:
            return True
        try:
            for group in new:
                async with group_op_limit():
                    await layer.group_add(group, self.member.channel_name)
        except Exception as exc:
            _log_layer_down("join", exc)
            return False
        finally:
            if self._refresh_handle is None and self.refs:
                self._schedule_refresh()
        return True

    async def leave(self, groups: frozenset[str]) -> None:
        """Count ``groups`` out; leave the ones no subscription needs any more."""
        gone = []
        for group in groups:
            count = self.refs.get(group, 0) - 1
            if count > 0:
                self.refs[group] = count
            else:
                self.refs.pop(group, None)
                gone.append(group)
        layer = self.member.channel_layer
        if layer is None:
            return
        try:
            for group in gone:
                async with group_op_limit():
                    await layer.group_discard(group, self.member.channel_name)
        except Exception as exc:
            # Memberships left behind expire with the layer's group_expiry.
            _log_layer_down("leave", exc)
        if not self.refs:
            self._cancel_refresh()

    async def rejoin(self) -> None:
        """Join every group again (raises if the layer refuses)."""
        layer = self.member.channel_layer
        for group in list(self.refs):
            async with group_op_limit():
                await layer.group_add(group, self.member.channel_name)

    async def close(self) -> None:
        """Stop renewing and leave every group, within ``LEAVE_TIMEOUT``; safe to repeat."""
        self.closed = True
        self._cancel_refresh()
        groups, self.refs = list(self.refs), {}
        layer = getattr(self.member, "channel_layer", None)
        if layer is None or not groups:
            return
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT):
                for group in groups:
                    async with group_op_limit():
                        await layer.group_discard(group, self.member.channel_name)
        except Exception:
            # Memberships left behind expire with the layer's group_expiry.
            logger.warning("Could not leave channel-layer groups on close.", exc_info=True)

    # -- renewal --------------------------------------------------------------------------

    def _schedule_refresh(self) -> None:
        interval = self.member.refresh_interval()
        if interval is None:
            return
        # Jitter spreads the re-joins of connections that were opened together.
        delay = interval * random.uniform(0.8, 1.0)  # noqa: S311
        self._refresh_handle = asyncio.get_running_loop().call_later(delay, self._refresh_due)

    def _refresh_due(self) -> None:
        self._refresh_handle = None
        if not self.closed:
            self._refresh_task = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        """Join every group again, so memberships outlive ``group_expiry``."""
        try:
            await self.rejoin()
        except Exception:
            logger.warning("Could not renew channel-layer groups; retrying later.", exc_info=True)
        finally:
            self._refresh_task = None
            if not self.closed and self.refs:
                self._schedule_refresh()

    def _cancel_refresh(self) -> None:
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
            self._refresh_handle = None
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            self._refresh_task = None


def _log_layer_down(what: str, exc: Exception) -> None:
    # Every connection of the process sees the same failure: log it at most every 10 s.
    global _last_down_log
    now = time.monotonic()
    if now - _last_down_log >= 10:
        _last_down_log = now
        logger.warning(
            "Could not %s channel-layer groups (%s: %s); connections stay open, replay from "
            "the database, and go live once the layer answers.",
            what,
            type(exc).__name__,
            exc,
        )
