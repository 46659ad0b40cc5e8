"""The bridge against its floors, in one run, from alternating rounds; prints bridge/floor ratios.

Floors (bench/floor/): a naive Django webhook view (read the body, check one HMAC, insert one
row, ``group_send`` once) and a bare Channels consumer (one group per id, the id's latest row
on connect). One server process serves the bridge and its floor with the same settings,
database and channel layer (Redis), so each round pair differs only in the code measured.

For each server (Daphne, Uvicorn, Hypercorn, Granian):

- ingest, on each database, at each concurrency: events/s and server CPU ms per event;
- connect + subscribe + replay rate (and server CPU ms per connection);
- reconnect storm: N subscribed clients lose their connections and all reconnect at once;
  the time until every one has its current status (replayed);
- server memory per idle subscribed socket (RSS, alternating batches of bridge and floor
  sockets on a fresh server);
- webhook → websocket latency p50/p99 with few and many subscribers on other ids.

Full run (about half an hour on 2 cores; PostgreSQL and Redis on 127.0.0.1, see --help)::

    .venv/bin/python bench/bench_floors.py

``--quick`` runs every part at tiny sizes, on one SQLite server, in seconds.
``--body realistic`` posts Stripe-sized events (a PaymentIntent of ~2.8 KB, a charge of
~4.2 KB, one new transaction each; ``mixed``: a payment's 4 to 6 events together), built from
the Stripe corpus's fixture objects (``bench/_bodies.py``); ``small`` (the default) a
~300-byte charge. ``--load httpx`` sends the ingest load with httpx keep-alive clients in
a process of their own (``bench/_httpx_load.py``) rather than from this one; ``--pin``
pins the server to CPU 0 and the load to CPU 1 (as ``taskset`` would). Before each ingest
setting's rounds the load's own ceiling is measured on the same server and placement, against
a path that only answers 200 (``bench/floor/asgi.py``'s ``OK_PATH``); a bridge rate within
80% of it is flagged ``client-bound``: the load, not the bridge, set it. ``--load-procs N``
spreads the httpx load over N processes (a deviation from issue 20's one, said in the output).
``--webhook-path asgi`` serves the bridge's webhook through
``django_stripe_bridge.asgi.with_stripe_webhook`` instead of the Django view
(``BENCH_WEBHOOK_PATH``). The PostgreSQL database is dropped and created anew:
its name must start with ``bench_``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from _bodies import BODIES, bodies
from _common import (
    SERVER_ENV,
    WEBHOOK_PATH,
    charge_event,
    cpu_seconds,
    process_tree,
    rss_kib,
    run_server,
)
from _load import (
    Load,
    close,
    drop,
    http_request,
    next_frame,
    post_all,
    read_response,
    subscribe_many,
)

FLOOR_WEBHOOK_PATH = "/bench/floor/webhook"
#: ``bench/floor/asgi.py``'s path that answers 200 at once: the load's ceiling.
OK_PATH = "/bench/ok"
#: A bridge rate at this share of the load's ceiling or above is flagged client-bound.
CLIENT_BOUND = 0.8
KINDS = ("bridge", "floor")
BENCH_APP = "bench.floor.asgi:application"
#: With ``--pin``: the server's CPU and the load's.
SERVER_CPU, LOAD_CPU = 0, 1


@dataclass
class Sizes:
    """How much each part does."""

    events: int = 600
    rounds: int = 3
    concurrency: tuple[int, ...] = (16, 64)
    ids: int = 1000
    connects: int = 1000
    connect_limit: int = 50
    storm: int = 5000
    storm_rounds: int = 2
    #: Seconds a storm's clients keep retrying before the round counts as failed.
    storm_timeout: float = 300.0
    memory: tuple[int, ...] = (1000, 10000)
    latency: tuple[int, ...] = (10, 10000)
    latency_rounds: int = 20
    warmup: int = 30
    #: Memory is read after this many alternating batches, each after ``settle`` seconds.
    batches: int = 10
    settle: float = 0.5
    #: A new server for the realtime parts and for each socket count (a clean memory baseline).
    fresh_servers: bool = True


QUICK = Sizes(
    events=30,
    rounds=1,
    concurrency=(4,),
    ids=10,
    connects=20,
    connect_limit=10,
    storm=30,
    storm_rounds=1,
    storm_timeout=30.0,
    memory=(20,),
    latency=(2, 20),
    latency_rounds=3,
    warmup=5,
    batches=2,
    settle=0.05,
    fresh_servers=False,
)
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/bench_floors"


@dataclass
class Report:
    """Measurements by (part, server, setting, kind), printed as ratios at the end."""

    rows: dict[tuple[str, str, str], dict[str, list[float]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: The load's requests/s against ``OK_PATH``, by (server, setting) of the ingest rounds.
    ceilings: dict[tuple[str, str], float] = field(default_factory=dict)

    def add(self, part: str, server: str, setting: str, kind: str, value: float) -> None:
        key = (part, server, setting)
        self.rows.setdefault(key, {k: [] for k in KINDS})[kind].append(value)

    def client_bound(self, server: str, setting: str, bridge_rate: float) -> bool:
        """Whether the bridge's rate came within ``CLIENT_BOUND`` of the load's ceiling."""
        ceiling = self.ceilings.get((server, setting))
        return ceiling is not None and bridge_rate >= CLIENT_BOUND * ceiling

    def table(self) -> str:
        lines = [
            f"{'measure (ratio = bridge/floor)':<34} {'server':<10} {'setting':<28} "
            f"{'bridge':>9} {'floor':>9} {'ratio':>6}  better  load ceiling"
        ]
        for (part, server, setting), values in self.rows.items():
            bridge, floor = (
                statistics.median(values[k]) if values[k] else float("nan") for k in KINDS
            )
            ratio = bridge / floor if floor else float("nan")
            better = "higher" if part.endswith("/s") else "lower"
            note = ""
            ceiling = self.ceilings.get((server, setting))
            if part == "ingest events/s" and ceiling is not None:
                note = f"  {ceiling:.0f}/s"
                if self.client_bound(server, setting, bridge):
                    note += " client-bound"
            lines.append(
                f"{part:<34} {server:<10} {setting:<28} {bridge:>9.2f} {floor:>9.2f} "
                f"{ratio:>6.2f}  {better:<6}{note}"
            )
        return "\n".join(lines)

    def ingest_targets(self) -> str:
        """Issue 20's targets for each ingest setting measured, as a Markdown table."""
        lines = []
        for (part, server, setting), values in self.rows.items():
            if part != "ingest events/s" or not values["bridge"] or not values["floor"]:
                continue
            cpu = self.rows.get(("ingest server CPU ms/event", server, setting))
            rate = statistics.median(values["bridge"]) / statistics.median(values["floor"])
            cpu_ratio = (
                statistics.median(cpu["bridge"]) / statistics.median(cpu["floor"])
                if cpu and cpu["bridge"] and cpu["floor"]
                else float("nan")
            )
            met = rate >= RATE_TARGET and cpu_ratio <= CPU_TARGET
            ceiling = self.ceilings.get((server, setting))
            bound = self.client_bound(server, setting, statistics.median(values["bridge"]))
            lines.append(
                f"| {server} | {setting} | {rate:.2f}x | {cpu_ratio:.2f} | "
                f"{f'{ceiling:.0f}/s' if ceiling else '?'} | "
                f"{'met' if met else 'not met'}{' (client-bound)' if bound else ''} |"
            )
        if not lines:
            return ""
        head = [
            "| server | setting | events/s (≥ 3x) | CPU/event (≤ 0.33) | load ceiling | targets |",
            "|---|---|---|---|---|---|",
        ]
        return "\n".join(head + lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": [
                {"measure": part, "server": server, "setting": setting, **values}
                for (part, server, setting), values in self.rows.items()
            ],
            "problems": self.problems,
            "ceilings": [
                {"server": server, "setting": setting, "requests/s": rate}
                for (server, setting), rate in self.ceilings.items()
            ],
        }


class Budget:
    """A wall-clock budget: parts that would start after it is spent are skipped."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> bool:
        return time.monotonic() < self.deadline


def say(text: str) -> None:
    print(text, flush=True)


def alternate(rounds: int, kinds: tuple[str, ...] = KINDS) -> Iterator[tuple[int, str]]:
    """(round, kind): bridge, floor, bridge, floor, …"""
    for n in range(rounds):
        for kind in kinds:
            yield n, kind


# -- the server -----------------------------------------------------------------------------


def postgres_scratch(url: str) -> None:
    """Drop and create the scratch database ``url`` names (``bench_*`` only)."""
    import psycopg

    name = urlparse(url).path.lstrip("/")
    if not name.startswith("bench_"):
        raise SystemExit(f"--postgres-url must name a scratch database bench_*, not {name!r}")
    admin = urlparse(url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


@contextlib.contextmanager
def bench_server(server: str, args: argparse.Namespace, database_url: str | None) -> Iterator[Any]:
    env = {
        **SERVER_ENV,
        "DJANGO_SETTINGS_MODULE": "bench.floor.settings",
        "REDIS_URL": args.redis_url,
        "CHANNELS_REDIS_PREFIX": args.prefix,
        "BENCH_WEBHOOK_PATH": args.webhook_path,
        "CHANNELS_REDIS_PUBSUB": "1" if args.layer == "pubsub" else "",
        "STRIPE_CHARGE_THROTTLE_RATE": "off",
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    with run_server(server, env, app=BENCH_APP, access_log=args.access_log, stop_wait=2) as live:
        if args.placements == ["pinned"]:
            place(live.process.pid, "pinned")
        yield live


#: Every CPU this process may use, as it started (``--pin``'s unpinned placement).
ALL_CPUS = frozenset(os.sched_getaffinity(0))


def place(pid: int, placement: str) -> None:
    """``pinned``: the server (``pid`` and its children) on CPU 0, this process (and so the
    load it starts) on CPU 1; ``unpinned``: both on every CPU."""
    if placement == "pinned":
        pin(pid, SERVER_CPU)
        os.sched_setaffinity(0, {LOAD_CPU})
    else:
        pin(pid, set(ALL_CPUS))
        os.sched_setaffinity(0, ALL_CPUS)


def pin(pid: int, cpus: int | set[int]) -> None:
    """Pin every thread of ``pid`` and its descendants to ``cpus`` (``taskset -a -p``);
    threads started later inherit it."""
    allowed = {cpus} if isinstance(cpus, int) else cpus
    for member in process_tree(pid):
        for task in Path(f"/proc/{member}/task").iterdir():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task.name), allowed)


def webhook_path(kind: str) -> str:
    """The path of ``kind``: ``bridge``, ``floor``, or ``ok`` (the load's ceiling)."""
    return {"bridge": WEBHOOK_PATH, "ok": OK_PATH}.get(kind, FLOOR_WEBHOOK_PATH)


def webhook_requests(port: int, kind: str, object_ids: list[str], body: str = "small"):
    """Ready-to-send requests, one per id (``body``: see ``bench/_bodies.py``)."""
    path = webhook_path(kind)
    return [http_request(port, path, raw) for raw in bodies(body, object_ids)]


def ws_url(live: Any, kind: str, object_id: str, replay: bool) -> str:
    mode = "latest" if replay else "none"
    if kind == "bridge":
        selector = quote(f"id = '{object_id}'")
        return f"{live.ws_url}/ws/stripe/?selector={selector}&replay={mode}"
    return f"{live.ws_url}/bench/floor/ws/?id={object_id}&replay={mode}"


async def post(
    live: Any,
    kind: str,
    object_ids: list[str],
    concurrency: int,
    report: Report,
    args: argparse.Namespace | None = None,
    body: str = "small",
    placement: str = "unpinned",
):
    if args and args.load == "httpx":
        raw = bodies(body, object_ids)
        load = await httpx_load(live, kind, raw, concurrency, args, placement)
    else:
        requests = webhook_requests(live.port, kind, object_ids, body)
        load = await post_all(live.port, requests, concurrency)
    failed = {s: n for s, n in load.statuses.items() if s != 200}
    if failed:
        report.problems.append(f"{live.kind} {kind}: non-200 answers {failed}")
    return load


async def httpx_load(
    live: Any,
    kind: str,
    raw: list[bytes],
    concurrency: int,
    args: argparse.Namespace,
    placement: str = "unpinned",
) -> Load:
    """The same requests from httpx keep-alive clients in a process of their own."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump([body.decode() for body in raw], file)
    command = [sys.executable, str(Path(__file__).with_name("_httpx_load.py"))]
    command += [str(live.port), webhook_path(kind), str(concurrency), file.name]
    if placement == "pinned":
        command += ["--cpu", str(LOAD_CPU)]
    command += ["--procs", str(args.load_procs)]
    try:
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=600, check=True
        )
    finally:
        os.unlink(file.name)
    result = json.loads(done.stdout)
    load = Load(elapsed=result["elapsed"])
    load.statuses.update({int(s): n for s, n in result["statuses"].items()})
    return load


# -- parts ----------------------------------------------------------------------------------


async def ingest(live: Any, database: str, sizes: Sizes, report: Report, budget: Budget, args):
    """Alternating rounds of each placement, body and concurrency, after a warm-up of each
    body (imports, connections, caches)."""
    pid = live.process.pid
    for placement in args.placements:
        place(pid, placement)
        for body in args.bodies:
            for kind in KINDS:
                warm = [f"ch_warm_{placement}_{body}_{kind}_{n}" for n in range(sizes.warmup)]
                await post(live, kind, warm, 4, report, args, body, placement)
            for concurrency in sizes.concurrency:
                setting = f"{database} c={concurrency} {body}"
                setting += " pinned" if placement == "pinned" else ""
                if args.load == "httpx" and args.load_procs > 1:
                    setting += f" procs={args.load_procs}"
                if not budget.left():
                    report.problems.append(
                        f"ingest {live.kind} {setting} and after: time budget spent"
                    )
                    return
                await load_ceiling(live, setting, sizes, concurrency, report, args, body, placement)
                for n, kind in alternate(sizes.rounds):
                    if not budget.left():
                        report.problems.append(
                            f"ingest {live.kind} {setting} and after: time budget spent"
                        )
                        return
                    ids = [
                        f"ch_{kind}_{placement}_{body}_{concurrency}_{n}_{i}"
                        for i in range(sizes.events)
                    ]
                    cpu = cpu_seconds(pid)
                    load = await post(live, kind, ids, concurrency, report, args, body, placement)
                    cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / load.count
                    rate = load.count / load.elapsed
                    report.add("ingest events/s", live.kind, setting, kind, rate)
                    report.add("ingest server CPU ms/event", live.kind, setting, kind, cpu_ms)
                    say(
                        f"  ingest {live.kind:<9} {setting:<28} {kind:<6} round {n}: "
                        f"{rate:7.1f} events/s, {cpu_ms:6.2f} ms CPU/event"
                    )


async def load_ceiling(
    live: Any,
    setting: str,
    sizes: Sizes,
    concurrency: int,
    report: Report,
    args: argparse.Namespace,
    body: str,
    placement: str,
) -> None:
    """The load's own ceiling for ``setting``: the same requests, load and placement against
    a path of the same server that reads the body and answers 200 at once."""
    ids = [f"ch_ok_{placement}_{body}_{concurrency}_{i}" for i in range(sizes.events)]
    load = await post(live, "ok", ids, concurrency, report, args, body, placement)
    rate = load.count / load.elapsed
    report.ceilings[(live.kind, setting)] = rate
    say(f"  ingest {live.kind:<9} {setting:<28} load ceiling (answer only): {rate:7.1f} req/s")


async def seed(live: Any, sizes: Sizes, report: Report) -> list[str]:
    """One stored event per id for both kinds, so that every subscriber has a status."""
    ids = [f"ch_seed_{i}" for i in range(sizes.ids)]
    for kind in KINDS:
        await post(live, kind, ids, 8, report)
    return ids


async def connect_rate(live: Any, ids: list[str], sizes: Sizes, report: Report, budget: Budget):
    for n, kind in alternate(sizes.rounds):
        if not budget.left():
            report.problems.append(f"connect rate {live.kind}: time budget spent")
            return
        urls = [ws_url(live, kind, ids[i % len(ids)], True) for i in range(sizes.connects)]
        cpu = cpu_seconds(live.process.pid)
        sockets, elapsed, _ = await subscribe_many(urls, live.url, True, sizes.connect_limit)
        cpu_ms = (cpu_seconds(live.process.pid) - cpu) * 1000 / len(urls)
        await close(sockets)
        rate = len(urls) / elapsed
        setting = f"{sizes.connect_limit} at a time"
        report.add("connect+subscribe+replay /s", live.kind, setting, kind, rate)
        report.add("connect server CPU ms/socket", live.kind, setting, kind, cpu_ms)
        say(f"  connect {live.kind:<9} {kind:<6} round {n}: {rate:7.1f} /s, {cpu_ms:6.2f} ms CPU")


async def storm(live: Any, ids: list[str], sizes: Sizes, report: Report, budget: Budget):
    for n, kind in alternate(sizes.storm_rounds):
        if not budget.left():
            report.problems.append(f"storm {live.kind}: time budget spent")
            return
        urls = [ws_url(live, kind, ids[i % len(ids)], True) for i in range(sizes.storm)]
        sockets, _, _ = await subscribe_many(urls, live.url, True, 100, sizes.storm_timeout)
        await drop(sockets)
        sockets, elapsed, failed = await subscribe_many(
            urls, live.url, True, None, sizes.storm_timeout
        )
        await close(sockets)
        report.add(f"storm of {sizes.storm}: seconds", live.kind, "all at once", kind, elapsed)
        say(
            f"  storm   {live.kind:<9} {kind:<6} round {n}: {sizes.storm} back in {elapsed:.2f} s "
            f"({failed} failed attempts retried)"
        )
        await asyncio.sleep(sizes.settle * 2)  # the server finishes the disconnects first


async def sockets_and_latency(
    live: Any,
    count: int,
    sizes: Sizes,
    report: Report,
    budget: Budget,
    kinds: tuple[str, ...] = KINDS,
) -> None:
    """``count`` subscribed sockets of each of ``kinds`` (batches alternate), then latency
    rounds (alternating)."""
    pid = live.process.pid
    memory = count in sizes.memory
    open_sockets: list[Any] = []
    targets = {}
    for kind in kinds:
        socks, _, _ = await subscribe_many(
            [ws_url(live, kind, f"ch_warm_socket_{i}", False) for i in range(10)], live.url, False
        )
        open_sockets += socks
        targets[kind] = f"ch_target_{kind}_{count}"
    await asyncio.sleep(sizes.settle * 2)
    batches = sizes.batches if memory else 1
    grown = {k: 0 for k in kinds}
    others = count - 1
    for b in range(batches):
        for kind in kinds:
            lo, hi = others * b // batches, others * (b + 1) // batches
            urls = [ws_url(live, kind, f"ch_other_{kind}_{i}", False) for i in range(lo, hi)]
            before = rss_kib(pid)
            socks, _, _ = await subscribe_many(urls, live.url, False, 200, 120)
            open_sockets += socks
            await asyncio.sleep(sizes.settle if memory else 0)
            grown[kind] += rss_kib(pid) - before
    watchers = {}
    for kind in kinds:
        socks, _, _ = await subscribe_many(
            [ws_url(live, kind, targets[kind], False)], live.url, False
        )
        watchers[kind] = socks[0]
        open_sockets += socks
    if memory:
        for kind in kinds:
            per_socket = grown[kind] / max(others, 1)
            report.add("memory KiB/idle socket", live.kind, f"{count} sockets", kind, per_socket)
            say(f"  memory  {live.kind:<9} {kind:<6} {count} sockets: {per_socket:.1f} KiB each")
    if count in sizes.latency:
        await latency(live, count, targets, watchers, sizes, report, budget, kinds)
    await close(open_sockets)


async def latency(live, count, targets, watchers, sizes, report, budget, kinds) -> None:
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    try:
        for n, kind in alternate(sizes.latency_rounds + 3, kinds):
            if not budget.left():
                report.problems.append(f"latency {live.kind} {count}: time budget spent")
                break
            path = WEBHOOK_PATH if kind == "bridge" else FLOOR_WEBHOOK_PATH
            body = charge_event(n, targets[kind])
            event_id = json.loads(body)["id"]
            started = time.perf_counter()
            writer.write(http_request(live.port, path, body))
            status, _, _ = await asyncio.wait_for(read_response(reader), 60)
            if status != 200:
                report.problems.append(f"latency {live.kind} {kind}: webhook answered {status}")
                continue
            while True:
                frame = await next_frame(watchers[kind])
                got = frame.get("event_id") or frame.get("headers", {}).get("event_id")
                if frame.get("type") == "message" and got == event_id:
                    break
            if n >= 3:  # the first three pairs warm up
                samples[kind].append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()
    for kind in kinds:
        values = sorted(samples[kind])
        if not values:
            continue
        p50 = statistics.median(values)
        p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
        report.add("latency p50 ms", live.kind, f"{count} subscribers", kind, p50)
        report.add("latency p99 ms", live.kind, f"{count} subscribers", kind, p99)
        say(
            f"  latency {live.kind:<9} {kind:<6} {count} subscribers: "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )


# -- the run --------------------------------------------------------------------------------


def raise_file_limit() -> int:
    """Raise this process's file limit (inherited by the servers) as far as allowed; return
    it. Each socket is a file descriptor in the client and in the server."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (1 << 20, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
            return want
        except (ValueError, OSError):
            continue
    return soft


FILE_LIMIT = 1024


async def guarded(report: Report, what: str, part: Any) -> Any:
    """Run one part; a failure is reported and the run goes on with the next part."""
    try:
        return await part
    except Exception as error:
        report.problems.append(f"{what} failed: {error!r}"[:500])
        say(f"  {what} failed: {error!r}"[:500])
        return None


async def run_server_parts(server: str, args, sizes: Sizes, report: Report, budget: Budget):
    async with contextlib.AsyncExitStack() as stack:

        def sqlite_server() -> Any:
            """A new SQLite server, or with ``fresh_servers`` off the one already running."""
            if sizes.fresh_servers or not shared:
                shared[:] = [stack.enter_context(bench_server(server, args, None))]
            return shared[0]

        shared: list[Any] = []
        if args.parts in ("all", "ingest") and args.postgres_url:
            postgres_scratch(args.postgres_url)
            with bench_server(server, args, args.postgres_url) as live:
                say(f"{server}, PostgreSQL: ingest")
                await guarded(
                    report,
                    f"{server} PostgreSQL ingest",
                    ingest(live, "postgresql", sizes, report, budget, args),
                )
        if args.parts in ("all", "ingest") and not (args.no_sqlite and args.parts == "ingest"):
            live = sqlite_server()
            say(f"{server}, SQLite: ingest")
            await guarded(
                report,
                f"{server} SQLite ingest",
                ingest(live, "sqlite", sizes, report, budget, args),
            )
        if args.parts == "ingest":
            return
        live = sqlite_server()
        say(f"{server}: connect + subscribe + replay, reconnect storm (SQLite, Redis)")
        ids = await seed(live, sizes, report)
        await guarded(
            report, f"{server} connect rate", connect_rate(live, ids, sizes, report, budget)
        )
        if args.parts == "connect":
            return
        await guarded(report, f"{server} storm", storm(live, ids, sizes, report, budget))
        if args.parts == "storm":
            return
        for count in sorted(set(sizes.memory) | set(sizes.latency)):
            if not budget.left():
                report.problems.append(f"sockets {server} {count}: time budget spent")
                continue
            what = f"{server} {count} sockets"
            if 2 * count + 500 <= FILE_LIMIT:
                live = sqlite_server()
                say(f"{server}: {count} subscribed sockets of each kind, alternating")
                await guarded(report, what, sockets_and_latency(live, count, sizes, report, budget))
                continue
            # Both kinds at once would pass the file limit of the client or the server.
            for kind in KINDS:
                with bench_server(server, args, None) as live:
                    say(f"{server}: {count} subscribed {kind} sockets (one kind at a time: ulimit)")
                    part = sockets_and_latency(live, count, sizes, report, budget, (kind,))
                    await guarded(report, f"{what} ({kind})", part)


#: Issue 20's targets for ingest: bridge/floor events/s at least, CPU per event at most.
RATE_TARGET, CPU_TARGET = 3.0, 1 / 3


def matrix(args: argparse.Namespace, given: list[str]) -> None:
    """``--matrix``: issue 20's ingest settings, where the command line does not say others."""
    said = {arg.split("=")[0] for arg in given if arg.startswith("--")}
    defaults = {
        "--parts": ("parts", "ingest"),
        "--servers": ("servers", ["daphne", "uvicorn"]),
        "--body": ("bodies", ["small", "realistic", "mixed"]),
        "--placement": ("placements", ["unpinned", "pinned"]),
        "--concurrency": ("concurrency", [16, 32]),
        "--events": ("events", 1500),
        "--warmup": ("warmup", 150),
        "--rounds": ("rounds", 1),
        "--load": ("load", "httpx"),
        "--budget": ("budget", 900.0),
    }
    for flag, (name, value) in defaults.items():
        if flag not in said:
            setattr(args, name, value)
    args.access_log = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every part at tiny sizes")
    parser.add_argument("--servers", nargs="+", default=["daphne", "uvicorn"])
    parser.add_argument(
        "--postgres-url",
        help=f"scratch database bench_* for ingest on PostgreSQL (full: {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument("--no-postgres", action="store_true", help="ingest on SQLite only")
    parser.add_argument(
        "--no-sqlite", action="store_true", help="ingest on PostgreSQL only (with --parts ingest)"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--webhook-path", choices=["view", "asgi"], default="asgi")
    parser.add_argument(
        "--layer",
        choices=["core", "pubsub"],
        default="core",
        help="channels-redis layer of both (RedisChannelLayer or RedisPubSubChannelLayer)",
    )
    parser.add_argument(
        "--parts",
        choices=["all", "ingest", "realtime", "connect", "storm"],
        default="all",
        help="ingest only, the websocket parts only (connect: the connect rate alone; storm: "
        "it and the reconnect storm), or all",
    )
    parser.add_argument(
        "--body",
        dest="bodies",
        nargs="+",
        choices=BODIES,
        default=["small"],
        help="the ingest events (several: each in turn on the same servers)",
    )
    parser.add_argument(
        "--load",
        choices=["asyncio", "httpx"],
        default="asyncio",
        help="ingest load from raw asyncio streams in this process, or httpx in its own",
    )
    parser.add_argument(
        "--load-procs",
        type=int,
        default=1,
        help="httpx load processes (default 1, as issue 20 says; more is a reported deviation)",
    )
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, load on CPU 1")
    parser.add_argument(
        "--placement",
        dest="placements",
        nargs="+",
        choices=["unpinned", "pinned"],
        help="ingest with the server and load unpinned, pinned (as --pin), or both in turn",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="servers write their access log (as shipped)"
    )
    parser.add_argument("--rounds", type=int, help="ingest rounds of each kind per setting")
    parser.add_argument(
        "--matrix",
        action="store_true",
        help="issue 20's ingest matrix: Daphne and Uvicorn, SQLite and PostgreSQL, bodies small, "
        "realistic and mixed, unpinned and pinned, c=16 and 32, 1,500 events after 150 of "
        "warm-up, one round of each, httpx load, access logs on, a 15-minute budget",
    )
    parser.add_argument(
        "--markdown", type=Path, help="also write the table and the targets as Markdown here"
    )
    parser.add_argument(
        "--events", type=int, help="ingest events per round (default 600, quick 30)"
    )
    parser.add_argument("--warmup", type=int, help="warm-up events of each kind (default 30)")
    parser.add_argument("--concurrency", type=int, nargs="+", help="ingest concurrencies")
    parser.add_argument("--budget", type=float, help="seconds before remaining parts are skipped")
    parser.add_argument("--storm-rounds", type=int, help="reconnect storms of each kind")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)
    if args.matrix:
        matrix(args, argv or sys.argv[1:])
    sizes = QUICK if args.quick else Sizes()
    if args.rounds:
        sizes = dataclasses.replace(sizes, rounds=args.rounds)
    if args.storm_rounds:
        sizes = dataclasses.replace(sizes, storm_rounds=args.storm_rounds)
    if args.events:
        sizes = dataclasses.replace(sizes, events=args.events)
    if args.warmup:
        sizes = dataclasses.replace(sizes, warmup=args.warmup)
    if args.concurrency:
        sizes = dataclasses.replace(sizes, concurrency=tuple(args.concurrency))
    args.placements = args.placements or (["pinned"] if args.pin else ["unpinned"])
    if "pinned" in args.placements:
        if len(ALL_CPUS) < 2:
            raise SystemExit("--pin needs two CPUs")
        if args.placements == ["pinned"]:
            os.sched_setaffinity(0, {LOAD_CPU})  # this process's load; the server on CPU 0
    if args.no_postgres:
        args.postgres_url = None
    elif not args.quick and not args.postgres_url:
        args.postgres_url = DEFAULT_POSTGRES_URL
    budget = Budget(args.budget or (120 if args.quick else 3600))
    args.prefix = f"bench{uuid.uuid4().hex[:8]}"
    global FILE_LIMIT
    FILE_LIMIT = raise_file_limit()
    if max(sizes.memory + sizes.latency) + 500 > FILE_LIMIT:
        raise SystemExit(f"the socket counts need a file limit above {FILE_LIMIT} (ulimit -n)")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    report = Report()
    procs = ""
    if args.load == "httpx" and args.load_procs > 1:
        procs = f" in {args.load_procs} processes (a deviation: issue 20 says one)"
    say(
        f"bench_floors: servers {', '.join(args.servers)}; webhook path {args.webhook_path}; "
        f"layer {args.layer}; body {', '.join(args.bodies)}; load {args.load}{procs}; "
        f"{' and '.join(args.placements)}; access log {'on' if args.access_log else 'off'}; "
        f"{'quick' if args.quick else 'full'} sizes; Redis {args.redis_url} (prefix {args.prefix})"
    )
    started = time.monotonic()
    try:
        for server in args.servers:
            try:
                asyncio.run(run_server_parts(server, args, sizes, report, budget))
            except RuntimeError as error:  # the server did not start: say why, go on
                report.problems.append(f"{server}: {error}"[-2000:])
                say(f"{server}: {error}"[-2000:])
    finally:
        asyncio.run(forget_prefix(args.redis_url, args.prefix))
    elapsed = time.monotonic() - started
    say(f"\nratios (median of the rounds), {elapsed:.0f} s:")
    say(report.table())
    targets = report.ingest_targets()
    if targets:
        say("\n" + targets)
    for problem in report.problems:
        say(f"problem: {problem}")
    if args.markdown:
        command = " ".join(["bench/bench_floors.py", *(argv if argv is not None else sys.argv[1:])])
        args.markdown.write_text(
            f"```sh\n.venv/bin/python {command}\n```\n\n"
            f"```text\nratios (median of the rounds), {elapsed:.0f} s:\n{report.table()}\n"
            + "".join(f"problem: {p}\n" for p in report.problems)
            + f"```\n\n{targets}\n"
        )
    if args.json:
        args.json.write_text(json.dumps(report.as_json(), indent=1))
    return 1 if report.problems else 0


async def forget_prefix(redis_url: str, prefix: str) -> None:
    """Delete the run's channels-redis keys (only those under its own prefix)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


if __name__ == "__main__":
    sys.exit(main())
