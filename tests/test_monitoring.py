"""The Prometheus endpoint (``monitoring.metrics_view``): access, format and figures."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.test import RequestFactory, override_settings
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST

from django_stripe_bridge import metrics
from django_stripe_bridge.ingest import ingest_event
from django_stripe_bridge.models import StripeEvent
from django_stripe_bridge.monitoring import metrics_view
from tests.factories import charge_object, make_event

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-for-tests"


def scrape(user=None, **headers):
    request = RequestFactory().get("/metrics", headers=headers)
    request.user = user or AnonymousUser()
    with override_settings(STRIPE_BRIDGE={**settings.STRIPE_BRIDGE, "METRICS_TOKEN": TOKEN}):
        return metrics_view(request)


def values(body: str) -> dict[str, float]:
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^stripe_bridge_(\w+) (\S+)$", body, re.MULTILINE)
    }


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Bearer "}],
)
def test_refused_without_staff_or_token(headers):
    response = scrape(**headers)
    assert response.status_code == 403
    assert b"METRICS_TOKEN" in response.content and TOKEN.encode() not in response.content


def test_refused_for_a_non_staff_user_and_without_a_configured_token():
    user = User.objects.create_user("payer")
    assert scrape(user).status_code == 403
    request = RequestFactory().get("/metrics", headers={"Authorization": "Bearer "})
    request.user = AnonymousUser()
    assert metrics_view(request).status_code == 403  # METRICS_TOKEN unset: no token works


def test_figures_in_prometheus_text_format(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # it publishes after the commit
        published = ingest_event(make_event("charge.succeeded", charge_object("ch_m1"))).event
    stuck = ingest_event(make_event("charge.pending", charge_object("ch_m2")), publish=False)
    StripeEvent.objects.filter(pk=stuck.event.pk).update(
        received_at=timezone.now() - dt.timedelta(seconds=90)
    )
    assert published.published_at is not None
    metrics.incr("frames_refused")

    response = scrape(**{"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    body = response.content.decode()
    figures = values(body)
    assert "events_stored" not in figures  # a COUNT(*) of the whole table: not any more
    assert figures["unpublished_events"] == 1
    assert 90 <= figures["unpublished_oldest_age_seconds"] < 120
    assert figures["events_published_total"] >= 1
    assert figures["frames_refused_total"] >= 1
    # Every counter and gauge, the poison events' among them, and the database's figures.
    assert {f"{name}_total" for name in metrics.COUNTERS} <= set(figures)
    assert set(metrics.GAUGES) <= set(figures)
    assert {"publish_refusals_total", "events_quarantined_total"} <= set(figures)
    assert {"unpublishable_events", "quarantined_events"} <= set(figures)
    assert "# TYPE stripe_bridge_events_published_total counter" in body
    assert "# TYPE stripe_bridge_unpublished_events gauge" in body
    for name in metrics.HISTOGRAMS:
        assert f"# TYPE stripe_bridge_{name} histogram" in body
    assert all(
        line.startswith(("# HELP ", "# TYPE ", "stripe_bridge_")) for line in body.splitlines()
    )


def test_staff_may_scrape_and_only_with_get():
    staff = User.objects.create_user("ops", is_staff=True)
    assert scrape(staff).status_code == 200
    request = RequestFactory().post("/metrics")
    request.user = staff
    assert metrics_view(request).status_code == 405
