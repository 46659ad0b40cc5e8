"""A TCP proxy that delays every byte by a fixed time each way: a database across a network.

``python bench/latency_proxy.py --listen 6543 --to 5432 --delay-ms 0.5`` forwards
``127.0.0.1:6543`` to ``127.0.0.1:5432``; what either side sends arrives ``--delay-ms``
later (a round trip costs twice that), in order, without limiting the bandwidth. Point a
benchmark's database URL at the listening port, e.g. ``bench_floors.py --postgres-url
postgres://postgres@127.0.0.1:6543/bench_floors``. Where the kernel has ``netem``, ``tc``
does this better; this machine's kernel has not.

Timers run on the event loop, whose resolution is about a millisecond (its ``select``
timeout): a delay below that is rounded up to it. The proxy prints the round trip it
measured through itself (``SELECT 1`` on PostgreSQL) before it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import deque


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    due: deque[tuple[float, bytes]] = deque()
    arrived = asyncio.Event()
    done = False

    async def send() -> None:
        while not (done and not due):
            if not due:
                arrived.clear()
                await arrived.wait()
                continue
            at, chunk = due[0]
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            due.popleft()
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while chunk := await reader.read(65536):
            due.append((loop.time() + delay, chunk))
            arrived.set()
    except ConnectionError:
        pass
    finally:
        done = True
        arrived.set()
        with contextlib.suppress(ConnectionError):
            await sender
        writer.close()


async def start(listen: int, target: int, delay: float) -> asyncio.Server:
    """The proxy, listening on ``listen`` (0: any free port) and forwarding to ``target``."""

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(client_r, server_w, delay), pipe(server_r, client_w, delay))

    return await asyncio.start_server(handle, "127.0.0.1", listen, backlog=512)


async def serve(listen: int, target: int, delay: float) -> None:
    async with await start(listen, target, delay) as server:
        print(f"round trip through the proxy: {await measure(listen) * 1000:.2f} ms", flush=True)
        await server.serve_forever()


async def measure(port: int) -> float:
    """The median of 50 ``SELECT 1`` through the proxy: what a round trip costs there."""

    def timed() -> float:
        import psycopg

        url = f"postgres://postgres@127.0.0.1:{port}/postgres"
        with psycopg.connect(url, autocommit=True) as connection:
            times = []
            for _ in range(50):
                started = time.perf_counter()
                connection.execute("SELECT 1")
                times.append(time.perf_counter() - started)
        return sorted(times)[len(times) // 2]

    return await asyncio.to_thread(timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=int, default=6543)
    parser.add_argument("--to", type=int, default=5432)
    parser.add_argument("--delay-ms", type=float, default=0.5, help="one way (default 0.5)")
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.to, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
