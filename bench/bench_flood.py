"""What a websocket flood costs the server after the rate limit has closed the connection.

Run: ``.venv/bin/python bench/bench_flood.py [--servers daphne uvicorn] [--frames 29000]
[--seconds 1.5] [--client websockets|raw] [--redis-url redis://127.0.0.1:6379/0]``.

One client opens ``ws/stripe/`` and sends ``--frames`` subscribe/unsubscribe frames of
~2 KiB each (29,000 are ~58 MiB), spread over ``--seconds`` at most, without waiting for
the server's answers. ``--client websockets`` (the default, as in the issue) sends them
with the websockets library, as fast as the connection takes them, and stops when the
server's close (1008, the rate limit) arrives; ``--client raw`` writes them straight to the
socket and does not stop at the close, as a hostile client would. Then it leaves. The
server's CPU (its process and children, from ``/proc``) is sampled every 0.1 s from then
on; the figures are how long until a whole second under 20% CPU, the CPU of each second
after the client left, and the peak growth of the server's resident memory over the run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from _common import SERVER_ENV, cpu_seconds, rss_kib, run_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

MiB = 1024 * 1024
PATH = "/ws/stripe/"
SAMPLE = 0.1
#: Seconds watched after the client left.
WATCH = 12.0
#: CPU share under which the server counts as idle again.
IDLE = 0.20


def frame(text: str, mask: bytes = b"\x1f\x2e\x3d\x4c") -> bytes:
    """A masked websocket text frame (a client's frames must be masked)."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        head = bytes([0x81, 0x80 | size])
    elif size < 65536:
        head = bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0x80 | 127]) + size.to_bytes(8, "big")
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return head + mask + masked


def flood_frames() -> tuple[bytes, bytes]:
    """A ~2 KiB subscribe frame and a ~2 KiB unsubscribe frame, masked."""
    subscribe, unsubscribe = flood_texts()
    return frame(subscribe), frame(unsubscribe)


def handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1:{port}\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = sock.recv(4096)
        if not data:
            raise RuntimeError(f"handshake refused: {answer!r}")
        answer += data
    if not answer.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {answer[:200]!r}")
    return sock


@dataclass
class Samples:
    """``(seconds since start, CPU seconds, RSS KiB)`` of the server, every 0.1 s."""

    pid: int
    rows: list[tuple[float, float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.is_set():
            self.rows.append((time.monotonic() - start, cpu_seconds(self.pid), rss_kib(self.pid)))
            time.sleep(SAMPLE)


def flood_texts() -> tuple[str, str]:
    pad = "x" * 1950
    subscribe = {"action": "subscribe", "subscription": "f", "selector": "id = 'ch_flood'"}
    subscribe |= {"replay": "none", "pad": pad}
    unsubscribe = {"action": "unsubscribe", "subscription": "f", "pad": pad}
    return json.dumps(subscribe), json.dumps(unsubscribe)


async def flood_websockets(port: int, frames: int, seconds: float) -> tuple[int, int, float]:
    """The websockets library's client: sends until done or closed by the server."""
    texts = flood_texts()
    url, origin = f"ws://127.0.0.1:{port}{PATH}", f"http://127.0.0.1:{port}"
    sent = nbytes = 0
    started = time.monotonic()
    async with connect(url, origin=origin, max_queue=None) as conn:  # type: ignore[arg-type]
        try:
            while sent < frames:
                due = started + seconds * sent / frames
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                text = texts[sent % 2]
                await conn.send(text)
                sent, nbytes = sent + 1, nbytes + len(text)
        except ConnectionClosed:
            pass
    return sent, nbytes, time.monotonic() - started


def flood_raw(port: int, frames: int, seconds: float) -> tuple[int, int, float]:
    """Send ``frames`` frames over ``seconds``; ``(frames sent, bytes sent, seconds taken)``."""
    subscribe, unsubscribe = flood_frames()
    pair = subscribe + unsubscribe
    batch = pair * 50  # 100 frames per write
    sock = handshake(port)
    sent = nbytes = 0
    started = time.monotonic()
    try:
        while sent < frames:
            due = started + seconds * sent / frames
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            try:
                sock.sendall(batch)
            except OSError:  # the server dropped the connection: it reads no more
                break
            sent, nbytes = sent + 100, nbytes + len(batch)
    finally:
        took = time.monotonic() - started
        sock.close()  # the client leaves
    return sent, nbytes, took


def measure(kind: str, args: argparse.Namespace) -> dict[str, object]:
    env = {**SERVER_ENV, "REDIS_URL": args.redis_url or ""}
    with run_server(kind, env, access_log=False) as server:
        base_rss = rss_kib(server.process.pid)
        samples = Samples(server.process.pid)
        sampler = threading.Thread(target=samples.run, daemon=True)
        sampler.start()
        time.sleep(0.5)
        cpu_before = cpu_seconds(server.process.pid)
        if args.client == "raw":
            sent, nbytes, took = flood_raw(server.port, args.frames, args.seconds)
        else:
            sent, nbytes, took = asyncio.run(
                flood_websockets(server.port, args.frames, args.seconds)
            )
        cpu_during = cpu_seconds(server.process.pid) - cpu_before
        left = samples.rows[-1][0]
        time.sleep(WATCH)
        samples.stop.set()
        sampler.join()
    rows = samples.rows
    after = [row for row in rows if row[0] >= left]
    per_second = []
    for second in range(int(WATCH)):
        window = [r for r in after if left + second <= r[0] <= left + second + 1]
        if len(window) >= 2:
            per_second.append((window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0]))
    idle_after = None
    for i, row in enumerate(after):
        later = [r for r in after[i:] if r[0] <= row[0] + 1.0]
        if later[-1][0] - row[0] >= 0.9:
            share = (later[-1][1] - row[1]) / (later[-1][0] - row[0])
            if share < IDLE:
                idle_after = row[0] - left
                break
    return {
        "server": kind,
        "client": args.client,
        "frames sent": sent,
        "MiB sent": round(nbytes / MiB, 1),
        "send seconds": round(took, 2),
        "CPU seconds while sending": round(cpu_during, 2),
        "seconds until < 20% CPU": None if idle_after is None else round(idle_after, 1),
        "CPU share per second after": [round(s, 2) for s in per_second],
        "CPU seconds after": round(after[-1][1] - after[0][1], 2),
        "peak RSS growth MiB": round((max(r[2] for r in rows) - base_rss) / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", nargs="+", default=["daphne", "uvicorn"])
    parser.add_argument("--frames", type=int, default=29_000)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--client", choices=["websockets", "raw"], default="websockets")
    parser.add_argument("--redis-url", default="", help="channels-redis (default: in-memory)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    for kind in args.servers:
        print(json.dumps(measure(kind, args)), flush=True)


if __name__ == "__main__":
    main()
