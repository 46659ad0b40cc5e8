"""channels-redis layers compared: RedisChannelLayer vs RedisPubSubChannelLayer, 1 or 3 hosts.

Run: ``.venv/bin/python bench/bench_layers.py [--receivers 400] [--events 300]``.

Starts its own ``redis-server`` processes on free loopback ports (nothing else is touched),
builds each layer with ``layers.redis_channel_layer`` and, in one process, measures:

* joining: ``group_add`` of every receiver (4 receivers per group, like 4 tabs on one
  payment page);
* publishing: ``group_send`` of events to random groups, the time until the member
  receives it (p50/p99) and the rate;
* Redis CPU per event (``used_cpu_sys + used_cpu_user`` from ``INFO``, summed over hosts);
* whether a member still receives after ``FLUSHDB`` (state loss) without joining again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis
from _common import summary
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from django_stripe_bridge.layers import redis_channel_layer
from tests.live import free_port

MEMBERS_PER_GROUP = 4


def start_redis(count: int) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    processes, urls = [], []
    for _ in range(count):
        port = free_port()
        processes.append(
            subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
                stdout=subprocess.DEVNULL,
            )
        )
        urls.append(f"redis://127.0.0.1:{port}/0")
    return processes, urls


async def wait_up(urls: list[str]) -> None:
    for url in urls:
        client = aioredis.from_url(url)
        for _ in range(100):
            try:
                await client.ping()
                break
            except Exception:
                await asyncio.sleep(0.05)
        await client.aclose()


async def redis_cpu(urls: list[str]) -> float:
    total = 0.0
    for url in urls:
        client = aioredis.from_url(url)
        info = await client.info("cpu")
        total += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        await client.aclose()
    return total


async def run_case(pubsub: bool, urls: list[str], receivers: int, events: int) -> str:
    config = redis_channel_layer(*urls, pubsub=pubsub, prefix="bench")["CONFIG"]
    layer = (RedisPubSubChannelLayer if pubsub else RedisChannelLayer)(**config)
    channels = [await layer.new_channel() for _ in range(receivers)]
    groups = [f"g{i // MEMBERS_PER_GROUP}" for i in range(receivers)]
    started = time.perf_counter()
    for channel, group in zip(channels, groups, strict=True):
        await layer.group_add(group, channel)
    join_ms = (time.perf_counter() - started) * 1000 / receivers

    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()
    expected = events * MEMBERS_PER_GROUP

    async def receive(channel: str) -> None:
        while True:
            message = await layer.receive(channel)
            latencies.append((time.perf_counter() - sent_at[message["n"]]) * 1000)
            if len(latencies) >= expected:
                done.set()

    tasks = [asyncio.ensure_future(receive(channel)) for channel in channels]
    await asyncio.sleep(0.5)
    cpu_before = await redis_cpu(urls)
    started = time.perf_counter()
    for n in range(events):
        sent_at[n] = time.perf_counter()
        await layer.group_send(random.choice(groups), {"type": "e", "n": n})
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 30)
    elapsed = time.perf_counter() - started
    cpu_ms = (await redis_cpu(urls) - cpu_before) * 1000 / events

    # State loss: flush every host, then publish once more to a group without re-joining.
    for url in urls:
        client = aioredis.from_url(url)
        await client.flushdb()
        await client.aclose()
    before = len(latencies)
    sent_at[events] = time.perf_counter()
    await layer.group_send(groups[0], {"type": "e", "n": events})
    await asyncio.sleep(1.0)
    survives = len(latencies) > before

    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if pubsub:
        await layer.flush()
    else:
        await layer.close_pools()
    name = "RedisPubSubChannelLayer" if pubsub else "RedisChannelLayer"
    got = min(len(latencies), expected)
    return (
        f"{name:24} hosts={len(urls)}  join {join_ms:.2f} ms/receiver  "
        f"{events / elapsed:7.0f} events/s  delivered {got}/{expected}  "
        f"latency {summary(latencies[:expected])}  Redis CPU {cpu_ms:.3f} ms/event  "
        f"after FLUSHDB: {'still delivers' if survives else 'memberships lost'}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--receivers", type=int, default=400)
    parser.add_argument("--events", type=int, default=300)
    args = parser.parse_args()
    processes, urls = start_redis(3)
    try:
        await wait_up(urls)
        for hosts in (urls[:1], urls):
            for pubsub in (False, True):
                print(await run_case(pubsub, hosts, args.receivers, args.events), flush=True)
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
