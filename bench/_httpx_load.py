"""Webhook load as a user would write it: httpx, keep-alive, in a process of its own.

``python bench/_httpx_load.py PORT PATH CONCURRENCY BODIES [--cpu N] [--procs N]`` reads the
bodies (the file ``BODIES`` holds a JSON list of them, as strings), POSTs them over
``CONCURRENCY`` keep-alive connections (each waits for its answer before its next request)
and prints ``{"count", "elapsed", "statuses", "procs"}`` as JSON. ``--cpu`` pins the
process(es) to that CPU.

Lean on purpose, so that the client is not what is measured: every request is built and
signed before the clock starts (one ``httpx.Request`` each, headers included), the clock
starts once every connection is open, and a request then costs only ``AsyncClient.send``
and reading the answer. Each connection is its own ``AsyncClient`` with a pool of one (what
32 concurrent clients are; one pool of 32 costs more per request for the same answers), no
cookies kept, no retries, on uvloop when it is installed.

``--procs N`` (default 1) splits the connections and bodies over N such processes started
together (a deviation from "one process", reported as such by ``bench_floors.py``): the
elapsed time runs from the first one's start to the last one's end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from _common import signed_headers


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing: the server sets none, and extracting costs per answer."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


async def run(
    port: int, path: str, concurrency: int, bodies: list[bytes], ready: Any = None
) -> dict[str, Any]:
    """Send ``bodies`` over ``concurrency`` connections; ``ready`` (a barrier shared with the
    other processes) is passed once every connection is open."""
    url = f"http://127.0.0.1:{port}{path}"
    statuses: Counter[int] = Counter()
    clients = [
        httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1), retries=0
            ),
            timeout=60,
            trust_env=False,
        )
        for _ in range(concurrency)
    ]
    for client in clients:
        client._cookies = _NoCookies()
    # Every request built and signed before the clock starts, dealt to the connections in turn.
    queues: list[list[httpx.Request]] = [[] for _ in clients]
    for n, body in enumerate(bodies):
        client = clients[n % concurrency]
        queues[n % concurrency].append(
            client.build_request("POST", url, content=body, headers=signed_headers(body))
        )
    try:
        # Open the connections first: one request each on a warm-up path, all at once.
        await asyncio.gather(*(c.get(f"http://127.0.0.1:{port}/") for c in clients))
        if ready is not None:
            await asyncio.to_thread(ready.wait)

        async def worker(client: httpx.AsyncClient, requests: list[httpx.Request]) -> None:
            for request in requests:
                response = await client.send(request)
                statuses[response.status_code] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(c, q) for c, q in zip(clients, queues, strict=True)))
        ended = time.perf_counter()
    finally:
        for client in clients:
            await client.aclose()
    return {
        "count": sum(statuses.values()),
        "started": started,
        "ended": ended,
        "statuses": dict(statuses),
    }


def _event_loop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def _child(port, path, concurrency, bodies, cpu, ready, results) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    _event_loop()
    results.put(asyncio.run(run(port, path, concurrency, bodies, ready)))


def load(
    port: int,
    path: str,
    concurrency: int,
    bodies: list[bytes],
    procs: int = 1,
    cpu: int | None = None,
) -> dict[str, Any]:
    """The whole load, from one process or ``procs`` of them; the figures as printed."""
    if procs <= 1:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        _event_loop()
        parts = [asyncio.run(run(port, path, concurrency, bodies))]
    else:
        context = multiprocessing.get_context("fork")
        ready = context.Barrier(procs)
        results = context.Queue()
        children = [
            context.Process(
                target=_child,
                args=(
                    port,
                    path,
                    concurrency // procs + (k < concurrency % procs),
                    bodies[k::procs],
                    cpu,
                    ready,
                    results,
                ),
            )
            for k in range(procs)
        ]
        for child in children:
            child.start()
        parts = [results.get(timeout=600) for _ in children]
        for child in children:
            child.join()
    statuses: Counter[int] = Counter()
    for part in parts:
        statuses.update({int(s): n for s, n in part["statuses"].items()})
    elapsed = max(p["ended"] for p in parts) - min(p["started"] for p in parts)
    return {
        "count": sum(statuses.values()),
        "elapsed": elapsed,
        "statuses": dict(statuses),
        "procs": procs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("path")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("bodies", type=Path)
    parser.add_argument("--cpu", type=int)
    parser.add_argument("--procs", type=int, default=1, help="load processes (default 1)")
    args = parser.parse_args()
    bodies = [body.encode() for body in json.loads(args.bodies.read_text())]
    figures = load(args.port, args.path, args.concurrency, bodies, args.procs, args.cpu)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
