"""A loopback webhook endpoint: it takes the offline Stripe's webhook deliveries and keeps
them, for a test to check or to hand to the bridge (in the test's own thread, with its
channel layer and database).

Import it into a test module with ``from tests.relay import *  # noqa: F403``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = ["Relay", "relay"]


class Relay:
    """Takes Stripe's webhook deliveries on a loopback port (``url``, any path under it) and
    keeps them in order, each as ``(path, Stripe-Signature header, body)``."""

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
        """The deliveries received so far, which the relay then forgets."""
        with self.lock:
            taken = list(self.requests)
            self.requests.clear()
        return taken

    def events(self) -> list[dict[str, Any]]:
        """The events delivered so far (and not taken), in order."""
        with self.lock:
            return [json.loads(body) for _path, _signature, body in self.requests]

    def wait_for(self, event_ids: set[str], timeout: float = 10) -> None:
        """Return once every event of ``event_ids`` has been delivered; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not event_ids <= {event["id"] for event in self.events()}:
            if time.monotonic() > deadline:
                got = {event["id"] for event in self.events()}
                raise AssertionError(f"webhooks never delivered {event_ids - got}")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def relay() -> Iterator[Relay]:
    endpoint = Relay()
    yield endpoint
    endpoint.close()
