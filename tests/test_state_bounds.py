"""A transaction's stored state keeps a bounded number of objects, and exact totals.

Eight events of one PaymentIntent, each embedding 95 charges with 100 refunds apiece (an
old API version embeds a PaymentIntent's charges, and a charge its refunds), used to grow
its state by 9,500 refunds an event: 15 MB, and 15 s an event. The state now keeps the
newest ``MAX_KEPT`` snapshots of each kind; the charges' own ``amount_refunded`` counts
the refunds let go, so the amounts stay exact.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from django_stripe_bridge import payment_state
from django_stripe_bridge.ingest import ingest_events
from django_stripe_bridge.models import StripeTransaction
from django_stripe_bridge.payment_state import MAX_KEPT, MAX_KEPT_OTHER, PaymentState, fold

T = 1_700_000_000
CHARGES, REFUNDS, EVENTS = 95, 100, 8


def refund(refund_id: str, charge_id: str, created: int, amount: int = 1) -> dict[str, Any]:
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "charge": charge_id,
        "created": created,
        "status": "succeeded",
    }


def crowded_event(n: int) -> dict[str, Any]:
    """Event ``n``: the PaymentIntent with 95 captured charges of 1,000, each embedding the
    100 refunds of 1 made since the last event (so ``amount_refunded`` is ``100·(n+1)``)."""
    at = T + 10 * n
    charges = [
        {
            "id": f"ch_{c:02d}",
            "object": "charge",
            "amount": 1000,
            "amount_captured": 1000,
            "amount_refunded": REFUNDS * (n + 1),
            "captured": True,
            "currency": "usd",
            "payment_intent": "pi_crowded",
            "status": "succeeded",
            "refunds": {
                "object": "list",
                "data": [
                    refund(f"re_{n}_{c:02d}_{r:03d}", f"ch_{c:02d}", at - 5) for r in range(REFUNDS)
                ],
            },
        }
        for c in range(CHARGES)
    ]
    return {
        "id": f"evt_crowded_{n}",
        "object": "event",
        "api_version": "2020-08-27",
        "created": at,
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": "pi_crowded",
                "object": "payment_intent",
                "amount": 1000 * CHARGES,
                "amount_received": 1000 * CHARGES,
                "currency": "usd",
                "status": "succeeded",
                "charges": {"object": "list", "data": charges},
            }
        },
    }


def kinds(state: PaymentState) -> dict[str, int]:
    counts: dict[str, int] = {}
    for snapshot in state.objects.values():
        counts[snapshot["object"]] = counts.get(snapshot["object"], 0) + 1
    return counts


def test_crowded_events_keep_a_bounded_state_with_exact_totals() -> None:
    state = fold(crowded_event(n) for n in range(EVENTS))
    assert kinds(state) == {"payment_intent": 1, "charge": CHARGES, "refund": MAX_KEPT["refund"]}
    summary = state.summary()
    assert summary.amount_captured == 1000 * CHARGES
    assert summary.amount_refunded == REFUNDS * EVENTS * CHARGES  # 800 of each charge
    assert summary.status == "partially_refunded"
    # The refunds kept are the newest: the last event's.
    kept = [s for s in state.objects.values() if s["object"] == "refund"]
    assert all(s["id"].startswith(f"re_{EVENTS - 1}_") for s in kept)
    assert len(json.dumps(state.to_json())) < 150_000


def test_the_refunds_kept_do_not_depend_on_the_delivery_order() -> None:
    """One charge refunded 300 times, each refund its own event, in three orders."""
    charge = {
        "id": "ch_many",
        "object": "charge",
        "amount": 100_000,
        "amount_captured": 100_000,
        "amount_refunded": 300 * 7,
        "captured": True,
        "currency": "usd",
        "status": "succeeded",
    }
    events = [{"created": T + 400, "type": "charge.refunded", "data": {"object": charge}}]
    # Ids in the other order than times: the newest are kept, not the last by id.
    events += [
        {
            "created": T + r,
            "type": "refund.created",
            "data": {"object": refund(f"re_{299 - r:03d}", "ch_many", T + r, amount=7)},
        }
        for r in range(300)
    ]
    states = []
    for seed in range(3):
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        states.append(fold(shuffled).to_json())
    assert states[0] == states[1] == states[2]
    state = PaymentState.from_json(states[0])
    kept = sorted(s["id"] for s in state.objects.values() if s["object"] == "refund")
    assert kept == [f"re_{r:03d}" for r in range(MAX_KEPT["refund"])]
    assert state.summary().amount_refunded == 300 * 7
    assert state.summary().status == "partially_refunded"


def test_a_snapshot_let_go_at_once_changes_nothing() -> None:
    state = PaymentState()
    limit = MAX_KEPT["dispute"]
    for d in range(limit):
        dispute = {"id": f"dp_{d + 10:03d}", "object": "dispute", "status": "needs_response"}
        assert state.apply({"created": T, "type": "x", "data": {"object": dispute}})
    before = state.to_json()
    older = {"id": "dp_000", "object": "dispute", "status": "needs_response"}
    assert not state.apply({"created": T + 1, "type": "x", "data": {"object": older}})
    assert state.to_json() == before
    newer = {"id": "dp_999", "object": "dispute", "status": "needs_response"}
    assert state.apply({"created": T, "type": "x", "data": {"object": newer}})
    assert "dp_999" in state.objects and "dp_010" not in state.objects
    assert len(state.objects) == limit


def test_kinds_without_a_bound_of_their_own_keep_the_default() -> None:
    events = [
        {
            "created": T,
            "type": "payment_intent.created",
            "data": {"object": {"id": f"pi_{i:02d}", "object": "payment_intent"}},
        }
        for i in range(MAX_KEPT_OTHER + 5)
    ]
    assert kinds(fold(events)) == {"payment_intent": MAX_KEPT_OTHER}
    assert "payment_intent" not in payment_state.MAX_KEPT


@pytest.mark.django_db(transaction=True)
def test_ingesting_crowded_events_keeps_the_stored_state_small_and_each_event_quick() -> None:
    took = []
    for n in range(EVENTS):
        started = time.perf_counter()
        ingest_events([crowded_event(n)], publish=False)
        took.append(time.perf_counter() - started)
    tx = StripeTransaction.objects.get(pk="pi_crowded")
    assert len(json.dumps(tx.state)) < 150_000  # 15 MB before the bound
    assert (tx.amount_captured, tx.amount_refunded) == (95_000, 76_000)
    assert tx.status == "partially_refunded"
    # The last event costs about what the first did (0.3 s to 15 s before the bound).
    assert took[-1] < max(3 * took[0], 1.0), took
