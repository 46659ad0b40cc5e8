"""SPEC §6 Signals: ``transaction_status_changed`` for every change of a stored status.

A charge made through the bridge gets its status from the create call's response, before
any webhook. That change must be signalled too, or a receiver waiting for ``succeeded``
(docs/operations.md) would never hear of the bridge's own payments.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from django_stripe_bridge import signals
from django_stripe_bridge.charges import record_transaction
from django_stripe_bridge.ingest import ingest_event
from django_stripe_bridge.models import StripeEvent, StripeTransaction
from tests.factories import charge_object, make_event
from tests.webhook_fixtures import *  # noqa: F403
from tests.webhook_fixtures import SignalLog

pytestmark = pytest.mark.django_db(transaction=True)

T = 1_700_000_000


def changes(log: SignalLog) -> list[tuple[Any, Any, Any]]:
    return [
        (entry["old_status"], entry["new_status"], entry["event"] and entry["event"].type)
        for entry in log.status_changes
    ]


def test_the_create_calls_status_is_signalled_once_after_commit(signal_log: SignalLog) -> None:
    obj = charge_object("ch_sig_create", created=T)
    with transaction.atomic():
        record_transaction(obj, idempotency_key="k")
        assert signal_log.status_changes == []  # not before the commit
    assert changes(signal_log) == [(None, "succeeded", None)]
    entry = signal_log.status_changes[0]
    assert entry["in_atomic"] is False
    assert entry["transaction"] == StripeTransaction.objects.get(pk="ch_sig_create")

    record_transaction(obj, idempotency_key="k")  # the response replayed: no change
    ingest_event(make_event("charge.succeeded", obj, created=T + 1), publish=False)
    assert changes(signal_log) == [(None, "succeeded", None)]

    refunded = {**obj, "amount_refunded": 1000, "refunded": True}
    ingest_event(make_event("charge.refunded", refunded, created=T + 9), publish=False)
    assert changes(signal_log) == [
        (None, "succeeded", None),
        ("succeeded", "refunded", "charge.refunded"),
    ]


def test_a_declined_charge_is_signalled_as_failed(signal_log: SignalLog) -> None:
    record_transaction(charge_object("ch_sig_declined", status="failed", created=T))
    assert changes(signal_log) == [(None, "failed", None)]


def test_a_webhook_before_the_response_is_the_one_signal(signal_log: SignalLog) -> None:
    obj = charge_object("ch_sig_race", created=T)
    ingest_event(make_event("charge.succeeded", obj, created=T), publish=False)
    record_transaction(obj, idempotency_key="k")
    assert changes(signal_log) == [(None, "succeeded", "charge.succeeded")]
    assert signal_log.status_changes[0]["event"] == StripeEvent.objects.get()


def test_signal_arguments_and_senders() -> None:
    seen: list[tuple[Any, set[str]]] = []

    def on_received(sender: Any, **kwargs: Any) -> None:
        seen.append((sender, set(kwargs) - {"signal"}))

    signals.event_received.connect(on_received, dispatch_uid="audit-received")
    signals.transaction_status_changed.connect(on_received, dispatch_uid="audit-status")
    try:
        ingest_event(make_event("charge.succeeded", charge_object("ch_sig_args")), publish=False)
    finally:
        signals.event_received.disconnect(dispatch_uid="audit-received")
        signals.transaction_status_changed.disconnect(dispatch_uid="audit-status")
    assert seen == [
        (StripeEvent, {"event", "created"}),
        (StripeTransaction, {"transaction", "old_status", "new_status", "event"}),
    ]
