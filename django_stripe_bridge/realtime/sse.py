"""The Server-Sent Events transport: one subscription per ``text/event-stream``.

A stream subscribes as a websocket ``subscribe`` frame would (same policy, limits and
replay); its events carry the websocket frames: ``event:`` is the frame's ``type``,
``data:`` its JSON, and a ``message`` has ``id:`` — its resume cursor. An ``error`` event
ends the stream. Comments (``: keep-alive``) every ``SSE_HEARTBEAT`` seconds keep proxies
from closing an idle stream. How a stream is opened from an HTTP request (the lean ASGI
path and the Django view) is ``sse_http``'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import weakref
from collections.abc import AsyncGenerator
from typing import Any

from .. import messaging, metrics
from ..conf import bridge_settings
from .engine import Engine
from .frames import ErrorCode, FrameError, dumps
from .heap import heap
from .transport import RetryingReceive, Transport

logger = logging.getLogger(__name__)

#: Frames queued for a client that reads too slowly before its stream is ended (1013).
MAX_QUEUED = 1000
#: Reconnection delay suggested to ``EventSource`` (milliseconds).
RETRY_MS = 2000

_CLOSE_REASONS = {
    1011: (ErrorCode.SERVER_ERROR, "The server could not read stored events; reconnect."),
    1012: (ErrorCode.SERVICE_RESTART, "The server is shutting down; reconnect to resume."),
    1013: (ErrorCode.TRY_AGAIN_LATER, "Too many events waiting for this stream; reconnect."),
}


class EventStream(Transport):
    """One SSE stream: the engine's transport, with events queued for the response.

    A stream is idle nearly all the time and a process holds thousands: it keeps its
    user, its channel and the events not sent yet — nothing of the request it came from.
    """

    __slots__ = (
        "__weakref__",
        "_ended",
        "_pending",
        "_wakeup",
        "channel_layer",
        "channel_name",
        "engine",
        "scope",
    )

    def __init__(self, user: Any, layer: Any) -> None:
        self.scope = {"user": user}
        self.channel_layer = layer
        self.channel_name = ""
        self.engine = Engine(self)
        # Encoded events waiting to be sent (a list: an empty deque costs 760 bytes), and
        # the future the response waits on.
        self._pending: list[bytes] = []
        self._wakeup: asyncio.Future[None] | None = None
        self._ended = False

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Queue one frame as an SSE event; an ``error`` ends the stream."""
        if self._ended or self.engine.closed:
            return
        if len(self._pending) >= MAX_QUEUED:
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
        self._ended = True
        self._wake()

    def _push(self, chunk: bytes) -> None:
        self._pending.append(chunk)
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _next(self, timeout: float) -> bytes | None:
        """What is queued, as one chunk (``b""`` once ended); ``None`` after ``timeout``
        passed without anything."""
        if not self._pending and not self._ended:
            loop = asyncio.get_running_loop()
            self._wakeup = waiting = loop.create_future()
            timer = loop.call_later(timeout, _wake, waiting)
            try:
                await waiting
            finally:
                timer.cancel()
                self._wakeup = None
        if self._pending:
            chunk = b"".join(self._pending)
            self._pending.clear()
            return chunk
        return b"" if self._ended else None

    async def events(self, request: dict[str, Any]) -> AsyncGenerator[bytes, None]:
        """The response body: subscribe with the ``subscribe`` frame ``request``, then
        stream events until the stream ends (or the caller stops reading)."""
        metrics.incr("sse_streams_open")
        heap.opened()
        _streams.add(self)
        receiver = None
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            if self.channel_layer is not None:
                self.channel_name = await self.channel_layer.new_channel()
                receiver = asyncio.ensure_future(self._receive())
            self.engine.start()
            await self.engine.handle(request)
            del request
            heartbeat = float(bridge_settings.SSE_HEARTBEAT)
            while True:
                chunk = await self._next(heartbeat)
                if chunk is None:
                    yield b": keep-alive\n\n"
                elif chunk:
                    yield chunk
                elif self._ended:
                    return
        finally:
            self._ended = True
            _streams.discard(self)
            metrics.incr("sse_streams_open", -1)
            heap.gone()
            if receiver is not None:
                receiver.cancel()
            await self.engine.close()

    async def _receive(self) -> None:
        receive = RetryingReceive(self._receive_once, self.engine)
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

    def _receive_once(self) -> Any:
        return self.channel_layer.receive(self.channel_name)


def _wake(waiting: asyncio.Future[None]) -> None:
    if not waiting.done():
        waiting.set_result(None)


def encode(frame: dict[str, Any]) -> bytes:
    """A frame as one SSE event: ``id:`` (messages), ``event:`` its type, ``data:`` its JSON."""
    head = f"id: {frame['cursor']}\n" if frame.get("cursor") else ""
    return f"{head}event: {frame.get('type')}\ndata: {dumps(frame)}\n\n".encode()


# -- shutdown -------------------------------------------------------------------------------

_streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
_watching: set[int] = set()


def end_all_streams() -> None:
    """End every open stream of this process (the server is shutting down)."""
    for stream in list(_streams):
        if not stream._ended:
            stream._push(encode(FrameError(*_CLOSE_REASONS[1012]).frame()))
            stream.end()


def watch_shutdown() -> None:
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


__all__ = ["EventStream", "encode", "end_all_streams", "watch_shutdown"]
