"""A loopback endpoint that takes the offline Stripe's webhook deliveries for a test to hand
to the bridge (in the test's own thread, with its channel layer and database).

Import it into a test module with ``from tests.relay import *  # noqa: F403``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = ["Relay", "relay"]


class Relay:
    """Takes Stripe's webhook deliveries on a loopback port and keeps them, in order, for the
    test to hand to the bridge's webhook URLs (in its own thread, with its channel layer)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.lock = threading.Lock()
        requests, lock = self.requests, self.lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    requests.append((self.path, self.headers["Stripe-Signature"], body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> list[tuple[str, str, bytes]]:
        with self.lock:
            taken = list(self.requests)
            self.requests.clear()
        return taken

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def relay() -> Iterator[Relay]:
    endpoint = Relay()
    yield endpoint
    endpoint.close()
