"""Opening a Server-Sent Events stream from an HTTP request: ``GET …/events``.

``?channel=stripe&selector=…&replay=latest|all|none`` is the stream's ``subscribe`` frame;
it resumes from ``Last-Event-ID`` (the header ``EventSource`` sends when it reconnects, or
a ``last_event_id`` query parameter for the first connect).

Two front doors lead to the same stream (docs/websocket-protocol.md says why):

* ``serve_events()``, the lean ASGI path: ``asgi.with_stripe_webhook`` routes the app's
  ``events`` URL here. The user is found as Channels' ``AuthMiddlewareStack`` finds a
  websocket's (the session cookie), and nothing of the request outlives the opening of
  the stream: an idle stream costs less memory than an idle websocket.
* ``events_view``, the Django view at the same URL, for a site that does not wrap its
  application: the site's middleware authenticates it, and Django's request and response
  stay alive with each stream.

Both apply the websocket's origin rule, the per-client budget of stream opens, and need
an ASGI server (the view answers 501 under WSGI).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    MutableMapping,
)
from importlib import import_module
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from asgiref.sync import SyncToAsync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, InterfaceError
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from django.http.response import HttpResponseBase

from .. import metrics, outbox
from ..conf import bridge_settings
from .frames import ErrorCode
from .limits import TokenBucket
from .sse import EventStream, watch_shutdown

logger = logging.getLogger(__name__)

#: Clients whose stream-open budget is remembered (the least recently seen are forgotten).
MAX_CLIENTS_TRACKED = 10_000
#: The stream's response headers, besides its ``Content-Type``.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Refused(Exception):
    """A request that does not open a stream: its status, error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        error = {"type": "invalid_request_error", "code": self.code, "message": self.message}
        return {"error": error}

    def headers(self) -> dict[str, str]:
        if self.status == 405:
            return {"Allow": "GET"}
        retry = {429: "1", 503: "5"}.get(self.status)
        return {"Retry-After": retry} if retry else {}


def session_unavailable() -> Refused:
    logger.warning("An event stream could not read its session; answered 503.", exc_info=True)
    return Refused(
        503, "service_unavailable", "The session could not be read (database unavailable)."
    )


def check(method: str, origin: str | None, client: str) -> None:
    """Refuse (``Refused``) a request that may not open a stream; else start what streams
    need in this process."""
    if method != "GET":
        raise Refused(
            405, "method_not_allowed", f"Method {method:.20} not allowed: streams are GET."
        )
    if not origin_allowed(origin):
        raise Refused(403, "origin_not_allowed", "The request's Origin is not an allowed host.")
    if not may_open(client):
        raise Refused(
            429,
            ErrorCode.RATE_LIMITED,
            f"More than {bridge_settings.MAX_FRAMES_PER_SECOND} streams a second opened from "
            "this client; wait before opening another.",
        )
    outbox.ensure_relay()
    watch_shutdown()


def subscribe_frame(query: Mapping[str, str], last_event_id: str | None) -> dict[str, Any]:
    """The ``subscribe`` frame a stream's query string and ``Last-Event-ID`` stand for."""
    frame: dict[str, Any] = {"action": "subscribe", "subscription": "default"}
    for key in ("channel", "selector", "replay"):
        if key in query:
            frame[key] = query[key]
    since = last_event_id or query.get("last_event_id")
    if since:
        frame["since"] = since
    return frame


def origin_allowed(origin: str | None) -> bool:
    """The websocket rule (Channels' ``AllowedHostsOriginValidator``) for a cross-origin
    request: its Origin's host must be one of ``ALLOWED_HOSTS``. Browsers send no Origin
    on a same-origin ``EventSource``, nor do non-browser clients: those pass."""
    if origin is None:
        return True
    host = urlsplit(origin).netloc
    domain, _ = split_domain_port(host) if host else ("", "")
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


_budgets: OrderedDict[str, TokenBucket] = OrderedDict()
_budgets_lock = threading.Lock()


def may_open(client: str) -> bool:
    """Per client address: stream opens cost what subscribe frames do on a websocket."""
    rate, burst = bridge_settings.MAX_FRAMES_PER_SECOND, bridge_settings.FRAME_BURST
    with _budgets_lock:
        bucket = _budgets.pop(client, None) or TokenBucket(burst)
        _budgets[client] = bucket
        if len(_budgets) > MAX_CLIENTS_TRACKED:
            _budgets.popitem(last=False)
        allowed = bucket.take(rate, burst)
    if not allowed:
        metrics.incr("connections_rate_limited")
    return allowed


# -- the lean ASGI path ---------------------------------------------------------------------


async def serve_events(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """Answer ``GET …/events`` as an ASGI application (routed by ``with_stripe_webhook``)."""
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }
    client = str((scope.get("client") or ("?",))[0])
    try:
        check(str(scope.get("method")), headers.get("origin"), client)
    except Refused as refused:
        await _answer(send, refused)
        return
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), encoding="utf-8"))
    frame = subscribe_frame(query, headers.get("last-event-id"))
    try:
        user = await session_user(headers.get("cookie"))
    except (DatabaseError, InterfaceError):
        await _answer(send, session_unavailable())
        return
    del headers, query
    stream = EventStream(user, get_channel_layer())
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream"),
                (b"x-content-type-options", b"nosniff"),
                *((k.lower().encode(), v.encode()) for k, v in STREAM_HEADERS.items()),
            ],
        }
    )
    await _stream_until_disconnect(stream, frame, receive, send)


async def _stream_until_disconnect(
    stream: EventStream, frame: dict[str, Any], receive: Receive, send: Send
) -> None:
    """Send the stream's events until it ends, or until the client goes away: that cancels
    the sending (as Django's handler cancels a streaming response), without a task more."""
    streaming = asyncio.current_task()
    assert streaming is not None
    pumping = True

    def on_gone(watcher: asyncio.Future[None]) -> None:
        if pumping and not watcher.cancelled():
            streaming.cancel()

    gone = asyncio.ensure_future(_disconnected(receive))
    gone.add_done_callback(on_gone)
    events = stream.events(frame)
    try:
        async for chunk in events:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        pumping = False
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not gone.done() or gone.cancelled():
            raise  # the server's cancellation, not the client's disconnect
        streaming.uncancel()
    except OSError:
        pass  # the connection broke while an event was being sent
    finally:
        pumping = False
        gone.cancel()
        await events.aclose()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def session_user(cookie_header: str | None) -> Any:
    """The user of the request's session cookie, found as Channels' ``AuthMiddlewareStack``
    finds a websocket's; ``AnonymousUser`` without one."""
    from channels.auth import get_user

    key = parse_cookie(cookie_header or "").get(settings.SESSION_COOKIE_NAME)
    if not key:
        return AnonymousUser()
    session = import_module(settings.SESSION_ENGINE).SessionStore(key)
    return await get_user({"session": session})


async def _answer(send: Send, refused: Refused) -> None:
    content = json.dumps(refused.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
        (b"x-content-type-options", b"nosniff"),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in refused.headers().items()]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


# -- the Django view ------------------------------------------------------------------------


async def events_view(request: HttpRequest) -> HttpResponseBase:
    """``GET …/events``: a Server-Sent Events stream of one subscription."""
    try:
        if not isinstance(request, ASGIRequest):
            raise Refused(
                501, "not_asgi", "Server-Sent Events need an ASGI server (Daphne, Uvicorn…)."
            )
        client = str(request.META.get("REMOTE_ADDR") or "?")
        check(request.method or "", request.headers.get("Origin"), client)
        try:
            user = await request.auser()
        except (DatabaseError, InterfaceError):
            raise session_unavailable() from None
    except Refused as refused:
        refusal = JsonResponse(refused.body(), status=refused.status)
        for name, value in refused.headers().items():
            refusal[name] = value
        return refusal
    frame = subscribe_frame(request.GET, request.headers.get("Last-Event-ID"))
    stream = EventStream(user, get_channel_layer())
    response = StreamingHttpResponse(
        _releasing_thread(stream.events(frame)), content_type="text/event-stream"
    )
    for name, value in STREAM_HEADERS.items():
        response[name] = value
    return response


async def _releasing_thread(events: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(events):
        sent = 0
        async for chunk in events:
            yield chunk
            sent += 1
            if sent == 2:  # the retry line, then what the subscription sent first
                _release_request_thread()


def _release_request_thread() -> None:
    """Let the request's own sync thread go while its stream stays open.

    Django's ASGI handler runs each request in an asgiref ``ThreadSensitiveContext``, which
    gives the request a thread of its own for sync code (the ``request_started`` signal,
    the session and user lookup) until the response ends: for a stream, for as long as it
    is open — a thread per stream. Nothing sync runs in it once the stream is open, so it
    is shut down now; the end of the request makes another if it needs one.
    """
    context = SyncToAsync.thread_sensitive_context.get(None)
    executors = getattr(SyncToAsync, "context_to_thread_executor", None)
    if context is None or not isinstance(executors, MutableMapping):
        return
    executor = executors.pop(context, None)
    if executor is not None:
        executor.shutdown(wait=False)


__all__ = ["events_view", "serve_events", "session_user"]
