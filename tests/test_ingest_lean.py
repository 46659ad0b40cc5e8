"""The webhook's lean ingest (issue 20): a body is parsed and validated once, its signed text
is the stored payload, the events sent are marked with the next batch, and a batch is
published only to the groups that have members.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections

from django_stripe_bridge import events, fanout, group_commit, webhooks
from django_stripe_bridge.asgi import with_stripe_webhook
from django_stripe_bridge.messaging import broadcast_group, transaction_group
from django_stripe_bridge.models import StripeEvent, StripeTransaction
from tests import services
from tests.factories import charge_object, make_event
from tests.test_stripe_corpus import corpus_path
from tests.test_webhook_asgi import call, signed, site
from tests.webhook_fixtures import *  # noqa: F403
from tests.webhook_fixtures import redis_layer_settings

# --- parsed once ---------------------------------------------------------------------------


def _body(event: dict[str, Any], **dumps: Any) -> bytes:
    return json.dumps(event, **dumps).encode()


def _charge_event(**obj: Any) -> dict[str, Any]:
    return make_event("charge.succeeded", charge_object("ch_lean", **obj), event_id="evt_lean")


def test_a_body_as_stripe_sends_it_is_parsed_once_with_its_text() -> None:
    text = json.dumps(_charge_event(description="Café ✓"), indent=2, ensure_ascii=False)
    event = webhooks.parse_event(text.encode())
    assert isinstance(event, events.VerifiedEvent)
    assert event.text == text
    assert event == json.loads(text)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_body(_charge_event(description="caf\u00e9")), id="escaped-latin"),
        pytest.param(_body(_charge_event(description="\U0001f600")), id="escaped-pair"),
        pytest.param(b"\xef\xbb\xbf" + _body(_charge_event()), id="utf-8-bom"),
        pytest.param(_body(_charge_event()).decode().encode("utf-16"), id="utf-16"),
    ],
)
def test_any_other_json_body_reads_as_before(body: bytes) -> None:
    before = events.validate_event(json.loads(body))
    assert webhooks.parse_event(body) == before


def test_a_whole_number_created_as_a_float_is_stored_as_an_integer() -> None:
    event = dict(_charge_event())
    body = json.dumps({**event, "created": float(event["created"])}).encode()
    parsed = webhooks.parse_event(body)
    assert not isinstance(parsed, events.VerifiedEvent)  # its text says 1700000000.0
    assert parsed["created"] == event["created"] and isinstance(parsed["created"], int)


@pytest.mark.parametrize(
    ("escape", "where"),
    [
        ("\\u0000", "description"),
        ("\\ud800", "description"),
        ("\\udc00", "description"),  # a lone low surrogate too
        ("\\uDFFF", "description"),
    ],
)
def test_an_escaped_nul_or_lone_surrogate_is_still_refused_naming_where(
    escape: str, where: str
) -> None:
    body = _body(_charge_event(description="HOLE")).replace(b"HOLE", escape.encode())
    with pytest.raises(events.InvalidEvent, match=where):
        webhooks.parse_event(body)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_number_json_cannot_hold_is_still_refused_naming_where(literal: str) -> None:
    body = _body(_charge_event(amount=1)).replace(b'"amount": 1', f'"amount": {literal}'.encode())
    with pytest.raises(events.InvalidEvent, match="amount"):
        webhooks.parse_event(body)


def test_every_corpus_event_parses_as_json_loads_reads_it() -> None:
    corpus = corpus_path()
    files = sorted((corpus / "djstripe").glob("*.json")) + sorted((corpus / "spec").glob("*.json"))
    if not files:
        services.missing(f"the Stripe corpus is not at {corpus} (set STRIPE_CORPUS)")
    checked = 0
    for path in files:
        raw = path.read_bytes()
        try:
            expected = events.validate_event(json.loads(raw))
        except (ValueError, events.InvalidEvent):
            continue  # not an event the webhook takes: the corpus test covers those
        assert webhooks.parse_event(raw) == expected, path.name
        checked += 1
    assert checked > 100


# --- the signed text is the payload ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_payload_stored_is_the_signed_text(settings: Any) -> None:
    settings.STRIPE_BRIDGE = {**settings.STRIPE_BRIDGE, "WEBHOOK_SECRETS": ["whsec_tests_primary"]}
    event = _charge_event(description="Café ✓", metadata={"b": "2", "a": "1"})
    text = json.dumps(event, indent=2, ensure_ascii=False)
    answer = async_to_sync(call)(with_stripe_webhook(site), text.encode(), signed(text.encode()))
    assert answer.status == 200, answer.json
    assert StripeEvent.objects.get(event_id="evt_lean").payload == json.loads(text)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT payload FROM {StripeEvent._meta.db_table} WHERE event_id = %s",  # noqa: S608
            ["evt_lean"],
        )
        (stored,) = cursor.fetchone()
    if connection.vendor == "sqlite":
        assert stored == text  # as signed: indentation, key order, UTF-8
    else:
        stored = stored if isinstance(stored, str) else json.dumps(stored)
        assert json.loads(stored) == json.loads(text)  # jsonb keeps the value, not the text
    assert StripeTransaction.objects.get(pk="ch_lean").status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_an_event_given_to_ingest_by_hand_is_still_validated() -> None:
    from django_stripe_bridge.ingest import ingest_events

    bad = _charge_event(description="a\x00b")
    with pytest.raises(events.InvalidEvent, match="description"):
        ingest_events([bad])
    assert not StripeEvent.objects.exists()


# --- marked together, once a while -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_events_sent_are_marked_together_once_the_delay_is_up(
    monkeypatch: Any, in_memory_layer: None
) -> None:
    """Not with every batch (a statement and a commit each): every ``MARK_DELAY``, with the
    batch stored then or on their own, and at once when ``max_batch`` of them wait."""
    committer = group_commit.GroupCommitter()
    trips: list[tuple[int, int]] = []
    store = committer._store

    def counting_store(batch: Any, marks: Any) -> Any:
        trips.append((len(batch), len(marks)))
        return store(batch, marks)

    committer._store = counting_store  # type: ignore[method-assign]

    def event(n: int) -> dict[str, Any]:
        return make_event(
            "charge.succeeded", charge_object(f"ch_mark_{n}"), event_id=f"evt_mark_{n}"
        )

    def published(*numbers: int) -> list[bool]:
        try:
            return [
                StripeEvent.objects.filter(
                    event_id=f"evt_mark_{n}", published_at__isnull=False
                ).exists()
                for n in numbers
            ]
        finally:
            # In a to_thread() thread: its connection would outlive it, and keep the test
            # database from being dropped at the end of the session (PostgreSQL).
            connections.close_all()

    async def sent(count: int) -> None:
        deadline = time.monotonic() + 10
        while len(committer._to_mark) < count:  # sent, waiting to be marked
            assert time.monotonic() < deadline, trips
            await asyncio.sleep(0.01)

    async def until_published(*numbers: int) -> None:
        deadline = time.monotonic() + 10
        while not all(await asyncio.to_thread(published, *numbers)):
            assert time.monotonic() < deadline, trips
            await asyncio.sleep(0.02)

    async def run() -> None:
        monkeypatch.setattr(group_commit, "MARK_DELAY", 30.0)
        committer.max_batch = 3
        await committer.submit(event(0))
        await sent(1)
        await committer.submit(event(1))
        await sent(2)
        # The second batch did not mark the first's events: their delay is not up.
        assert trips == [(1, 0), (1, 0)]
        assert await asyncio.to_thread(published, 0, 1) == [False, False]
        # A third waiting (max_batch): all three are marked at once, on their own.
        await committer.submit(event(2))
        await until_published(0, 1, 2)
        assert trips[2:] == [(1, 0), (0, 3)]
        # Their delay up while a batch is due: they go with it, in its trip.
        await committer.submit(event(3))
        await sent(1)
        assert committer._mark_timer is not None
        committer._mark_timer.cancel()
        committer._marks_now()  # as the timer does when the delay is up
        monkeypatch.setattr(group_commit, "MARK_DELAY", 0.05)
        await committer.submit(event(4))
        assert trips[4:6] == [(1, 0), (1, 1)]
        assert await asyncio.to_thread(published, 3) == [True]
        # With no batch after them, they are marked on their own once the delay is up.
        await until_published(4)

    async_to_sync(run)()
    assert trips[-1] == (0, 1)
    assert sum(marks for _, marks in trips) == 5


# --- only groups with members ------------------------------------------------------------------


@pytest.fixture
def redis_layer(redis_url: str) -> Any:
    from channels_redis.core import RedisChannelLayer

    config = redis_layer_settings(redis_url)["default"]["CONFIG"]
    return RedisChannelLayer(**config)


@pytest.mark.redis
def test_occupied_names_the_groups_that_have_live_members(redis_layer: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    joined, empty, stale = (f"stripe_bridge.tx.{name}_{tag}" for name in ("on", "off", "old"))

    async def run() -> Any:
        await redis_layer.group_add(joined, "specific.a!x")
        await redis_layer.group_add(stale, "specific.a!y")
        # A member older than group_expiry: group_send would drop it, and send nothing.
        index = redis_layer.consistent_hash(stale)
        old = time.time() - redis_layer.group_expiry - 10
        await redis_layer.connection(index).zadd(
            redis_layer._group_key(stale), {"specific.a!y": old}
        )
        try:
            return await fanout.occupied(redis_layer, [joined, empty, stale])
        finally:
            await redis_layer.flush()

    assert async_to_sync(run)() == {joined}


def test_occupied_does_not_ask_other_layers(redis_url: str) -> None:
    from channels.layers import InMemoryChannelLayer
    from channels_redis.core import RedisChannelLayer

    class Relabelling(RedisChannelLayer):
        async def group_send(self, group: str, message: dict) -> None:
            await super().group_send(group, message)

    groups = [broadcast_group(), transaction_group("ch_x")]
    assert async_to_sync(fanout.occupied)(InMemoryChannelLayer(), groups) is None
    assert async_to_sync(fanout.occupied)(Relabelling(hosts=[redis_url]), groups) is None
    assert async_to_sync(fanout.occupied)(object(), groups) is None
