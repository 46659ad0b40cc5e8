"""factory-boy factories for the bridge's models, and a builder of Stripe event payloads."""

from __future__ import annotations

import itertools
import time
from typing import Any

import factory

from django_stripe_bridge.ingest import timestamp_to_datetime
from django_stripe_bridge.models import StripeEvent, StripeTransaction

_counter = itertools.count(1)


def charge_object(charge_id: str = "ch_test", **fields: Any) -> dict[str, Any]:
    """A Stripe charge object with the fields the bridge reads."""
    obj = {
        "id": charge_id,
        "object": "charge",
        "amount": 1000,
        "amount_refunded": 0,
        "currency": "usd",
        "status": "succeeded",
        "paid": True,
        "captured": True,
        "refunded": False,
        "payment_intent": None,
        "livemode": False,
    }
    obj.update(fields)
    return obj


def make_event(
    event_type: str,
    obj: dict[str, Any],
    *,
    created: int | None = None,
    event_id: str | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    """A Stripe event dict as a webhook delivers it."""
    return {
        "id": event_id or f"evt_test_{next(_counter):06d}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created if created is not None else int(time.time()),
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {"object": obj},
    }


class StripeTransactionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StripeTransaction

    id = factory.Sequence(lambda n: f"ch_factory_{n:06d}")
    kind = StripeTransaction.Kind.CHARGE
    amount = 1000
    currency = "usd"
    status = StripeTransaction.Status.SUCCEEDED


class StripeEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StripeEvent

    class Params:
        charge_id = factory.Sequence(lambda n: f"ch_factory_{n:06d}")
        created_ts = factory.LazyFunction(lambda: int(time.time()))

    event_id = factory.Sequence(lambda n: f"evt_factory_{n:06d}")
    type = "charge.succeeded"
    transaction_id = factory.SelfAttribute("charge_id")
    object_type = "charge"
    object_id = factory.SelfAttribute("charge_id")
    created = factory.LazyAttribute(lambda o: timestamp_to_datetime(o.created_ts))
    payload = factory.LazyAttribute(
        lambda o: make_event(
            o.type, charge_object(o.charge_id), created=o.created_ts, event_id=o.event_id
        )
    )
