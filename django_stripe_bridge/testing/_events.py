"""Events: creation (with ``request``/``pending_webhooks``), the Events API list, and
webhook delivery signed the way Stripe signs (``Stripe-Signature: t=…,v1=…``).

localstripe sends each event about a second after it happens, never retried; we keep that,
but deliver through one ordered queue and drop what was queued before a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import itertools
import json
import logging
from typing import Any

import aiohttp
from localstripe import resources, webhooks
from localstripe.resources import Event

from . import _context, _thin
from ._lists import paginate, stored, unknown_params
from ._signing import sign_payload

logger = logging.getLogger("django_stripe_bridge.standin")

DEFAULT_API_VERSION = _context.DEFAULT_API_VERSION


class _State:
    delay: float = 1.0
    generation: int = 0
    sequence = itertools.count(1)
    queue: asyncio.Queue[tuple[int, float, Any]] | None = None
    worker: asyncio.Task[None] | None = None
    #: Delivery attempts, newest last: (event id, type, webhook name, HTTP status or error).
    deliveries: list[dict[str, Any]] = []


state = _State()


def _wants(webhook: Any, event: Any) -> bool:
    from . import _connect

    wanted = webhook.events
    return (wanted is None or "*" in wanted or event.type in wanted) and _connect.wants(
        webhook, event
    )


def emit(event_type: str, obj: Any) -> Any:
    """Record an event about ``obj`` (exported now) and queue its webhook deliveries."""
    event = Event(event_type, obj)
    schedule(event)
    return event


def schedule(event: Any) -> None:
    """Replacement for localstripe's ``schedule_webhook``: queue the event for delivery."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not inside the server (e.g. a unit test of the patches)
        return
    if state.queue is None or state.worker is None or state.worker.done():
        state.queue = asyncio.Queue()
        state.worker = loop.create_task(_deliver_forever(state.queue))
    state.queue.put_nowait((state.generation, loop.time() + state.delay, event))


def reset() -> None:
    """Forget queued deliveries (events themselves live in the store, cleared with it)."""
    state.generation += 1
    state.deliveries.clear()


async def _deliver_forever(queue: asyncio.Queue[tuple[int, float, Any]]) -> None:
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            generation, due, event = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if generation != state.generation:
                continue
            targets = [
                (name, hook)
                for name, hook in list(webhooks._webhooks.items())
                if _wants(hook, event)
            ]
            payload = json.dumps(event._export(), indent=2, sort_keys=True).encode()
            for name, hook in targets:
                await _post(session, name, hook, event, payload)
            await _thin.deliver(session, event, payload)


async def _post(
    session: aiohttp.ClientSession, name: str, hook: Any, event: Any, payload: bytes
) -> None:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": sign_payload(payload, hook.secret),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }
    record: dict[str, Any] = {"event": event.id, "type": event.type, "webhook": name}
    try:
        async with session.post(hook.url, data=payload, headers=headers) as response:
            await response.read()
            record["status"] = response.status
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
    state.deliveries.append(record)
    del state.deliveries[:-1000]
    logger.info("webhook %s → %s: %s", event.type, name, record.get("status", record.get("error")))


# --- the Event class -------------------------------------------------------------------------

_original_init = Event.__init__


def _event_init(self: Any, type: str, data: Any) -> None:
    from . import _connect

    _original_init(self, type, data)
    _connect.event_account(self, data)
    ctx = _context.current()
    self._standin_sequence = next(state.sequence)
    self.api_version = _context.api_version()
    self.request = {"id": ctx.request_id, "idempotency_key": ctx.idempotency_key}
    self.pending_webhooks = sum(
        1 for hook in list(webhooks._webhooks.values()) if _wants(hook, self)
    )


def _list_events(
    cls: Any,
    url: str,
    type: Any = None,
    types: Any = None,
    created: Any = None,
    limit: Any = None,
    starting_after: Any = None,
    ending_before: Any = None,
    delivery_success: Any = None,
    **kwargs: Any,
) -> Any:
    unknown_params(kwargs)
    wanted_types: list[str] = []
    if type:
        wanted_types.append(str(type))
    if types:
        wanted_types.extend(str(t) for t in (types if isinstance(types, list) else [types]))
    items = [
        event
        for event in stored("event", created)
        if not wanted_types or any(fnmatch.fnmatchcase(event.type, t) for t in wanted_types)
    ]
    items.sort(key=lambda ev: getattr(ev, "_standin_sequence", 0), reverse=True)
    return paginate(
        url,
        items,
        "event",
        limit=limit,
        starting_after=starting_after,
        ending_before=ending_before,
    )


def install(delay: float) -> None:
    """Route all of localstripe's events through us and give events their missing fields."""
    state.delay = delay
    Event.__init__ = _event_init  # type: ignore[method-assign]
    Event._api_list_all = classmethod(_list_events)  # type: ignore[assignment]
    resources.schedule_webhook = schedule
    webhooks.schedule_webhook = schedule


def clear_webhooks(name: str | None = None) -> None:
    if name is None:
        webhooks._webhooks.clear()
        _thin.clear_destinations()
    else:
        with contextlib.suppress(KeyError):
            del webhooks._webhooks[name]
