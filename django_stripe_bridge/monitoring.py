"""Operator visibility: the bridge's figures in the Prometheus text format.

Mount the view where you like (``path("stripe-bridge/metrics", metrics_view)``). It answers
staff users and requests carrying ``Authorization: Bearer <METRICS_TOKEN>``; everyone
else gets 403. Database figures (events stored, unpublished backlog and its age, events the
relay gave up on, events kept apart) are the site's; counters and gauges (published,
re-published, open sockets…) are those of the process that answers, as Prometheus expects
of a scrape target.
"""

from __future__ import annotations

import hmac

from django.db.models import Count, Min, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import metrics
from .conf import SETTING_NAME, bridge_settings
from .models import MAX_PUBLISH_ATTEMPTS, QuarantinedEvent, StripeEvent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "stripe_bridge_"


def _allowed(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    token = bridge_settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].encode(), str(token).encode())


def _family(lines: list[str], name: str, kind: str, help_text: str, value: float) -> None:
    lines += [
        f"# HELP {PREFIX}{name} {help_text}",
        f"# TYPE {PREFIX}{name} {kind}",
        f"{PREFIX}{name} {value:g}",
    ]


def render() -> str:
    """The current figures, as Prometheus text exposition."""
    lines: list[str] = []
    stored = StripeEvent.objects.count()
    unpublished = StripeEvent.objects.filter(published_at__isnull=True)
    given_up = Q(publish_attempts__gte=MAX_PUBLISH_ATTEMPTS)
    backlog = unpublished.exclude(given_up).aggregate(count=Count("id"), oldest=Min("received_at"))
    oldest = backlog["oldest"]
    age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
    _family(lines, "events_stored", "gauge", "Stripe events stored in the database.", stored)
    _family(
        lines,
        "unpublished_events",
        "gauge",
        "Stored events not yet handed to the channel layer (the relay's backlog).",
        backlog["count"],
    )
    _family(
        lines,
        "unpublished_oldest_age_seconds",
        "gauge",
        "Age of the oldest unpublished event (0 when there is none).",
        max(age, 0.0),
    )
    _family(
        lines,
        "unpublishable_events",
        "gauge",
        "Stored events the relay gave up on: the channel layer refused to carry them.",
        unpublished.filter(given_up).count(),
    )
    _family(
        lines,
        "quarantined_events",
        "gauge",
        "Webhook events the database refused to store, kept apart for an operator.",
        QuarantinedEvent.objects.count(),
    )
    figures = metrics.snapshot()
    for name, help_text in metrics.COUNTERS.items():
        _family(lines, f"{name}_total", "counter", f"{help_text} (this process)", figures[name])
    for name, help_text in metrics.GAUGES.items():
        _family(lines, name, "gauge", help_text, figures[name])
    return "\n".join(lines) + "\n"


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
