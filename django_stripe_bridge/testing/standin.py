"""Run the offline Stripe stand-in (localstripe with our extensions) in this process.

    python -m django_stripe_bridge.testing.standin --host 127.0.0.1 --port 8420

``--port 0`` picks a free port. Once it listens, it prints one line:

    stripe-standin listening on http://127.0.0.1:54321

It binds the loopback interface only (``--allow-non-loopback`` to override: it has no real
authentication), keeps everything in memory (or, with ``--state FILE``, also in that file,
read again at the next start), and stops on SIGTERM/SIGINT (or, with
``--exit-on-stdin-eof``, when its standard input closes, i.e. when its parent dies).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import sys
import threading
from pathlib import Path

from ._launcher import READY_PREFIX


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(
    host: str,
    port: int,
    *,
    webhook_delay: float,
    verbose: bool,
    exit_on_stdin_eof: bool,
    async_delay: float = 1.0,
    state_file: Path | None = None,
) -> None:
    from aiohttp import web

    from ._app import build_app

    app = build_app(webhook_delay=webhook_delay, async_delay=async_delay, state_file=state_file)
    access_log = logging.getLogger("aiohttp.access") if verbose else None
    runner = web.AppRunner(app, access_log=access_log, handle_signals=False)
    await runner.setup()
    sock = _bind("127.0.0.1" if host == "localhost" else host, port)
    site = web.SockSite(runner, sock)
    await site.start()
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"{READY_PREFIX}http://{shown}:{bound_port}", flush=True)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    if exit_on_stdin_eof:

        def watch_stdin() -> None:
            with contextlib.suppress(OSError, ValueError):
                while sys.stdin.buffer.read(4096):
                    pass
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m django_stripe_bridge.testing.standin",
        description="Offline Stripe stand-in for tests and demos (localstripe, extended).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only)")
    parser.add_argument("--port", type=int, default=8420, help="port (0: any free port)")
    parser.add_argument(
        "--webhook-delay",
        type=float,
        default=1.0,
        help="seconds between an event and its webhook deliveries (default 1.0)",
    )
    parser.add_argument(
        "--async-delay",
        type=float,
        default=1.0,
        help="seconds until refunds settle or fail and disputes open or close (default 1.0)",
    )
    parser.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="keep the objects in FILE across restarts (default: in memory only)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="stop when standard input closes"
    )
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow binding a non-loopback address (the stand-in has no real authentication)",
    )
    args = parser.parse_args(argv)
    if not args.allow_non_loopback and not _is_loopback(args.host):
        parser.error(
            f"refusing to bind {args.host}: the stand-in accepts any sk_ key, so it only "
            "listens on loopback addresses (pass --allow-non-loopback to override)"
        )
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(
            serve(
                args.host,
                args.port,
                webhook_delay=args.webhook_delay,
                async_delay=args.async_delay,
                verbose=args.verbose,
                exit_on_stdin_eof=args.exit_on_stdin_eof,
                state_file=args.state,
            )
        )
    except OSError as exc:
        print(f"stripe-standin: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
