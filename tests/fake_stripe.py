"""A fake Stripe API on loopback: answers each route with what a test sets, records requests.

The bridge talks to it through the official stripe library (``API_BASE``), so a test sees
what the bridge does with an answer that real Stripe would not give: a 200 without ``id``,
an echoed ``Authorization`` header, a secret key in an error's ``decline_code``.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: An answer: ``(status, body)``; a body that is not bytes is sent as JSON.
Answer = tuple[int, Any]


def charge(**fields: Any) -> dict[str, Any]:
    """A well-formed charge object, with ``fields`` changed."""
    return {
        "id": "ch_fake1",
        "object": "charge",
        "amount": 1000,
        "amount_refunded": 0,
        "currency": "usd",
        "status": "succeeded",
        "paid": True,
        "captured": True,
        "created": 1_700_000_000,
        "livemode": False,
        "payment_intent": None,
        "failure_code": None,
        "failure_message": None,
        "metadata": {},
        **fields,
    }


def payment_intent(**fields: Any) -> dict[str, Any]:
    """A well-formed PaymentIntent object, with ``fields`` changed."""
    intent_id = fields.get("id", "pi_fake1")
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": 1000,
        "currency": "usd",
        "status": "requires_payment_method",
        "client_secret": f"{intent_id}_secret_fake",
        "next_action": None,
        "created": 1_700_000_000,
        "livemode": False,
        **fields,
    }


class FakeStripe:
    """Routes ``(method, path regex)`` to answers; ``requests`` holds what it received."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Answer]]] = []
        self.requests: list[dict[str, Any]] = []

    def answer(
        self, method: str, path: str, status: int, body: Any | Callable[[dict[str, str]], Any]
    ) -> None:
        """Answer ``method path`` (a regex) with ``status`` and ``body`` (or ``body(headers)``)."""

        def respond(headers: dict[str, str], form: dict[str, str], path: str) -> Answer:
            return status, body(headers) if callable(body) else body

        self.routes.insert(0, (method, re.compile(path), respond))

    def respond(
        self, method: str, path: str, answer: Callable[[dict[str, str], str], Answer]
    ) -> None:
        """Answer ``method path`` (a regex) with ``answer(form parameters, path)``."""

        def respond(headers: dict[str, str], form: dict[str, str], path: str) -> Answer:
            return answer(form, path)

        self.routes.insert(0, (method, re.compile(path), respond))

    def reset(self) -> None:
        self.routes.clear()
        self.requests.clear()

    def _handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Answer:
        form = dict(urllib.parse.parse_qsl(raw.decode("utf-8", "replace")))
        self.requests.append({"method": method, "path": path, "headers": headers, "form": form})
        for route_method, pattern, respond in self.routes:
            if route_method == method and pattern.fullmatch(path.split("?")[0]):
                return respond(headers, form, path)
        error = {"type": "invalid_request_error", "message": f"Unrecognized request URL {path}"}
        return 404, {"error": error}

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on a free loopback port; yields the base URL."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body = fake._handle(self.command, self.path, headers, raw)
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.send_header("Request-Id", "req_fake")
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
