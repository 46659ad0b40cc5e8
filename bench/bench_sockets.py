"""20,000 idle subscribed websockets on one server process: memory, latency, a broadcast.

For each server (Uvicorn, Daphne), one process serving the bench app (``bench.floor``: the
demo's stack with the bare consumer beside the bridge's), channels-redis, SQLite:

1. **the bridge**: a fresh server; 10 sockets pinned to their own transactions and a
   status event to one of them at a time (webhook → ingest → layer → that socket: p50/p99
   from posting the webhook until the socket has the frame); then the other
   ``N - 10`` sockets, each subscribed to its own transaction (``id = 'pi_…'``), 1,000 of
   them on a staff user's session; server RSS before and after, per socket; the same
   latency at N sockets; the server's CPU while the N sockets idle; Redis memory and
   connections; then the 1,000 staff connections subscribe ``status = 'succeeded'`` too,
   and an event that matches is posted: the time until the last of the 1,000 has it;
2. **the bare consumer** (``bench/floor/consumers.py``: accepts and joins one group per
   socket): a fresh server, the same N sockets (1,000 with the staff session), RSS per
   socket, so that bridge / bare is the consumer's own cost.

The sockets are opened by client processes (asyncio and the ``websockets`` library, each
from its own loopback address, 127.0.0.2, 127.0.0.3…, so that no address runs short of
ephemeral ports); the latency watchers and the webhooks are this process's. With ``--pin``
(the default) the server runs on CPU 0 and every client process on CPU 1. The file limit
is raised for this process and the processes it starts (root may raise the hard limit).

Run (under 10 minutes for both servers on a quiet 2-core machine; 625 s with 60 events a
point while other work shared the cores)::

    .venv/bin/python bench/bench_sockets.py --redis-url redis://127.0.0.1:6379/8

``--sockets 2000 --servers uvicorn`` for a quick look; ``--layer pubsub`` for
``RedisPubSubChannelLayer``; ``--rounds`` and ``--broadcasts`` set the latency samples.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from _common import SERVER_ENV, WEBHOOK_PATH, charge_event, cpu_seconds, rss_kib, run_server
from _load import http_request, read_response
from bench_floors import (
    BENCH_APP,
    FLOOR_WEBHOOK_PATH,
    LOAD_CPU,
    SERVER_CPU,
    forget_prefix,
    pin,
    raise_file_limit,
)

WAIT = 60.0
#: Sockets on a staff user's session, which subscribe ``status = 'succeeded'`` for the broadcast.
STAFF = 1000
#: The latency watchers: sockets in this process, each pinned to a transaction of its own.
WATCHERS = 10
STAFF_SELECTOR = "status = 'succeeded'"
#: File descriptors a server needs besides its websockets (listener, Redis pool, database…).
RESERVED_FDS = 200
#: Handshakes in flight per client process.
IN_FLIGHT = 50


def say(text: str) -> None:
    print(text, flush=True)


# -- client processes -----------------------------------------------------------------------


def client_main(conn: Any, address: str, cpu: int | None) -> None:
    """A client process: opens sockets from ``address`` and acts on the commands of ``conn``."""
    import resource

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_client(conn, address))


async def _client(conn: Any, address: str) -> None:
    from websockets.asyncio.client import connect

    sockets: list[Any] = []
    staff: list[Any] = []
    watch: list[asyncio.Task[float | None]] = []

    async def open_one(url: str, origin: str, cookie: str | None) -> Any:
        headers = {"Cookie": cookie} if cookie else None
        for attempt in range(20):
            try:
                socket = await connect(
                    url,
                    origin=origin,  # type: ignore[arg-type]
                    additional_headers=headers,
                    open_timeout=WAIT,
                    ping_interval=None,
                    close_timeout=1,
                    max_queue=None,
                    proxy=None,
                    local_addr=(address, 0),
                )
                frame = json.loads(await asyncio.wait_for(socket.recv(), WAIT))
                if frame.get("type") != "subscribed":
                    raise RuntimeError(f"expected 'subscribed', got {frame}")
                return socket
            except Exception:
                if attempt == 19:
                    raise
                await asyncio.sleep(random.uniform(0.5, 2.0))

    async def gated(gate: asyncio.Semaphore, url: str, origin: str, cookie: str | None) -> Any:
        async with gate:
            return await open_one(url, origin, cookie)

    async def staff_subscribe(socket: Any) -> None:
        frame = {"action": "subscribe", "subscription": "staff", "selector": STAFF_SELECTOR}
        await socket.send(json.dumps(frame))
        while True:
            answer = json.loads(await asyncio.wait_for(socket.recv(), WAIT))
            if answer.get("subscription") == "staff" and answer.get("type") == "subscribed":
                return
            if answer.get("type") == "error":
                raise RuntimeError(f"staff subscribe refused: {answer}")

    async def until_event(socket: Any, event_id: str) -> float | None:
        while True:
            frame = json.loads(await socket.recv())
            if frame.get("type") == "message" and frame["headers"].get("event_id") == event_id:
                return time.monotonic()

    while True:
        command, *args = await asyncio.to_thread(conn.recv)
        try:
            if command == "open":
                urls, origin, cookie, is_staff = args
                gate = asyncio.Semaphore(IN_FLIGHT)
                opened = await asyncio.gather(*(gated(gate, u, origin, cookie) for u in urls))
                sockets.extend(opened)
                if is_staff:
                    staff.extend(opened)
                conn.send(("ok", len(opened)))
            elif command == "staff":
                await asyncio.gather(*(staff_subscribe(s) for s in staff))
                conn.send(("ok", len(staff)))
            elif command == "arm":
                (event_id,) = args
                watch = [asyncio.ensure_future(until_event(s, event_id)) for s in staff]
                await asyncio.sleep(0)
                conn.send(("ok", len(watch)))
            elif command == "collect":
                (timeout,) = args
                done, pending = await asyncio.wait(watch, timeout=timeout)
                for task in pending:
                    task.cancel()
                times = [t.result() for t in done if not t.exception()]
                conn.send(("ok", times, len(pending)))
            elif command == "rss":
                conn.send(("ok", rss_kib(os.getpid())))
            elif command == "quit":
                for socket in sockets:
                    socket.transport.abort()
                conn.send(("ok",))
                return
            else:
                conn.send(("error", f"unknown command {command!r}"))
        except Exception as error:
            conn.send(("error", repr(error)[:500]))


class Clients:
    """The client processes, each with its loopback address."""

    def __init__(self, count: int, pin_cpu: int | None) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes = []
        self.processes = []
        for n in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=client_main, args=(theirs, f"127.0.0.{2 + n}", pin_cpu), daemon=True
            )
            process.start()
            self.pipes.append(ours)
            self.processes.append(process)

    async def ask(self, n: int, *command: Any) -> tuple[Any, ...]:
        self.pipes[n].send(command)
        answer = await asyncio.to_thread(self.pipes[n].recv)
        if answer[0] != "ok":
            raise RuntimeError(f"client {n}: {answer[1]}")
        return answer[1:]

    async def all(self, *command: Any) -> list[tuple[Any, ...]]:
        return await asyncio.gather(*(self.ask(n, *command) for n in range(len(self.pipes))))

    async def open(self, urls: list[str], origin: str, cookie: str | None, staff: bool) -> None:
        """Open ``urls`` spread over the client processes."""
        count = len(self.pipes)
        await asyncio.gather(
            *(
                self.ask(n, "open", urls[n::count], origin, cookie, staff)
                for n in range(count)
                if urls[n::count]
            )
        )

    def stop(self) -> None:
        for n, pipe in enumerate(self.pipes):
            with contextlib.suppress(Exception):
                pipe.send(("quit",))
                if pipe.poll(30):
                    pipe.recv()
            self.processes[n].join(5)
            if self.processes[n].is_alive():
                self.processes[n].kill()


# -- the server -----------------------------------------------------------------------------


@contextlib.contextmanager
def bench_server(kind: str, args: argparse.Namespace) -> Iterator[Any]:
    env = {
        **SERVER_ENV,
        "DJANGO_SETTINGS_MODULE": "bench.floor.settings",
        "REDIS_URL": args.redis_url,
        "CHANNELS_REDIS_PREFIX": args.prefix,
        "CHANNELS_REDIS_PUBSUB": "1" if args.layer == "pubsub" else "",
        "BENCH_WEBHOOK_PATH": "asgi",
        "STRIPE_CHARGE_THROTTLE_RATE": "off",
    }
    with run_server(kind, env, app=BENCH_APP, access_log=False, stop_wait=2) as live:
        if args.pin:
            pin(live.process.pid, SERVER_CPU)
        try:
            yield live
        except BaseException:
            say(f"the server's log ends with:\n{live.log()[-3000:]}")
            raise


def staff_cookie(live: Any) -> str:
    """A session cookie of a new staff user of the server's database."""
    code = (
        "from importlib import import_module\n"
        "from django.conf import settings\n"
        "from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY,"
        " HASH_SESSION_KEY\n"
        "u = get_user_model().objects.create_user('bench-staff', password='x', is_staff=True)\n"
        "s = import_module(settings.SESSION_ENGINE).SessionStore()\n"
        "s[SESSION_KEY] = str(u.pk)\n"
        "s[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]\n"
        "s[HASH_SESSION_KEY] = u.get_session_auth_hash()\n"
        "s.create()\n"
        "print(settings.SESSION_COOKIE_NAME + '=' + s.session_key)\n"
    )
    done = live.manage("shell", "-c", code)
    if done.returncode:
        raise RuntimeError(f"could not make a staff session:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def bridge_url(live: Any, object_id: str) -> str:
    selector = quote(f"id = '{object_id}'")
    return f"{live.ws_url}/ws/stripe/?selector={selector}&replay=none"


def bare_url(live: Any, object_id: str) -> str:
    return f"{live.ws_url}/bench/floor/ws/?id={object_id}"


def redis_figures(redis_url: str) -> tuple[int, int]:
    """Redis's ``used_memory`` (bytes) and ``connected_clients``."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.info("memory")["used_memory"]), int(
            client.info("clients")["connected_clients"]
        )
    finally:
        client.close()


def tcp_memory_kib() -> int:
    """Kernel memory of every TCP socket of the machine (``/proc/net/sockstat``), in KiB."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return 0


def slab_kib() -> int:
    """The kernel's slab memory (``/proc/meminfo``), machine-wide, in KiB: socket structures."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# -- the measures ---------------------------------------------------------------------------


async def watchers(live: Any, url: Any, ids: list[str]) -> list[Any]:
    from websockets.asyncio.client import connect

    sockets = []
    for object_id in ids:
        socket = await connect(
            url(live, object_id),
            origin=live.url,  # type: ignore[arg-type]
            ping_interval=None,
            max_queue=None,
            proxy=None,
            open_timeout=WAIT,
        )
        frame = json.loads(await asyncio.wait_for(socket.recv(), WAIT))
        assert frame.get("type") == "subscribed", frame
        sockets.append(socket)
    return sockets


class Poster:
    """Signed webhooks over one keep-alive connection."""

    def __init__(self, live: Any, path: str) -> None:
        self.live = live
        self.path = path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> None:
        for attempt in (1, 2):
            if self.writer is None or self.writer.is_closing():
                self.reader, self.writer = await asyncio.open_connection(
                    "127.0.0.1", self.live.port
                )
            assert self.reader is not None
            self.writer.write(http_request(self.live.port, self.path, body))
            try:
                answer = await asyncio.wait_for(read_response(self.reader), WAIT)
                break
            except (asyncio.IncompleteReadError, ConnectionError):
                # The server closed the idle keep-alive connection before this request.
                self.close()
                if attempt == 2:
                    raise
        status, answer, keep_alive = answer
        if status != 200:
            raise RuntimeError(f"webhook answered {status}: {answer[:200]!r}")
        if not keep_alive:
            self.writer.close()
            self.writer = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def latency(poster: Poster, sockets: list[Any], ids: list[str], rounds: int) -> list[float]:
    """Milliseconds from posting a status event of one watcher's transaction until it has it."""
    samples = []
    for n in range(rounds):
        k = n % len(sockets)
        body = charge_event(n, ids[k])
        event_id = json.loads(body)["id"]
        started = time.perf_counter()
        await poster.post(body)
        while True:
            frame = json.loads(await asyncio.wait_for(sockets[k].recv(), WAIT))
            if frame.get("type") == "message" and event_of(frame) == event_id:
                break
        samples.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)
    return samples


async def timed_latency(
    live: Any, poster: Poster, sockets: list[Any], ids: list[str], rounds: int, idle: float = 0.0
) -> tuple[list[float], float]:
    """``latency()``, and the server's CPU ms per event: the CPU it used meanwhile, less what
    it uses idle (``idle``: the fraction of a CPU measured with nothing sent), per event.
    CPU time is what a busy machine does not change much, unlike the latency."""
    cpu, started = cpu_seconds(live.process.pid), time.perf_counter()
    samples = await latency(poster, sockets, ids, rounds)
    used = cpu_seconds(live.process.pid) - cpu - idle * (time.perf_counter() - started)
    return samples, used * 1000 / rounds


def event_of(frame: dict[str, Any]) -> str | None:
    """The event id of a ``message`` frame, the bridge's or the bare consumer's."""
    return (frame.get("headers") or {}).get("event_id") or frame.get("event_id")


async def settled_rss(pid: int, seconds: float = 3.0) -> int:
    await asyncio.sleep(seconds)
    return rss_kib(pid)


async def open_mass(
    clients: Clients, live: Any, url: Any, run: str, count: int, cookie: str
) -> tuple[float, float]:
    """Open ``count`` sockets (the first ``STAFF`` on the staff session) each pinned to its own
    transaction; seconds taken and server CPU seconds used."""
    ids = [f"pi_{run}_{n:06d}" for n in range(count)]
    staff = min(STAFF, count)
    cpu = cpu_seconds(live.process.pid)
    started = time.perf_counter()
    await clients.open([url(live, i) for i in ids[:staff]], live.url, cookie, True)
    await clients.open([url(live, i) for i in ids[staff:]], live.url, None, False)
    return time.perf_counter() - started, cpu_seconds(live.process.pid) - cpu


async def socket_part(
    kind: str, args: argparse.Namespace, out: dict[str, Any], consumer: str
) -> None:
    """One server process holding ``args.sockets`` idle sockets of ``consumer``: ``"bridge"``
    (fed by the bridge's webhook; Redis and kernel figures and the staff broadcast too) or
    ``"bare"`` (the bare consumer, fed by the floor's naive webhook view)."""
    bridge = consumer == "bridge"
    url_of = bridge_url if bridge else bare_url
    run = uuid.uuid4().hex[:8]
    mass = args.sockets - WATCHERS
    with bench_server(kind, args) as live:
        cookie = staff_cookie(live)
        clients = Clients(args.clients, LOAD_CPU if args.pin else None)
        poster = Poster(live, WEBHOOK_PATH if bridge else FLOOR_WEBHOOK_PATH)
        try:
            ids = [f"pi_{run}_w{n}" for n in range(WATCHERS)]
            mine = await watchers(live, url_of, ids)
            await latency(poster, mine, ids, 10)  # warm-up
            out["latency_10"], out["cpu_ms_per_event_10"] = await timed_latency(
                live, poster, mine, ids, args.rounds
            )
            if bridge:
                redis_before = redis_figures(args.redis_url)
                tcp_before, slab_before = tcp_memory_kib(), slab_kib()
            before = await settled_rss(live.process.pid)
            seconds, cpu = await open_mass(clients, live, url_of, run, mass, cookie)
            after = await settled_rss(live.process.pid)
            out["rss_before_kib"], out["rss_after_kib"] = before, after
            out["kib_per_socket"] = (after - before) / mass
            out["connect_seconds"], out["connect_cpu_ms"] = seconds, cpu * 1000 / mass
            if bridge:
                redis_after = redis_figures(args.redis_url)
                out["tcp_kib"] = tcp_memory_kib() - tcp_before
                out["slab_kib_per_socket"] = (slab_kib() - slab_before) / mass
                out["redis_bytes_per_socket"] = (redis_after[0] - redis_before[0]) / mass
                out["redis_clients"] = redis_after[1] - redis_before[1]
            say(
                f"  {kind} {consumer}: {args.sockets} sockets in {seconds:.0f} s "
                f"({cpu * 1000 / mass:.2f} ms server CPU each), RSS {before / 1024:.0f} → "
                f"{after / 1024:.0f} MiB: {out['kib_per_socket']:.1f} KiB per socket"
            )
            idle_cpu = cpu_seconds(live.process.pid)
            await asyncio.sleep(args.idle)
            out["idle_cpu_percent"] = (cpu_seconds(live.process.pid) - idle_cpu) / args.idle * 100
            out["latency_n"], out["cpu_ms_per_event_n"] = await timed_latency(
                live, poster, mine, ids, args.rounds, out["idle_cpu_percent"] / 100
            )
            if bridge:
                out["rss_after_latency_kib"] = rss_kib(live.process.pid)
            show_latency(kind, consumer, out, args)
            if bridge:
                await broadcasts(kind, args, out, clients, poster, run, mass)
        finally:
            poster.close()
            clients.stop()
            await forget_prefix(args.redis_url, args.prefix)


async def broadcasts(
    kind: str,
    args: argparse.Namespace,
    out: dict[str, Any],
    clients: Clients,
    poster: Poster,
    run: str,
    mass: int,
) -> None:
    """A status event to the staff selector held by ``STAFF`` of the sockets, in turn: the
    time until the last (and the median) of them receives it."""
    await clients.all("staff")
    out["broadcast_ms"] = []
    out["broadcast_median_ms"] = []
    for n in range(args.broadcasts):
        body = charge_event(10_000 + n, f"ch_{run}_broadcast_{n}")
        event_id = json.loads(body)["id"]
        await clients.all("arm", event_id)
        started = time.monotonic()
        await poster.post(body)
        answers = await clients.all("collect", WAIT)
        times = [t for answer in answers for t in answer[0]]
        missing = sum(answer[1] for answer in answers)
        if missing or len(times) != min(STAFF, mass):
            raise RuntimeError(f"broadcast: {len(times)} received, {missing} missing")
        out["broadcast_ms"].append((max(times) - started) * 1000)
        out["broadcast_median_ms"].append((statistics.median(times) - started) * 1000)
        await asyncio.sleep(0.2)
    say(
        f"  {kind} broadcast to {min(STAFF, mass)} staff sockets: last received after "
        f"{statistics.median(out['broadcast_ms']):.0f} ms (median of "
        f"{args.broadcasts}; max {max(out['broadcast_ms']):.0f} ms), half of them after "
        f"{statistics.median(out['broadcast_median_ms']):.0f} ms"
    )
    out["client_rss_kib"] = sum(a[0] for a in await clients.all("rss"))


def show_latency(kind: str, consumer: str, out: dict[str, Any], args: argparse.Namespace):
    for key, label in (("latency_10", WATCHERS), ("latency_n", args.sockets)):
        values = out[key]
        say(
            f"  {kind} {consumer} latency at {label} sockets: p50 "
            f"{statistics.median(values):.1f} ms, p99 {pct(values, 99):.1f} ms, max "
            f"{max(values):.1f} ms ({len(values)} events)"
        )


def summary(kind: str, bridge: dict[str, Any], bare: dict[str, Any], args: argparse.Namespace):
    """The run's figures for one server: bridge, bare consumer, and their ratio."""
    n = args.sockets
    staff = min(STAFF, n - WATCHERS)
    rows: list[tuple[str, float, float | None, str]] = [
        ("RSS KiB per idle socket", bridge["kib_per_socket"], bare["kib_per_socket"], "≤ 1.2"),
        ("server CPU ms per connect", bridge["connect_cpu_ms"], bare["connect_cpu_ms"], ""),
        ("server CPU % while idle", bridge["idle_cpu_percent"], bare["idle_cpu_percent"], ""),
    ]
    for name, figure in (("p50", statistics.median), ("p99", lambda v: pct(v, 99))):
        at_10 = [figure(side["latency_10"]) for side in (bridge, bare)]
        at_n = [figure(side["latency_n"]) for side in (bridge, bare)]
        rows.append((f"latency {name} ms, {WATCHERS} sockets", *at_10, ""))
        rows.append((f"latency {name} ms, {n} sockets", *at_n, ""))
        rows.append(
            (f"  {name} at {n} / at {WATCHERS}", at_n[0] / at_10[0], at_n[1] / at_10[1], "≤ 1.2")
        )
    for count, key in ((WATCHERS, "latency_10"), (n, "latency_n")):
        rows.append((f"latency max ms, {count} sockets", max(bridge[key]), max(bare[key]), ""))
    for count, key in ((WATCHERS, "cpu_ms_per_event_10"), (n, "cpu_ms_per_event_n")):
        rows.append((f"server CPU ms per event, {count} sockets", bridge[key], bare[key], ""))
    rows.append(
        (f"broadcast to {staff}: last, ms", statistics.median(bridge["broadcast_ms"]), None, "")
    )
    say(f"\n{kind}, {args.layer} layer, {n} sockets (ratio: bridge / bare):")
    say(f"  {'measure':<34} {'bridge':>9} {'bare':>9} {'ratio':>6}  target (bridge)")
    for name, mine, theirs, target in rows:
        ratio = f"{mine / theirs:.2f}" if theirs and not name.startswith("  ") else ""
        shown = f"{theirs:9.2f}" if theirs is not None else f"{'':9}"
        say(f"  {name:<34} {mine:9.2f} {shown} {ratio:>6}  {target}")
    say(
        f"  Redis: {bridge['redis_bytes_per_socket']:.0f} bytes per socket, "
        f"+{bridge['redis_clients']} connections; kernel: TCP buffers +{bridge['tcp_kib']} KiB, "
        f"slab {bridge['slab_kib_per_socket']:.1f} KiB per socket (machine-wide, both ends); "
        f"client processes {bridge['client_rss_kib'] / 1024:.0f} MiB"
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind in args.servers:
        say(f"{kind}: the bridge, then the bare consumer, {args.sockets} sockets each")
        bridge: dict[str, Any] = {}
        bare: dict[str, Any] = {}
        await socket_part(kind, args, bridge, "bridge")
        await socket_part(kind, args, bare, "bare")
        results[kind] = {"bridge": bridge, "bare": bare}
    for kind in args.servers:
        summary(kind, results[kind]["bridge"], results[kind]["bare"], args)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", nargs="+", default=["uvicorn", "daphne"])
    parser.add_argument("--sockets", type=int, default=20_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--layer", choices=["core", "pubsub"], default="core")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--rounds", type=int, default=200, help="latency events per figure")
    parser.add_argument("--broadcasts", type=int, default=10)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    args.prefix = f"bench-sockets-{uuid.uuid4().hex[:8]}"
    limit = raise_file_limit()
    if limit < args.sockets + RESERVED_FDS:
        # Without CAP_SYS_RESOURCE (a container) the hard limit cannot be raised.
        wanted, args.sockets = args.sockets, limit - RESERVED_FDS
        say(
            f"the file limit is {limit} and cannot be raised here: {args.sockets} sockets "
            f"instead of {wanted} ({RESERVED_FDS} descriptors kept for the server's own files, "
            "Redis and database connections)"
        )
    ports = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    somaxconn = Path("/proc/sys/net/core/somaxconn").read_text().strip()
    say(
        f"file limit {limit}; ephemeral ports {'-'.join(ports)}; somaxconn {somaxconn}; "
        f"{args.clients} client processes; server pinned to CPU {SERVER_CPU}: {args.pin}"
    )
    started = time.perf_counter()
    results = asyncio.run(main_async(args))
    say(f"\n{time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
