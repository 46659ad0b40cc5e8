"""Counters of this process (events published, sockets open, frames refused…).

Incremented by the publishing, relay and consumer code; read by ``monitoring.py``, which
adds the figures that live in the database (events stored, unpublished backlog).
"""

from __future__ import annotations

import threading
from collections import Counter

_counts: Counter[str] = Counter()
_lock = threading.Lock()

#: Counter names and their help text, in the order they are exported.
COUNTERS = {
    "events_published": "Events handed to the channel layer right after their commit.",
    "events_republished": "Unpublished events handed to the channel layer by the relay.",
    "publish_failures": "Publish attempts that failed (the relay retries them).",
    "events_quarantined": "Webhook events the database refused to store, kept apart.",
    "publish_refusals": "Events the channel layer refused to carry (could not serialize).",
    "frames_refused": "Client frames refused: bad, over a limit, or over the rate.",
    "connections_rate_limited": "Websockets closed (1008) for sending frames too fast.",
    "frames_dropped_after_close": "Client frames dropped unread: their socket was closed.",
    "layer_recoveries": "Catch-ups after the channel layer lost its state or a connection dropped.",
}
#: Gauges (values that go up and down) and their help text.
GAUGES = {
    "websockets_open": "Websocket connections open in this process.",
    "subscriptions": "Subscriptions held by the open websockets of this process.",
}


def incr(name: str, amount: int = 1) -> None:
    """Add ``amount`` to counter or gauge ``name``."""
    with _lock:
        _counts[name] += amount


def snapshot() -> dict[str, int]:
    """Every counter and gauge of this process, zero when never touched."""
    with _lock:
        return {name: _counts[name] for name in (*COUNTERS, *GAUGES)}
