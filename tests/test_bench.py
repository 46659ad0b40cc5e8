"""The benchmark harness at tiny sizes (``bench/bench_floors.py --quick``), so that it cannot rot.

It starts a real server with the floor app beside the bridge, sends signed webhooks to both,
opens subscribed websockets to both and reads the server's CPU time and memory.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.live import ROOT

pytestmark = pytest.mark.redis

MEASURES = {
    "ingest events/s",
    "ingest server CPU ms/event",
    "connect+subscribe+replay /s",
    "connect server CPU ms/socket",
    "storm of 30: seconds",
    "memory KiB/idle socket",
    "latency p50 ms",
    "latency p99 ms",
}


def run_bench(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "bench/bench_floors.py", "--quick", "--redis-url", redis_url, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def asgi_webhook_exists() -> bool:
    try:
        return importlib.util.find_spec("django_stripe_bridge.asgi") is not None
    except ImportError:
        return False


def check_report(result: subprocess.CompletedProcess[str], out) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["problems"] == []
    measured = {row["measure"] for row in report["rows"]}
    assert measured == MEASURES
    for row in report["rows"]:
        assert row["server"] == "daphne"
        assert row["bridge"] and row["floor"], row
        # A quick run's few sockets may fit in pages the process already has: growth 0.
        least = 0 if row["measure"].startswith("memory") else 1e-9
        assert all(value >= least for value in row["bridge"] + row["floor"]), row
    assert "ratio" in result.stdout
    # The load's own ceiling, measured on the same server before each ingest setting.
    ingest_settings = {
        (r["server"], r["setting"]) for r in report["rows"] if "ingest" in r["measure"]
    }
    ceilings = {(c["server"], c["setting"]): c["requests/s"] for c in report["ceilings"]}
    assert set(ceilings) == ingest_settings and all(rate > 0 for rate in ceilings.values())
    assert "load ceiling" in result.stdout


def test_quick_bench_measures_every_part_against_its_floor(redis_url, tmp_path):
    out = tmp_path / "bench.json"
    check_report(run_bench(redis_url, "--servers", "daphne", "--json", str(out)), out)


def test_asgi_webhook_path_is_benchmarked_or_refused_clearly(redis_url, tmp_path):
    """``--webhook-path asgi`` measures ``with_stripe_webhook`` once the package has it;
    until then the server refuses to start with a message that says why."""
    out = tmp_path / "bench.json"
    args = ("--servers", "daphne", "--webhook-path", "asgi", "--json", str(out))
    result = run_bench(redis_url, *args)
    if asgi_webhook_exists():
        check_report(result, out)
    else:
        assert result.returncode != 0
        assert "BENCH_WEBHOOK_PATH=asgi needs django_stripe_bridge.asgi.with_stripe_webhook" in (
            result.stdout + result.stderr
        )


def test_sockets_bench_runs_at_tiny_sizes(redis_url, tmp_path):
    """``bench/bench_sockets.py`` (many idle sockets on one process) at 40 sockets, so that
    its harness keeps working: client processes, a staff session, the latency and the
    broadcast through the real webhook path, and figures for the bridge and the bare consumer."""
    out = tmp_path / "sockets.json"
    sizes = ["--sockets", "40", "--clients", "2", "--rounds", "3", "--broadcasts", "1"]
    options = ["--servers", "uvicorn", "--idle", "0.5", "--no-pin", "--json", str(out)]
    result = subprocess.run(
        [sys.executable, "bench/bench_sockets.py", *sizes, *options, "--redis-url", redis_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())["uvicorn"]
    assert figures["bridge"]["kib_per_socket"] > 0 and figures["bare"]["kib_per_socket"] > 0
    assert len(figures["bridge"]["latency_n"]) == 3 and len(figures["bare"]["latency_n"]) == 3
    assert len(figures["bridge"]["broadcast_ms"]) == 1
    assert "RSS KiB per idle socket" in result.stdout
