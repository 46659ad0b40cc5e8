"""The bridge's counters, gauges and latency histograms, as ``prometheus_client`` metrics.

Incremented by the publishing, relay, webhook and consumer code; exported by
``monitoring.py``, which adds the figures that live in the database (the relay's backlog).
They are registered in ``prometheus_client``'s default registry too, so a site that already
exports it shows them there as well. With ``PROMETHEUS_MULTIPROC_DIR`` set (before the
server starts) every process writes its values there and a scrape of any process adds them
up (``prometheus_client``'s multiprocess mode).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

PREFIX = "stripe_bridge_"

#: Counter names and their help text, in the order they are exported (``_total`` is added).
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
#: Gauges (values that go up and down) and their help text; summed over live processes.
GAUGES = {
    "websockets_open": "Websocket connections open.",
    "sse_streams_open": "Server-Sent Events streams open.",
    "subscriptions": "Subscriptions held by the open websockets.",
}
#: Latency histograms (seconds) and their help text: where users feel time.
HISTOGRAMS = {
    "webhook_commit_seconds": "From a webhook request's arrival to its event's commit.",
    "publish_delay_seconds": "From an event's row being stored to its hand-off to the channel "
    "layer (by the webhook's process, or later by the relay).",
    "delivery_delay_seconds": "From an event's hand-off to the channel layer to its frame "
    "being sent on a websocket (live events; the processes' clocks must agree).",
}
#: Bucket bounds (seconds): a webhook commits in milliseconds, the relay waits seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_counters = {name: Counter(PREFIX + name, text) for name, text in COUNTERS.items()}
_gauges = {
    name: Gauge(PREFIX + name, text, multiprocess_mode="livesum") for name, text in GAUGES.items()
}
_histograms = {
    name: Histogram(PREFIX + name, text, buckets=BUCKETS) for name, text in HISTOGRAMS.items()
}


def collectors() -> list[Any]:
    """Every metric of the bridge, for a registry of its own."""
    return [*_counters.values(), *_gauges.values(), *_histograms.values()]


def incr(name: str, amount: int = 1) -> None:
    """Add ``amount`` to counter or gauge ``name`` (a gauge may go down)."""
    if name in _counters:
        if amount > 0:
            _counters[name].inc(amount)
    else:
        _gauges[name].inc(amount)


def observe(name: str, seconds: float) -> None:
    """Record one duration in histogram ``name``."""
    _histograms[name].observe(max(seconds, 0.0))


def handed_over() -> float:
    """The time stamp a channel-layer message carries (``sent_at``): wall-clock seconds,
    comparable between the processes of one site."""
    return time.time()


def observe_delivery(message: Mapping[str, Any]) -> None:
    """Record how long a live event took from the channel layer to a websocket."""
    sent_at = message.get("sent_at")
    if isinstance(sent_at, int | float) and not isinstance(sent_at, bool):
        observe("delivery_delay_seconds", time.time() - sent_at)


def snapshot() -> dict[str, float]:
    """Every counter and gauge of this process, zero when never touched."""
    figures: dict[str, float] = {}
    for name, metric in (*_counters.items(), *_gauges.items()):
        wanted = PREFIX + name + ("_total" if name in _counters else "")
        (family,) = metric.collect()
        figures[name] = sum(s.value for s in family.samples if s.name == wanted)
    return figures
