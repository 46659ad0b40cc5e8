"""Webhook ingest rate and latency against a live Daphne server.

Run: ``.venv/bin/python bench/bench_webhooks.py [--events 2000] [--concurrency 16]
[--database-url postgres://postgres@127.0.0.1:5432/test]``. Each event is a new
``charge.succeeded`` for its own charge, signed like Stripe signs it.
"""

from __future__ import annotations

import argparse
import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from _common import SERVER_ENV, WEBHOOK_PATH, charge_event, run_daphne, signed_headers, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    env = dict(SERVER_ENV)
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    with run_daphne(env) as server:
        local = threading.local()
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        lock = threading.Lock()

        def send(n: int) -> None:
            if not hasattr(local, "conn"):
                local.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            body = charge_event(n, f"ch_bench_{n:08d}")
            started = time.perf_counter()
            local.conn.request("POST", WEBHOOK_PATH, body, signed_headers(body))
            response = local.conn.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                statuses[response.status] = statuses.get(response.status, 0) + 1

        for n in range(20):  # warm up
            send(10_000_000 + n)
        latencies.clear()
        statuses.clear()
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(send, range(args.events)))
        elapsed = time.perf_counter() - started
        database = "PostgreSQL" if args.database_url else "SQLite"
        print(f"webhook ingest, {database}, {args.events} events, concurrency {args.concurrency}")
        print(f"  rate: {args.events / elapsed:.0f} events/s")
        print(f"  latency: {summary(latencies)}")
        print(f"  statuses: {statuses}")


if __name__ == "__main__":
    main()
