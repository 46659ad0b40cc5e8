"""Webhook-to-websocket latency with many subscribers, and memory per idle websocket.

Run: ``.venv/bin/python bench/bench_realtime.py [--subscribers 10 1000 10000]
[--redis-url redis://127.0.0.1:6379/0]``.

For each count N, N-1 sockets subscribe to other transactions and one to the target;
signed webhooks for the target are posted and the time until its subscriber receives the
message is measured. Per-id routing should keep that latency flat as N grows. The
server's resident memory before and after the sockets connect gives the cost of one idle
subscribed websocket.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
from urllib.parse import quote

from _common import (
    SERVER_ENV,
    WEBHOOK_PATH,
    charge_event,
    rss_kib,
    run_daphne,
    signed_headers,
    summary,
)

ROUNDS = 20
WARMUP = 3


async def open_subscriber(ws_url: str, origin: str, charge_id: str):
    import websockets

    selector = quote(f"id = '{charge_id}'")
    socket = await websockets.connect(
        f"{ws_url}/ws/stripe/?selector={selector}", origin=origin, max_queue=None
    )
    frame = json.loads(await socket.recv())
    if frame.get("type") != "subscribed":
        raise RuntimeError(f"unexpected first frame: {frame}")
    return socket


def post_webhook(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, body, signed_headers(body), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


async def run(count: int, server) -> None:
    origin = server.url
    sockets = []
    before = rss_kib(server.process.pid)
    target = f"ch_target_{count}_{time.time_ns()}"
    batch = 200
    for start in range(0, count - 1, batch):
        sockets += await asyncio.gather(
            *(
                open_subscriber(server.ws_url, origin, f"ch_other_{count}_{n}")
                for n in range(start, min(start + batch, count - 1))
            )
        )
    watcher = await open_subscriber(server.ws_url, origin, target)
    sockets.append(watcher)
    await asyncio.sleep(2)
    after = rss_kib(server.process.pid)

    latencies = []
    for n in range(-WARMUP, ROUNDS):
        body = charge_event(n + WARMUP, target)
        started = time.perf_counter()
        await asyncio.to_thread(post_webhook, server.url + WEBHOOK_PATH, body)
        while True:
            frame = json.loads(await asyncio.wait_for(watcher.recv(), 30))
            if frame.get("type") == "message" and not frame.get("replayed"):
                break
        if n >= 0:
            latencies.append((time.perf_counter() - started) * 1000)
    per_socket = (after - before) / count
    print(f"{count:>6} subscribers: webhook→websocket {summary(latencies)}")
    print(
        f"{'':>6}   server RSS +{(after - before) / 1024:.1f} MiB, {per_socket:.1f} KiB per socket"
    )
    await asyncio.gather(*(s.close() for s in sockets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[10, 1000, 10000])
    parser.add_argument("--redis-url", default=None, help="use channels-redis (default: in-memory)")
    args = parser.parse_args()
    env = dict(SERVER_ENV)
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    layer = "channels-redis" if args.redis_url else "in-memory layer"
    print(f"webhook-to-websocket latency, one Daphne process, {layer}, {ROUNDS} rounds each")
    for count in args.subscribers:
        with run_daphne(env) as server:
            asyncio.run(run(count, server))


if __name__ == "__main__":
    main()
