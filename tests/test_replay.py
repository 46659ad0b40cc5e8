"""Replay on subscribe (SPEC §5): ``latest``, ``all``, ``none``, statuses, limits, order."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import override_settings

from django_stripe_bridge.consumers import StripeEventConsumer
from django_stripe_bridge.ingest import ingest_event, timestamp_to_datetime
from django_stripe_bridge.models import StripeEvent
from django_stripe_bridge.realtime import replay
from django_stripe_bridge.selectors import compile_selector
from tests.factories import make_event
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import charge_event, ingest, open_client, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

T0 = 1_700_000_000


async def history(tx: str) -> list[str]:
    """pending → succeeded → refunded, plus a late, older capture that must not roll back."""
    events = [
        charge_event("charge.pending", tx, created=T0),
        charge_event("charge.succeeded", tx, created=T0 + 10),
        charge_event("charge.refunded", tx, created=T0 + 30, amount_refunded=1000),
        charge_event("charge.captured", tx, created=T0 + 20),  # arrives last, happened third
    ]
    return [(await ingest(event)).event.event_id for event in events]


def summary(frames):
    return [(f["headers"]["event_id"], f["headers"]["status"], f["replayed"]) for f in frames]


async def test_subscribed_comes_before_replayed_messages():
    await history("ch_first")
    client = await open_client()
    await client.send({"action": "subscribe", "selector": "id = 'ch_first'", "replay": "all"})
    frames = await client.drain(5)
    assert frames[0]["type"] == "subscribed"
    assert [f["type"] for f in frames[1:]] == ["message"] * 4
    await client.close()


async def test_latest_sends_the_newest_event_with_the_current_status():
    ids = await history("ch_latest")
    client = await open_client()
    await client.subscribe("id = 'ch_latest'", subscription="s1", replay="latest")
    frames = await client.drain(1)
    assert summary(frames) == [(ids[2], "refunded", True)]
    assert frames[0]["subscription"] == "s1" and frames[0]["channel"] == "stripe"
    await client.close()


async def test_all_sends_every_event_oldest_first_with_the_status_after_each():
    ids = await history("ch_all")
    client = await open_client()
    await client.subscribe("id = 'ch_all'", subscription="s1", replay="all")
    frames = await client.drain(4)
    # Ordered by Stripe's created time; the late capture sits where it happened and
    # reports the status the transaction had after it.
    assert summary(frames) == [
        (ids[0], "processing", True),
        (ids[1], "succeeded", True),
        (ids[3], "succeeded", True),
        (ids[2], "refunded", True),
    ]
    await client.close()


async def test_none_sends_nothing_stored():
    await history("ch_none")
    client = await open_client()
    await client.subscribe("id = 'ch_none'", subscription="s1", replay="none")
    assert await client.nothing()
    new = await ingest(dispute_event("ch_none", created=T0 + 40))
    frame = await client.recv()
    assert summary([frame]) == [(new.event.event_id, "disputed", False)]
    await client.close()


@override_settings(STRIPE_BRIDGE={"REPLAY": "all"})
async def test_replay_defaults_to_the_setting():
    await history("ch_default")
    client = await open_client()
    await client.subscribe("id = 'ch_default'", subscription="s1")
    assert len(await client.drain(4)) == 4
    await client.close()


async def test_replay_defaults_to_latest():
    await history("ch_default2")
    client = await open_client()
    await client.subscribe("id = 'ch_default2'", subscription="s1")
    assert len(await client.drain(1)) == 1
    await client.close()


async def test_latest_per_pinned_id_in_time_order():
    a = await ingest(charge_event("charge.succeeded", "ch_m1", created=T0 + 5))
    b = await ingest(charge_event("charge.failed", "ch_m2", created=T0 + 1))
    await ingest(charge_event("charge.succeeded", "ch_m3", created=T0 + 2))
    client = await open_client()
    await client.subscribe("id IN ('ch_m1', 'ch_m2', 'ch_unknown')", subscription="s1")
    frames = await client.drain(2)
    assert summary(frames) == [
        (b.event.event_id, "failed", True),
        (a.event.event_id, "succeeded", True),
    ]
    await client.close()


async def test_latest_is_the_newest_event_that_matches():
    ids = await history("ch_narrow")
    client = await open_client()
    await client.subscribe("id = 'ch_narrow' AND type = 'charge.succeeded'", subscription="s1")
    frames = await client.drain(1)
    # The transaction's current status, as a live message sent now would carry.
    assert summary(frames) == [(ids[1], "refunded", True)]
    await client.close()


async def test_all_replays_only_matching_events():
    ids = await history("ch_filter")
    client = await open_client()
    await client.subscribe(
        "id = 'ch_filter' AND status <> 'succeeded'", subscription="s1", replay="all"
    )
    frames = await client.drain(2)
    assert summary(frames) == [(ids[0], "processing", True), (ids[2], "refunded", True)]
    await client.close()


async def test_shorthand_channel_replays():
    ids = await history("ch_sh")
    client = await open_client()
    await client.subscribe(subscription="s1", channel="stripe/ch_sh")
    frames = await client.drain(1)
    assert summary(frames) == [(ids[2], "refunded", True)]
    assert frames[0]["channel"] == "stripe/ch_sh"
    await client.close()


async def test_query_string_subscription_replays():
    ids = await history("ch_qs")
    client = await open_client("/ws/stripe/?selector=id%3D%27ch_qs%27&replay=all")
    frames = await client.drain(5)
    assert frames[0]["type"] == "subscribed"
    assert [f["headers"]["event_id"] for f in frames[1:]] == [ids[0], ids[1], ids[3], ids[2]]
    await client.close()


async def test_broad_selectors_do_not_replay():
    await history("ch_broad")

    @database_sync_to_async
    def cookie():
        user = get_user_model().objects.create_user("boss", password="x", is_staff=True)
        return session_cookie(user)

    client = await open_client(cookie=await cookie())
    await client.subscribe("amount > 0", subscription="s1", replay="all")
    assert await client.nothing()
    await client.close()


async def test_live_events_after_replay_are_not_marked_replayed():
    await history("ch_then")
    client = await open_client()
    await client.subscribe("id = 'ch_then'", subscription="s1")
    assert (await client.recv())["replayed"] is True
    assert await client.nothing(0.1)
    await ingest(dispute_event("ch_then", created=T0 + 50))
    frame = await client.recv()
    assert frame["replayed"] is False and frame["headers"]["status"] == "disputed"
    await client.close()


async def test_all_is_capped_at_100_per_id_keeping_the_newest():
    @database_sync_to_async
    def store():
        ingest_event(charge_event("charge.pending", "ch_many", created=T0), publish=False)
        for i in range(1, 104):
            ingest_event(
                charge_event("charge.updated", "ch_many", created=T0 + i, status="pending"),
                publish=False,
            )
        ingest_event(charge_event("charge.succeeded", "ch_many", created=T0 + 200), publish=False)
        return list(
            StripeEvent.objects.filter(transaction_id="ch_many")
            .order_by("created", "id")
            .values_list("event_id", flat=True)
        )

    ids = await store()
    client = await open_client()
    await client.subscribe("id = 'ch_many'", subscription="s1", replay="all")
    frames = await client.drain(100)
    assert [f["headers"]["event_id"] for f in frames] == ids[-100:]
    # Statuses come from the whole history, not just the replayed part.
    assert [f["headers"]["status"] for f in frames] == ["processing"] * 99 + ["succeeded"]
    await client.close()


async def test_replay_failure_closes_so_the_client_retries():
    class Broken(StripeEventConsumer):
        async def load_replay(self, ids, mode, selector):
            raise RuntimeError("database down")

    client = await open_client(consumer=Broken)
    await client.send({"action": "subscribe", "selector": "id = 'ch_x'"})
    assert (await client.recv())["type"] == "subscribed"
    output = await client.communicator.receive_output(timeout=2)
    assert output == {"type": "websocket.close", "code": 1011}


# -- the fold, as a unit ------------------------------------------------------------------


def dispute_event(charge_id: str, *, created: int, status: str = "needs_response") -> dict:
    dispute = {"id": f"dp_{charge_id}", "object": "dispute", "charge": charge_id, "status": status}
    kind = "charge.dispute.closed" if status in ("won", "lost") else "charge.dispute.created"
    return make_event(kind, dispute, created=created)


def test_status_fold_follows_the_ingest_rule():
    rows = [
        StripeEvent(
            payload=charge_event(kind, "ch_u", created=T0 + t, **extra),
            created=timestamp_to_datetime(T0 + t),
        )
        for kind, t, extra in [
            ("charge.updated", 0, {"status": "pending"}),
            ("charge.succeeded", 1, {}),
            ("charge.refunded", 3, {"amount_refunded": 400}),
            ("charge.succeeded", 3, {}),  # same second, less refunded: no roll-back
            ("charge.refunded", 4, {"amount_refunded": 1000}),
            ("charge.updated", 5, {"amount_refunded": 1000}),  # tells nothing new
        ]
    ]
    rows.append(
        StripeEvent(
            payload=dispute_event("ch_u", created=T0 + 6, status="won"),
            created=timestamp_to_datetime(T0 + 6),
        )
    )
    statuses = [status for _, status in replay.status_fold(rows)]
    assert statuses == [
        "processing",  # a pending charge
        "succeeded",
        "partially_refunded",
        "partially_refunded",
        "refunded",
        "refunded",
        "dispute_won",
    ]


def test_replay_messages_none_and_unpinned():
    sel = compile_selector("id = 'x'")
    assert replay.replay_messages([], "all", sel) == []
    assert replay.replay_messages(["x"], "none", sel) == []
    with pytest.raises(ValueError, match="unknown replay mode"):
        replay.replay_messages(["x"], "bogus", sel)


@pytest.mark.parametrize("mode", ["latest", "all"])
def test_one_query_for_all_the_ids_of_a_subscription(mode, django_assert_max_num_queries):
    """100 ids, real or made up, cost a fixed number of queries (not one per id)."""
    for n in range(3):
        ingest_event(charge_event("charge.succeeded", f"ch_q{n}"))
    ids = [f"ch_q{n}" for n in range(3)] + [f"ch_madeup_{n}" for n in range(97)]
    selector = compile_selector(None)
    with django_assert_max_num_queries(2):
        messages = replay.replay_messages(ids, mode, selector)
    assert sorted(m["transaction_id"] for m in messages) == ["ch_q0", "ch_q1", "ch_q2"]


def test_catch_up_keeps_what_was_stored_or_published_since():
    """``since`` (the catch-up after a state loss) keeps events stored or published since."""
    import datetime as dt

    from django.utils import timezone

    rows = [
        ingest_event(charge_event(t, "ch_since")).event
        for t in ("charge.pending", "charge.succeeded", "charge.updated")
    ]
    long_ago = timezone.now() - dt.timedelta(hours=1)
    StripeEvent.objects.filter(pk__in=[rows[0].pk, rows[1].pk]).update(
        received_at=long_ago, published_at=long_ago
    )
    StripeEvent.objects.filter(pk=rows[1].pk).update(published_at=timezone.now())  # late relay
    since = timezone.now() - dt.timedelta(minutes=1)
    messages = replay.replay_messages(["ch_since"], "all", compile_selector(None), since=since)
    assert [m["event_id"] for m in messages] == [rows[1].event_id, rows[2].event_id]


def test_latest_reads_only_the_newest_event_unless_the_selector_is_narrower(
    django_assert_num_queries,
):
    for n, kind in enumerate(["charge.pending", "charge.succeeded", "charge.refunded"]):
        ingest_event(charge_event(kind, "ch_q", created=T0 + n), publish=False)
    with django_assert_num_queries(2):  # the transaction's status, the newest event
        [message] = replay.replay_messages(["ch_q"], "latest", compile_selector("id = 'ch_q'"))
    assert message["headers"]["type"] == "charge.refunded"
    narrower = compile_selector("id = 'ch_q' AND type = 'charge.pending'")
    with django_assert_num_queries(3):  # and the older ones, for that id alone
        [message] = replay.replay_messages(["ch_q"], "latest", narrower)
    assert message["headers"]["type"] == "charge.pending"


def test_latest_replays_read_together_give_each_what_it_would_get_alone():
    for tx in ("ch_m1", "ch_m2"):
        ingest_event(charge_event("charge.pending", tx, created=T0))
        ingest_event(charge_event("charge.succeeded", tx, created=T0 + 10))
    requests = [
        (["ch_m1"], compile_selector("id = 'ch_m1'")),
        (["ch_m1", "ch_m2", "ch_none"], compile_selector("id IN ('ch_m1', 'ch_m2', 'ch_none')")),
        # Narrower than its id: the newest event does not match, an older one does.
        (["ch_m2"], compile_selector("id = 'ch_m2' AND type = 'charge.pending'")),
        (["ch_none"], compile_selector("id = 'ch_none'")),
    ]
    together = replay.latest_many(requests)
    alone = [replay.replay_messages(ids, "latest", sel) for ids, sel in requests]
    assert [sorted(m["event_id"] for m in ms) for ms in together] == [
        sorted(m["event_id"] for m in ms) for ms in alone
    ]
    assert [m["headers"]["type"] for m in together[2]] == ["charge.pending"]
    assert [m["headers"]["status"] for m in together[2]] == ["succeeded"]  # current status
    assert together[3] == [] and len(together[1]) == 2


async def test_latest_replays_waiting_together_take_one_read(monkeypatch):
    for n in range(3):
        await ingest(charge_event("charge.succeeded", f"ch_w{n}", created=T0 + n))
    reads = []
    latest_many = replay.latest_many

    def counted(requests):
        reads.append(len(requests))
        return latest_many(requests)

    monkeypatch.setattr(replay, "latest_many", counted)
    selectors = [compile_selector(f"id = 'ch_w{n % 3}'") for n in range(12)]
    results = await asyncio.gather(
        *(replay.read_latest([f"ch_w{n % 3}"], sel) for n, sel in enumerate(selectors))
    )
    assert sum(reads) == 12 and len(reads) <= 2  # the first alone, the rest together
    assert [[m["transaction_id"] for m in ms] for ms in results] == [
        [f"ch_w{n % 3}"] for n in range(12)
    ]


async def test_a_failed_latest_read_fails_every_replay_waiting_for_it(monkeypatch):
    def broken(requests):
        raise RuntimeError("database down")

    monkeypatch.setattr(replay, "latest_many", broken)
    sel = compile_selector("id = 'ch_x'")
    results = await asyncio.gather(
        *(replay.read_latest(["ch_x"], sel) for _ in range(3)), return_exceptions=True
    )
    assert [type(r) for r in results] == [RuntimeError] * 3
    # The reader goes on: a later read works.
    monkeypatch.undo()
    assert await replay.read_latest(["ch_x"], sel) == []


async def test_latest_replays_read_together_stay_under_the_id_bound(monkeypatch):
    monkeypatch.setattr(replay, "MAX_LATEST_IDS", 5)
    reads = []
    latest_many = replay.latest_many

    def counted(requests):
        reads.append(sum(len(ids) for ids, _ in requests))
        return latest_many(requests)

    monkeypatch.setattr(replay, "latest_many", counted)
    sel = compile_selector(None)
    await asyncio.gather(*(replay.read_latest([f"ch_{n}", f"ch_{n}b"], sel) for n in range(7)))
    assert sum(reads) == 14 and max(reads) <= 5
