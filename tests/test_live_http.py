"""``tests.live.http_request`` reads an answer the server sends before the body is all sent.

A server that refuses a body over its limit may answer 413 and close at once, before the
client has written the rest (Uvicorn does): the client's write then fails with ``Broken
pipe`` or ``Connection reset``, but the answer is there to read.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.live import http_request

ANSWER = (
    b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
    b"Content-Length: 19\r\nConnection: close\r\n\r\n"
    b'{"error": "large!"}'
)


@pytest.fixture
def hasty_server() -> Iterator[str]:
    """A server that reads a request's head, answers 413 and closes without reading the body."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(1024)
                conn.sendall(ANSWER)
            # Closed with the body unread: the kernel resets the connection.

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/upload"
    thread.join(10)


def test_the_early_answer_is_read_not_lost_to_the_failed_write(hasty_server):
    answer = http_request("POST", hasty_server, b"x" * (16 * 1024 * 1024))
    assert answer.status == 413
    assert answer.body == b'{"error": "large!"}'
    assert answer.headers["Content-Type"] == "application/json"


def test_a_small_body_is_sent_whole():
    """Without an early answer, every byte of the body reaches the server."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                _, _, body = data.partition(b"\r\n\r\n")
                while len(body) < 300_000:
                    body += conn.recv(65536)
                received.append(body)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    body = bytes(range(256)) * 1172  # 300,032 bytes: several pieces
    port = listener.getsockname()[1]
    answer = http_request("POST", f"http://127.0.0.1:{port}/x", body[:300_000])
    thread.join(10)
    assert (answer.status, answer.body) == (200, b"ok")
    assert received == [body[:300_000]]
