"""Where the ingest's CPU goes, per event, without a server: robust to a busy machine.

Runs the bridge's webhook path in this process on a new SQLite file (or ``--database-url``),
in group-commit batches as the server forms them, and prints the CPU time per event of each
stage (process time, this thread only: other load on the machine does not count), then, with
``--profile``, the top functions by ``cProfile``. The floor's view is timed alike (its HMAC,
parse, ORM insert and the channel-layer send), so the two can be compared stage by stage.

    .venv/bin/python bench/ingest_costs.py --body realistic --events 1600 --batch 16
    .venv/bin/python bench/ingest_costs.py --body mixed --profile 30

Needs Redis (``--redis-url``, default ``REDIS_URL``) for the channel layer, as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bodies import BODIES, bodies
from _common import SECRET, SERVER_ENV, signed_headers


def setup(database_url: str | None, redis_url: str) -> None:
    var = tempfile.mkdtemp(prefix="ingest-costs-")
    os.environ.update(SERVER_ENV)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.floor.settings",
            "DEMO_VAR_DIR": var,
            "DATABASE_URL": database_url or f"sqlite:///{var}/demo.sqlite3",
            "REDIS_URL": redis_url,
            "CHANNELS_REDIS_PREFIX": f"costs{os.getpid()}",
        }
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--body", choices=BODIES, default="realistic")
    parser.add_argument("--events", type=int, default=1600)
    parser.add_argument("--batch", type=int, default=16, help="events per group commit")
    parser.add_argument("--database-url")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/8")
    )
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions")
    args = parser.parse_args()
    setup(args.database_url, args.redis_url)

    from django_stripe_bridge import messaging, webhooks
    from django_stripe_bridge.conf import bridge_settings
    from django_stripe_bridge.group_commit import MAX_BATCH
    from django_stripe_bridge.quarantine import ingest_isolating

    raw = bodies(args.body, [f"x{n}" for n in range(args.events + 64)])
    warm, raw = raw[:64], raw[64:]
    signed = [(body, signed_headers(body)["Stripe-Signature"]) for body in raw]
    warm_signed = [(body, signed_headers(body)["Stripe-Signature"]) for body in warm]
    secrets = [SECRET]
    tolerance = bridge_settings.WEBHOOK_TOLERANCE
    stages: dict[str, float] = {}

    def timed(name: str, function, *a):
        started = time.process_time()
        result = function(*a)
        stages[name] = stages.get(name, 0.0) + time.process_time() - started
        return result

    def receive(body: bytes, header: str):
        webhooks.verify_signature(body, header, secrets, tolerance)
        return webhooks.parse_event(body)

    loop = asyncio.new_event_loop()

    def run(items, count: bool) -> None:
        """What the server does, stage by stage, in this one thread: the committer's thread
        stores a batch (``ingest_isolating``), the event loop publishes it, and the events
        sent are marked published together (a busy server: ``MAX_BATCH`` of them at a time)."""
        marks: list = []
        step = timed if count else (lambda _name, function, *a: function(*a))
        for start in range(0, len(items), args.batch):
            chunk = items[start : start + args.batch]
            events = [step("verify, parse, validate", receive, b, h) for b, h in chunk]
            if len(marks) >= MAX_BATCH:
                step("mark published", messaging.mark_published, marks)
                marks = []
            results = step(
                "store (one transaction)", lambda e: ingest_isolating(e, publish=False), events
            )
            items_sent = [(r.event, r.transaction) for r in results if r.created]
            marks += step("publish", loop.run_until_complete, messaging.asend_events(items_sent))
        step("mark published", messaging.mark_published, marks)

    run(warm_signed, False)
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    cpu = time.process_time()
    if profiler:
        profiler.enable()
    run(signed, True)
    if profiler:
        profiler.disable()
    total = time.process_time() - cpu
    n = len(signed)
    print(
        f"{args.body}: {n} events, batches of {args.batch}, {Path(os.environ['DATABASE_URL']).name}"
    )
    print(f"  CPU {1000 * total / n:.3f} ms/event")
    for name, seconds in stages.items():
        print(f"  {name:<28} {1000 * seconds / n:.3f} ms/event")
    size = sum(len(b) for b, _ in signed) / n
    print(f"  mean body {size:.0f} bytes")
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(args.profile)
        stats.sort_stats("cumulative").print_stats(args.profile)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
