"""Operator visibility: the bridge's metrics for Prometheus (``prometheus_client``).

Mount the view where you like (``path("stripe-bridge/metrics", metrics_view)``). It answers
staff users and requests carrying ``Authorization: Bearer <METRICS_TOKEN>``; everyone
else gets 403. The counters, gauges and histograms are ``metrics.py``'s: those of the
process that answers, or, with ``PROMETHEUS_MULTIPROC_DIR`` set, of every process of the
site added up. The database's figures (the relay's backlog and its age, the events it gave
up on, the events kept apart) are the site's, read by indexed queries whose cost does not
grow with the table (never a ``COUNT(*)`` of every event).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from . import metrics
from .conf import SETTING_NAME, bridge_settings
from .models import MAX_PUBLISH_ATTEMPTS, QuarantinedEvent, StripeEvent

CONTENT_TYPE = CONTENT_TYPE_LATEST
PREFIX = metrics.PREFIX
#: The backlog is counted up to this many events (the count stops there: "at least").
BACKLOG_CAP = 10_000


def _allowed(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    token = bridge_settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].encode(), str(token).encode())


class BacklogCollector:
    """The database's figures, read at each scrape."""

    def describe(self) -> Iterator[Any]:
        yield from self._families(Backlog())

    def collect(self) -> Iterator[Any]:
        yield from self._families(backlog())

    def _families(self, figures: Backlog) -> Iterator[Any]:
        yield GaugeMetricFamily(
            PREFIX + "unpublished_events",
            "Stored events not yet handed to the channel layer (the relay's backlog), "
            f"counted up to {BACKLOG_CAP}.",
            value=figures.count,
        )
        yield GaugeMetricFamily(
            PREFIX + "unpublished_oldest_age_seconds",
            "Age of the oldest unpublished event (0 when there is none).",
            value=figures.oldest_age,
        )
        yield GaugeMetricFamily(
            PREFIX + "unpublishable_events",
            "Stored events the relay gave up on: the channel layer refused to carry them "
            f"(counted up to {BACKLOG_CAP}).",
            value=figures.given_up,
        )
        yield GaugeMetricFamily(
            PREFIX + "quarantined_events",
            "Webhook events the database refused to store, kept apart for an operator "
            f"(counted up to {BACKLOG_CAP}).",
            value=figures.quarantined,
        )


@dataclass(frozen=True)
class Backlog:
    """What waits in the database: unpublished events (the relay's backlog, without those
    it gave up on), the oldest one's age in seconds, the given-up ones, the quarantined."""

    count: int = 0
    oldest_age: float = 0.0
    given_up: int = 0
    quarantined: int = 0


def backlog() -> Backlog:
    """The database's figures, each count stopping at ``BACKLOG_CAP`` rows.

    The unpublished events are read through their partial index (``stripe_evt_unpublished``,
    rows whose ``published_at`` is empty), so no read grows with the events stored; the
    oldest is the first by id.
    """
    unpublished = StripeEvent.objects.filter(published_at__isnull=True).order_by()
    pending = unpublished.filter(publish_attempts__lt=MAX_PUBLISH_ATTEMPTS)
    oldest = pending.order_by("id").values_list("received_at", flat=True).first()
    age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
    return Backlog(
        count=pending[:BACKLOG_CAP].count(),
        oldest_age=max(age, 0.0),
        given_up=unpublished.filter(publish_attempts__gte=MAX_PUBLISH_ATTEMPTS)[
            :BACKLOG_CAP
        ].count(),
        quarantined=QuarantinedEvent.objects.order_by()[:BACKLOG_CAP].count(),
    )


def multiprocess_dir() -> str | None:
    """``prometheus_client``'s multiprocess directory, when the site runs in that mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def registry() -> CollectorRegistry:
    """A registry of the bridge's metrics for one scrape: this process's, or every
    process's in multiprocess mode, and the backlog."""
    scrape = CollectorRegistry()
    path = multiprocess_dir()
    if path:
        MultiProcessCollector(scrape, path=path)
    else:
        for collector in metrics.collectors():
            scrape.register(collector)
    scrape.register(BacklogCollector())
    return scrape


def render() -> str:
    """The current figures, as Prometheus text exposition."""
    return generate_latest(registry()).decode()


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape target: staff users, or ``Authorization: Bearer <METRICS_TOKEN>``."""
    if not _allowed(request):
        return HttpResponse(
            f"Forbidden: log in as staff, or send 'Authorization: Bearer <token>' with "
            f"{SETTING_NAME}['METRICS_TOKEN'].\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    return HttpResponse(render(), content_type=CONTENT_TYPE)
