"""Load generation for the benchmarks: signed webhooks over keep-alive HTTP/1.1 connections,
and websocket subscribers. Cheap on the client side (raw asyncio streams, pre-built
requests), so that on a small machine the server, not the client, gets the CPU.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from _common import signed_headers

#: No single request, connect or frame may take longer than this (seconds).
WAIT = 60.0


def http_request(port: int, path: str, body: bytes) -> bytes:
    """A signed webhook request, ready to write on a connection."""
    headers = {
        "Host": f"127.0.0.1:{port}",
        **signed_headers(body),
        "Content-Length": str(len(body)),
    }
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """``(status, body, keep-alive)`` of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunks.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(chunk[:-2] for chunk in chunks)
    else:
        body = await reader.read()
    return status, body, headers.get("connection") != "close"


@dataclass
class Load:
    """What a batch of requests got."""

    elapsed: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(self.statuses.values())


async def post_all(port: int, requests: Iterable[bytes], concurrency: int) -> Load:
    """Send ``requests`` over ``concurrency`` keep-alive connections, each waiting for its
    answer before the next request; the clock starts once the connections are open."""
    pending: Iterator[bytes] = iter(requests)
    load = Load()

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)

    connections = [await connect() for _ in range(concurrency)]

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for raw in pending:
                started = time.perf_counter()
                writer.write(raw)
                status, _, keep_alive = await asyncio.wait_for(read_response(reader), WAIT)
                load.latencies_ms.append((time.perf_counter() - started) * 1000)
                load.statuses[status] += 1
                if not keep_alive:
                    writer.close()
                    reader, writer = await connect()
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(r, w) for r, w in connections))
    load.elapsed = time.perf_counter() - started
    return load


async def open_socket(url: str, origin: str) -> Any:
    """A websocket to ``url``; no pings (idle sockets stay idle), no proxy."""
    from websockets.asyncio.client import connect

    return await connect(
        url,
        origin=origin,  # type: ignore[arg-type]
        open_timeout=WAIT,
        ping_interval=None,
        close_timeout=2,
        max_queue=None,
        proxy=None,
    )


async def next_frame(socket: Any, timeout: float = WAIT) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


async def subscribe(url: str, origin: str, replayed: bool) -> Any:
    """Open a socket and wait for ``subscribed`` (and, if ``replayed``, the replayed status)."""
    socket = await open_socket(url, origin)
    frame = await next_frame(socket)
    if frame.get("type") != "subscribed":
        raise RuntimeError(f"expected 'subscribed', got {frame}")
    if replayed:
        frame = await next_frame(socket)
        if frame.get("type") != "message" or not frame.get("replayed"):
            raise RuntimeError(f"expected the replayed status, got {frame}")
    return socket


async def subscribe_many(
    urls: list[str],
    origin: str,
    replayed: bool,
    limit: int | None = None,
    retry_for: float = 0.0,
) -> tuple[list[Any], float, int]:
    """Subscribe one socket per URL, ``limit`` handshakes at a time (None: all at once).

    A client whose attempt fails tries again after 0.5 to 2 s, as real clients back off, for
    up to ``retry_for`` seconds. Returns the sockets, the seconds until the last one had
    everything it waits for, and the number of failed attempts.
    """
    gate = asyncio.Semaphore(limit or len(urls) or 1)
    started = time.perf_counter()
    failures = 0

    async def one(url: str) -> Any:
        nonlocal failures
        while True:
            try:
                async with gate:
                    return await subscribe(url, origin, replayed)
            except Exception:
                failures += 1
                if time.perf_counter() - started > retry_for:
                    raise
                await asyncio.sleep(random.uniform(0.5, 2.0))

    results = await asyncio.gather(*(one(url) for url in urls), return_exceptions=True)
    elapsed = time.perf_counter() - started
    sockets = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        await drop(sockets)
        raise RuntimeError(f"{len(errors)} of {len(urls)} subscriptions failed: {errors[0]!r}")
    return sockets, elapsed, failures


async def drop(sockets: list[Any]) -> None:
    """Cut connections without a closing handshake, as a network failure would."""
    for socket in sockets:
        socket.transport.abort()
    await asyncio.sleep(0)


async def close(sockets: list[Any]) -> None:
    """Close connections cleanly, a few hundred at a time."""
    for start in range(0, len(sockets), 500):
        await asyncio.gather(
            *(s.close() for s in sockets[start : start + 500]), return_exceptions=True
        )
