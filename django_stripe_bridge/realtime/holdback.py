"""Replay with the hold-back guard: stored events first, then the live events held back
meanwhile, with no gap and no duplicate; and the catch-up after layer state loss."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from . import replay
from .subscription import Subscription, event_key, stored_order

if TYPE_CHECKING:
    from .engine import Engine

logger = logging.getLogger(__name__)

#: For how long live copies of replayed events are still dropped after replay (seconds).
#: A copy is normally dropped as soon as it arrives; this only bounds the memory of copies
#: that will never come (events published before the subscription joined its groups).
REPLAY_GUARD_SECONDS = 120.0


async def replay_then_live(
    engine: Engine, sub: Subscription, ids: frozenset[str], mode: str
) -> None:
    """Send ``sub``'s replay, then the live events held back meanwhile, and go live."""
    transport = engine.transport
    try:
        async with engine.replay_slot:
            messages = await transport.load_replay(ids, mode, sub.selector)
    except Exception:
        # The client reconnects and subscribes again with replay; nothing is lost for good.
        logger.exception("Replay failed; closing the connection so the client retries.")
        await transport.close_with(1011)
        return
    assert sub.buffer is not None
    if mode == replay.LATEST:
        # 'latest' replays one event per id, carrying the current status. Held-back live
        # events older than it were processed before it: they go first, so the last
        # status the client sees is the current one (a pair of webhooks that lands while
        # the client subscribes would otherwise end on the older status).
        await _send_older_held_back(engine, sub, messages)
    await _send_stored_then_live(engine, sub, messages)


async def _send_stored_then_live(
    engine: Engine,
    sub: Subscription,
    messages: list[dict[str, Any]],
    had: Callable[[dict[str, Any]], bool] | None = None,
) -> None:
    """Send the stored ``messages`` (as replayed), then the live events held back meanwhile
    except copies of those (and those ``had`` says the client already has), and go live,
    guarding against copies still to come."""
    transport = engine.transport
    sent = {event_key(message) for message in messages}
    await replay.send_in_turns(messages, lambda m: transport.send_message(sub, m, replayed=True))
    # Live events that arrived meanwhile, except copies of what was just sent. Events
    # arriving while these are sent join the buffer; the loop ends with it empty, and the
    # switch to live happens without an await in between.
    while sub.buffer:
        message = sub.buffer.popleft()
        key = event_key(message)
        if key in sent:
            sent.discard(key)
        elif had is None or not had(message):
            await transport.send_message(sub, message, replayed=False)
    sub.buffer = None
    sub.task = None
    if sent:
        sub.guard = sent
        sub.guard_until = asyncio.get_running_loop().time() + REPLAY_GUARD_SECONDS


async def _send_older_held_back(
    engine: Engine, sub: Subscription, messages: list[dict[str, Any]]
) -> None:
    """Send, as live, the held-back events older than the one replayed for their id."""
    assert sub.buffer is not None
    newest = {m.get("transaction_id"): stored_order(m) for m in messages}
    older: list[dict[str, Any]] = []
    later: deque[dict[str, Any]] = deque()
    for message in sub.buffer:
        bound = newest.get(message.get("transaction_id"))
        if bound is not None and stored_order(message) < bound:
            older.append(message)
        else:
            later.append(message)
    sub.buffer = later
    for message in older:
        await engine.transport.send_message(sub, message, replayed=False)


async def resume_then_live(
    engine: Engine, sub: Subscription, ids: frozenset[str], after: int | None
) -> None:
    """Answer the ``subscribe``, send what ``sub`` missed after the cursor ``after``, then
    the live events held back meanwhile, and go live; a ``latest`` replay instead when the
    resume cannot be complete."""
    transport = engine.transport
    messages = None
    if after is not None:
        try:
            async with engine.replay_slot:
                messages = await transport.load_resume(ids, sub.selector, after)
        except Exception:
            logger.exception("Resume failed; closing the connection so the client retries.")
            await transport.close_with(1011)
            return
    await engine.send_subscribed(sub, recovered=messages is not None)
    if messages is None:
        await replay_then_live(engine, sub, ids, replay.LATEST)
        return
    assert after is not None and sub.buffer is not None
    await _send_stored_then_live(engine, sub, messages, lambda m: _delivered_before(m, after))


def _delivered_before(message: dict[str, Any], after: int) -> bool:
    """Whether a live event is one the client had before its cursor (a late copy)."""
    pk = message.get("event_pk")
    return isinstance(pk, int) and pk <= after


def guarded(sub: Subscription, key: Hashable) -> bool:
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


async def catch_up(
    engine: Engine, sub: Subscription, since: Any, delivered: frozenset[Any]
) -> None:
    """Replay what ``sub`` missed since ``since`` (but not ``delivered``), then go live."""
    assert sub.ids is not None
    transport = engine.transport
    try:
        async with engine.replay_slot:
            messages = await transport.load_catch_up(sub.ids, sub.selector, since)
    except Exception:
        logger.exception("Catch-up replay failed; closing the connection so the client retries")
        await transport.close_with(1011)
        return
    assert sub.buffer is not None
    held = {event_key(m) for m in sub.buffer}
    sent = set()
    for message in messages:
        key = event_key(message)
        if key in delivered or key in held or key in sent or (sub.guard and key in sub.guard):
            continue  # delivered live, held back, or replayed (a layer down on subscribe)
        sent.add(key)
        engine.seen(key)  # a later live copy (a relay sending it again) is dropped
        await transport.send_message(sub, message, replayed=True)
    await go_live(engine, sub, sent)


async def go_live(engine: Engine, sub: Subscription, skip: set[Any]) -> None:
    """Send the held-back live events (except ``skip``) and stop holding them back."""
    while sub.buffer:
        message = sub.buffer.popleft()
        if event_key(message) not in skip:
            await engine.transport.send_message(sub, message, replayed=False)
    sub.buffer = None
    sub.task = None
