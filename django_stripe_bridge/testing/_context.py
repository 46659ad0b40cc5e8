"""Per-request context inside the stand-in (request id, idempotency key, API version …)."""

from __future__ import annotations

import secrets
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestContext:
    request_id: str | None = None
    idempotency_key: str | None = None
    api_version: str | None = None
    #: ``http://host:port`` the request was addressed to (for URLs we hand out).
    origin: str | None = None
    #: The connected account the request acts on (``Stripe-Account``); ``None``: the platform.
    account: str | None = None
    #: Whether the request sees only its account's objects (API calls, not the controls).
    scoped: bool = False
    #: The decline spec of a card refused while being attached during this request.
    attach_decline: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


#: Used for ``event.api_version`` (and Stripe's behaviour) when the request named none.
DEFAULT_API_VERSION = "2024-06-20"
#: Since this version refund events (``refund.created|updated|failed``) are sent for every
#: refund, not only for refunds without a charge (Stripe changelog, 2024-10-28.acacia).
REFUND_EVENTS_FOR_ALL_REFUNDS = "2024-10-28"
#: Since this version a partial capture or a cancellation of an uncaptured payment releases
#: the rest without creating a Refund (Stripe changelog, 2025-03-31.basil).
RELEASE_WITHOUT_REFUND = "2025-03-31"

_current: ContextVar[RequestContext | None] = ContextVar("standin_request", default=None)


def current() -> RequestContext:
    """The context of the request being handled (an empty one outside requests)."""
    ctx = _current.get()
    return ctx if ctx is not None else RequestContext()


def api_version() -> str:
    """The API version the current request asked for (``Stripe-Version``), or the default."""
    return current().api_version or DEFAULT_API_VERSION


def version_at_least(version: str, since: str) -> bool:
    """Whether ``version`` (``2025-03-31.basil`` or a bare date) is ``since`` or newer."""
    return version[:10] >= since


def at_least(since: str) -> bool:
    """Whether the current request's API version is ``since`` or newer."""
    return version_at_least(api_version(), since)


def begin(**values: Any) -> RequestContext:
    ctx = RequestContext(**values)
    _current.set(ctx)
    return ctx


def new_request_id() -> str:
    return "req_" + secrets.token_urlsafe(10).replace("-", "x").replace("_", "y")
