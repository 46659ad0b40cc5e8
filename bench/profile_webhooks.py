"""Profile the server's webhook path under load with py-spy; write the top frames as text.

Run: ``.venv/bin/python bench/profile_webhooks.py [--server daphne] [--database-url …]
[--path bridge|floor] [--webhook-path view|asgi] [--body small|realistic|mixed] [--events 1500]
[--concurrency 16]
[--out bench/profiles/NAME.txt]``. Needs ``py-spy`` (``pip install py-spy``) and the right to
trace the server process (root, or ``kernel.yama.ptrace_scope`` 0).

py-spy samples the server (and its worker processes) while signed webhooks are sent;
samples of idle or waiting threads are left out, so the figures are shares of the server's
work. The summary lists functions by own time (the frame on top of the stack) and by
inclusive time (anywhere on the stack; a function counts once per sample).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from _bodies import BODIES, bodies
from _common import SERVER_ENV, WEBHOOK_PATH, run_server
from _load import http_request, post_all

FLOOR_WEBHOOK_PATH = "/bench/floor/webhook"
TOP = 40
LINE_NUMBER = re.compile(r":\d+\)$")
CAVEAT = (
    "A C call that waits for I/O or a lock without Python code (psycopg's Connection.wait, "
    "SQLite's execute behind BEGIN IMMEDIATE) counts as work: py-spy cannot tell."
)
#: Top frames of threads that wait (py-spy's idle detection misses some): not CPU.
WAITING = (
    "EpollSelector.select (",
    "Condition.wait (",
    "_worker (concurrent/futures/thread.py)",
    "Thread._wait_for_tstate_lock (",
    "Event.wait (",
)


def function(frame: str) -> str:
    """``name (file.py:12)`` → ``name (file.py)``: aggregate a function's lines."""
    return LINE_NUMBER.sub(")", frame.strip())


def package(name: str) -> str:
    """``send (redis/asyncio/client.py)`` → ``redis``: whose code a frame is."""
    path = name.rpartition("(")[2].rstrip(")")
    return path.split("/", 1)[0] if "/" in path else f"Python ({path})"


def summarize(raw: str, title: str) -> str:
    own: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = waiting = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [function(f) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith("process ")]  # the --subprocesses root
        if not frames:
            continue
        if frames[-1].startswith(WAITING):
            waiting += count
            continue
        total += count
        own[frames[-1]] += count
        by_package[package(frames[-1])] += count
        for name in set(frames):
            inclusive[name] += count
    lines = [
        title,
        f"{total} samples of the server at work ({waiting} more of threads waiting in select, "
        "a condition or the thread pool's queue, left out)",
        CAVEAT,
        "",
    ]
    bridge = Counter({n: c for n, c in inclusive.items() if "(django_stripe_bridge/" in n})
    for heading, counter in (
        ("packages by own time (whose code ran)", by_package),
        ("functions by own time", own),
        ("functions by inclusive time", inclusive),
        ("of the bridge's own functions by inclusive time", bridge),
    ):
        lines.append(f"top {TOP} {heading}:")
        for name, count in counter.most_common(TOP):
            lines.append(f"  {100 * count / max(total, 1):5.1f}%  {name}")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="daphne")
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--path", choices=["bridge", "floor"], default="bridge")
    parser.add_argument("--webhook-path", choices=["view", "asgi"], default="view")
    parser.add_argument("--body", choices=BODIES, default="small", help="the events sent")
    parser.add_argument("--events", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument(
        "--gil",
        action="store_true",
        help="sample only the thread holding the GIL: where the CPU goes, waits left out",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    env = {
        **SERVER_ENV,
        "DJANGO_SETTINGS_MODULE": "bench.floor.settings",
        "REDIS_URL": args.redis_url,
        "CHANNELS_REDIS_PREFIX": f"profile{int(time.time())}",
        "BENCH_WEBHOOK_PATH": args.webhook_path,
    }
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    path = WEBHOOK_PATH if args.path == "bridge" else FLOOR_WEBHOOK_PATH
    database = "PostgreSQL" if args.database_url else "SQLite"
    with run_server(
        args.server, env, app="bench.floor.asgi:application", access_log=False, stop_wait=2
    ) as live:

        def load(count: int, prefix: str) -> float:
            ids = [f"ch_{prefix}_{n}" for n in range(count)]
            requests = [http_request(live.port, path, raw) for raw in bodies(args.body, ids)]
            result = asyncio.run(post_all(live.port, requests, args.concurrency))
            if set(result.statuses) != {200}:
                raise SystemExit(f"non-200 answers: {dict(result.statuses)}")
            return result.count / result.elapsed

        load(50, "warm")
        raw_path = live.var_dir / "py-spy.raw"
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(live.process.pid),
                "--subprocesses",
                "--format",
                "raw",
                "--rate",
                str(args.rate),
                "--output",
                str(raw_path),
                "--nonblocking",
                *(["--gil"] if args.gil else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1)
        rate = load(args.events, "profiled")
        spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
        _, err = spy.communicate(timeout=60)
        if not raw_path.exists():
            raise SystemExit(f"py-spy wrote nothing: {err.decode(errors='replace')}")
        title = (
            f"{args.path} webhook ({args.webhook_path}) under {args.server}, {database}, Redis: "
            f"{args.events} {args.body} events at concurrency {args.concurrency}, "
            f"{rate:.0f} events/s while sampled ({time.strftime('%Y-%m-%d')})"
            + ("; only the thread holding the GIL sampled" if args.gil else "")
        )
        text = summarize(raw_path.read_text(), title)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
