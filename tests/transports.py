"""One client interface over both real-time transports, for tests against a live server.

``open_stream("ws" | "sse", server, selector, …)`` subscribes through the query string
(subscription ``default``) and returns a connection whose ``recv()`` gives the next frame
as a dict — the websocket frame, or the ``data:`` of an SSE event, which has the same
shape. ``kill()`` drops the TCP connection without a goodbye.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import connect

TRANSPORTS = ("ws", "sse")
EVENTS_PATH = "/api/services/Stripe/events"
WAIT = 10.0


class SSEConnection:
    """A minimal HTTP/1.1 ``text/event-stream`` reader over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.comments = 0
        self.retry: int | None = None
        self.last_id: str | None = None
        self.ids: list[str | None] = []
        self._chunked = False
        self._buffer = b""
        self._eof = False

    @classmethod
    async def open(
        cls, url: str, headers: dict[str, str] | None = None, local_host: str | None = None
    ) -> SSEConnection:
        """Send the request (from ``local_host``, another loopback address, if given) and
        read the answer's head."""
        parts = urlsplit(url)
        local = (local_host, 0) if local_host else None
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port, local_addr=local)
        self = cls(reader, writer)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                self.headers[name.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding") == "chunked"
        if not self.headers.get("content-type", "").startswith("text/event-stream"):
            length = self.headers.get("content-length")
            if length is not None and not self._chunked:
                # The connection may stay open (keep-alive): read the body, not to the end
                # of the connection, which would wait for the server's idle timeout.
                self.body = await reader.readexactly(int(length))
            else:
                self.body = await self._read_all()
        return self

    async def _read_all(self) -> bytes:
        out = b""
        while chunk := await self._chunk():
            out += chunk
        return out

    async def _chunk(self) -> bytes:
        """The next piece of the body; ``b""`` at its end or when the connection dropped."""
        try:
            return await self._next_chunk()
        except (asyncio.IncompleteReadError, ConnectionError):
            self._eof = True
            return b""

    async def _next_chunk(self) -> bytes:
        if self._eof:
            return b""
        if not self._chunked:
            data = await self.reader.read(65536)
            self._eof = not data
            return data
        size = int((await self.reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        if size == 0:
            self._eof = True
            return b""
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def event(self, timeout: float = WAIT) -> dict[str, Any] | None:
        """The next SSE event as ``{"id", "event", "data"}``; ``None`` at the end."""
        async with asyncio.timeout(timeout):
            while True:
                while b"\n\n" not in self._buffer:
                    chunk = await self._chunk()
                    if not chunk:
                        return None
                    self._buffer += chunk
                block, self._buffer = self._buffer.split(b"\n\n", 1)
                fields: dict[str, Any] = {}
                for line in block.decode().split("\n"):
                    if line.startswith(":"):
                        self.comments += 1
                        continue
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
                if "retry" in fields:
                    self.retry = int(fields["retry"])
                if "data" in fields:
                    if "id" in fields:
                        self.last_id = fields["id"]
                    return fields

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next frame (an event's ``data``), checked against its ``event:`` and ``id:``."""
        fields = await self.event(timeout)
        if fields is None:
            raise ConnectionError("the stream ended")
        frame = json.loads(fields["data"])
        assert fields.get("event") == frame["type"]
        assert fields.get("id") == frame.get("cursor")
        return frame

    def kill(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


class WSConnection:
    """A websocket connection with the same interface."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            return json.loads(await self.ws.recv())

    def kill(self) -> None:
        self.ws.transport.abort()

    async def close(self) -> None:
        await self.ws.close()


def query(selector: str | None, replay: str | None = None, **extra: str) -> str:
    fields = {"channel": "stripe", **extra}
    if selector is not None:
        fields["selector"] = selector
    if replay is not None:
        fields["replay"] = replay
    return urlencode(fields)


async def open_stream(
    kind: str,
    server: Any,
    selector: str | None,
    replay: str | None = None,
    *,
    since: str | None = None,
    headers: dict[str, str] | None = None,
    local_host: str | None = None,
) -> SSEConnection | WSConnection:
    """Subscribe over ``kind`` through the query string; resume from ``since`` if given."""
    extra = {"since": since} if since and kind == "ws" else {}
    if kind == "ws":
        url = f"{server.ws_url}/ws/stripe/?{query(selector, replay, **extra)}"
        ws = await connect(
            url,
            origin=server.url,
            open_timeout=WAIT,
            ping_interval=None,
            additional_headers=headers,
            local_addr=(local_host, 0) if local_host else None,
            max_queue=None,
        )
        return WSConnection(ws)
    all_headers = dict(headers or {})
    if since:
        all_headers["Last-Event-ID"] = since
    url = f"{server.url}{EVENTS_PATH}?{query(selector, replay)}"
    return await SSEConnection.open(url, all_headers, local_host)
