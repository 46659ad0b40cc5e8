"""The Server-Sent Events transport: ``GET …/events``, one subscription per stream.

``?channel=stripe&selector=…&replay=latest|all|none`` subscribes as a websocket
``subscribe`` frame would (same policy, limits and replay); the answer is a
``text/event-stream`` whose events carry the websocket frames: ``event:`` is the frame's
``type``, ``data:`` its JSON, and a ``message`` has ``id:`` — its resume cursor. A stream
resumes from ``Last-Event-ID`` (the header ``EventSource`` sends when it reconnects, or a
``last_event_id`` query parameter for the first connect). An ``error`` event ends the
stream. Comments (``: keep-alive``) every ``SSE_HEARTBEAT`` seconds keep proxies from
closing an idle stream.

It is a Django async view streaming an async iterator (docs/sse.md says why): the site's
middleware authenticates it, its URL sits under the app's prefix, and Django's ASGI handler
cancels it when the client goes away. It needs an ASGI server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import SyncToAsync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.request import split_domain_port, validate_host
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from .. import messaging, metrics, outbox
from ..conf import bridge_settings
from .engine import Engine
from .frames import ErrorCode, FrameError, dumps
from .limits import TokenBucket
from .transport import RetryingReceive, Transport

logger = logging.getLogger(__name__)

#: Frames queued for a client that reads too slowly before its stream is ended (1013).
MAX_QUEUED = 1000
#: Clients whose stream-open budget is remembered (the least recently seen are forgotten).
MAX_CLIENTS_TRACKED = 10_000
#: Reconnection delay suggested to ``EventSource`` (milliseconds).
RETRY_MS = 2000
_END = b""

_CLOSE_REASONS = {
    1011: (ErrorCode.SERVER_ERROR, "The server could not read stored events; reconnect."),
    1012: (ErrorCode.SERVICE_RESTART, "The server is shutting down; reconnect to resume."),
    1013: (ErrorCode.TRY_AGAIN_LATER, "Too many events waiting for this stream; reconnect."),
}


class EventStream(Transport):
    """One SSE stream: the engine's transport, with frames queued for the response."""

    def __init__(self, user: Any, layer: Any) -> None:
        self.scope = {"user": user}
        self.channel_layer = layer
        self.channel_name = ""
        self.engine = Engine(self)
        # Chunks waiting for the response, and the future its loop waits on (lighter than
        # an asyncio.Queue: a stream is idle nearly all the time, and there are many).
        self._chunks: deque[bytes] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._ended = False

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Queue one frame as an SSE event; an ``error`` ends the stream."""
        if self._ended or self.engine.closed:
            return
        if len(self._chunks) >= MAX_QUEUED:
            await self.close_with(1013)
            return
        self._push(encode(frame))
        if frame.get("type") == "error":
            self.end()

    async def close_with(self, code: int) -> None:
        """End the stream with an ``error`` event that says why (websocket ``code``)."""
        kind, message = _CLOSE_REASONS.get(code, (ErrorCode.SERVER_ERROR, "Stream closed."))
        if not self._ended:
            self._push(encode(FrameError(kind, message).frame()))
        self.end()

    def end(self) -> None:
        """End the stream once what is queued is sent."""
        if not self._ended:
            self._ended = True
            self._push(_END)

    def _push(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _next(self, timeout: float) -> bytes | None:
        """The next chunk to send; ``None`` when ``timeout`` passed without one."""
        if not self._chunks:
            loop = asyncio.get_running_loop()
            self._wakeup = waiting = loop.create_future()
            timer = loop.call_later(timeout, _wake, waiting)
            try:
                await waiting
            finally:
                timer.cancel()
                self._wakeup = None
        return self._chunks.popleft() if self._chunks else None

    async def events(self, request: dict[str, Any]) -> AsyncIterator[bytes]:
        """The response body: subscribe, then stream events until the end or a disconnect."""
        metrics.incr("sse_streams_open")
        _streams.add(self)
        receiver = None
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            if self.channel_layer is not None:
                self.channel_name = await self.channel_layer.new_channel()
                receiver = asyncio.ensure_future(self._receive())
            self.engine.start()
            await self.engine.handle(request)
            _release_request_thread()
            heartbeat = float(bridge_settings.SSE_HEARTBEAT)
            while True:
                chunk = await self._next(heartbeat)
                if chunk is None:
                    yield b": keep-alive\n\n"
                    continue
                if chunk == _END:
                    return
                yield chunk
        finally:
            self._ended = True
            _streams.discard(self)
            metrics.incr("sse_streams_open", -1)
            if receiver is not None:
                receiver.cancel()
            await self.engine.close()

    async def _receive(self) -> None:
        layer, name = self.channel_layer, self.channel_name
        receive = RetryingReceive(lambda: layer.receive(name), self.engine)
        try:
            while not self.engine.closed:
                message = await receive()
                kind = message.get("type")
                if kind == messaging.EVENT_MESSAGE_TYPE:
                    await self.engine.deliver(message)
                elif kind == messaging.EVENTS_MESSAGE_TYPE:
                    await self.engine.deliver_batch(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Live delivery to an SSE stream failed; ending the stream.")
            await self.close_with(1011)


def _wake(waiting: asyncio.Future[None]) -> None:
    if not waiting.done():
        waiting.set_result(None)


def _release_request_thread() -> None:
    """Let the request's own sync thread go while its stream stays open.

    Django's ASGI handler runs each request in an asgiref ``ThreadSensitiveContext``, which
    gives the request a thread of its own for sync code (the ``request_started`` signal,
    the session and user lookup) until the response ends: for a stream, for as long as it
    is open — a thread per stream. Nothing sync runs in it once the stream is subscribed,
    so it is shut down now; the end of the request makes another if it needs one.
    """
    context = SyncToAsync.thread_sensitive_context.get(None)
    executors = getattr(SyncToAsync, "context_to_thread_executor", None)
    if context is None or not isinstance(executors, MutableMapping):
        return
    executor = executors.pop(context, None)
    if executor is not None:
        executor.shutdown(wait=False)


def encode(frame: dict[str, Any]) -> bytes:
    """A frame as one SSE event: ``id:`` (messages), ``event:`` its type, ``data:`` its JSON."""
    head = f"id: {frame['cursor']}\n" if frame.get("cursor") else ""
    return f"{head}event: {frame.get('type')}\ndata: {dumps(frame)}\n\n".encode()


@require_GET
async def events_view(request: HttpRequest) -> HttpResponseBase:
    """``GET …/events``: a Server-Sent Events stream of one subscription."""
    if not isinstance(request, ASGIRequest):
        return _refuse(
            501, "not_asgi", "Server-Sent Events need an ASGI server (Daphne, Uvicorn…)."
        )
    if not _origin_allowed(request):
        return _refuse(403, "origin_not_allowed", "The request's Origin is not an allowed host.")
    if not _may_open(request):
        refusal = _refuse(
            429,
            ErrorCode.RATE_LIMITED,
            f"More than {bridge_settings.MAX_FRAMES_PER_SECOND} streams a second opened from "
            "this client; wait before opening another.",
        )
        refusal["Retry-After"] = "1"
        return refusal
    outbox.ensure_relay()
    _watch_shutdown()
    user = await request.auser()
    stream = EventStream(user, get_channel_layer())
    response = StreamingHttpResponse(
        stream.events(subscribe_request(request)), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def subscribe_request(request: HttpRequest) -> dict[str, Any]:
    """The ``subscribe`` frame a stream's query string and ``Last-Event-ID`` stand for."""
    frame: dict[str, Any] = {"action": "subscribe", "subscription": "default"}
    for key in ("channel", "selector", "replay"):
        if key in request.GET:
            frame[key] = request.GET[key]
    since = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    if since:
        frame["since"] = since
    return frame


def _refuse(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(
        {"error": {"type": "invalid_request_error", "code": code, "message": message}},
        status=status,
    )


def _origin_allowed(request: HttpRequest) -> bool:
    """The websocket rule (Channels' ``AllowedHostsOriginValidator``) for a cross-origin
    request: its Origin's host must be one of ``ALLOWED_HOSTS``. Browsers send no Origin
    on a same-origin ``EventSource``, nor do non-browser clients: those pass."""
    origin = request.headers.get("Origin")
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


def _may_open(request: HttpRequest) -> bool:
    """Per client address: stream opens cost what subscribe frames do on a websocket."""
    client = str(request.META.get("REMOTE_ADDR") or "?")
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


# -- shutdown -------------------------------------------------------------------------------

_streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
_watching: set[int] = set()


def end_all_streams() -> None:
    """End every open stream of this process (the server is shutting down)."""
    for stream in list(_streams):
        if not stream._ended:
            stream._push(encode(FrameError(*_CLOSE_REASONS[1012]).frame()))
            stream.end()


def _watch_shutdown() -> None:
    """On SIGTERM or SIGINT, end the open streams, then let the server's handler run.

    An ASGI server shuts down gracefully by waiting for open responses to finish, and a
    stream never does: without this, Uvicorn waits for ever (or its graceful timeout)."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        if sig in _watching:
            continue
        _watching.add(sig)
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(end_all_streams)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        signal.signal(sig, handler)


__all__ = ["EventStream", "encode", "end_all_streams", "events_view"]
