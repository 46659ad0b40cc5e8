"""Issue 17: a Checkout Session and its PaymentIntent are one payment, whatever id one holds.

Events come from the lifecycle model (:mod:`tests.lifecycles`, decision 9); they go through
the real ingest, the in-memory channel layer and the websocket consumer.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.core.management import call_command

from django_stripe_bridge.ingest import ingest_event
from django_stripe_bridge.models import StripeEvent, StripeTransaction
from tests.lifecycles import Payment
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import ingest, open_client

pytestmark = pytest.mark.django_db(transaction=True)


def paid_by_card(tag: str) -> Payment:
    """PaymentIntent made, charge and PaymentIntent succeeded, then the session completed."""
    payment = Payment("payment_intent", tag=tag, gap=lambda: 1).open_checkout()
    payment.pay_on_checkout()
    payment.authorize()
    payment.complete_checkout()
    return payment


def delayed(tag: str) -> Payment:
    payment = Payment("payment_intent", tag=tag, gap=lambda: 1).open_checkout()
    payment.pay_on_checkout()
    payment.submit()
    payment.complete_checkout()
    return payment


def ingest_all(events: Any) -> None:
    for event in events:
        ingest_event(copy.deepcopy(event), publish=False)


def test_intent_events_before_the_session_event_join_it_when_it_comes():
    payment = paid_by_card("early")
    *intent_events, completed = payment.events
    ingest_all(intent_events)
    assert not StripeTransaction.objects.filter(pk=payment.session_id).exists()
    assert StripeTransaction.objects.get(pk=payment.pi_id).status == "succeeded"
    ingest_all([completed])
    session = StripeTransaction.objects.get(pk=payment.session_id)
    intent = StripeTransaction.objects.get(pk=payment.pi_id)
    assert (session.linked_id, intent.linked_id) == (payment.pi_id, payment.session_id)
    assert session.kind == "checkout_session" and intent.kind == "payment_intent"
    assert (session.status, session.amount, session.currency) == ("succeeded", 2000, "usd")
    assert [e.event_id for e in session.events()] == [e["id"] for e in payment.events]
    # Stored once, under the PaymentIntent (the session event too: it names it).
    assert set(StripeEvent.objects.values_list("transaction_id", flat=True)) == {payment.pi_id}


def test_the_session_event_first_then_the_intents():
    payment = paid_by_card("late")
    ingest_all(payment.events[::-1])
    session = StripeTransaction.objects.get(pk=payment.session_id)
    assert session.status == "succeeded" and session.linked_id == payment.pi_id


def test_a_create_calls_answer_is_merged_when_the_link_comes():
    """The bridge recorded the open session (its create call); the webhook links it."""
    from django_stripe_bridge.charges import record_transaction

    payment = delayed("merge")
    record_transaction(
        {**payment._session_object(), "status": "open", "payment_intent": None, "created": 1},
        idempotency_key="k1",
    )
    assert StripeTransaction.objects.get(pk=payment.session_id).status == "pending"
    ingest_all(payment.events)
    session = StripeTransaction.objects.get(pk=payment.session_id)
    assert session.status == "processing" and session.idempotency_key == "k1"
    state = StripeTransaction.objects.get(pk=payment.pi_id).payment_state()
    assert payment.session_id in state.objects  # what the create call knew, joined


def test_transactions_endpoint_answers_for_either_id(client):
    payment = paid_by_card("api")
    ingest_all(payment.events)
    for tx_id in (payment.session_id, payment.pi_id):
        body = client.get(f"/api/services/Stripe/transactions/{tx_id}").json()
        assert body["id"] == tx_id and body["status"] == "succeeded"
        assert [e["event_id"] for e in body["events"]] == [e["id"] for e in payment.events]


def test_rebuild_links_and_derives_the_same_state():
    payment = paid_by_card("rebuild")
    ingest_all(payment.events)
    StripeTransaction.objects.update(state={}, status="", linked_id="")
    StripeTransaction.objects.filter(pk=payment.session_id).delete()
    call_command("stripe_bridge_rebuild", stdout=open("/dev/null", "w"))  # noqa: SIM115
    session = StripeTransaction.objects.get(pk=payment.session_id)
    assert session.linked_id == payment.pi_id and session.status == "succeeded"
    call_command("stripe_bridge_rebuild", payment.session_id, stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert StripeTransaction.objects.get(pk=payment.pi_id).status == "succeeded"


# --- subscribers: each id sees every event of the payment, once ----------------------------


def event_ids(frames: list[dict[str, Any]]) -> list[str]:
    return [f["headers"]["event_id"] for f in frames]


async def test_a_subscriber_between_redirect_and_webhook_sees_every_event_once():
    """Subscribed to the session while only the PaymentIntent's events are in: it sees
    nothing (the link is not known), then all of them, once, when the session event links."""
    payment = paid_by_card("between")
    *intent_events, completed = payment.events
    for event in intent_events:
        await ingest(event)
    client = await open_client()
    answer = await client.subscribe(f"id = '{payment.session_id}'", replay="latest")
    assert answer["type"] == "subscribed"
    assert await client.nothing()
    by_intent = await open_client()
    await by_intent.subscribe(f"id = '{payment.pi_id}'", replay="none")
    await ingest(completed)
    frames = await client.drain(len(payment.events))
    assert sorted(event_ids(frames)) == sorted(e["id"] for e in payment.events)
    assert {f["headers"]["id"] for f in frames} == {payment.session_id}
    assert frames[-1]["headers"]["status"] == "succeeded"
    # The PaymentIntent's subscriber gets the session event, under its id, once.
    (frame,) = await by_intent.drain(1)
    assert frame["headers"]["event_id"] == completed["id"]
    assert frame["headers"]["id"] == payment.pi_id
    await client.close()
    await by_intent.close()


async def test_a_subscriber_after_everything_gets_the_final_status_once():
    payment = delayed("after")
    payment.settle_checkout(succeeded=True)
    for event in payment.events:
        await ingest(event)
    latest = await open_client()
    await latest.subscribe(f"id = '{payment.session_id}'", replay="latest")
    (frame,) = await latest.drain(1)
    assert frame["headers"]["status"] == "succeeded" and frame["replayed"] is True
    assert frame["headers"]["id"] == payment.session_id
    everything = await open_client()
    await everything.subscribe(f"id = '{payment.session_id}'", replay="all")
    frames = await everything.drain(len(payment.events))
    assert event_ids(frames) == [e["id"] for e in payment.events]
    statuses = [f["headers"]["status"] for f in frames]
    assert statuses[0] == "pending" and statuses[-1] == "succeeded"
    assert "processing" in statuses
    await latest.close()
    await everything.close()


async def test_live_events_of_the_linked_payment_reach_the_sessions_subscriber():
    payment = delayed("live")
    for event in payment.events:
        await ingest(event)
    client = await open_client()
    await client.subscribe(f"id = '{payment.session_id}'", replay="none")
    before = len(payment.events)
    payment.settle_checkout(succeeded=True)
    for event in payment.events[before:]:
        await ingest(event)
    frames = await client.drain(len(payment.events) - before)
    assert event_ids(frames) == [e["id"] for e in payment.events[before:]]
    assert frames[-1]["headers"]["status"] == "succeeded"
    assert frames[-1]["headers"]["type"] == "checkout.session.async_payment_succeeded"
    await client.close()


def test_the_sessions_row_gets_its_own_status_signal_for_fulfilment():
    """Fulfil from ``transaction_status_changed`` of the session: it fires when the session's
    status changes, whether the PaymentIntent's events came first or after."""
    from django_stripe_bridge.charges import record_transaction
    from django_stripe_bridge.signals import transaction_status_changed

    seen: list[tuple[str, str | None, str]] = []

    def receiver(sender, transaction, old_status, new_status, event, **kwargs):
        seen.append((transaction.pk, old_status, new_status))

    transaction_status_changed.connect(receiver)
    try:
        payment = paid_by_card("signal")
        opened = {"status": "open", "payment_status": "unpaid", "payment_intent": None}
        record_transaction({**payment._session_object(), **opened, "created": 1})
        *intent_events, completed = payment.events
        ingest_all(intent_events)
        sessions = [s for s in seen if s[0] == payment.session_id]
        assert sessions == [(payment.session_id, None, "pending")]  # the create call
        ingest_all([completed])
        sessions = [s for s in seen if s[0] == payment.session_id]
        assert sessions[1:] == [(payment.session_id, "pending", "succeeded")]
        before = len(seen)
        payment.refund(2000)
        ingest_all(payment.events[-2:])
        assert sorted(seen[before:]) == [
            (payment.session_id, "succeeded", "refunded"),
            (payment.pi_id, "succeeded", "refunded"),
        ]
    finally:
        transaction_status_changed.disconnect(receiver)


def test_an_exact_resume_of_the_session_reads_the_payment_intents_events_too():
    from django_stripe_bridge.realtime.resume import resume_messages
    from django_stripe_bridge.selectors import compile_selector

    payment = paid_by_card("resume")
    ingest_all(payment.events)
    first = StripeEvent.objects.get(event_id=payment.events[0]["id"]).pk
    selector = compile_selector(f"id = '{payment.session_id}'")
    messages = resume_messages([payment.session_id], selector, first)
    assert messages is not None
    assert [m["event_id"] for m in messages] == [e["id"] for e in payment.events[1:]]
    assert {m["headers"]["id"] for m in messages} == {payment.session_id}
    assert {m["transaction_id"] for m in messages} == {payment.session_id}
