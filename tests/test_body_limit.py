"""Oversized bodies are refused before they are read, under Uvicorn (issue 10, item 5).

A real Uvicorn process serves the test site behind ``BodyLimitMiddleware``; a client sends
300 MiB, with a ``Content-Length`` and chunked. The server must answer 413 after reading at
most the limit, and its memory must not grow with the body.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services

MiB = 1024 * 1024
HUGE = 300 * MiB
CHUNK = b"x" * MiB
PREFIX = "/api/services/Stripe"
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, int]]:
    """``(port, pid)`` of a Uvicorn serving ``tests.asgi_limited:application``."""
    services.require_module("uvicorn", "uvicorn is not installed (pip install 'uvicorn[standard]')")
    port = _free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.asgi_limited:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--lifespan",
            "off",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail("uvicorn exited at start")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("uvicorn did not start in 30 s")
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def send(port: int, path: str, *, chunked: bool, total: int, pid: int) -> tuple[bytes, int, int]:
    """Send ``total`` bytes to ``path``; ``(response, bytes sent, peak RSS of the server)``."""
    head = f"POST {PREFIX}/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {total}\r\n\r\n"
    sent, peak, response = 0, rss(pid), b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            piece = CHUNK[: min(len(CHUNK), total - sent)]
            frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
            try:
                sock.sendall(frame)
            except OSError:  # the server closed the connection: it read no further
                break
            sent += len(piece)
            peak = max(peak, rss(pid))
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        sock.settimeout(30)
        try:
            while b"\r\n\r\n" not in response or not _complete(response):
                data = sock.recv(65536)
                if not data:
                    break
                response += data
        except OSError:
            pass
    return response, sent, max(peak, rss(pid))


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def parse(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("path", "code"),
    [("webhooks/handler", "payload_too_large"), ("charge", "request_too_large")],
)
def test_300_mib_is_refused_unread_and_memory_stays_flat(server, path, code, chunked):
    port, pid = server
    send(port, path, chunked=False, total=10, pid=pid)  # warm up: the view's modules loaded
    before = rss(pid)

    response, sent, peak = send(port, path, chunked=chunked, total=HUGE, pid=pid)

    status, body = parse(response)
    assert status == 413, response[:300]
    assert body["error"]["code"] == code
    assert sent < 40 * MiB, f"the server read {sent // MiB} MiB before refusing"
    assert peak - before < 20 * MiB, f"RSS grew by {(peak - before) // MiB} MiB"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_within_the_limit_reaches_the_view(server, chunked):
    port, pid = server
    response, sent, _ = send(port, "webhooks/handler", chunked=chunked, total=1000, pid=pid)
    status, body = parse(response)
    # The view read the body and then found no signature.
    assert (status, body["error"]["code"]) == (400, "signature_verification_failed")
    assert sent == 1000
