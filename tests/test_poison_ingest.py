"""Poison isolation on ingest: an event the database cannot store fails alone.

A group-commit batch is one transaction. Two captured charges of one PaymentIntent whose
amounts sum past 2**63-1 cannot be folded into its transaction (its ``amount_captured`` is
a ``bigint``): the event that overflows is kept apart and answered 200, and the ordinary
events that shared its batch are stored and answered 200 too. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from django.db import DataError, OperationalError, connections
from django.db.models import QuerySet
from django.test import Client

from django_stripe_bridge import group_commit, metrics
from django_stripe_bridge.asgi import with_stripe_webhook
from django_stripe_bridge.exceptions import EventQuarantined
from django_stripe_bridge.models import QuarantinedEvent, StripeEvent, StripeTransaction
from django_stripe_bridge.quarantine import ingest_isolating, is_data_error, quarantine
from tests.factories import charge_object, make_event
from tests.test_webhook_asgi import SECRET, call, deliver_together, signed, site
from tests.webhook_cases import Answer
from tests.webhook_fixtures import *  # noqa: F403
from tests.webhook_fixtures import event_body

T = 1_700_000_000
HALF = 2**62 + 1  # two of these pass 2**63 - 1


@pytest.fixture(autouse=True)
def _endpoint(settings: Any) -> None:
    settings.STRIPE_BRIDGE = {
        **settings.STRIPE_BRIDGE,
        "WEBHOOK_SECRETS": [SECRET],
        "WEBHOOK_TOLERANCE": None,
    }


def good_event(n: int) -> dict[str, Any]:
    return make_event(
        "charge.succeeded",
        charge_object(f"ch_good_{n:02d}", amount=1000 + n),
        created=T + n,
        event_id=f"evt_good_{n:02d}",
    )


def huge_capture(n: int) -> dict[str, Any]:
    """A captured charge of ``pi_huge`` for ``HALF``: the second one overflows its sum."""
    return make_event(
        "charge.succeeded",
        charge_object(f"ch_huge_{n}", amount=HALF, amount_captured=HALF, payment_intent="pi_huge"),
        created=T + n,
        event_id=f"evt_huge_{n}",
    )


def with_committer(events: list[dict[str, Any]]) -> tuple[list[Answer], list[int]]:
    """Deliver ``events`` together through a fresh committer; the answers and batch sizes."""
    committer = group_commit.GroupCommitter()
    attempts: list[int] = []

    def ingest(batch: Any, **options: Any) -> Any:
        attempts.append(len(batch))
        return group_commit.ingest_events(batch, **options)

    committer._ingest = ingest

    async def run() -> list[Answer]:
        group_commit._committers[asyncio.get_running_loop()] = committer
        return await deliver_together(with_stripe_webhook(site), events)

    return async_to_sync(run)(), attempts


@pytest.mark.django_db(transaction=True)
def test_one_unstorable_event_among_thirty_fails_alone_on_the_asgi_path() -> None:
    before = metrics.snapshot()["events_quarantined"]
    good = [good_event(n) for n in range(30)]
    events = [*good[:10], huge_capture(1), *good[10:20], huge_capture(2), *good[20:]]
    answers, attempts = with_committer(events)

    assert attempts[0] == 32  # one batch first: all of them together
    by_id = {e["id"]: a for e, a in zip(events, answers, strict=True)}
    # Every ordinary event is stored and answered as stored.
    for event in good:
        assert by_id[event["id"]].status == 200
        assert by_id[event["id"]].json == {"received": True, "duplicate": False}
    assert StripeEvent.objects.filter(event_id__startswith="evt_good_").count() == 30
    assert StripeTransaction.objects.filter(pk__startswith="ch_good_").count() == 30
    # Of the two huge captures, the first fits and is stored; the one that overflows the
    # PaymentIntent's sum is kept apart, and answered 200 so that Stripe stops retrying.
    stored = {
        *StripeEvent.objects.filter(event_id__startswith="evt_huge_").values_list(
            "event_id", flat=True
        )
    }
    assert len(stored) == 1
    (poison_id,) = {"evt_huge_1", "evt_huge_2"} - stored
    poison = by_id[poison_id]
    assert poison.status == 200
    assert poison.json["received"] is True and poison.json["quarantined"] is True
    assert poison_id in poison.json["message"]
    assert by_id[stored.pop()].json == {"received": True, "duplicate": False}
    kept = QuarantinedEvent.objects.get()
    assert (kept.event_id, kept.type, kept.transaction_id) == (
        poison_id,
        "charge.succeeded",
        "pi_huge",
    )
    assert kept.deliveries == 1 and kept.error
    assert json.loads(kept.payload)["id"] == poison_id
    tx = StripeTransaction.objects.get(pk="pi_huge")
    assert tx.amount_captured == HALF  # the stored capture only
    assert metrics.snapshot()["events_quarantined"] == before + 1

    # Stripe's (or an operator's) redelivery is answered alike and counted, not stored.
    body = event_body(next(e for e in events if e["id"] == poison_id))
    again = async_to_sync(call)(with_stripe_webhook(site), body, signed(body))
    assert again.status == 200 and again.json["quarantined"] is True
    assert QuarantinedEvent.objects.get().deliveries == 2
    assert not StripeEvent.objects.filter(event_id=poison_id).exists()


@pytest.mark.django_db(transaction=True)
def test_the_view_quarantines_an_unstorable_event_too() -> None:
    client = Client()
    answers = []
    for event in (huge_capture(1), huge_capture(2), good_event(1)):
        body = event_body(event)
        response = client.post(
            "/api/services/Stripe/webhooks/handler",
            body,
            content_type="application/json",
            headers={"Stripe-Signature": signed(body)["Stripe-Signature"]},
        )
        answers.append((response.status_code, response.json()))
    assert answers[0] == (200, {"received": True, "duplicate": False})
    assert answers[1][0] == 200 and answers[1][1]["quarantined"] is True
    assert answers[2] == (200, {"received": True, "duplicate": False})
    assert QuarantinedEvent.objects.get().event_id == "evt_huge_2"
    assert StripeEvent.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_transient_error_still_fails_the_batch_with_a_503() -> None:
    """Only data errors are isolated: a lost connection is retried by Stripe, not kept."""
    committer = group_commit.GroupCommitter()

    def lose_the_connection(execute: Any, sql: str, params: Any, many: bool, ctx: Any) -> Any:
        if "stripetransaction" in sql and sql.lstrip().upper().startswith(("UPDATE", "WITH")):
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, ctx)

    store = committer._store

    def failing_store(*args: Any) -> Any:
        with connections["default"].execute_wrapper(lose_the_connection):
            return store(*args)

    committer._store = failing_store  # type: ignore[method-assign]

    async def run() -> list[Answer]:
        group_commit._committers[asyncio.get_running_loop()] = committer
        events = [good_event(n) for n in range(5)] + [huge_capture(1), huge_capture(2)]
        return await deliver_together(with_stripe_webhook(site), events)

    answers = async_to_sync(run)()
    assert [a.status for a in answers] == [503] * 7
    assert all(a.json["error"]["code"] == "database_unavailable" for a in answers)
    assert all(a.headers["retry-after"] for a in answers)
    assert not StripeEvent.objects.exists() and not QuarantinedEvent.objects.exists()


def test_what_counts_as_the_event_s_own_fault() -> None:
    assert is_data_error(DataError("bigint out of range"))
    assert is_data_error(OverflowError("Python int too large to convert to SQLite INTEGER"))
    assert not is_data_error(OperationalError("lock timeout"))
    assert not is_data_error(RuntimeError("a bug"))


@pytest.mark.django_db(transaction=True)
def test_bisection_stores_every_good_event_whatever_the_poison_s_place() -> None:
    for place in (0, 7, 15):
        StripeEvent.objects.all().delete()
        StripeTransaction.objects.all().delete()
        QuarantinedEvent.objects.all().delete()
        good = [good_event(n) for n in range(15)]
        events = [huge_capture(0), *good]
        events.insert(place + 1, huge_capture(1))
        results = ingest_isolating(events, publish=False)
        assert [isinstance(r, EventQuarantined) for r in results] == [
            e["id"] == "evt_huge_1" for e in events
        ]
        assert StripeEvent.objects.count() == 16


@pytest.mark.django_db(transaction=True)
def test_any_data_error_of_one_event_is_isolated() -> None:
    """A value the database finds too long (injected: the event's shape allows it)."""

    def too_long(execute: Any, sql: str, params: Any, many: bool, ctx: Any) -> Any:
        if "evt_good_07" in str(params) and "stripeevent" in sql:
            raise DataError("value too long for type character varying(255)")
        return execute(sql, params, many, ctx)

    with connections["default"].execute_wrapper(too_long):
        results = ingest_isolating([good_event(n) for n in range(12)], publish=False)
    assert [isinstance(r, EventQuarantined) for r in results] == [n == 7 for n in range(12)]
    assert "value too long" in QuarantinedEvent.objects.get(event_id="evt_good_07").error
    assert StripeEvent.objects.count() == 11


@pytest.mark.django_db(transaction=True)
def test_a_delivery_kept_meanwhile_by_another_process_is_counted() -> None:
    """Two processes quarantine one event at once: the one whose insert loses counts."""
    event = huge_capture(2)
    QuarantinedEvent.objects.create(event_id=event["id"], error="x", payload="{}")
    real_update = QuerySet.update
    calls: list[dict[str, Any]] = []

    def racing_update(self: QuerySet[Any], **fields: Any) -> int:
        calls.append(fields)
        # The first update runs before the other process's insert: it finds nothing.
        return 0 if len(calls) == 1 else real_update(self, **fields)

    with mock.patch.object(QuerySet, "update", racing_update):
        answer = quarantine(event, DataError("bigint out of range"))
    assert answer.event_id == event["id"] and "bigint out of range" in answer.reason
    assert QuarantinedEvent.objects.get(event_id=event["id"]).deliveries == 2


@pytest.mark.django_db(transaction=True)
def test_a_transient_error_during_the_split_fails_only_the_part_not_stored() -> None:
    """Once a half is committed, its events are stored: they are answered 200 even if the
    database then fails the other half (answered 503, for Stripe to retry)."""

    def flaky_ingest(batch: Any, **options: Any) -> Any:
        ids = {event["id"] for event in batch}
        if "evt_good_02" in ids:
            raise DataError("bigint out of range")
        if "evt_good_07" in ids and len(batch) < 10:
            raise OperationalError("server closed the connection unexpectedly")
        return group_commit.ingest_events(batch, **options)

    committer = group_commit.GroupCommitter(ingest=flaky_ingest)

    async def run() -> list[Answer]:
        group_commit._committers[asyncio.get_running_loop()] = committer
        return await deliver_together(with_stripe_webhook(site), [good_event(n) for n in range(10)])

    answers = async_to_sync(run)()
    assert [a.status for a in answers] == [200] * 5 + [503] * 5
    assert answers[2].json["quarantined"] is True
    assert all(a.json["error"]["code"] == "database_unavailable" for a in answers[5:])
    stored = StripeEvent.objects.values_list("event_id", flat=True)
    assert sorted(stored) == ["evt_good_00", "evt_good_01", "evt_good_03", "evt_good_04"]
