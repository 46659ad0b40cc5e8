"""Webhook load as a user would write it: httpx, keep-alive, in a process of its own.

``python bench/_httpx_load.py PORT PATH CONCURRENCY BODIES [--cpu N]`` reads the bodies
(the file ``BODIES`` holds a JSON list of them, as strings), signs each just before sending it,
POSTs them over ``CONCURRENCY`` keep-alive connections (each waits for its answer before
its next request) and prints ``{"count", "elapsed", "statuses"}`` as JSON. ``--cpu`` pins
the process to that CPU. The clock starts once every connection is open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path

import httpx
from _common import signed_headers


async def run(port: int, path: str, concurrency: int, bodies: list[bytes]) -> dict[str, object]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    url = f"http://127.0.0.1:{port}{path}"
    statuses: Counter[int] = Counter()
    pending = iter(bodies)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        # Open the connections first: one request each on a warm-up path, all at once.
        await asyncio.gather(*(client.get(f"http://127.0.0.1:{port}/") for _ in range(concurrency)))

        async def worker() -> None:
            for body in pending:
                response = await client.post(url, content=body, headers=signed_headers(body))
                statuses[response.status_code] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"count": sum(statuses.values()), "elapsed": elapsed, "statuses": dict(statuses)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("path")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("bodies", type=Path)
    parser.add_argument("--cpu", type=int)
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    bodies = [body.encode() for body in json.loads(args.bodies.read_text())]
    print(json.dumps(asyncio.run(run(args.port, args.path, args.concurrency, bodies))))


if __name__ == "__main__":
    main()
