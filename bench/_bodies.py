"""Webhook bodies of Stripe's size for the benchmarks, built from Stripe's fixture objects.

``small``: the ~300-byte ``charge.succeeded`` of ``_common.charge_event``.
``realistic``: one new transaction per event, alternately a ``payment_intent.succeeded``
with the fields a shop sets (shipping, metadata, payment method options, ``latest_charge``:
~2.8 KB, indented as Stripe sends its bodies) and a ``charge.succeeded`` with its
``payment_method_details`` and ``outcome`` (~4.2 KB), from the example objects of Stripe's
OpenAPI fixtures in the Stripe corpus (``STRIPE_CORPUS``, else ``shared/stripe-corpus``
beside the repository or its parent folder).
``mixed``: a payment's 4 to 6 events, one after the other so that they arrive together
(``payment_intent.created``, ``charge.succeeded`` of that intent,
``payment_intent.succeeded``, then 1 to 3 ``charge.updated``), a new payment each time.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import time
from pathlib import Path
from typing import Any

from _common import charge_event

BODIES = ("small", "realistic", "mixed")
ROOT = Path(__file__).resolve().parent.parent


def corpus_dir() -> Path:
    """``STRIPE_CORPUS``, else ``shared/stripe-corpus`` beside the checkout or beside the
    folder that holds it (a git worktree's)."""
    configured = os.environ.get("STRIPE_CORPUS")
    if configured:
        return Path(configured)
    candidates = [base / "shared" / "stripe-corpus" for base in (ROOT.parent, ROOT.parent.parent)]
    return next((path for path in candidates if path.is_dir()), candidates[0])


@functools.cache
def fixture(event_type: str) -> dict[str, Any]:
    """The example object of ``event_type``'s event in the corpus (``spec/…_single_…``)."""
    spec = corpus_dir() / "spec"
    matches = sorted(spec.glob(f"*_single_{event_type}.json"))
    if not matches:
        raise SystemExit(f"no {event_type} fixture in {spec} (set STRIPE_CORPUS)")
    return json.loads(matches[0].read_text())["data"]["object"]


def _event(n: int, event_type: str, obj: dict[str, Any]) -> bytes:
    event = {
        "id": f"evt_bench_{n:08d}_{time.time_ns()}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": f"req_bench{n:08d}", "idempotency_key": f"bench-{n}-{time.time_ns()}"},
        "type": event_type,
    }
    return json.dumps(event, indent=2).encode()  # as Stripe sends them


def payment_intent(tx: str, charge: str, status: str = "succeeded") -> dict[str, Any]:
    """A PaymentIntent as a shop makes them: ~2.8 KB as Stripe sends it."""
    obj = copy.deepcopy(fixture("payment_intent.succeeded"))
    obj.update(
        id=tx,
        client_secret=f"{tx}_secret_bench0123456789abcdef",
        latest_charge=charge if status == "succeeded" else None,
        status=status,
        amount_received=obj["amount"] if status == "succeeded" else 0,
        created=int(time.time()),
        customer="cus_benchCustomer0001",
        description="Order #A-10482: 2 x Merino crew, 1 x gift wrap",
        receipt_email="jenny.rosen@example.com",
        statement_descriptor_suffix="ORDER A10482",
        metadata={
            "order_id": "A-10482",
            "cart_id": "cart_7f3c2a91",
            "customer_ref": "CUST-000981",
            "channel": "web",
            "campaign": "winter-sale",
        },
        shipping={
            "address": {
                "city": "San Francisco",
                "country": "US",
                "line1": "510 Townsend St",
                "line2": "Suite 400",
                "postal_code": "94103",
                "state": "CA",
            },
            "carrier": "UPS",
            "name": "Jenny Rosen",
            "phone": "+14155550100",
            "tracking_number": "1Z999AA10123456784",
        },
        payment_method_options={
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            },
            "link": {"persistent_token": None},
        },
        payment_method_types=["card", "link"],
    )
    return obj


def charge(charge_id: str, intent: str | None) -> dict[str, Any]:
    """A charge with ``payment_method_details`` and ``outcome``: ~4.2 KB as Stripe sends it."""
    obj = copy.deepcopy(fixture("charge.succeeded"))
    obj.update(
        id=charge_id,
        payment_intent=intent,
        created=int(time.time()),
        receipt_url=f"https://pay.stripe.com/receipts/{charge_id}",
    )
    obj["refunds"]["url"] = f"/v1/charges/{charge_id}/refunds"
    return obj


def realistic(n: int, token: str) -> bytes:
    """Event ``n``: a new PaymentIntent (even ``n``) or a new charge of its own (odd)."""
    if n % 2 == 0:
        tx = f"pi_bench{token}{n:08d}"
        return _event(n, "payment_intent.succeeded", payment_intent(tx, f"ch_bench{token}{n:08d}"))
    return _event(n, "charge.succeeded", charge(f"ch_bench{token}{n:08d}", None))


def mixed(count: int, token: str) -> list[bytes]:
    """``count`` events: payments of 4 to 6 events each, a payment's events one after another."""
    bodies: list[bytes] = []
    payment = 0
    while len(bodies) < count:
        tx, ch = f"pi_mix{token}{payment:07d}", f"ch_mix{token}{payment:07d}"
        events = [
            ("payment_intent.created", payment_intent(tx, ch, "requires_payment_method")),
            ("charge.succeeded", charge(ch, tx)),
            ("payment_intent.succeeded", payment_intent(tx, ch)),
        ]
        for update in range(1 + payment % 3):
            updated = charge(ch, tx)
            updated["metadata"] = {"fulfilment": f"step-{update}"}
            events.append(("charge.updated", updated))
        bodies += [_event(len(bodies) + i, t, obj) for i, (t, obj) in enumerate(events)]
        payment += 1
    return bodies[:count]


def bodies(kind: str, ids: list[str]) -> list[bytes]:
    """One body per id (``small`` uses the ids as charge ids; the others make their own)."""
    if kind == "small":
        return [charge_event(n, oid) for n, oid in enumerate(ids)]
    token = f"{time.time_ns() % 10**9:09d}"
    if kind == "realistic":
        return [realistic(n, token) for n in range(len(ids))]
    if kind == "mixed":
        return mixed(len(ids), token)
    raise ValueError(f"unknown body {kind!r}; known: {', '.join(BODIES)}")
