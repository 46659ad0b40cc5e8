"""bench/latency_proxy.py: what it forwards arrives whole, in order, and late by its delay."""

from __future__ import annotations

import asyncio
import importlib.util
import time

from tests.live import ROOT


def load_proxy():
    spec = importlib.util.spec_from_file_location("latency_proxy", ROOT / "bench/latency_proxy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_proxy_delays_each_way_and_keeps_the_bytes() -> None:
    proxy = load_proxy()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def run() -> tuple[bytes, float, float]:
        target = await asyncio.start_server(echo, "127.0.0.1", 0)
        target_port = target.sockets[0].getsockname()[1]
        timings = []
        received = b""
        for delay in (0.0, 0.05):
            server = await proxy.start(0, target_port, delay)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.sockets[0].getsockname()[1]
            )
            payload = bytes(range(256)) * 1024  # 256 KiB: several chunks, in order
            started = time.perf_counter()
            writer.write(payload)
            await writer.drain()
            received = await reader.readexactly(len(payload))
            timings.append(time.perf_counter() - started)
            assert received == payload
            writer.close()
            server.close()
        target.close()
        return received, timings[0], timings[1]

    _, direct, delayed = asyncio.run(run())
    # There and back: twice the delay, at least, and not much more than the direct time.
    assert 0.1 <= delayed < direct + 0.1 + 0.2
