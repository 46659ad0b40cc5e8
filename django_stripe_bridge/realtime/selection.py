"""From a subscribe request to a compiled, policed selector and the groups it listens on."""

from __future__ import annotations

from typing import Any

from .. import messaging
from ..conf import REPLAY_MODES, bridge_settings
from ..selectors import Selector, SelectorError, compile_selector, pin_id
from . import policy
from .frames import ErrorCode, FrameError

#: A selector pinning more ids than this (possible for staff) listens on the broadcast group
#: and is not replayed, rather than joining a group per id.
MAX_GROUPS_PER_SUBSCRIPTION = policy.MAX_PINNED_IDS


def request_fields(frame: dict[str, Any], name: str) -> tuple[str, str | None, str]:
    """The ``channel``, ``selector`` and ``replay`` of a subscribe request, checked."""
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
        raise FrameError(ErrorCode.BAD_FRAME, "'replay' must be 'latest', 'all' or 'none'.", name)
    return channel, text, mode


def resume_cursor(frame: dict[str, Any], name: str) -> str | None:
    """The ``since`` cursor of a subscribe request, if it asks to resume."""
    since = frame.get("since")
    if isinstance(since, int) and not isinstance(since, bool):
        return str(since)
    if since is not None and not isinstance(since, str):
        raise FrameError(
            ErrorCode.BAD_FRAME,
            "'since' must be the 'cursor' of the last message received (a string).",
            name,
        )
    return since


def compile_for(channel: str, text: str | None, name: str) -> Selector:
    """The selector of a subscription to ``channel`` (``stripe`` or ``stripe/<tx id>``)."""
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


async def police(user: Any, selector: Selector, name: str) -> None:
    """Refuse (``forbidden``) what ``SUBSCRIBE_POLICY`` does not allow ``user``."""
    if not await policy.may_subscribe(user, selector):
        raise FrameError(ErrorCode.FORBIDDEN, forbidden_message(), name)


def routing(selector: Selector) -> tuple[frozenset[str], frozenset[str] | None]:
    """The groups a subscription joins, and the ids it follows by id (None: broadcast)."""
    pinned = selector.pinned_ids
    if pinned is not None and len(pinned) <= MAX_GROUPS_PER_SUBSCRIPTION:
        return frozenset(messaging.transaction_group(tx_id) for tx_id in pinned), pinned
    return frozenset([messaging.broadcast_group()]), None


def forbidden_message() -> str:
    """Why the policy refused, in words that say what to do."""
    setting = bridge_settings.SUBSCRIBE_POLICY
    if setting == "pinned":
        return (
            "This selector needs a staff login: without one, a selector must pin id to at most "
            f"{policy.MAX_PINNED_IDS} transactions (id = '…' or id IN ('…', …))."
        )
    if setting == "staff":
        return "Subscriptions need a staff login (SUBSCRIBE_POLICY is 'staff')."
    return "The subscription policy refused this selector."
