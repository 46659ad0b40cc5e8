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
    #: The decline spec of a card refused while being attached during this request.
    attach_decline: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


_current: ContextVar[RequestContext | None] = ContextVar("standin_request", default=None)


def current() -> RequestContext:
    """The context of the request being handled (an empty one outside requests)."""
    ctx = _current.get()
    return ctx if ctx is not None else RequestContext()


def begin(**values: Any) -> RequestContext:
    ctx = RequestContext(**values)
    _current.set(ctx)
    return ctx


def new_request_id() -> str:
    return "req_" + secrets.token_urlsafe(10).replace("-", "x").replace("_", "y")
