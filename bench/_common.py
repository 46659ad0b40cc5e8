"""Shared pieces of the benchmarks: a live server, signed webhooks, percentiles, process cost."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django_stripe_bridge.testing import sign_payload
from tests.live import run_daphne, run_server  # noqa: F401

WEBHOOK_PATH = "/api/services/Stripe/webhooks/handler"
SECRET = "whsec_bench_secret"

#: Environment of the benchmarked server: demo settings, production-like.
SERVER_ENV = {
    "STRIPE_WEBHOOK_SECRET": SECRET,
    "STRIPE_API_KEY": "sk_test_bench",
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "bench-secret-key",
}


def charge_event(n: int, charge_id: str, event_type: str = "charge.succeeded") -> bytes:
    """A signed-ready JSON body of a charge event."""
    event = {
        "id": f"evt_bench_{n:08d}_{time.time_ns()}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "type": event_type,
        "data": {
            "object": {
                "id": charge_id,
                "object": "charge",
                "amount": 1000,
                "amount_refunded": 0,
                "currency": "usd",
                "status": "succeeded",
                "paid": True,
            }
        },
    }
    return json.dumps(event).encode()


def signed_headers(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "Stripe-Signature": sign_payload(body, SECRET)}


def summary(values_ms: list[float]) -> str:
    values = sorted(values_ms)
    if not values:
        return "no samples"

    def pct(p: float) -> float:
        return values[min(len(values) - 1, int(p / 100 * len(values)))]

    return (
        f"p50 {statistics.median(values):.1f} ms, p95 {pct(95):.1f} ms, "
        f"p99 {pct(99):.1f} ms, max {values[-1]:.1f} ms"
    )


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux): Hypercorn and Granian serve from child processes."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by a process and its descendants (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its descendants, in KiB (Linux)."""
    total = 0
    for member in process_tree(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in lines if line.startswith("VmRSS:")), 0)
    return total
