"""ASGI middleware that refuses an oversized body for the bridge's routes before it is read.

Django's ASGI handler reads a whole body (into a temporary file) before any view runs, so
the views' own limits (``WEBHOOK_MAX_BYTES``, 64 KiB for the JSON endpoints) come after the
upload. ``django_stripe_bridge.asgi.with_stripe_webhook()`` applies this middleware to
everything it hands to the site; on its own:

    application = BodyLimitMiddleware(get_asgi_application())

A request to one of the bridge's routes whose ``Content-Length`` is over the route's limit
is answered 413 without reading the body; one without a length (chunked) is read up to the
limit, and answered 413 as soon as it goes past it. This helps only under servers that
stream bodies to the application (Uvicorn, Hypercorn, Granian); Daphne reads the whole body
before the application is called (docs/webhooks.md shows the proxy setting to use there).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.urls import Resolver404, resolve

from .conf import SETTING_NAME, bridge_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["BodyLimitMiddleware"]


class BodyLimitMiddleware:
    """Refuses bodies over the limit of the bridge route they are sent to, unread (413)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope) if scope.get("type") == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        max_bytes, refusal = limit
        length = _content_length(scope)
        if length is not None:
            if length > max_bytes:
                await _answer(send, refusal)
                return
            await self.app(scope, receive, send)
            return
        # No length given: read at most max_bytes + 1 bytes, then hand them on.
        buffered: list[Message] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message.get("type") != "http.request":
                break
            size += len(message.get("body", b""))
            if size > max_bytes:
                await _answer(send, refusal)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    # --- hook to override ---

    def limit_for(self, scope: Scope) -> tuple[int, dict[str, Any]] | None:
        """``(max_bytes, error body)`` for a request to one of the bridge's views, else None."""
        path = str(scope.get("path", ""))
        root = str(scope.get("root_path", ""))
        if root and path.startswith(root):
            path = path[len(root) :]
        try:
            match = resolve(path or "/")
        except Resolver404:
            return None
        if "stripe_bridge" not in match.app_names:
            return None
        view_class = getattr(match.func, "view_class", None)
        from .webhooks import WebhookView

        if isinstance(view_class, type) and issubclass(view_class, WebhookView):
            limit = int(bridge_settings.WEBHOOK_MAX_BYTES)
            message = (
                f"The body is larger than {SETTING_NAME}['WEBHOOK_MAX_BYTES'] ({limit} bytes)."
            )
            return limit, _error(message, "payload_too_large")
        max_bytes = getattr(view_class, "max_body_bytes", None)
        if not isinstance(max_bytes, int):
            return None
        message = f"The request body is larger than {max_bytes} bytes."
        return max_bytes, _error(message, "request_too_large")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "code": code, "message": message}}


async def _answer(send: Send, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                (b"cache-control", b"no-store"),
                # The rest of the body is never read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})
