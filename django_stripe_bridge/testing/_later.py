"""What Stripe does "some time later": refunds that settle or fail, disputes that open or
close. Each is queued with a delay (``--async-delay``); ``settle()`` runs every queued one now.

A task runs with the API version of the request that queued it (Stripe renders the events it
sends later at a fixed version too), and with no request id, as Stripe's automatic events.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from . import _context

logger = logging.getLogger("django_stripe_bridge.standin")

#: How many tasks one ``settle()`` runs at most (tasks may queue further tasks).
MAX_SETTLE = 1000


@dataclass
class _Task:
    sequence: int
    generation: int
    api_version: str
    action: Callable[[], None]
    handle: asyncio.TimerHandle | None = None


class _State:
    delay: float = 1.0
    generation: int = 0
    sequence = itertools.count(1)
    pending: dict[int, _Task] = {}


state = _State()


def install(delay: float) -> None:
    state.delay = delay


def later(action: Callable[[], None]) -> None:
    """Run ``action`` after the stand-in's async delay (or at the next ``settle()``)."""
    task = _Task(next(state.sequence), state.generation, _context.api_version(), action)
    state.pending[task.sequence] = task
    with contextlib.suppress(RuntimeError):  # no loop: only settle() runs it
        loop = asyncio.get_running_loop()
        task.handle = loop.call_later(state.delay, _run, task.sequence)


def _run(sequence: int) -> None:
    task = state.pending.pop(sequence, None)
    if task is None or task.generation != state.generation:
        return
    if task.handle is not None:
        task.handle.cancel()
    _context.begin(api_version=task.api_version)
    try:
        task.action()
    except Exception:
        logger.exception("stand-in: a deferred task failed")


def settle() -> int:
    """Run every queued task now, oldest first, including those they queue; how many ran."""
    ran = 0
    while state.pending and ran < MAX_SETTLE:
        _run(min(state.pending))
        ran += 1
    return ran


def reset() -> None:
    """Forget every queued task."""
    state.generation += 1
    for task in state.pending.values():
        if task.handle is not None:
            task.handle.cancel()
    state.pending.clear()
