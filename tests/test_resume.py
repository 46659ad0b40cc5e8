"""Exact resume (issue 18): cursors, ``since``, ``recovered``, and the bounds, in process."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from django_stripe_bridge.consumers import StripeEventConsumer
from django_stripe_bridge.realtime import resume
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import charge_event, ingest, open_client, session_cookie, until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("text", "pk"),
    [("1", 1), ("42", 42), ("9" * 20, int("9" * 20)), ("", None), ("9" * 21, None),
     ("-1", None), ("1.5", None), (" 1", None), ("\u0661", None), (7, None), (None, None)],
)  # fmt: skip
def test_parse_cursor(text, pk):
    assert resume.parse_cursor(text) == pk


def test_cursor_of():
    assert resume.cursor_of({"event_pk": 12}) == "12"
    assert resume.cursor_of({"event_pk": None}) is None
    assert resume.cursor_of({"event_pk": True}) is None
    assert resume.cursor_of({}) is None


async def stored(tx: str, count: int) -> list:
    return [
        (await ingest(charge_event("charge.updated", tx, amount=1000 + n))).event
        for n in range(count)
    ]


async def test_every_message_carries_its_cursor():
    client = await open_client()
    await client.subscribe("id = 'ch_cur'", subscription="s1", replay="none")
    row = (await ingest(charge_event("charge.succeeded", "ch_cur"))).event
    assert (await client.recv())["cursor"] == str(row.pk)
    await client.close()


async def test_since_sends_what_followed_the_cursor_in_order_then_live():
    rows = await stored("ch_back", 6)
    client = await open_client()
    answer = await client.subscribe("id = 'ch_back'", subscription="s1", since=str(rows[1].pk))
    assert (answer["type"], answer["recovered"]) == ("subscribed", True)
    frames = await client.messages(4)
    assert [f["cursor"] for f in frames] == [str(r.pk) for r in rows[2:]]
    assert all(f["replayed"] for f in frames)
    assert await client.nothing()
    newer = (await ingest(charge_event("charge.refunded", "ch_back", amount_refunded=1))).event
    frame = await client.recv()
    assert (frame["cursor"], frame["replayed"]) == (str(newer.pk), False)
    await client.close()


async def test_since_the_newest_cursor_sends_nothing_but_is_recovered():
    rows = await stored("ch_upto", 2)
    client = await open_client()
    answer = await client.subscribe("id = 'ch_upto'", since=rows[-1].pk)  # a number works too
    assert answer["recovered"] is True
    assert await client.nothing()
    await client.close()


@pytest.mark.parametrize("since", ["999999999", "not-a-cursor"])
async def test_an_unknown_cursor_is_not_recovered_and_replays_latest(since):
    rows = await stored("ch_unknown", 3)
    client = await open_client()
    answer = await client.subscribe("id = 'ch_unknown'", subscription="s1", since=since)
    assert (answer["type"], answer["recovered"]) == ("subscribed", False)
    frame = await client.recv()
    assert (frame["cursor"], frame["replayed"]) == (str(rows[-1].pk), True)
    assert await client.nothing()
    await client.close()


async def test_too_much_to_resume_is_not_recovered(monkeypatch):
    monkeypatch.setattr(resume, "MAX_RESUME_EVENTS", 3)
    rows = await stored("ch_many", 5)
    client = await open_client()
    answer = await client.subscribe("id = 'ch_many'", since=str(rows[0].pk))
    assert answer["recovered"] is False  # 4 events follow the cursor: more than 3
    assert (await client.recv())["cursor"] == str(rows[-1].pk)  # then 'latest'
    again = await client.subscribe("id = 'ch_many'", subscription="s2", since=str(rows[1].pk))
    assert again["recovered"] is True  # exactly 3 follow: within the bound
    assert len(await client.messages(3)) == 3
    await client.close()


async def test_a_broadcast_subscription_cannot_resume():
    @database_sync_to_async
    def cookie():
        user = get_user_model().objects.create_user("boss", password="x", is_staff=True)
        return session_cookie(user)

    client = await open_client(cookie=await cookie())
    answer = await client.subscribe("amount > 0", since="1")
    assert (answer["type"], answer["recovered"]) == ("subscribed", False)
    await client.close()


async def test_a_bad_since_is_a_bad_frame():
    client = await open_client()
    answer = await client.subscribe("id = 'ch_bad'", subscription="s1", since=["1"])
    assert (answer["type"], answer["code"], answer["subscription"]) == ("error", "bad_frame", "s1")
    await client.close()


async def test_an_event_arriving_while_the_resume_is_read_is_sent_once_after_it():
    rows = await stored("ch_race", 3)
    racer = charge_event("charge.refunded", "ch_race", amount_refunded=1)

    class Racing(StripeEventConsumer):
        async def load_resume(self, ids, selector, after):
            await ingest(racer)  # joined, not yet read: arrives live and is held back
            await until(lambda: bool(self.subscriptions["s1"].buffer))
            return await super().load_resume(ids, selector, after)

    client = await open_client(consumer=Racing)
    answer = await client.subscribe("id = 'ch_race'", subscription="s1", since=str(rows[0].pk))
    assert answer["recovered"] is True
    frames = await client.drain(3)
    got = [(f["headers"]["event_id"], f["replayed"]) for f in frames]
    assert got == [(rows[1].event_id, True), (rows[2].event_id, True), (racer["id"], True)]
    await client.close()
