"""The demo page behind a proxy that refuses websocket upgrades (issue 18): the JavaScript
client falls back to Server-Sent Events and the payment's status still arrives live."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.live import free_port
from tests.test_demo import browser, demo, demo_site  # noqa: F401

REFUSAL = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class NoUpgradeProxy:
    """A TCP proxy to ``upstream`` that answers 403 to every websocket upgrade."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.target = (parts.hostname, parts.port)
        self.port = free_port()
        self.refused = 0
        self.passed = 0
        self.loop = asyncio.new_event_loop()

    async def _pipe(self, reader, writer) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def _serve(self, reader, writer) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        if b"upgrade: websocket" in head.lower():
            self.refused += 1
            writer.write(REFUSAL)
            await writer.drain()
            writer.close()
            return
        self.passed += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        up_writer.write(head)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", self.port)
            )
            ready.set()
            self.loop.run_forever()
            server.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        ready.wait(10)
        try:
            yield f"http://127.0.0.1:{self.port}"
        finally:
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
            thread.join(10)
            self.loop.close()

    async def _stop(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.get_running_loop().call_soon(self.loop.stop)


@pytest.fixture
def daphne_demo(demo):  # noqa: F811
    base, _ = demo
    return base


def test_demo_page_falls_back_to_sse_when_websockets_are_refused(daphne_demo, browser):  # noqa: F811
    proxy = NoUpgradeProxy(daphne_demo)
    with proxy.running() as base:
        page = browser.new_page()
        try:
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            streams: list[str] = []
            page.on("request", lambda r: streams.append(r.url) if "/events?" in r.url else None)
            page.goto(base + "/")
            page.fill("#amount", "12.34")
            page.fill("#card-number", "4242 4242 4242 4242")
            page.click("#pay")
            # Only a pushed message sets this exact status: it came over the stream.
            page.wait_for_selector('#status[data-status="succeeded"]', timeout=30_000)
            assert "charge.succeeded → succeeded, 12.34 USD" in page.inner_text("#log")
            assert proxy.refused >= 1, "the page never tried a websocket"
            assert streams, "no Server-Sent Events stream was opened"
            assert not errors, errors
        finally:
            page.close()
