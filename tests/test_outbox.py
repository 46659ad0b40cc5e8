"""The outbox relay: committed but unpublished events reach subscribers without an operator."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections
from django.test import override_settings
from django.utils import timezone

from django_stripe_bridge import messaging, metrics, outbox
from django_stripe_bridge.ingest import ingest_event
from django_stripe_bridge.layers import redis_channel_layer
from django_stripe_bridge.models import StripeEvent
from django_stripe_bridge.outbox import relay_unpublished
from tests.factories import charge_object, make_event
from tests.live import ROOT, free_port, run_daphne
from tests.realtime_fixtures import unique_prefix
from tests.test_scaleout import SECRET, recv_json, ws_connect

RELAYS = 4
EVENTS = 30


def store_unpublished(count: int, *, age: float = 60) -> list[StripeEvent]:
    """Events committed but never published (as after a kill between commit and publish)."""
    rows = [
        ingest_event(
            make_event("charge.succeeded", charge_object(f"ch_outbox_{i}")), publish=False
        ).event
        for i in range(count)
    ]
    StripeEvent.objects.filter(pk__in=[r.pk for r in rows]).update(
        received_at=timezone.now() - dt.timedelta(seconds=age)
    )
    return rows


def drain(layer, channel: str) -> list[dict]:
    async def collect() -> list[dict]:
        got = []
        while True:
            try:
                got.append(await asyncio.wait_for(layer.receive(channel), 0.3))
            except TimeoutError:
                return got

    return async_to_sync(collect)()


def listen_to_broadcast() -> tuple[Any, str]:
    """The (emptied) test layer and a channel in the broadcast group."""
    layer = get_channel_layer()
    async_to_sync(layer.flush)()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(messaging.broadcast_group(), channel)
    return layer, channel


def broadcast_events(layer, channel: str) -> list[dict]:
    """The events the channel received, each batch (``stripe.events``) taken apart."""
    return [
        event
        for m in drain(layer, channel)
        for event in (m["events"] if m["type"] == messaging.EVENTS_MESSAGE_TYPE else [m])
    ]


@pytest.mark.django_db(transaction=True)
def test_several_relays_at_once_send_each_event_exactly_once():
    layer, channel = listen_to_broadcast()
    rows = store_unpublished(EVENTS)
    before = metrics.snapshot()["events_republished"]
    counts: list[int] = []
    start = threading.Barrier(RELAYS)

    def relay() -> None:
        start.wait()
        try:
            counts.append(relay_unpublished(older_than=5))
        finally:
            close_old_connections()

    threads = [threading.Thread(target=relay) for _ in range(RELAYS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(counts) == EVENTS, counts
    received = [event["event_id"] for event in broadcast_events(layer, channel)]
    assert sorted(received) == sorted(r.event_id for r in rows)  # each once, none twice
    assert not StripeEvent.objects.filter(published_at__isnull=True).exists()
    assert metrics.snapshot()["events_republished"] - before == EVENTS


@pytest.mark.django_db(transaction=True)
def test_relay_waits_for_young_events_and_for_the_layer():
    (young,) = store_unpublished(1, age=0)
    assert relay_unpublished(older_than=5) == 0  # its own publish may still be under way
    StripeEvent.objects.filter(pk=young.pk).update(
        received_at=timezone.now() - dt.timedelta(seconds=10)
    )
    down = {"default": redis_channel_layer(f"redis://127.0.0.1:{free_port()}/0")}
    with override_settings(CHANNEL_LAYERS=down):
        assert relay_unpublished(older_than=5) == 0  # layer down: the claim is rolled back
    assert StripeEvent.objects.get(pk=young.pk).published_at is None
    assert relay_unpublished(older_than=5) == 1  # the layer answers again
    assert StripeEvent.objects.get(pk=young.pk).published_at is not None


@pytest.mark.redis
async def test_event_whose_publish_failed_reaches_a_subscriber_of_another_process(redis_url):
    """Process A commits two events and never publishes them: one publish fails (its Redis
    is unreachable), one is skipped as if A were killed after the commit. Server B's relay
    delivers both to B's subscriber within seconds; nobody runs a command."""
    env = {
        "REDIS_URL": redis_url,
        "CHANNELS_REDIS_PREFIX": unique_prefix(),
        "STRIPE_WEBHOOK_SECRET": SECRET,
    }
    tx = f"ch_outbox_{uuid.uuid4().hex[:8]}"
    events = [
        make_event("charge.pending", charge_object(tx, status="pending"), event_id=f"evt_a_{tx}"),
        make_event("charge.succeeded", charge_object(tx), event_id=f"evt_b_{tx}"),
    ]
    code = (
        "import json, os\n"
        "from django_stripe_bridge.ingest import ingest_event\n"
        "from django_stripe_bridge.models import StripeEvent\n"
        "a, b = json.loads(os.environ['OUTBOX_EVENTS'])\n"
        "ingest_event(a)\n"
        "ingest_event(b, publish=False)\n"
        # Both committed; whether B's relay has published them yet is a race under load.
        "assert StripeEvent.objects.filter(event_id__in=[a['id'], b['id']]).count() == 2\n"
    )
    with run_daphne(env=env) as b:
        async with ws_connect(b, f"id = '{tx}'", replay="none") as ws:
            assert (await recv_json(ws))["type"] == "subscribed"
            process_a = {
                **b.env,
                "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # A's layer is down
                "OUTBOX_EVENTS": json.dumps(events),
            }
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "manage.py", "shell", "-c", code],
                cwd=ROOT,
                env={k: v for k, v in process_a.items() if k != "PYTEST_CURRENT_TEST"},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            frames = [await recv_json(ws, timeout=15) for _ in events]
            assert [f["headers"]["event_id"] for f in frames] == [e["id"] for e in events]
            assert all(f["replayed"] is False for f in frames)
            with pytest.raises(TimeoutError):
                await recv_json(ws, timeout=3)  # and each only once


@pytest.mark.django_db(transaction=True)
def test_a_publish_starts_the_process_relay_which_then_runs_by_itself():
    """No worker to run: the first publish of a process starts its relay thread."""
    (stuck,) = store_unpublished(1)
    fresh = ingest_event(make_event("charge.succeeded", charge_object("ch_fresh")), publish=False)
    bridge = {**settings.STRIPE_BRIDGE, "OUTBOX_RELAY": True, "OUTBOX_INTERVAL": 0.1}
    with override_settings(STRIPE_BRIDGE=bridge):
        assert messaging.publish_event(fresh.event) is True
        deadline = time.monotonic() + 10
        while StripeEvent.objects.get(pk=stuck.pk).published_at is None:
            assert time.monotonic() < deadline, "the relay did not publish the stuck event"
            time.sleep(0.05)
    assert outbox._thread is not None and outbox._thread.is_alive()


@pytest.mark.django_db(transaction=True)
def test_a_backlog_is_claimed_and_sent_in_chunks():
    layer, channel = listen_to_broadcast()
    rows = store_unpublished(outbox.RELAY_CHUNK * 2 + 7)
    assert relay_unpublished(older_than=5, limit=1000) == len(rows)
    batches = drain(layer, channel)
    # One broadcast message per chunk, the events of each in id order.
    assert [len(m["events"]) for m in batches] == [outbox.RELAY_CHUNK] * 2 + [7]
    sent = [event["event_pk"] for m in batches for event in m["events"]]
    assert sent == sorted(r.pk for r in rows)
    assert relay_unpublished(older_than=5, limit=1000) == 0


@pytest.mark.django_db(transaction=True)
def test_rows_another_relay_claimed_meanwhile_are_not_sent_twice(monkeypatch):
    """Without SKIP LOCKED two relays may read the same rows; the conditional UPDATE decides."""
    from django.db import connection

    monkeypatch.setattr(connection.features, "has_select_for_update_skip_locked", False)
    layer, channel = listen_to_broadcast()
    rows = store_unpublished(4)
    taken = rows[1]

    def other_relay_first(execute, sql, params, many, context):
        if sql.startswith("UPDATE") and "published_at" in sql and "IS NULL" in sql:
            # Another relay's claim of one of the rows lands just before ours.
            execute(
                'UPDATE "django_stripe_bridge_stripeevent" SET "published_at" = %s WHERE "id" = %s',
                [timezone.now() - dt.timedelta(days=1), taken.pk],
                False,
                context,
            )
        return execute(sql, params, many, context)

    with connection.execute_wrapper(other_relay_first):
        assert relay_unpublished(older_than=5) == 3
    received = [event["event_pk"] for event in broadcast_events(layer, channel)]
    assert received == [r.pk for r in rows if r.pk != taken.pk]
    assert not StripeEvent.objects.filter(published_at__isnull=True).exists()
