"""Shared pieces of the benchmarks: a live server, signed webhooks, percentiles."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django_stripe_bridge.testing import sign_payload
from tests.live import run_daphne  # noqa: F401

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


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")
