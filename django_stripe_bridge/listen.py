"""Listen to the ``stripe`` channel from Python: an async client and a command line.

    python -m django_stripe_bridge.listen ws://127.0.0.1:8000/ws/stripe/ --selector "id = 'ch_1'"

prints each message frame as one JSON line on stdout (status lines go to stderr), reconnects
with exponential backoff and jitter when the connection drops, and exits with status 0 on
Ctrl-C. After a reconnect it subscribes again with replay (``latest``, or ``all`` when that
was asked for) and drops events it already printed, so no status is missed.

From code:

    async for frame in listen(url, selector="id = 'ch_1'"):
        print(frame["headers"]["status"])

Needs the ``websockets`` library (``pip install 'django-stripe-bridge[listen]'``); it does not
need Django.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import random
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

#: The websocket path the app's routing serves, used when a URL names only a host.
DEFAULT_PATH = "/ws/stripe/"
#: How many recent event ids are remembered to drop repeats after a reconnect.
REMEMBERED_EVENTS = 1000
#: Seconds a connection must stay open before the backoff starts again from the first delay.
#: A server that answers and closes at once (its database is down: replay fails) counts as
#: a failed attempt, so listeners back off instead of reconnecting twice a second.
STABLE_AFTER = 10.0


class ListenError(Exception):
    """The listener cannot go on; the message says why."""


class SubscriptionRefused(ListenError):
    """The server answered the subscription with an ``error`` frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        self.code = frame.get("code")
        super().__init__(f"subscription refused ({self.code}): {frame.get('message')}")


def _websockets() -> Any:
    try:
        client = importlib.import_module("websockets.asyncio.client")
    except ImportError as exc:
        raise ListenError(
            "django_stripe_bridge.listen needs the 'websockets' library (13 or later): "
            "pip install 'django-stripe-bridge[listen]'"
        ) from exc
    return client


def websocket_url(url: str) -> str:
    """``url`` as a websocket URL: ``http(s)`` becomes ``ws(s)``; a bare host gets the path."""
    parts = urlsplit(url if "://" in url else f"ws://{url}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ListenError(f"Not a websocket URL: {url!r} (use ws://, wss://, http:// or https://)")
    path = parts.path if parts.path not in ("", "/") else DEFAULT_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def origin_of(url: str) -> str:
    """The ``Origin`` a browser on the same site would send (servers check it)."""
    parts = urlsplit(url)
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait before reconnect number ``attempt`` (0-based): capped, with jitter."""
    ceiling = min(cap, base * (2**attempt))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not secrecy


class _Recent:
    """A bounded set of recently seen event ids."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: dict[str, None] = {}

    def add(self, event_id: str) -> bool:
        """Remember ``event_id``; ``False`` when it was already there."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.size:
            del self._ids[next(iter(self._ids))]
        return True


async def listen(
    url: str,
    *,
    selector: str | None = None,
    channel: str | None = None,
    replay: str | None = None,
    subscription: str = "listen",
    origin: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    ping_interval: float | None = 20.0,
    min_delay: float = 0.5,
    max_delay: float = 30.0,
    max_attempts: int | None = None,
    log: Callable[[str], None] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield each ``message`` frame of one subscription, reconnecting until closed.

    Raises ``SubscriptionRefused`` when the server refuses the subscription (a bad
    selector, a policy that forbids it), and ``ListenError`` after ``max_attempts``
    failed connection attempts in a row (``None``: never give up).
    """
    client = _websockets()
    from websockets.exceptions import WebSocketException

    url = websocket_url(url)
    origin = origin or origin_of(url)
    say = log or (lambda text: None)
    seen = _Recent(REMEMBERED_EVENTS)
    subscribed_once = False
    failures = 0
    loop = asyncio.get_running_loop()
    while True:
        opened: float | None = None
        try:
            async with client.connect(
                url,
                origin=origin,  # type: ignore[arg-type]
                additional_headers=list(headers) or None,
                ping_interval=ping_interval,
                open_timeout=10,
            ) as ws:
                opened = loop.time()
                frame: dict[str, Any] = {"action": "subscribe", "subscription": subscription}
                if channel is not None:
                    frame["channel"] = channel
                if selector is not None:
                    frame["selector"] = selector
                # After a reconnect, replay what may have been missed; repeats are dropped.
                mode = replay if not subscribed_once else ("all" if replay == "all" else "latest")
                if mode is not None:
                    frame["replay"] = mode
                await ws.send(json.dumps(frame))
                async for raw in ws:
                    data = json.loads(raw)
                    kind = data.get("type") if isinstance(data, dict) else None
                    if kind == "subscribed":
                        subscribed_once = True
                        say(f"subscribed to {data.get('channel')} {data.get('selector')!r}")
                    elif kind == "error":
                        if data.get("subscription") == subscription:
                            raise SubscriptionRefused(data)
                        say(f"server error: {data.get('code')}: {data.get('message')}")
                    elif kind == "message":
                        sent = data.get("headers")
                        event_id = sent.get("event_id") if isinstance(sent, dict) else None
                        if isinstance(event_id, str) and not seen.add(event_id):
                            continue
                        yield data
            say("connection closed by the server")
        except SubscriptionRefused:
            raise
        except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
            say(f"connection lost: {type(exc).__name__}: {exc}")
        if opened is not None and loop.time() - opened >= STABLE_AFTER:
            failures = 0
        failures += 1
        if max_attempts is not None and failures >= max_attempts:
            raise ListenError(f"gave up after {failures} failed attempts to reach {url}")
        delay = backoff_delay(failures - 1, min_delay, max_delay)
        say(f"reconnecting in {delay:.1f}s")
        await asyncio.sleep(delay)


# -- command line -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m django_stripe_bridge.listen",
        description="Print the Stripe events a django-stripe-bridge site pushes over its "
        "websocket, one JSON message frame per line.",
    )
    parser.add_argument("url", help="websocket URL, e.g. ws://127.0.0.1:8000/ws/stripe/")
    parser.add_argument(
        "--selector",
        default=None,
        help="selector over the message headers, e.g. \"id = 'ch_1'\" (default: every event; "
        "a staff session is needed for that unless the site's policy is 'open')",
    )
    parser.add_argument(
        "--channel", default=None, help="'stripe' (the default) or 'stripe/<transaction id>'"
    )
    parser.add_argument(
        "--replay",
        choices=("latest", "all", "none"),
        default=None,
        help="stored events to send first (default: the site's REPLAY setting)",
    )
    parser.add_argument("--subscription", default="listen", help="name of the subscription")
    parser.add_argument("--origin", default=None, help="Origin header (default: the URL's site)")
    parser.add_argument(
        "--cookie", default=None, help="Cookie header, e.g. 'sessionid=…' for a staff session"
    )
    parser.add_argument(
        "--max-delay", type=float, default=30.0, help="longest wait between reconnects (s)"
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=None,
        help="give up (exit status 1) after this many failed connections in a row (default: never)",
    )
    parser.add_argument("--quiet", action="store_true", help="no status lines on stderr")
    return parser


async def _run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is not None:
        # SIGTERM stops the listener as Ctrl-C does.
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows has no SIGTERM
            loop.add_signal_handler(signal.SIGTERM, task.cancel)

    def say(text: str) -> None:
        if not args.quiet:
            print(f"listen: {text}", file=sys.stderr, flush=True)

    async for frame in listen(
        args.url,
        selector=args.selector,
        channel=args.channel,
        replay=args.replay,
        subscription=args.subscription,
        origin=args.origin,
        headers=[("Cookie", args.cookie)] if args.cookie else (),
        max_delay=args.max_delay,
        max_attempts=args.max_attempts,
        log=say,
    ):
        sys.stdout.write(json.dumps(frame, separators=(",", ":")) + "\n")
        sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status."""
    args = build_parser().parse_args(argv)
    try:
        asyncio.run(_run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    except ListenError as exc:
        print(f"listen: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # stdout closed (e.g. piped into head)
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
