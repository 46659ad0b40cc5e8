"""A thin event whose fetched event the database refuses (a poison event) is quarantined like
a poison snapshot event: kept apart once, visible in the admin, never fetched again, and the
rest of the queue is folded. SQLite and PostgreSQL (``DATABASE_URL``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from django_stripe_bridge import ingest, thin
from django_stripe_bridge.models import QuarantinedEvent, StripeEvent, StripeTransaction, ThinEvent
from django_stripe_bridge.upstream import plain
from tests.charge_fixtures import *  # noqa: F403
from tests.factories import charge_object, make_event
from tests.relay import *  # noqa: F403
from tests.relay import Relay
from tests.test_thin_events import destinations, forward

__all__ = ["destinations"]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.standin]

HALF = 2**62 + 1  # two captures of this much pass a bigint's 2**63 - 1


def poison(standin: Any, client: Any, notification: dict[str, Any]) -> str:
    """Make the stand-in answer the snapshot event behind ``notification`` as a second
    capture of ``HALF`` for ``pi_huge`` (whose first is stored): the fold overflows. Each of
    several fetches would get it, so a retry would be seen. The snapshot event's id."""
    v2_event = client.v2.core.events.retrieve(notification["id"])
    snapshot_id = v2_event.snapshot_event
    event = plain(client.v1.events.retrieve(snapshot_id))
    event["data"]["object"].update(amount=HALF, amount_captured=HALF, payment_intent="pi_huge")
    standin._request(
        "POST",
        "/_standin/faults",
        {"path": f"/v1/events/{snapshot_id}", "answers": [{"status": 200, "body": event}] * 5},
    )
    return snapshot_id


def test_a_thin_event_the_database_refuses_is_quarantined_once_and_the_queue_goes_on(
    destinations: dict[str, Any], relay: Relay
) -> None:
    client, standin = destinations["client"], destinations["standin"]
    charges = [
        client.v1.charges.create({"amount": 1000 + n, "currency": "usd", "source": "tok_visa"}).id
        for n in range(3)
    ]
    delivered = forward(relay, only="thin")
    assert len(delivered) == 3
    # The first capture of pi_huge came earlier (a snapshot webhook): it stores.
    first = charge_object("ch_huge_1", amount=HALF, amount_captured=HALF, payment_intent="pi_huge")
    ingest.ingest_event(make_event("charge.succeeded", first, event_id="evt_huge_1"))
    bad = sorted(delivered, key=lambda a: a["body"]["created"])[1]["body"]
    snapshot_id = poison(standin, client, bad)

    result = thin.drain()
    assert (result.done, result.retried, result.refused, result.quarantined) == (2, 0, 0, 1)
    row = ThinEvent.objects.get(event_id=bad["id"])
    assert (row.status, row.attempts, row.next_attempt_at) == ("quarantined", 1, None)
    assert row.stripe_event_id == snapshot_id and "quarantined" in row.last_error
    kept = QuarantinedEvent.objects.get()
    assert (kept.event_id, kept.deliveries, kept.transaction_id) == (snapshot_id, 1, "pi_huge")
    assert "Overflow" in kept.error or "out of range" in kept.error
    # The good ones are folded, the bad one stored nothing.
    assert ThinEvent.objects.filter(status="done").count() == 2
    succeeded = StripeTransaction.objects.filter(pk__in=charges, status="succeeded")
    assert succeeded.count() == 2
    assert not StripeEvent.objects.filter(event_id=snapshot_id).exists()
    assert StripeTransaction.objects.get(pk="pi_huge").amount_captured == HALF

    # No retry storm: nothing is due, ever again.
    for hours in (1, 24, 24 * 30):
        later = thin.drain(now=timezone.now() + dt.timedelta(hours=hours))
        assert later == thin.DrainResult()
    row.refresh_from_db()
    kept.refresh_from_db()
    assert (row.attempts, kept.deliveries) == (1, 1)

    # Both are visible in the admin.
    staff = get_user_model().objects.create_superuser("ops", "ops@example.com", "x")
    browser = HttpClient()
    browser.force_login(staff)
    thin_list = browser.get(
        reverse("admin:django_stripe_bridge_thinevent_changelist") + "?status=quarantined"
    )
    assert thin_list.status_code == 200 and bad["id"] in thin_list.content.decode()
    kept_list = browser.get(reverse("admin:django_stripe_bridge_quarantinedevent_changelist"))
    assert kept_list.status_code == 200 and snapshot_id in kept_list.content.decode()


def test_a_fetched_event_that_is_no_event_is_refused_not_retried(
    destinations: dict[str, Any], relay: Relay
) -> None:
    client, standin = destinations["client"], destinations["standin"]
    client.v1.charges.create({"amount": 1000, "currency": "usd", "source": "tok_visa"})
    notification = forward(relay, only="thin")[0]["body"]
    snapshot_id = client.v2.core.events.retrieve(notification["id"]).snapshot_event
    broken = {"id": snapshot_id, "object": "event", "type": "charge.succeeded", "created": -1}
    standin._request(
        "POST",
        "/_standin/faults",
        {"path": f"/v1/events/{snapshot_id}", "answers": [{"status": 200, "body": broken}] * 3},
    )
    assert thin.drain().refused == 1
    row = ThinEvent.objects.get()
    assert (row.status, row.attempts) == ("refused", 1)
    assert "'created'" in row.last_error
    assert thin.drain(now=timezone.now() + dt.timedelta(days=1)) == thin.DrainResult()
    assert not StripeEvent.objects.exists() and not QuarantinedEvent.objects.exists()
