"""One subscription of a connection, and how events are told apart and ordered."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Any

from ..selectors import Selector


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


class RecentKeys:
    """The keys of the last ``size`` events a connection was given, oldest first."""

    __slots__ = ("_keys", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: dict[Hashable, None] = {}

    def seen(self, key: Hashable) -> bool:
        """Remember ``key``; whether it was already among them (``None`` never is)."""
        if key is None:
            return False
        if key in self._keys:
            return True
        self._keys[key] = None
        if len(self._keys) > self.size:
            del self._keys[next(iter(self._keys))]
        return False

    def remembered(self) -> frozenset[Hashable]:
        """The keys remembered now."""
        return frozenset(self._keys)


def event_key(message: dict[str, Any]) -> Hashable:
    """What identifies an event across its copies: the row's pk, else the event id."""
    return message.get("event_pk") or message.get("event_id")


def stored_order(message: dict[str, Any]) -> tuple[int, int]:
    """Where an event sorts among its transaction's stored events: Stripe's time, then arrival."""
    headers = message.get("headers") or {}
    return (headers.get("created") or 0, message.get("event_pk") or 0)
