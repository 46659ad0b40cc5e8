"""Poison isolation on publish: an event the channel layer cannot carry holds up nothing.

An amount of 2**64 is valid JSON and stored like any other event, but channels-redis
serializes messages with msgpack, which refuses integers beyond 64 bits. The events around
it are published all the same; it is counted, marked on its row, shown in the admin and
the metrics, and the relay stops trying it after ``MAX_PUBLISH_ATTEMPTS`` refusals.
On the real Redis layer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.utils import timezone

from django_stripe_bridge import messaging, metrics, monitoring
from django_stripe_bridge.ingest import ingest_event
from django_stripe_bridge.models import MAX_PUBLISH_ATTEMPTS, StripeEvent
from django_stripe_bridge.outbox import relay_unpublished
from tests.factories import charge_object, make_event
from tests.webhook_fixtures import *  # noqa: F403
from tests.webhook_fixtures import ChannelReceiver, redis_layer_settings

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

T = 1_700_000_000


@pytest.fixture
def redis_layer(redis_url: str) -> Any:
    with override_settings(CHANNEL_LAYERS=redis_layer_settings(redis_url)):
        yield


@pytest.fixture
def broadcast(redis_layer: None, channel_receiver: Any) -> ChannelReceiver:
    """A channel in the broadcast group of the Redis layer."""
    return channel_receiver(messaging.broadcast_group())


def received(receiver: ChannelReceiver) -> list[str]:
    """The event ids that reached ``receiver`` (batches taken apart), in order."""
    ids = []
    while True:
        try:
            message = receiver.receive(0.5)
        except TimeoutError:
            return ids
        batch = message["events"] if message["type"] == messaging.EVENTS_MESSAGE_TYPE else [message]
        ids += [event["event_id"] for event in batch]


def store(count: int, poison_at: int) -> tuple[list[StripeEvent], StripeEvent]:
    """``count`` ordinary events and, at ``poison_at``, one msgpack cannot carry; all
    committed long enough ago for the relay, none published."""
    rows = []
    for n in range(count + 1):
        amount = 2**64 if n == poison_at else 1000 + n
        obj = charge_object(f"ch_pub_{n:02d}", amount=amount)
        event = make_event("charge.succeeded", obj, created=T + n, event_id=f"evt_pub_{n:02d}")
        rows.append(ingest_event(event, publish=False).event)
    StripeEvent.objects.update(received_at=timezone.now() - dt.timedelta(seconds=60))
    poison = rows.pop(poison_at)
    return rows, poison


def test_the_relay_publishes_around_an_event_the_layer_refuses_then_gives_up_on_it(
    broadcast: ChannelReceiver,
) -> None:
    good, poison = store(30, poison_at=12)
    before = metrics.snapshot()

    assert relay_unpublished(older_than=5) == 31  # 30 sent, 1 refused
    assert received(broadcast) == [row.event_id for row in good]  # in order, each once
    assert StripeEvent.objects.filter(published_at__isnull=False).count() == 30
    poison.refresh_from_db()
    assert poison.published_at is None and poison.publish_attempts == 1
    assert "OverflowError" in poison.publish_error
    after = metrics.snapshot()
    assert after["publish_refusals"] - before["publish_refusals"] == 1
    assert after["events_republished"] - before["events_republished"] == 30

    # Later rounds try it again, a bounded number of times, then skip it.
    for _ in range(MAX_PUBLISH_ATTEMPTS + 2):
        relay_unpublished(older_than=5)
    poison.refresh_from_db()
    assert poison.publish_attempts == MAX_PUBLISH_ATTEMPTS and poison.unpublishable
    assert relay_unpublished(older_than=5) == 0
    assert received(broadcast) == []

    # Events committed after it are published as ever.
    late = ingest_event(
        make_event("charge.succeeded", charge_object("ch_late"), event_id="evt_late"),
        publish=False,
    ).event
    StripeEvent.objects.filter(pk=late.pk).update(
        received_at=timezone.now() - dt.timedelta(seconds=60)
    )
    assert relay_unpublished(older_than=5) == 1
    assert received(broadcast) == ["evt_late"]

    # The metrics and the admin show it.
    body = monitoring.render()
    assert "stripe_bridge_unpublishable_events 1.0\n" in body
    assert "stripe_bridge_unpublished_events 0.0\n" in body
    assert "stripe_bridge_unpublished_oldest_age_seconds 0.0\n" in body
    staff = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(staff)
    url = "/admin/django_stripe_bridge/stripeevent/"
    page = client.get(url, {"publishing": "given_up"}).content.decode()
    assert "evt_pub_12" in page and "evt_pub_11" not in page
    assert "given up: refused 3 times" in page
    assert "evt_pub_12" not in client.get(url, {"publishing": "pending"}).content.decode()


def test_publishing_after_the_commit_sends_the_batch_around_a_refused_event(
    broadcast: ChannelReceiver,
) -> None:
    """The group commit's publish (and the view's): the rest of the batch goes at once."""
    good, poison = store(30, poison_at=0)
    before = metrics.snapshot()
    assert messaging.publish_events([(row, None) for row in [poison, *good]]) == 30
    assert received(broadcast) == [row.event_id for row in good]
    assert set(StripeEvent.objects.filter(published_at__isnull=True)) == {poison}
    after = metrics.snapshot()
    assert after["publish_refusals"] - before["publish_refusals"] == 1
    assert after["publish_failures"] == before["publish_failures"]


def test_a_layer_that_is_down_counts_against_no_event(redis_layer: None) -> None:
    from django_stripe_bridge.layers import redis_channel_layer
    from tests.live import free_port

    store(3, poison_at=1)
    down = {"default": redis_channel_layer(f"redis://127.0.0.1:{free_port()}/0")}
    with override_settings(CHANNEL_LAYERS=down):
        assert relay_unpublished(older_than=5) == 0
    assert not StripeEvent.objects.filter(publish_attempts__gt=0).exists()
    assert StripeEvent.objects.filter(published_at__isnull=True).count() == 4


def test_republish_unpublished_skips_what_the_relay_gave_up_on(broadcast: ChannelReceiver) -> None:
    """A script that retries ``--unpublished`` until it succeeds would never stop on it."""
    from io import StringIO

    from django.core.management import CommandError, call_command

    good, poison = store(2, poison_at=1)
    StripeEvent.objects.filter(pk=poison.pk).update(publish_attempts=MAX_PUBLISH_ATTEMPTS)
    out = StringIO()
    call_command("stripe_bridge_republish", "--unpublished", stdout=out)
    assert "Published 2 event(s); skipped 1 the channel layer refused" in out.getvalue()
    assert received(broadcast) == [row.event_id for row in good]
    # Named, it is tried again (and still refused).
    with pytest.raises(CommandError, match="1 failed: evt_pub_01"):
        call_command("stripe_bridge_republish", poison.event_id, stderr=StringIO())
