"""Fixtures and helpers for the tests of the charge endpoints.

Import them into a test module with ``from tests.charge_fixtures import *  # noqa: F403``.
They need the stand-in plugin (``django_stripe_bridge.testing.pytest_plugin``) for
``stripe_standin``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.http import HttpRequest
from django.test import Client

from django_stripe_bridge import charges
from django_stripe_bridge.testing import TEST_API_KEY
from django_stripe_bridge.views import CLIENT_SCOPE_COOKIE, CLIENT_SCOPE_SALT

__all__ = [
    "API",
    "TEST_API_KEY",
    "bridge_settings_for",
    "bridge_stripe",
    "closed_port_url",
    "csrf_client",
    "hanging_server",
    "json_server",
    "post_json",
    "stripe_key_for",
]

API = "/api/services/Stripe"


def bridge_settings_for(settings: Any, **overrides: Any) -> None:
    """Set ``STRIPE_BRIDGE`` keys on pytest-django's ``settings`` (the bridge reloads)."""
    settings.STRIPE_BRIDGE = {**settings.STRIPE_BRIDGE, **overrides}


@pytest.fixture
def bridge_stripe(stripe_standin: Any, settings: Any) -> Any:
    """The stand-in, emptied, with the bridge's settings pointing at it (no throttle)."""
    stripe_standin.reset()
    bridge_settings_for(
        settings,
        API_KEY=TEST_API_KEY,
        API_BASE=stripe_standin.base_url,
        MAX_NETWORK_RETRIES=0,
        TIMEOUT=10,
        CHARGE_THROTTLE_RATE=None,
    )
    cache.clear()
    return stripe_standin


@pytest.fixture
def csrf_client() -> Client:
    """A test client that enforces CSRF checks, as a browser would meet them."""
    return Client(enforce_csrf_checks=True)


def post_json(
    client: Client, path: str, body: Any, *, idempotency_key: str | None = None, **extra: Any
) -> Any:
    """POST ``body`` as JSON to ``{API}/{path}``; the response, with ``.json()``."""
    if idempotency_key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
    return client.post(f"{API}/{path}", json.dumps(body), content_type="application/json", **extra)


def stripe_key_for(client: Client, key: str) -> str:
    """The key the bridge sends Stripe for ``key`` from this anonymous client (its cookie)."""
    request = HttpRequest()
    request.COOKIES = {CLIENT_SCOPE_COOKIE: client.cookies[CLIENT_SCOPE_COOKIE].value}
    token = request.get_signed_cookie(CLIENT_SCOPE_COOKIE, salt=CLIENT_SCOPE_SALT)
    return charges.scoped_idempotency_key(key, f"client:{token}")


# --- faulty "Stripes" for the error paths ----------------------------------------------------


@pytest.fixture
def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def _serve(handle: Any) -> Iterator[str]:
    """Accept connections on a loopback port in a thread; ``handle(conn)`` answers each."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()
    connections: list[socket.socket] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            connections.append(conn)
            handle(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in connections:
            conn.close()
        server.close()


@pytest.fixture
def hanging_server() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    with _serve(lambda conn: None) as url:
        yield url


def json_server(status: int, body: bytes, content_type: str = "application/json") -> Any:
    """A context manager: a server answering every request with ``status`` and ``body``."""

    def handle(conn: socket.socket) -> None:
        conn.settimeout(2)
        with contextlib.suppress(OSError):
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            head = (
                f"HTTP/1.1 {status} Whatever\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            conn.sendall(head.encode() + body)
        conn.close()

    return _serve(handle)
