"""Frames a client sent before its websocket was closed are dropped, not handled.

A server closes a socket (a limit: too many frames, a replay that fell behind…) while the
client may still have thousands of frames on the way: the ASGI server (Daphne) queues each
one for the consumer, which would take them one by one through Channels' dispatch (a
thread hop each, to close old database connections) only to ignore them. A flood of
~29,000 frames kept a process at 100% CPU for ~10 s after its client had gone that way.
``DropInputAfterClose`` drops each such frame at the top of the dispatch instead.
"""

from __future__ import annotations

from typing import Any

from .. import metrics

RECEIVE = "websocket.receive"


class DropInputAfterClose:
    """Mixin for a Channels websocket consumer (before ``AsyncWebsocketConsumer`` in the
    bases): once the consumer has closed the socket, or refused it, the client's frames
    still queued are counted (``frames_dropped_after_close``) and dropped unread."""

    input_closed = False

    async def close(self, *args: Any, **kwargs: Any) -> None:
        # Channels' own signature (``code``, and ``reason`` since 4.2) passed through.
        self.input_closed = True
        await super().close(*args, **kwargs)  # type: ignore[misc]

    async def dispatch(self, message: dict[str, Any]) -> None:
        if self.input_closed and message.get("type") == RECEIVE:
            metrics.incr("frames_dropped_after_close")
            return
        await super().dispatch(message)  # type: ignore[misc]
