"""Thin events of connected accounts: the offline Stripe answers a v2 event and its related
object only in the event's context (``Stripe-Context``), as Stripe does; the bridge fetches
both with the notification's context, folds an event that has no snapshot event from its
related object (a Checkout Session's URL included), and refuses an event of another
context even when Stripe would answer it."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
import stripe

from django_stripe_bridge import stripe_api, thin
from django_stripe_bridge.management.commands.stripe_bridge_webhook_setup import THIN_EVENTS
from django_stripe_bridge.models import StripeEvent, StripeTransaction, ThinEvent
from django_stripe_bridge.payment_state import PAYMENT_OBJECTS
from tests.charge_fixtures import *  # noqa: F403
from tests.relay import *  # noqa: F403
from tests.relay import Relay
from tests.test_connect_e2e import SUCCESS_URL, pay_on_page
from tests.test_thin_events import destinations, forward

__all__ = ["destinations"]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.standin]


def test_the_offline_stripe_answers_a_v2_event_only_in_its_context(
    destinations: dict[str, Any], relay: Relay
) -> None:
    client, account = destinations["client"], destinations["account"]
    own = client.v1.charges.create({"amount": 500, "currency": "usd", "source": "tok_visa"})
    theirs = client.v1.charges.create(
        {"amount": 600, "currency": "usd", "source": "tok_visa"},
        options={"stripe_account": account},
    )
    delivered = forward(relay, wait=1.5)
    notifications = {
        a["body"]["related_object"]["id"]: a["body"] for a in delivered if a["path"] != "platform"
    }
    platform_one, account_one = notifications[own.id], notifications[theirs.id]
    assert (platform_one.get("context"), account_one["context"]) == (None, account)

    def fetch(event_id: str, context: str | None) -> Any:
        options = {"stripe_context": context} if context else {}
        return client.v2.core.events.retrieve(event_id, options=options)  # type: ignore[arg-type]

    assert fetch(account_one["id"], account).context == account
    assert fetch(platform_one["id"], None).id == platform_one["id"]
    another = client.v1.accounts.create({"type": "standard"}).id
    for event_id, context in (
        (account_one["id"], None),
        (account_one["id"], another),
        (platform_one["id"], account),
    ):
        with pytest.raises(stripe.InvalidRequestError, match="No such event"):
            fetch(event_id, context)
    # The related object: the account's charge, at its URL, in the event's context only.
    url = account_one["related_object"]["url"]
    assert url == f"/v1/charges/{theirs.id}"
    assert stripe_api.retrieve_related_object(url, context=account)["id"] == theirs.id
    with pytest.raises(Exception, match="No such charge"):
        stripe_api.retrieve_related_object(url, context=None)


def test_a_thin_event_without_a_snapshot_is_folded_from_its_related_object(
    destinations: dict[str, Any], relay: Relay
) -> None:
    """A connected account's Checkout payment, followed only through thin events that name
    no snapshot event: each is fetched, then its related object (the session at
    ``/v1/checkout/sessions/…``, the PaymentIntent, the charge) with ``Stripe-Context``."""
    client, account = destinations["client"], destinations["account"]
    session = client.v1.checkout.sessions.create(
        {
            "mode": "payment",
            "success_url": SUCCESS_URL,
            "line_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 2100,
                        "product_data": {"name": "Lamp"},
                    },
                    "quantity": 1,
                }
            ],
        },
        options={"stripe_account": account},
    )
    pay_on_page(session.url)
    delivered = forward(relay, only="thinconnect", wait=1.5)
    assert {a["body"]["context"] for a in delivered} == {account}
    types = {a["body"]["type"] for a in delivered}
    assert "v1.checkout.session.completed" in types
    for answer in delivered:
        destinations["standin"]._request(
            "POST", f"/_standin/v2_events/{answer['body']['id']}", {"snapshot_event": None}
        )
    completed = [a["body"] for a in delivered if a["body"]["type"].startswith("v1.checkout")]
    assert completed[0]["related_object"]["url"] == f"/v1/checkout/sessions/{session.id}"

    result = thin.drain()
    assert (result.done, result.retried, result.refused) == (len(delivered), 0, 0)
    paid = client.v1.checkout.sessions.retrieve(session.id, options={"stripe_account": account})
    for tx_id in (session.id, paid.payment_intent):
        tx = StripeTransaction.objects.get(pk=tx_id)
        assert (tx.account, tx.direct, tx.status) == (account, True, "succeeded"), tx_id
    stored = StripeEvent.objects.all()
    # Folded from the v2 events themselves (no snapshot event to store instead), each once.
    assert sorted(e.event_id for e in stored) == sorted(a["body"]["id"] for a in delivered)
    assert {e.account for e in stored} == {account}


def test_an_event_of_another_context_is_refused_even_if_stripe_answers_it(
    destinations: dict[str, Any], relay: Relay
) -> None:
    """The bridge's own check, should Stripe ever answer an event of another context: the
    notification is refused and nothing is folded (the fetch answering so is the fault)."""
    client, account = destinations["client"], destinations["account"]
    client.v1.charges.create(
        {"amount": 700, "currency": "usd", "source": "tok_visa"},
        options={"stripe_account": account},
    )
    [answer] = forward(relay, only="thinconnect", wait=1.5)
    real = stripe_api.retrieve_v2_event

    def other_context(event_id: str, *, context: str | None) -> dict[str, Any]:
        return {**real(event_id, context=context), "context": "acct_someoneelse"}

    with mock.patch.object(stripe_api, "retrieve_v2_event", other_context):
        result = thin.drain()
    row = ThinEvent.objects.get(event_id=answer["body"]["id"])
    assert (result.refused, row.status) == (1, "refused")
    assert "acct_someoneelse" in row.last_error
    assert not StripeEvent.objects.exists() and not StripeTransaction.objects.exists()


@pytest.mark.django_db(transaction=False)
def test_a_thin_destination_set_up_by_default_takes_every_payment_objects_events() -> None:
    """``--thin`` without ``--event``: the events of each object the fold reads (a Checkout
    payment or a failed refund followed through thin events alone needs them)."""
    kinds = {event[len("v1.") :].rsplit(".", 1)[0] for event in THIN_EVENTS}
    assert {kind.replace("charge.dispute", "dispute") for kind in kinds} >= PAYMENT_OBJECTS
    for wanted in ("v1.checkout.session.completed", "v1.refund.failed"):
        assert wanted in THIN_EVENTS


def test_a_connected_accounts_payment_through_both_destinations_is_stored_once(
    destinations: dict[str, Any], relay: Relay, settings: Any
) -> None:
    """Stripe's migration path for a connected account: its Connect webhook (snapshot) and
    a thin Connect destination both active. Each event is stored once, with the account,
    and the payment ends in the status the snapshot events give it."""
    from django_stripe_bridge.conf import bridge_settings
    from django_stripe_bridge.payment_state import fold
    from tests.charge_fixtures import bridge_settings_for

    client, account, standin = (
        destinations["client"],
        destinations["account"],
        destinations["standin"],
    )
    standin.register_webhook(relay.url + "/connect", "whsec_thin_connect", name="c", connect=True)
    endpoints = dict(bridge_settings.WEBHOOK_ENDPOINTS)
    bridge_settings_for(
        settings, WEBHOOK_ENDPOINTS={**endpoints, "connect": ["whsec_thin_connect"]}
    )
    on_account = {"stripe_account": account}
    charge = client.v1.charges.create(
        {"amount": 2400, "currency": "usd", "source": "tok_visa"}, options=on_account
    )
    client.v1.refunds.create({"charge": charge.id, "amount": 400}, options=on_account)
    delivered = forward(relay, wait=2.0)
    snapshots = [a["body"] for a in delivered if a["path"] == "connect"]
    thin_ones = [a for a in delivered if a["path"] == "thinconnect"]
    assert snapshots and thin_ones
    assert {e["account"] for e in snapshots} == {account}
    before = set(StripeEvent.objects.values_list("event_id", flat=True))
    assert thin.drain().done == len(thin_ones)
    # Each thin event stood for a snapshot event already stored: nothing new.
    assert set(StripeEvent.objects.values_list("event_id", flat=True)) == before
    folded = set(ThinEvent.objects.values_list("stripe_event_id", flat=True))
    assert folded <= before
    tx = StripeTransaction.objects.get(pk=charge.id)
    own = [e for e in snapshots if e["data"]["object"].get("id") == charge.id]
    assert (tx.status, tx.account, tx.direct) == (fold(own).status, account, True)
    assert tx.status == "partially_refunded"
    assert set(StripeEvent.objects.values_list("account", flat=True)) == {account}
