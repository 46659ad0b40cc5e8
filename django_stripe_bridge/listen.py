"""Listen to the ``stripe`` channel from Python: an async client and a command line.

    python -m django_stripe_bridge.listen ws://127.0.0.1:8000/ws/stripe/ --selector "id = 'ch_1'"

prints each message frame as one JSON line on stdout (status lines go to stderr), reconnects
with exponential backoff and jitter when the connection drops, and exits with status 0 on
Ctrl-C. After a reconnect it resumes from the cursor of the last message it printed (or,
when the server cannot resume, replays ``latest``, or ``all`` when that was asked for) and
drops events it already printed, so no status is missed. ``--since <cursor>`` starts from
a cursor; ``--sse`` listens over Server-Sent Events (the URL is then the app's ``events``
URL, e.g. ``http://127.0.0.1:8000/api/services/Stripe/events``).

From code:

    async for frame in listen(url, selector="id = 'ch_1'"):
        print(frame["headers"]["status"])

Needs the ``websockets`` library (``pip install 'django-stripe-bridge[listen]'``) for
websockets, nothing but the standard library for Server-Sent Events; it does not need
Django.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import random
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from http.client import HTTPConnection, HTTPSConnection
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

#: The websocket path the app's routing serves, used when a URL names only a host.
DEFAULT_PATH = "/ws/stripe/"
#: How many recent event ids are remembered to drop repeats after a reconnect.
REMEMBERED_EVENTS = 1000
#: Seconds a connection must stay open before the backoff starts again from the first delay.
#: A server that answers and closes at once (its database is down: replay fails) counts as
#: a failed attempt, so listeners back off instead of reconnecting twice a second.
STABLE_AFTER = 10.0
#: Seconds a Server-Sent Events stream may stay silent (the server's comments come every
#: 15 s by default) before it counts as lost.
SSE_READ_TIMEOUT = 60.0
#: ``error`` codes after which retrying the same subscription cannot help.
REFUSALS = frozenset(
    {"invalid_selector", "forbidden", "bad_frame", "unknown_channel", "limit_exceeded",
     "too_many_subscriptions", "subscription_exists"}
)  # fmt: skip


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
    since: str | None = None,
    sse: bool = False,
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

    Each (re)subscription resumes after the cursor of the last message yielded (``since``
    at first). ``sse=True`` listens over Server-Sent Events: ``url`` is the app's
    ``events`` URL. Raises ``SubscriptionRefused`` when the server refuses the
    subscription (a bad selector, a policy that forbids it), and ``ListenError`` after
    ``max_attempts`` failed connection attempts in a row (``None``: never give up).
    """
    say = log or (lambda text: None)
    if sse:
        url = events_url(url)
        errors: tuple[type[Exception], ...] = (OSError, TimeoutError, ValueError)
    else:
        _websockets()
        from websockets.exceptions import WebSocketException

        url = websocket_url(url)
        origin = origin or origin_of(url)
        errors = (OSError, TimeoutError, WebSocketException, ValueError)
    seen = _Recent(REMEMBERED_EVENTS)
    cursor = since
    subscribed_once = False
    failures = 0
    loop = asyncio.get_running_loop()
    while True:
        opened: float | None = None
        request: dict[str, Any] = {"action": "subscribe", "subscription": subscription}
        if channel is not None:
            request["channel"] = channel
        if selector is not None:
            request["selector"] = selector
        # After a reconnect, replay what may have been missed; repeats are dropped.
        mode = replay if not subscribed_once else ("all" if replay == "all" else "latest")
        if mode is not None:
            request["replay"] = mode
        if cursor:
            request["since"] = cursor
        try:
            if sse:
                frames = _sse_frames(url, request, headers)
            else:
                frames = _ws_frames(url, request, origin or "", headers, ping_interval)
            async for data in frames:
                opened = opened or loop.time()
                kind = data.get("type") if isinstance(data, dict) else None
                if kind == "subscribed":
                    subscribed_once = True
                    resumed = data.get("recovered")
                    how = "" if resumed is None else f" (resumed: {str(resumed).lower()})"
                    say(f"subscribed to {data.get('channel')} {data.get('selector')!r}{how}")
                elif kind == "error":
                    if data.get("code") in REFUSALS and (
                        sse or data.get("subscription") == subscription
                    ):
                        raise SubscriptionRefused(data)
                    say(f"server error: {data.get('code')}: {data.get('message')}")
                elif kind == "message":
                    if isinstance(data.get("cursor"), str):
                        cursor = data["cursor"]
                    sent = data.get("headers")
                    event_id = sent.get("event_id") if isinstance(sent, dict) else None
                    if isinstance(event_id, str) and not seen.add(event_id):
                        continue
                    yield data
            say("connection closed by the server")
        except SubscriptionRefused:
            raise
        except errors as exc:
            say(f"connection lost: {type(exc).__name__}: {exc}")
        if opened is not None and loop.time() - opened >= STABLE_AFTER:
            failures = 0
        failures += 1
        if max_attempts is not None and failures >= max_attempts:
            raise ListenError(f"gave up after {failures} failed attempts to reach {url}")
        delay = backoff_delay(failures - 1, min_delay, max_delay)
        say(f"reconnecting in {delay:.1f}s")
        await asyncio.sleep(delay)


async def _ws_frames(
    url: str,
    request: dict[str, Any],
    origin: str,
    headers: Sequence[tuple[str, str]],
    ping_interval: float | None,
) -> AsyncIterator[dict[str, Any]]:
    """The frames of one websocket connection that sends ``request``."""
    client = _websockets()
    async with client.connect(
        url,
        origin=origin,  # type: ignore[arg-type]
        additional_headers=list(headers) or None,
        ping_interval=ping_interval,
        open_timeout=10,
    ) as ws:
        await ws.send(json.dumps(request))
        async for raw in ws:
            yield json.loads(raw)


def events_url(url: str) -> str:
    """``url`` as the app's Server-Sent Events URL (``http`` or ``https``)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or parts.path in ("", "/"):
        raise ListenError(
            f"Not an events URL: {url!r} (with --sse, give the app's events URL, e.g. "
            "http://127.0.0.1:8000/api/services/Stripe/events)"
        )
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


async def _sse_frames(
    url: str, request: dict[str, Any], headers: Sequence[tuple[str, str]]
) -> AsyncIterator[dict[str, Any]]:
    """The frames of one Server-Sent Events stream subscribed as ``request`` says.

    The stream is read by ``http.client`` in a thread of its own (the standard library
    handles chunked transfer and TLS); lines reach the event loop through a queue.
    """
    query: dict[str, str] = {
        k: str(request[k]) for k in ("channel", "selector", "replay") if k in request
    }
    sent = dict(headers)
    sent["Accept"] = "text/event-stream"
    if request.get("since"):
        sent["Last-Event-ID"] = request["since"]
    parts = urlsplit(url)
    factory = HTTPSConnection if parts.scheme == "https" else HTTPConnection
    conn = factory(parts.netloc, timeout=SSE_READ_TIMEOUT)
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[Any] = asyncio.Queue()

    def read() -> None:
        def put(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone
                loop.call_soon_threadsafe(lines.put_nowait, item)

        try:
            conn.request("GET", f"{parts.path}?{urlencode(query)}", headers=sent)
            response = conn.getresponse()
            if response.status != 200:
                put(_refusal(response.status, response.read(4096)))
                return
            for line in response:
                put(line.decode("utf-8").rstrip("\r\n"))
            put(None)
        except Exception as exc:
            put(exc)
        finally:
            conn.close()

    threading.Thread(target=read, name="stripe-bridge-listen-sse", daemon=True).start()
    fields: dict[str, str] = {}
    try:
        while True:
            line = await lines.get()
            if isinstance(line, BaseException):
                raise line
            if line is None:
                return
            if line == "":
                if "data" in fields:
                    yield json.loads(fields["data"])
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
    finally:
        # Wake the reading thread (blocked in recv, holding the response's lock); it
        # closes the connection itself.
        with contextlib.suppress(OSError, AttributeError):
            conn.sock.shutdown(socket.SHUT_RDWR)


def _refusal(status: int, body: bytes) -> Exception:
    """What a non-200 answer to a stream request means for the listener."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        error = {}
    frame = {"type": "error", "code": error.get("code"), "message": error.get("message")}
    if status in (429,) or status >= 500:
        return OSError(f"HTTP {status}: {frame['message'] or 'try again later'}")
    frame["code"] = frame["code"] or f"http_{status}"
    return SubscriptionRefused(frame)


# -- command line -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m django_stripe_bridge.listen",
        description="Print the Stripe events a django-stripe-bridge site pushes over its "
        "websocket, one JSON message frame per line.",
    )
    parser.add_argument(
        "url",
        help="websocket URL, e.g. ws://127.0.0.1:8000/ws/stripe/ (with --sse: the events URL, "
        "e.g. http://127.0.0.1:8000/api/services/Stripe/events)",
    )
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
    parser.add_argument(
        "--since",
        default=None,
        help="resume after this cursor (a message's 'cursor'): print every stored event of "
        "the subscription after it first",
    )
    parser.add_argument(
        "--sse",
        action="store_true",
        help="listen over Server-Sent Events instead of a websocket (where a proxy refuses "
        "websockets)",
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
        since=args.since,
        sse=args.sse,
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
