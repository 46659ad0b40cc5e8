"""Stripe Connect end to end on the offline Stripe: a platform with two connected accounts,
a direct and a destination charge made through the bridge's API (charges, PaymentIntents and
Checkout Sessions paid on the hosted page), Stripe's webhooks to the platform's and the
Connect endpoint, and each seller's websocket subscriber."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import requests
import stripe
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client as HttpClient
from django.urls import reverse

from django_stripe_bridge import operations
from django_stripe_bridge.connect import ChargeMode, ConnectCharge
from django_stripe_bridge.models import StripeEvent, StripeTransaction
from django_stripe_bridge.testing import TEST_API_KEY
from tests.charge_fixtures import *  # noqa: F403
from tests.charge_fixtures import bridge_settings_for
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import open_client, session_cookie
from tests.relay import *  # noqa: F403
from tests.relay import Relay

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.standin]

PLATFORM_SECRET = "whsec_e2e_platform"
SUCCESS_URL = "https://shop.example/thanks?session={CHECKOUT_SESSION_ID}"
CONNECT_SECRET = "whsec_e2e_connect"

#: Filled by each test: account id → (seller's username, how the server charges for it).
SELLERS: dict[str, tuple[str, ConnectCharge]] = {}


def connect_policy(request: Any, account: str) -> ConnectCharge | None:
    """The shop's rule: a buyer may pay any seller the platform has, as the platform says."""
    seller = SELLERS.get(account)
    return seller[1] if seller else None


def accounts_of(user: Any) -> list[str]:
    return [acct for acct, (name, _) in SELLERS.items() if name == user.get_username()]


@pytest.fixture
def platform(bridge_stripe: Any, relay: Relay, settings: Any) -> Iterator[dict[str, str]]:
    """Two connected accounts, the platform's and the Connect webhook, and the bridge's
    settings for them; yields the accounts by role."""
    bridge_stripe.reset(webhooks=True)
    client = stripe.StripeClient(
        TEST_API_KEY, base_addresses={"api": bridge_stripe.base_url}, max_network_retries=0
    )
    direct = client.v1.accounts.create({"type": "standard", "email": "one@example.com"}).id
    destination = client.v1.accounts.create({"type": "express", "email": "two@example.com"}).id
    SELLERS.clear()
    SELLERS[direct] = ("seller1", ConnectCharge(direct, ChargeMode.DIRECT))
    SELLERS[destination] = (
        "seller2",
        ConnectCharge(
            destination, ChargeMode.DESTINATION, application_fee_amount=150, on_behalf_of=True
        ),
    )
    bridge_stripe.register_webhook(relay.url + "/platform", PLATFORM_SECRET, name="platform")
    bridge_stripe.register_webhook(
        relay.url + "/connect", CONNECT_SECRET, name="connect", connect=True
    )
    bridge_settings_for(
        settings,
        WEBHOOK_SECRETS=[PLATFORM_SECRET],
        WEBHOOK_ENDPOINTS={"connect": [CONNECT_SECRET]},
        CONNECT_POLICY=f"{__name__}.connect_policy",
        SUBSCRIBE_ACCOUNTS=f"{__name__}.accounts_of",
        CHECKOUT_SUCCESS_URL=SUCCESS_URL,
        CHECKOUT_REDIRECT_HOSTS=["shop.example"],
    )
    yield {"direct": direct, "destination": destination, "client": client}  # type: ignore[dict-item]
    bridge_stripe.reset(webhooks=True)
    SELLERS.clear()


def deliver(relay: Relay, wanted: int, timeout: float = 10) -> list[str]:
    """Hand at least ``wanted`` webhook deliveries to the bridge; the URLs they went to."""
    deadline = time.monotonic() + timeout
    got: list[tuple[str, str, bytes]] = []
    while len(got) < wanted or time.monotonic() < deadline - timeout + 1.5:
        got += relay.take()
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    http = HttpClient()
    paths = []
    for path, signature, body in got:
        url = reverse("stripe_bridge:webhook")
        if path == "/connect":
            url = reverse("stripe_bridge:webhook-endpoint", args=["connect"])
        answer = http.post(
            url, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
        )
        assert answer.status_code == 200, (path, answer.content)
        paths.append(path)
    return paths


def pay(path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    answer = HttpClient().post(reverse(path), body, content_type="application/json")
    assert answer.status_code == status, answer.content
    return answer.json()


@database_sync_to_async
def login(username: str, *, staff: bool = False) -> str:
    user = get_user_model().objects.create_user(username, password="x", is_staff=staff)
    return session_cookie(user)


@pytest.fixture
async def watchers(platform: dict[str, Any]) -> AsyncIterator[tuple[Any, Any, Any]]:
    """Websocket clients of seller 1, seller 2 and a staff user, logged in, not subscribed;
    closed after the test."""
    clients = (
        await open_client(cookie=await login("seller1")),
        await open_client(cookie=await login("seller2")),
        await open_client(cookie=await login("staff", staff=True)),
    )
    yield clients
    for client in clients:
        await client.close()


def webhooks_by_endpoint(relay: Relay) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """After a second for the stand-in to send them: the events delivered to the Connect
    endpoint, and those to the platform's."""
    time.sleep(1.0)
    got = relay.take()
    connect = [json.loads(body) for path, _, body in got if path == "/connect"]
    own = [json.loads(body) for path, _, body in got if path == "/platform"]
    return connect, own


async def frames_until_quiet(client: Any, quiet: float = 1.0) -> list[dict[str, Any]]:
    frames = []
    while not await client.nothing(timeout=quiet):
        frames.append(await client.recv())
    return frames


async def test_each_seller_sees_exactly_its_own_payments_and_staff_sees_both(
    platform: dict[str, str], relay: Relay, watchers: tuple[Any, Any, Any]
) -> None:
    direct, destination = platform["direct"], platform["destination"]
    seller1, seller2, staff = watchers
    # Too broad, or another seller's: refused; the connection stays usable.
    for selector in ("", f"account = '{destination}'", f"account IN ('{direct}', '{destination}')"):
        answer = await seller1.subscribe(selector, subscription="x", replay="none")
        assert answer["code"] == "forbidden", selector
    mine = await seller1.subscribe(f"account = '{direct}'", subscription="s", replay="none")
    theirs = await seller2.subscribe(f"account = '{destination}'", subscription="s", replay="none")
    everything = await staff.subscribe("", subscription="s", replay="none")
    assert {mine["type"], theirs["type"], everything["type"]} == {"subscribed"}

    charge = await sync_to_async(pay)(
        "stripe_bridge:charge", {"token": "tok_visa", "amount": 1200, "account": direct}
    )
    intent = await sync_to_async(pay)(
        "stripe_bridge:payment-intents",
        {"amount": 3000, "payment_method": "pm_card_visa", "confirm": True, "account": destination},
    )
    assert intent["status"] == "succeeded"
    paths = await sync_to_async(deliver)(relay, wanted=6)
    assert "/connect" in paths and "/platform" in paths

    first = await frames_until_quiet(seller1)
    second = await frames_until_quiet(seller2)
    every = await frames_until_quiet(staff)
    assert first and {f["headers"]["id"] for f in first} == {charge["id"]}
    assert {f["headers"]["account"] for f in first} == {direct}
    assert second and {f["headers"]["id"] for f in second} == {intent["id"]}
    assert {f["headers"]["account"] for f in second} == {destination}
    payments = {f["headers"]["id"] for f in every if f["headers"]["account"]}
    assert payments == {charge["id"], intent["id"]}

    # Stored once each, with the account the verified events name.
    direct_tx = await StripeTransaction.objects.aget(pk=charge["id"])
    dest_tx = await StripeTransaction.objects.aget(pk=intent["id"])
    assert (direct_tx.account, direct_tx.direct, direct_tx.status) == (direct, True, "succeeded")
    assert (dest_tx.account, dest_tx.direct, dest_tx.status) == (destination, False, "succeeded")
    connect_events = StripeEvent.objects.filter(transaction_id=charge["id"])
    assert {e.payload.get("account") async for e in connect_events} == {direct}


def test_the_offline_stripe_keeps_accounts_apart_and_pays_destinations(
    platform: dict[str, Any], relay: Relay
) -> None:
    client, direct, destination = platform["client"], platform["direct"], platform["destination"]
    on_account = {"stripe_account": direct}
    charge = client.v1.charges.create(
        {"amount": 1000, "currency": "usd", "source": "tok_visa", "application_fee_amount": 100},
        options=on_account,
    )
    # Another account, or the platform, cannot see it.
    with pytest.raises(stripe.InvalidRequestError, match="No such charge"):
        client.v1.charges.retrieve(charge.id)
    with pytest.raises(stripe.InvalidRequestError, match="No such charge"):
        client.v1.charges.retrieve(charge.id, options={"stripe_account": destination})
    assert client.v1.charges.retrieve(charge.id, options=on_account).id == charge.id
    listed = client.v1.events.list(options=on_account).data
    assert listed and {e.to_dict().get("account") for e in listed} == {direct}
    assert all("account" not in e.to_dict() for e in client.v1.events.list().data)
    fee = client.v1.application_fees.retrieve(charge.application_fee)
    assert (fee.account, fee.amount, fee.charge) == (direct, 100, charge.id)

    paid = client.v1.payment_intents.create(
        {
            "amount": 5000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "transfer_data": {"destination": destination},
            "application_fee_amount": 500,
        }
    )
    made = client.v1.charges.retrieve(paid.latest_charge)
    transfer = client.v1.transfers.retrieve(made.transfer)
    assert (transfer.destination, transfer.amount, transfer.source_transaction) == (
        destination,
        4500,
        made.id,
    )
    assert client.v1.application_fees.retrieve(made.application_fee).account == destination
    # Listed with Stripe's filters (and only those).
    assert [t.id for t in client.v1.transfers.list({"destination": destination}).data] == [
        transfer.id
    ]
    assert client.v1.transfers.list({"destination": direct}).data == []
    fees = client.v1.application_fees.list({"charge": made.id}).data
    assert [f.id for f in fees] == [made.application_fee]
    with pytest.raises(stripe.InvalidRequestError, match="unknown parameter: charge"):
        client.v1.transfers.list({"charge": made.id})  # type: ignore[arg-type]
    with pytest.raises(stripe.InvalidRequestError, match="No such destination"):
        client.v1.charges.create(
            {
                "amount": 1000,
                "currency": "usd",
                "source": "tok_visa",
                "transfer_data": {"destination": "acct_nobody"},
            }
        )
    with pytest.raises(stripe.InvalidRequestError, match="application_fee_amount"):
        client.v1.charges.create(
            {"amount": 1000, "currency": "usd", "source": "tok_visa", "application_fee_amount": 1}
        )
    with pytest.raises(stripe.StripeError, match="does not have access"):
        client.v1.charges.list(options={"stripe_account": "acct_nobody"})
    assert {a.id for a in client.v1.accounts.list().auto_paging_iter()} == {direct, destination}

    # Each webhook gets its own: the Connect endpoint the account's events, named.
    connect, own = webhooks_by_endpoint(relay)
    assert connect and {e["account"] for e in connect} == {direct}
    assert own and all("account" not in e for e in own)
    assert {"transfer.created", "application_fee.created"} <= {e["type"] for e in own}


def test_a_refused_account_never_reaches_stripe(platform: dict[str, Any]) -> None:
    refused = pay(
        "stripe_bridge:charge",
        {"token": "tok_visa", "amount": 1000, "account": "acct_notours"},
        status=403,
    )
    assert refused["error"]["code"] == "account_forbidden"
    assert refused["error"]["param"] == "account"
    assert not StripeTransaction.objects.exists()
    assert platform["client"].v1.charges.list().data == []
    bad = pay(
        "stripe_bridge:charge", {"token": "tok_visa", "amount": 1000, "account": "cus_1"}, 400
    )
    assert bad["error"]["param"] == "account"


def test_without_a_policy_no_account_is_allowed(platform: dict[str, Any], settings: Any) -> None:
    bridge_settings_for(settings, CONNECT_POLICY=None)
    refused = pay(
        "stripe_bridge:payment-intents",
        {"amount": 1000, "account": platform["direct"]},
        status=403,
    )
    assert "not enabled" in refused["error"]["message"]


def test_staff_operations_and_sync_act_on_the_right_account(
    platform: dict[str, Any], relay: Relay
) -> None:
    direct, destination = platform["direct"], platform["destination"]
    charge = pay("stripe_bridge:charge", {"token": "tok_visa", "amount": 900, "account": direct})
    intent = pay(
        "stripe_bridge:payment-intents",
        {"amount": 800, "payment_method": "pm_card_visa", "confirm": True, "account": destination},
    )
    refund = operations.refund(StripeTransaction.objects.get(pk=charge["id"]))
    assert refund["status"] in ("succeeded", "pending")
    operations.refund(StripeTransaction.objects.get(pk=intent["id"]), amount=300)
    # No webhook reached the bridge: sync pulls every account's events.
    relay.take()
    call_command("stripe_bridge_sync", "--all-accounts", verbosity=0)
    direct_tx = StripeTransaction.objects.get(pk=charge["id"])
    dest_tx = StripeTransaction.objects.get(pk=intent["id"])
    assert (direct_tx.status, direct_tx.account) == ("refunded", direct)
    assert (dest_tx.status, dest_tx.account, dest_tx.amount_refunded) == (
        "partially_refunded",
        destination,
        300,
    )
    refund_events = StripeEvent.objects.filter(transaction_id=charge["id"], type="charge.refunded")
    assert [e.account for e in refund_events] == [direct]
    # Synced again, for one account: nothing new.
    before = StripeEvent.objects.count()
    call_command("stripe_bridge_sync", "--account", direct, verbosity=0)
    assert StripeEvent.objects.count() == before


def test_staff_capture_and_cancel_act_on_the_right_account(platform: dict[str, Any]) -> None:
    """Authorizations held for each seller: captured and released with the account's
    ``Stripe-Account`` for a direct charge, on the platform for a destination charge."""
    direct, destination = platform["direct"], platform["destination"]
    client = platform["client"]
    held = {"amount": 1100, "payment_method": "pm_card_visa", "confirm": True}
    held["capture_method"] = "manual"
    made = {
        (account, step): pay("stripe_bridge:payment-intents", {**held, "account": account})
        for account in (direct, destination)
        for step in ("capture", "cancel")
    }
    assert {answer["status"] for answer in made.values()} == {"requires_capture"}
    for (account, step), answer in made.items():
        tx = StripeTransaction.objects.get(pk=answer["id"])
        assert tx.account == account
        if step == "capture":
            assert operations.capture(tx, amount=1000)["status"] == "succeeded"
        else:
            assert operations.cancel(tx)["status"] == "canceled"
        where = {"stripe_account": account} if account == direct else {}
        intent = client.v1.payment_intents.retrieve(answer["id"], options=where)
        wanted = ("succeeded", 1000) if step == "capture" else ("canceled", 0)
        assert (intent.status, intent.amount_received) == wanted, (account, step)


# --- Checkout Sessions for connected accounts ----------------------------------------------


def pay_on_page(url: str, method: str = "card_success") -> None:
    """The buyer's trip on the stand-in's hosted page (3-D Secure: authenticated)."""
    answer = requests.post(url, data={"method": method}, allow_redirects=False, timeout=10)
    assert answer.status_code == 303, answer.text
    location = answer.headers["Location"]
    if "/_standin/3ds/" in location:
        page, _, query = location.partition("?client_secret=")
        authenticated = requests.post(
            page,
            data={"client_secret": requests.utils.unquote(query), "action": "complete"},
            allow_redirects=False,
            timeout=10,
        )
        back = authenticated.headers["Location"]  # the session's return page
        location = requests.get(back, allow_redirects=False, timeout=10).headers["Location"]
    assert location.startswith("https://shop.example/thanks?session=cs_"), location


async def test_checkout_pays_each_seller_and_each_sees_exactly_its_own_payment(
    platform: dict[str, str], relay: Relay, watchers: tuple[Any, Any, Any]
) -> None:
    direct, destination = platform["direct"], platform["destination"]
    seller1, seller2, staff = watchers
    await seller1.subscribe(f"account = '{direct}'", subscription="s", replay="none")
    await seller2.subscribe(f"account = '{destination}'", subscription="s", replay="none")
    await staff.subscribe("", subscription="s", replay="none")

    body = {"amount": 2500, "currency": "usd", "name": "Poster"}
    first = await sync_to_async(pay)("stripe_bridge:checkout-sessions", {**body, "account": direct})
    second = await sync_to_async(pay)(
        "stripe_bridge:checkout-sessions", {**body, "amount": 4000, "account": destination}
    )
    # Seller 1's page takes 3-D Secure: the charge it makes is on the account too.
    await sync_to_async(pay_on_page)(first["url"], "card_3ds")
    await sync_to_async(pay_on_page)(second["url"])
    paths = await sync_to_async(deliver)(relay, wanted=12)
    assert "/connect" in paths and "/platform" in paths

    client = platform["client"]
    direct_session = client.v1.checkout.sessions.retrieve(
        first["id"], options={"stripe_account": direct}
    )
    dest_session = client.v1.checkout.sessions.retrieve(second["id"])
    intents = {direct_session.payment_intent, dest_session.payment_intent}
    assert None not in intents

    mine, theirs, every = (
        await frames_until_quiet(seller1),
        await frames_until_quiet(seller2),
        await frames_until_quiet(staff),
    )
    for frames, session, account in (
        (mine, direct_session, direct),
        (theirs, dest_session, destination),
    ):
        assert frames and {f["headers"]["account"] for f in frames} == {account}
        assert {f["headers"]["id"] for f in frames} == {session.payment_intent}
        # The session and its PaymentIntent, live: both objects' events, no other payment's.
        objects = {f["data"]["object"]["id"] for f in frames}
        assert {session.id, session.payment_intent} <= objects
        assert objects.isdisjoint({first["id"], second["id"]} - {session.id})
        types = {f["headers"]["type"] for f in frames}
        assert {"checkout.session.completed", "payment_intent.succeeded"} <= types
    assert {f["headers"]["id"] for f in every if f["headers"]["account"]} == intents

    # Both rows of each payment carry its account; the session's is what its client holds.
    for session, account, is_direct in (
        (direct_session, direct, True),
        (dest_session, destination, False),
    ):
        for tx_id in (session.id, session.payment_intent):
            tx = await StripeTransaction.objects.aget(pk=tx_id)
            assert (tx.account, tx.direct, tx.status) == (account, is_direct, "succeeded"), tx_id
    events = StripeEvent.objects.filter(transaction_id=direct_session.payment_intent)
    assert {e.payload.get("account") async for e in events} == {direct}


def test_the_offline_stripe_checkout_pays_in_the_sessions_account(
    platform: dict[str, Any], relay: Relay
) -> None:
    client, direct, destination = platform["client"], platform["direct"], platform["destination"]
    params: dict[str, Any] = {
        "mode": "payment",
        "success_url": SUCCESS_URL,
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 3000,
                    "product_data": {"name": "Lamp"},
                },
                "quantity": 1,
            }
        ],
    }
    on_account = {"stripe_account": direct}
    own = client.v1.checkout.sessions.create(
        {**params, "payment_intent_data": {"application_fee_amount": 300}}, options=on_account
    )
    # The account's: neither the platform nor another account sees or lists it.
    for other in ({}, {"stripe_account": destination}):
        with pytest.raises(stripe.InvalidRequestError, match=r"No such checkout\.session"):
            client.v1.checkout.sessions.retrieve(own.id, options=other)
        assert own.id not in {s.id for s in client.v1.checkout.sessions.list(options=other).data}
    assert [s.id for s in client.v1.checkout.sessions.list(options=on_account).data] == [own.id]
    pay_on_page(own.url, "card_3ds")
    own = client.v1.checkout.sessions.retrieve(own.id, options=on_account)
    intent = client.v1.payment_intents.retrieve(own.payment_intent, options=on_account)
    charge = client.v1.charges.retrieve(intent.latest_charge, options=on_account)
    assert (own.status, intent.status, intent.application_fee_amount) == (
        "complete",
        "succeeded",
        300,
    )
    with pytest.raises(stripe.InvalidRequestError, match=r"No such payment.intent"):
        client.v1.payment_intents.retrieve(own.payment_intent)
    fee = client.v1.application_fees.retrieve(charge.application_fee)
    assert (fee.account, fee.amount, fee.charge) == (direct, 300, charge.id)

    made = client.v1.checkout.sessions.create(
        {
            **params,
            "payment_intent_data": {
                "transfer_data": {"destination": destination},
                "application_fee_amount": 450,
                "on_behalf_of": destination,
            },
        }
    )
    pay_on_page(made.url)
    made = client.v1.checkout.sessions.retrieve(made.id)
    paid = client.v1.payment_intents.retrieve(made.payment_intent)
    assert paid.transfer_data.destination == destination
    assert (paid.application_fee_amount, paid.on_behalf_of) == (450, destination)
    charge = client.v1.charges.retrieve(paid.latest_charge)
    assert (charge.transfer_data.destination, charge.on_behalf_of) == (destination, destination)
    transfer = client.v1.transfers.retrieve(charge.transfer)
    assert (transfer.destination, transfer.amount, transfer.source_transaction) == (
        destination,
        2550,
        charge.id,
    )
    assert client.v1.application_fees.retrieve(charge.application_fee).amount == 450

    # As Stripe refuses them, named inside payment_intent_data.
    refusals = [
        ({"transfer_data": {"destination": "acct_nobody"}}, {}, "No such destination"),
        ({"transfer_data": {"destination": destination}}, on_account, "Stripe-Account"),
        ({"application_fee_amount": 5000}, on_account, "greater than"),
        ({"application_fee_amount": 10}, {}, "on behalf of another account"),
    ]
    for data, options, message in refusals:
        with pytest.raises(stripe.InvalidRequestError, match=message) as refused:
            client.v1.checkout.sessions.create(
                {**params, "payment_intent_data": data}, options=options
            )
        assert str(refused.value.param).startswith("payment_intent_data["), data

    # The direct session's events went to the Connect endpoint, naming the account.
    connect, platform_events = webhooks_by_endpoint(relay)
    assert {e["account"] for e in connect} == {direct}
    assert {"checkout.session.completed", "charge.succeeded", "payment_intent.succeeded"} <= {
        e["type"] for e in connect
    }
    completed = [e for e in platform_events if e["type"] == "checkout.session.completed"]
    assert [e["data"]["object"]["id"] for e in completed] == [made.id]
    assert all("account" not in e for e in platform_events)


def test_a_destination_checkout_paid_by_debit_transfers_once_settled(
    platform: dict[str, Any], bridge_stripe: Any
) -> None:
    client, destination = platform["client"], platform["destination"]
    made = client.v1.checkout.sessions.create(
        {
            "mode": "payment",
            "success_url": SUCCESS_URL,
            "line_items": [
                {
                    "price_data": {
                        "currency": "eur",
                        "unit_amount": 1000,
                        "product_data": {"name": "Tea"},
                    },
                    "quantity": 2,
                }
            ],
            "payment_intent_data": {
                "transfer_data": {"destination": destination},
                "application_fee_amount": 200,
            },
        }
    )
    pay_on_page(made.url, "delayed")
    intent_id = client.v1.checkout.sessions.retrieve(made.id).payment_intent
    pending = client.v1.charges.retrieve(
        client.v1.payment_intents.retrieve(intent_id).latest_charge
    )
    assert (pending.status, pending.transfer_data.destination, pending.transfer) == (
        "pending",
        destination,
        None,
    )
    bridge_stripe.settle()
    settled = client.v1.charges.retrieve(pending.id)
    assert settled.status == "succeeded"
    transfer = client.v1.transfers.retrieve(settled.transfer)
    assert (transfer.destination, transfer.amount) == (destination, 1800)
    assert client.v1.application_fees.retrieve(settled.application_fee).amount == 200


def test_a_checkout_for_a_refused_account_creates_nothing(platform: dict[str, Any]) -> None:
    body = {"amount": 1500, "name": "Mug"}
    refused = pay("stripe_bridge:checkout-sessions", {**body, "account": "acct_notours"}, 403)
    assert refused["error"]["code"] == "account_forbidden"
    assert refused["error"]["param"] == "account"
    assert "acct_notours" in refused["error"]["message"]
    assert not StripeTransaction.objects.exists()
    client = platform["client"]
    assert client.v1.checkout.sessions.list().data == []
    for account in (platform["direct"], platform["destination"]):
        listed = client.v1.checkout.sessions.list(options={"stripe_account": account}).data
        assert listed == []


def test_a_client_cannot_override_the_policy_for_a_checkout(platform: dict[str, Any]) -> None:
    """The client names an account; how it is charged, and the fee, are the server's."""
    direct, destination = platform["direct"], platform["destination"]
    body = {"amount": 2000, "name": "Book"}
    for smuggled in (
        {"payment_intent_data": {"transfer_data": {"destination": direct}}},
        {"transfer_data": {"destination": direct}},
        {"application_fee_amount": 0},
        {"on_behalf_of": direct},
        {"stripe_account": direct},
    ):
        answer = pay(
            "stripe_bridge:checkout-sessions", {**body, "account": destination, **smuggled}, 400
        )
        assert answer["error"]["param"] == next(iter(smuggled)), smuggled
    assert not StripeTransaction.objects.exists()

    # The policy makes seller 2's a destination charge with its fee, whatever the body says.
    session = pay("stripe_bridge:checkout-sessions", {**body, "account": destination})
    client = platform["client"]
    made = client.v1.checkout.sessions.retrieve(session["id"])  # the platform's, not seller 2's
    pay_on_page(made.url)
    intent = client.v1.payment_intents.retrieve(
        client.v1.checkout.sessions.retrieve(session["id"]).payment_intent
    )
    assert intent.transfer_data.destination == destination
    assert (intent.application_fee_amount, intent.on_behalf_of) == (150, destination)
    tx = StripeTransaction.objects.get(pk=session["id"])
    assert (tx.account, tx.direct) == (destination, False)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("stripe_bridge:charge", {"token": "tok_visa", "amount": 2000}),
        ("stripe_bridge:payment-intents", {"amount": 2000, "payment_method": "pm_card_visa"}),
    ],
)
def test_a_client_cannot_override_the_policy_for_a_charge_or_payment_intent(
    platform: dict[str, Any], path: str, body: dict[str, Any]
) -> None:
    """Whose payment it is, and how, is the server's: Connect parameters in the body are
    refused by name, with or without an account, and nothing reaches Stripe."""
    direct, destination = platform["direct"], platform["destination"]
    for smuggled in (
        {"transfer_data": {"destination": direct}},
        {"application_fee_amount": 0},
        {"on_behalf_of": direct},
        {"stripe_account": direct},
        {"payment_intent_data": {"transfer_data": {"destination": direct}}},
    ):
        for account in ({"account": destination}, {}):
            answer = pay(path, {**body, **account, **smuggled}, 400)
            assert answer["error"]["param"] == next(iter(smuggled)), (smuggled, account)
    assert not StripeTransaction.objects.exists()
    client = platform["client"]
    assert client.v1.charges.list().data == []
    for account_id in (direct, destination):
        assert client.v1.charges.list(options={"stripe_account": account_id}).data == []
