"""A channel layer that is down is not a 500 (issue 18): on both transports the connection
opens, replays from the database, and goes live once Redis answers."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.live import free_port, run_server
from tests.realtime_fixtures import unique_prefix
from tests.test_transports_e2e import ENV, event, post, transport, tx_id  # noqa: F401
from tests.transports import open_stream

pytestmark = pytest.mark.redis


@contextlib.contextmanager
def redis_on(port: int) -> Iterator[None]:
    """A private ``redis-server`` on ``port`` for the block (killed after)."""
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield
    finally:
        process.kill()
        process.wait()


async def test_a_layer_that_is_down_is_not_a_500(server_kind, transport):  # noqa: F811
    port = free_port()
    env = {
        **ENV,
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "CHANNELS_REDIS_PREFIX": unique_prefix(),
    }
    with run_server(server_kind, env) as server:
        tx = tx_id()
        stored = event(tx, "charge.pending", status="pending")
        await post(server, stored)  # stored; its publish fails and waits for the relay
        conn = await open_stream(transport, server, f"id = '{tx}'", "latest")
        answer = await conn.recv()
        assert answer["type"] == "subscribed", answer
        replayed = await conn.recv()
        assert (replayed["headers"]["event_id"], replayed["replayed"]) == (stored["id"], True)
        with redis_on(port):
            live = event(tx)
            await post(server, live)
            frame = await conn.recv(timeout=30)
            assert frame["headers"]["event_id"] == live["id"], frame
            assert frame["headers"]["status"] == "succeeded"
            later = event(tx, "charge.refunded", amount_refunded=1000)
            await post(server, later)
            frame = await conn.recv(timeout=15)
            assert (frame["headers"]["event_id"], frame["replayed"]) == (later["id"], False)
            await conn.close()
        log = server.log()
        assert " 500 " not in log and "Internal Server Error" not in log, log[-3000:]
