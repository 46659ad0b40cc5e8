"""A replay storm against another client's first replay (issue 16's "replay storms").

Run: ``.venv/bin/python bench/bench_replay_storm.py [--connections 40] [--ids 100]
[--events-per-id 3] [--rounds 9] [--once] [--servers daphne uvicorn]``.

Stores ``--events-per-id`` events for each of ``--ids`` transactions, then opens
``--connections`` websockets that each subscribe with ``replay: "all"`` over all those ids,
unsubscribe and subscribe again, as fast as the frame-rate limit lets them (reading what
they are sent); with ``--once`` each subscribes once, and the newcomers come while those
replays are read and sent (give it many events per id). Meanwhile a new client connects
every second and subscribes to a transaction of its own; the time from its connect to its
replayed event is its replay time. Prints the median and the worst per server. The docs
promise under 1.5 s (median).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from _common import SERVER_ENV, WEBHOOK_PATH, charge_event, run_server, signed_headers

#: Frames a storm connection sends per second: under the server's limit (20/s).
STORM_RATE = 15.0


def post(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, body, signed_headers(body), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


async def storm_connection(ws_url: str, origin: str, selector: str, stop, once: bool) -> int:
    """Subscribe and unsubscribe with replay ``all`` until ``stop``; replays asked for."""
    import websockets

    replays = 0
    async with websockets.connect(
        f"{ws_url}/ws/stripe/", origin=origin, max_queue=None, ping_interval=None
    ) as ws:

        async def drain() -> None:
            async for _ in ws:
                pass

        reader = asyncio.ensure_future(drain())
        n = 0
        while not stop.is_set():
            n += 1
            name = f"s{n}"
            frame = {"action": "subscribe", "subscription": name, "replay": "all"}
            await ws.send(json.dumps({**frame, "selector": selector}))
            replays += 1
            if once:
                while not stop.is_set():
                    await asyncio.sleep(0.1)
                break
            await ws.send(json.dumps({"action": "unsubscribe", "subscription": name}))
            await asyncio.sleep(2 / STORM_RATE)
        reader.cancel()
    return replays


def storm_process(ws_url: str, origin: str, selector: str, count: int, once: bool, stop, out):
    """The storm's connections, in a process of their own: the frames they are sent must
    not slow the newcomers' client down."""

    async def main() -> None:
        storm = [storm_connection(ws_url, origin, selector, stop, once) for _ in range(count)]
        out.put(sum(await asyncio.gather(*storm)))

    asyncio.run(main())


async def newcomer(server, tx_id: str) -> float:
    """Seconds from connecting to the replayed event of a first subscription."""
    import websockets

    started = time.monotonic()
    selector = quote(f"id = '{tx_id}'")
    async with websockets.connect(
        f"{server.ws_url}/ws/stripe/?selector={selector}",
        origin=server.url,
        open_timeout=60,
        ping_interval=None,
    ) as ws:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if frame.get("type") == "message" and frame.get("replayed"):
                return time.monotonic() - started


async def run(server, args) -> None:
    url = server.url + WEBHOOK_PATH
    storm_ids = [f"ch_storm_{i:03d}" for i in range(args.ids)]
    bodies = [
        charge_event(i * args.events_per_id + k, tx, "charge.updated")
        for i, tx in enumerate(storm_ids)
        for k in range(args.events_per_id)
    ]
    victims = [f"ch_newcomer_{r}" for r in range(args.rounds)]
    bodies += [charge_event(10**6 + r, tx) for r, tx in enumerate(victims)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda body: post(url, body), bodies))
    quiet = [await newcomer(server, f"ch_newcomer_{r}") for r in range(min(3, args.rounds))]

    selector = "id IN ({})".format(", ".join(f"'{tx}'" for tx in storm_ids))
    context = multiprocessing.get_context("spawn")
    stop, out = context.Event(), context.Queue()
    storm = context.Process(
        target=storm_process,
        args=(server.ws_url, server.url, selector, args.connections, args.once, stop, out),
    )
    storm.start()
    await asyncio.sleep(1.0 if args.once else 3.0)  # the storm is under way
    times = []
    for tx in victims:
        times.append(await newcomer(server, tx))
        await asyncio.sleep(1.0)
    stop.set()
    replays = await asyncio.to_thread(out.get, True, 120)
    storm.join(30)
    print(
        f"{server.kind:>8}: newcomer's first replay under a storm of {args.connections} x "
        f"{args.ids} ids x 'all' ({args.events_per_id} events/id, {replays} replays asked"
        f"{', once each' if args.once else ''}): "
        f"median {statistics.median(times):.2f} s, worst {max(times):.2f} s "
        f"(quiet: median {statistics.median(quiet):.2f} s)\n"
        f"{'':>10}each newcomer in turn: {', '.join(f'{t:.2f}' for t in times)} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=40)
    parser.add_argument("--ids", type=int, default=100)
    parser.add_argument("--events-per-id", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--once", action="store_true", help="one replay per connection")
    parser.add_argument("--servers", nargs="+", default=["daphne", "uvicorn"])
    args = parser.parse_args()
    env = {**SERVER_ENV, "REDIS_URL": ""}  # the in-memory layer: the replay path alone
    for kind in args.servers:
        with run_server(kind, env, access_log=False) as server:
            asyncio.run(run(server, args))


if __name__ == "__main__":
    main()
