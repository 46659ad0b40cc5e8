"""The offline Stripe's Connect and v2 objects in Stripe's shapes: accounts, transfers,
application fees, a connected account's events (with ``account``), Event Destinations, thin
notifications and the v2 events fetched for them, each checked against the fields Stripe's
OpenAPI spec gives them (as the ``stripe`` library, generated from it, declares them)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import stripe

from django_stripe_bridge.testing import TEST_API_KEY
from tests.charge_fixtures import *  # noqa: F403
from tests.relay import *  # noqa: F403
from tests.relay import Relay
from tests.sdk_shapes import shape_problems

try:  # the library's layout since stripe 13 (stripe-lowest runs 12.5, without this module)
    from stripe.v2.core import Event as V2Event
    from stripe.v2.core import EventDestination
    from stripe.v2.core._event import RelatedObject, UnknownEventNotification
except ImportError:  # pragma: no cover - only under an older stripe
    pytest.skip("the shapes are those of stripe 13 and later's types", allow_module_level=True)

pytestmark = pytest.mark.standin


class FetchedEvent(V2Event):
    """A v2 event as ``GET /v2/core/events/{id}`` answers it: the library declares its
    ``related_object`` on the typed events and the notification, not on ``Event``."""

    related_object: RelatedObject | None


def test_the_checker_finds_what_stripe_would_not_send() -> None:
    fee = {"id": "fee_1", "object": "application_fee", "amount": "100", "extra": 1}
    problems = shape_problems(fee, stripe.ApplicationFee)
    assert "application_fee.extra: Stripe has no such field" in problems
    assert any(p.startswith("application_fee.amount='100' is not") for p in problems)
    assert "application_fee.account is required" in problems
    destination = {"object": "v2.core.event_destination", "event_payload": "fat"}
    assert any("event_payload='fat' is not one of" in p for p in shape_problems(
        destination, EventDestination
    ))  # fmt: skip
    nested = {"id": "x", "type": "t", "url": 3}
    assert shape_problems(nested, RelatedObject) == ["RelatedObject.url=3 is not str"]


def test_the_offline_stripes_connect_and_v2_objects_have_stripes_shapes(
    bridge_stripe: Any, relay: Relay
) -> None:
    bridge_stripe.reset(webhooks=True)
    client = stripe.StripeClient(
        TEST_API_KEY, base_addresses={"api": bridge_stripe.base_url}, max_network_retries=0
    )
    account = client.v1.accounts.create({"type": "express", "email": "one@example.com"})
    client.v1.accounts.create({"type": "standard"})
    made = client.v2.core.event_destinations.create(
        {
            "name": "shapes",
            "type": "webhook_endpoint",
            "event_payload": "thin",
            "enabled_events": ["v1.charge.succeeded"],
            "events_from": ["@accounts"],
            "webhook_endpoint": {"url": relay.url + "/thin"},
            "include": ["webhook_endpoint.signing_secret"],
        }
    )
    direct = client.v1.charges.create(
        {"amount": 1000, "currency": "usd", "source": "tok_visa", "application_fee_amount": 100},
        options={"stripe_account": account.id},
    )
    paid = client.v1.payment_intents.create(
        {
            "amount": 5000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "transfer_data": {"destination": account.id},
            "application_fee_amount": 500,
        }
    )
    charge = client.v1.charges.retrieve(paid.latest_charge)  # type: ignore[arg-type]
    time.sleep(1.0)
    notifications = [json.loads(body) for path, _, body in relay.take() if path == "/thin"]
    assert notifications and {n["context"] for n in notifications} == {account.id}
    fetched = client.v2.core.events.retrieve(
        notifications[0]["id"],
        options={"stripe_context": account.id},  # type: ignore[typeddict-unknown-key]
    )
    connect_events = client.v1.events.list(options={"stripe_account": account.id}).data
    assert connect_events

    objects: list[tuple[Any, type]] = [
        (account, stripe.Account),
        (client.v1.accounts.retrieve(account.id), stripe.Account),
        (client.v1.transfers.retrieve(charge.transfer), stripe.Transfer),  # type: ignore[arg-type]
        (client.v1.application_fees.retrieve(charge.application_fee), stripe.ApplicationFee),  # type: ignore[arg-type]
        (client.v1.application_fees.retrieve(direct.application_fee), stripe.ApplicationFee),  # type: ignore[arg-type]
        (made, EventDestination),
        *((listed, EventDestination) for listed in client.v2.core.event_destinations.list().data),
        (fetched, FetchedEvent),
        *((event, stripe.Event) for event in connect_events),
    ]
    problems = [p for obj, cls in objects for p in shape_problems(obj.to_dict(), cls)]
    # Charges and PaymentIntents of each kind; 'invoice' (and a PaymentIntent's 'charges')
    # belong to older API versions, which the stand-in renders for every version.
    older = ("charge.invoice: ", "payment_intent.invoice: ", "payment_intent.charges: ")
    for obj, cls in (
        (charge, stripe.Charge),
        (direct, stripe.Charge),
        (paid, stripe.PaymentIntent),
    ):
        problems += [p for p in shape_problems(obj.to_dict(), cls) if not p.startswith(older)]
    problems += [p for n in notifications for p in shape_problems(n, UnknownEventNotification)]
    assert not problems, "\n".join(problems)
    assert {e.account for e in connect_events} == {account.id}
