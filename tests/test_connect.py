"""Stripe Connect: the connected account of events and transactions, the webhook endpoints
each with its own secrets, and the subscribe policy pinned to a seller's accounts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from django.test import override_settings
from django.urls import reverse

from django_stripe_bridge import policy
from django_stripe_bridge.asgi import with_stripe_webhook
from django_stripe_bridge.events import account_of
from django_stripe_bridge.exceptions import InvalidEvent
from django_stripe_bridge.ingest import ingest_event
from django_stripe_bridge.messaging import build_headers
from django_stripe_bridge.models import StripeEvent, StripeTransaction
from django_stripe_bridge.selectors import compile_selector
from django_stripe_bridge.testing import sign_payload
from tests.factories import charge_object, make_event
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import ingest, open_client, session_cookie

PLATFORM_SECRET = "whsec_tests_primary"
CONNECT_SECRET = "whsec_tests_connect"
ENDPOINTS = {"connect": [CONNECT_SECRET]}

#: Who owns which connected account, for SUBSCRIBE_ACCOUNTS.
SELLERS = {"seller1": ["acct_1Seller"], "seller2": ["acct_2Seller"]}


def accounts_of_seller(user: Any) -> list[str]:
    """The ``SUBSCRIBE_ACCOUNTS`` callable of these tests: a seller's own account."""
    return SELLERS.get(user.get_username(), [])


def direct_charge_event(charge_id: str, account: str, event_type: str = "charge.succeeded"):
    """A Connect event: a charge made on the connected account itself."""
    event = make_event(event_type, charge_object(charge_id))
    event["account"] = account
    return event


def destination_charge_event(charge_id: str, account: str, event_type: str = "charge.succeeded"):
    """A platform event about a charge whose funds go to ``account``."""
    return make_event(
        event_type,
        charge_object(charge_id, transfer_data={"destination": account, "amount": None}),
    )


# -- where the account comes from ----------------------------------------------------------


def test_account_of_an_event() -> None:
    assert account_of(direct_charge_event("ch_a", "acct_1Seller")) == "acct_1Seller"
    assert account_of(destination_charge_event("ch_b", "acct_2Seller")) == "acct_2Seller"
    on_behalf = make_event("charge.succeeded", charge_object("ch_c", on_behalf_of="acct_3X"))
    assert account_of(on_behalf) == "acct_3X"
    expanded = make_event(
        "payment_intent.succeeded",
        {
            "id": "pi_1",
            "object": "payment_intent",
            "transfer_data": {"destination": {"id": "acct_4Y"}},
        },
    )
    assert account_of(expanded) == "acct_4Y"
    # The platform's own; and a field that only looks like a destination on another object.
    assert account_of(make_event("charge.succeeded", charge_object("ch_d"))) == ""
    customer = make_event(
        "customer.created", {"id": "cus_1", "object": "customer", "on_behalf_of": "acct_5"}
    )
    assert account_of(customer) == ""


@pytest.mark.parametrize("bad", [123, "", "acct_", "cus_123", "acct_' OR 1=1", "acct_" + "x" * 251])
def test_an_event_with_a_malformed_account_is_refused(bad: Any) -> None:
    event = direct_charge_event("ch_bad", "acct_ok")
    event["account"] = bad
    with pytest.raises(InvalidEvent, match="'account'"):
        ingest_event(event, publish=False)


@pytest.mark.django_db
def test_account_is_stored_on_the_event_and_the_transaction_and_is_a_header() -> None:
    row = ingest_event(direct_charge_event("ch_direct", "acct_1Seller"), publish=False).event
    assert row.account == "acct_1Seller"
    assert StripeTransaction.objects.get(pk="ch_direct").account == "acct_1Seller"
    assert build_headers(row, "succeeded")["account"] == "acct_1Seller"

    platform = ingest_event(make_event("charge.succeeded", charge_object("ch_own")), publish=False)
    assert platform.event.account == ""
    assert StripeTransaction.objects.get(pk="ch_own").account == ""
    assert build_headers(platform.event, "succeeded")["account"] is None


@pytest.mark.django_db
def test_a_destination_charges_later_events_inherit_its_account() -> None:
    ingest_event(destination_charge_event("ch_dest", "acct_2Seller"), publish=False)
    refund = make_event(
        "charge.refunded", charge_object("ch_dest", amount_refunded=1000, refunded=True)
    )
    row = ingest_event(refund, publish=False).event
    assert row.account == "acct_2Seller"
    assert StripeEvent.objects.get(pk=row.pk).account == "acct_2Seller"
    tx = StripeTransaction.objects.get(pk="ch_dest")
    assert (tx.account, tx.status) == ("acct_2Seller", "refunded")


@pytest.mark.django_db
def test_an_account_learned_later_is_kept_once_and_never_replaced(caplog: Any) -> None:
    ingest_event(
        make_event("charge.pending", charge_object("ch_late", status="pending")), publish=False
    )
    assert StripeTransaction.objects.get(pk="ch_late").account == ""
    ingest_event(destination_charge_event("ch_late", "acct_1Seller"), publish=False)
    assert StripeTransaction.objects.get(pk="ch_late").account == "acct_1Seller"
    other = direct_charge_event("ch_late", "acct_2Seller", "charge.updated")
    row = ingest_event(other, publish=False).event
    assert row.account == "acct_2Seller"  # stored as Stripe sent it…
    assert StripeTransaction.objects.get(pk="ch_late").account == "acct_1Seller"  # …not moved
    assert "belongs to acct_1Seller" in caplog.text


@pytest.mark.django_db
@pytest.mark.parametrize("session_event_first", [True, False])
def test_a_destination_checkout_sessions_payment_carries_the_account(
    session_event_first: bool,
) -> None:
    """The session's account (the server's policy, at its create call) goes to the
    PaymentIntent that joins it, whichever webhook comes first: Stripe's session object names
    no destination, and the platform's session event no account."""
    from django_stripe_bridge.charges import record_transaction
    from django_stripe_bridge.connect import ChargeMode, ConnectCharge

    account = "acct_2Seller"
    session = {
        "id": "cs_test_dest",
        "object": "checkout.session",
        "status": "open",
        "payment_status": "unpaid",
        "payment_intent": None,
        "amount_total": 2000,
        "currency": "usd",
        "created": 1,
        "livemode": False,
    }
    record_transaction(session, connect=ConnectCharge(account, ChargeMode.DESTINATION))
    intent = {
        "id": "pi_dest",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 2000,
        "amount_received": 2000,
        "currency": "usd",
        "transfer_data": {"destination": account},
        "livemode": False,
    }
    completed = make_event(
        "checkout.session.completed",
        {**session, "status": "complete", "payment_status": "paid", "payment_intent": "pi_dest"},
    )
    succeeded = make_event("payment_intent.succeeded", intent)
    order = [completed, succeeded] if session_event_first else [succeeded, completed]
    rows = [ingest_event(event, publish=False).event for event in order]
    assert [row.account for row in rows] == [account, account]
    assert {e.account for e in StripeEvent.objects.all()} == {account}
    for tx_id in ("cs_test_dest", "pi_dest"):
        tx = StripeTransaction.objects.get(pk=tx_id)
        assert (tx.account, tx.direct, tx.status) == (account, False, "succeeded"), tx_id


# -- several endpoints, each with its own secrets ------------------------------------------


def _post(client: Any, url: str, event: dict[str, Any], secret: str) -> Any:
    body = json.dumps(event).encode()
    return client.post(
        url,
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign_payload(body, secret),
    )


@pytest.mark.django_db
@override_settings(
    STRIPE_BRIDGE={"WEBHOOK_SECRETS": [PLATFORM_SECRET], "WEBHOOK_ENDPOINTS": ENDPOINTS}
)
def test_each_endpoint_takes_only_its_own_secrets(client: Any) -> None:
    connect_url = reverse("stripe_bridge:webhook-endpoint", args=["connect"])
    platform_url = reverse("stripe_bridge:webhook")
    event = direct_charge_event("ch_ep", "acct_1Seller")
    assert _post(client, connect_url, event, PLATFORM_SECRET).status_code == 400
    assert _post(client, platform_url, event, CONNECT_SECRET).status_code == 400
    assert not StripeEvent.objects.exists()
    answer = _post(client, connect_url, event, CONNECT_SECRET)
    assert answer.status_code == 200, answer.content
    assert StripeEvent.objects.get().account == "acct_1Seller"
    own = make_event("charge.succeeded", charge_object("ch_platform"))
    assert _post(client, platform_url, own, PLATFORM_SECRET).status_code == 200
    # A trailing slash works too; an endpoint that is not configured is a JSON 404.
    assert _post(client, connect_url + "/", event, CONNECT_SECRET).json()["duplicate"] is True
    missing = _post(client, connect_url.replace("connect", "nope"), event, CONNECT_SECRET)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "unknown_endpoint")


@pytest.mark.django_db(transaction=True)
@override_settings(
    STRIPE_BRIDGE={"WEBHOOK_SECRETS": [PLATFORM_SECRET], "WEBHOOK_ENDPOINTS": ENDPOINTS}
)
def test_the_lean_asgi_path_serves_every_endpoint() -> None:
    from tests.test_webhook_asgi import PATH, call, site

    app = with_stripe_webhook(site)
    connect_path = PATH.rpartition("/")[0] + "/connect"
    body = json.dumps(direct_charge_event("ch_lean", "acct_1Seller")).encode()
    wrong = async_to_sync(call)(
        app, body, {"stripe-signature": sign_payload(body, PLATFORM_SECRET)}, path=connect_path
    )
    assert wrong.status == 400
    right = async_to_sync(call)(
        app, body, {"stripe-signature": sign_payload(body, CONNECT_SECRET)}, path=connect_path + "/"
    )
    assert (right.status, right.json["duplicate"]) == (200, False)
    assert StripeEvent.objects.get().account == "acct_1Seller"
    # A name no endpoint has goes to the site (whose view answers 404).
    other = async_to_sync(call)(app, body, {}, path=PATH.rpartition("/")[0] + "/nope")
    assert other.status == 299


@pytest.mark.parametrize(
    ("endpoints", "needle"),
    [
        (["whsec_x"], "must be a dict"),
        ({"connect": []}, "non-empty list"),
        ({"connect": ["sk_test_x"]}, "non-empty list"),
        ({"con/nect": ["whsec_x"]}, "not a name"),
        ({"handler": ["whsec_x"]}, "WEBHOOK_SECRETS"),
    ],
)
def test_a_bad_endpoints_setting_is_a_system_check_error(endpoints: Any, needle: str) -> None:
    with override_settings(STRIPE_BRIDGE={"WEBHOOK_ENDPOINTS": endpoints}):
        errors = [m for m in run_checks() if m.id == "stripe_bridge.E020"]
    assert errors and needle in errors[0].msg


def test_hooks_that_cannot_be_imported_are_system_check_errors() -> None:
    with override_settings(
        STRIPE_BRIDGE={"SUBSCRIBE_ACCOUNTS": "no.such.hook", "CONNECT_POLICY": "json.__doc__"}
    ):
        errors = [m.msg for m in run_checks() if m.id == "stripe_bridge.E021"]
    assert len(errors) == 2
    assert "SUBSCRIBE_ACCOUNTS" in errors[0] and "cannot be imported" in errors[0]
    assert "CONNECT_POLICY" in errors[1] and "not callable" in errors[1]
    with override_settings(
        STRIPE_BRIDGE={
            "WEBHOOK_ENDPOINTS": ENDPOINTS,
            "SUBSCRIBE_ACCOUNTS": f"{__name__}.accounts_of_seller",
        }
    ):
        assert not [m for m in run_checks() if m.id in ("stripe_bridge.E020", "stripe_bridge.E021")]


# -- selectors and the subscribe policy ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "accounts"),
    [
        ("account = 'acct_1'", {"acct_1"}),
        ("'acct_1' = account AND status = 'succeeded'", {"acct_1"}),
        ("account IN ('acct_1', 'acct_2')", {"acct_1", "acct_2"}),
        ("account = 'acct_1' OR account = 'acct_2'", {"acct_1", "acct_2"}),
        ("account = 'acct_1' AND account = 'acct_2'", set()),
        ("account = 'acct_1' OR status = 'succeeded'", None),
        ("NOT account = 'acct_2'", None),
        ("account <> 'acct_2'", None),
        ("account LIKE 'acct_1%'", None),
        ("account IS NULL", None),
        ("", None),
    ],
)
def test_selectors_pin_accounts_as_they_pin_ids(text: str, accounts: Any) -> None:
    selector = compile_selector(text)
    assert selector.pinned_accounts == (None if accounts is None else frozenset(accounts))
    assert selector.pinned_values("account") == selector.pinned_accounts
    assert selector.pinned_ids is None


@database_sync_to_async
def login(username: str, *, staff: bool = False) -> str:
    user = get_user_model().objects.create_user(username, password="x", is_staff=staff)
    return session_cookie(user)


async def outcome(selector: str, cookie: str | None = None) -> str:
    client = await open_client(cookie=cookie)
    answer = await client.subscribe(selector, subscription="s1", replay="none")
    await client.close()
    return answer["type"] if answer["type"] == "subscribed" else answer["code"]


SELLER_SETTINGS = {"SUBSCRIBE_ACCOUNTS": f"{__name__}.accounts_of_seller"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("account = 'acct_1Seller'", "subscribed"),
        ("account = 'acct_1Seller' AND status = 'succeeded'", "subscribed"),
        ("account IN ('acct_1Seller')", "subscribed"),
        ("account = 'acct_2Seller'", "forbidden"),
        ("account IN ('acct_1Seller', 'acct_2Seller')", "forbidden"),
        ("account = 'acct_1Seller' OR status = 'succeeded'", "forbidden"),
        ("account <> 'acct_2Seller'", "forbidden"),
        ("status = 'succeeded'", "forbidden"),
        ("", "forbidden"),
        ("id = 'ch_known'", "subscribed"),  # knowing an id is enough, as for anyone
    ],
)
async def test_a_seller_may_follow_its_own_accounts_payments_and_nothing_broader(
    selector: str, expected: str
) -> None:
    with override_settings(STRIPE_BRIDGE=SELLER_SETTINGS):
        assert await outcome(selector, await login("seller1")) == expected


@pytest.mark.django_db(transaction=True)
async def test_without_the_setting_and_for_strangers_accounts_give_nothing() -> None:
    seller = await login("seller1")
    assert await outcome("account = 'acct_1Seller'", seller) == "forbidden"
    with override_settings(STRIPE_BRIDGE=SELLER_SETTINGS):
        assert await outcome("account = 'acct_1Seller'") == "forbidden"  # anonymous
        assert await outcome("account = 'acct_1Seller'", await login("someone")) == "forbidden"
        # Platform staff see every account, and everything.
        staff = await login("staff", staff=True)
        assert await outcome("account = 'acct_2Seller'", staff) == "subscribed"
        assert await outcome("", staff) == "subscribed"
    with override_settings(STRIPE_BRIDGE={**SELLER_SETTINGS, "SUBSCRIBE_POLICY": "staff"}):
        assert await outcome("account = 'acct_1Seller'", seller) == "subscribed"
        assert await outcome("id = 'ch_1'", seller) == "forbidden"


def test_a_failing_accounts_hook_refuses() -> None:
    def broken(user: Any) -> list[str]:
        raise RuntimeError("the sellers table is gone")

    class User:
        is_authenticated = is_active = True
        is_staff = False

    selector = compile_selector("account = 'acct_1'")
    with override_settings(STRIPE_BRIDGE={"SUBSCRIBE_ACCOUNTS": broken}):
        assert async_to_sync(policy.may_subscribe)(User(), selector) is False
    with override_settings(STRIPE_BRIDGE={"SUBSCRIBE_ACCOUNTS": lambda user: ["acct_1"]}):
        assert async_to_sync(policy.may_subscribe)(User(), selector) is True


@pytest.mark.django_db(transaction=True)
async def test_a_sellers_broad_subscription_receives_only_its_accounts_payments() -> None:
    with override_settings(STRIPE_BRIDGE=SELLER_SETTINGS):
        seller = await open_client(cookie=await login("seller1"))
        answer = await seller.subscribe(
            "account = 'acct_1Seller'", subscription="mine", replay="none"
        )
        assert answer["type"] == "subscribed"
        await ingest(direct_charge_event("ch_other", "acct_2Seller"))
        await ingest(make_event("charge.succeeded", charge_object("ch_platform_own")))
        await ingest(destination_charge_event("ch_mine_dest", "acct_1Seller"))
        await ingest(direct_charge_event("ch_mine_direct", "acct_1Seller"))
        frames = await seller.drain(2)
        assert [f["headers"]["id"] for f in frames] == ["ch_mine_dest", "ch_mine_direct"]
        assert {f["headers"]["account"] for f in frames} == {"acct_1Seller"}
        await seller.close()


# -- the admin ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_shows_and_filters_by_account(admin_client: Any) -> None:
    ingest_event(direct_charge_event("ch_adm1", "acct_1Seller"), publish=False)
    ingest_event(make_event("charge.succeeded", charge_object("ch_adm2")), publish=False)
    for model in ("stripeevent", "stripetransaction"):
        url = reverse(f"admin:django_stripe_bridge_{model}_changelist")
        page = admin_client.get(url)
        assert b"acct_1Seller" in page.content
        mine = admin_client.get(url, {"account": "acct_1Seller"}).context["cl"].result_list
        own = admin_client.get(url, {"account": "-"}).context["cl"].result_list
        found = admin_client.get(url, {"q": "acct_1Seller"}).context["cl"].result_list
        key = "transaction_id" if model == "stripeevent" else "id"
        assert [getattr(r, key) for r in mine] == ["ch_adm1"] == [getattr(r, key) for r in found]
        assert [getattr(r, key) for r in own] == ["ch_adm2"]


# -- thin notifications on both webhook paths (the fetch is tested on the offline Stripe) ----


def _notification(event_id: str = "evt_test_thin1", context: str | None = None) -> bytes:
    body = {
        "id": event_id,
        "object": "v2.core.event",
        "type": "v1.charge.succeeded",
        "created": "2026-01-01T00:00:00.000Z",
        "livemode": False,
        "context": context,
        "related_object": {"id": "ch_1", "type": "charge", "url": "/v1/charges/ch_1"},
    }
    return json.dumps(body).encode()


@pytest.mark.django_db(transaction=True)
@override_settings(
    STRIPE_BRIDGE={
        "WEBHOOK_SECRETS": [PLATFORM_SECRET],
        "WEBHOOK_ENDPOINTS": {"thin": ["whsec_tests_thin"]},
        "THIN_RELAY": False,
    }
)
def test_a_thin_notification_is_stored_once_on_the_view_and_the_lean_path(client: Any) -> None:
    from django_stripe_bridge.models import ThinEvent
    from tests.test_webhook_asgi import PATH, call, site

    url = reverse("stripe_bridge:webhook-endpoint", args=["thin"])
    body = _notification(context="acct_1Seller")
    signature = sign_payload(body, "whsec_tests_thin")
    answer = client.post(
        url, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
    )
    assert answer.json() == {"received": True, "duplicate": False}
    row = ThinEvent.objects.get()
    assert (row.status, row.context, row.endpoint, row.attempts) == (
        "pending",
        "acct_1Seller",
        "thin",
        0,
    )
    app = with_stripe_webhook(site)
    thin_path = PATH.rpartition("/")[0] + "/thin"
    again = async_to_sync(call)(app, body, {"stripe-signature": signature}, path=thin_path)
    assert (again.status, again.json["duplicate"]) == (200, True)
    other = _notification("evt_test_thin2")
    fresh = async_to_sync(call)(
        app, other, {"stripe-signature": sign_payload(other, "whsec_tests_thin")}, path=thin_path
    )
    assert (fresh.status, fresh.json["duplicate"]) == (200, False)
    assert ThinEvent.objects.count() == 2
    assert not StripeEvent.objects.exists()


# -- the server's Connect decision ---------------------------------------------------------


class _Request:
    user = None


def test_the_connect_decision_is_the_servers() -> None:
    from django_stripe_bridge.connect import ChargeMode, ConnectCharge, decide
    from django_stripe_bridge.exceptions import AccountRefused

    assert decide(_Request(), None) is None  # no account named: the platform's own
    with override_settings(STRIPE_BRIDGE={}), pytest.raises(AccountRefused, match="not enabled"):
        decide(_Request(), "acct_1")
    answers = {
        "acct_1": ConnectCharge("acct_1", ChargeMode.DESTINATION, application_fee_amount=5),
        "acct_2": ConnectCharge("acct_other"),  # a policy answering for another account
        "acct_3": True,  # not a ConnectCharge
        "acct_4": None,
    }
    with override_settings(STRIPE_BRIDGE={"CONNECT_POLICY": lambda request, acct: answers[acct]}):
        decision = decide(_Request(), "acct_1")
        assert decision is not None and decision.stripe_account is None
        assert decision.params() == {
            "transfer_data": {"destination": "acct_1"},
            "application_fee_amount": 5,
        }
        for account in ("acct_2", "acct_3", "acct_4"):
            with pytest.raises(AccountRefused) as refused:
                decide(_Request(), account)
            assert refused.value.status_code == 403
            assert refused.value.error["code"] == "account_forbidden"


def test_a_connect_charge_is_checked_when_made() -> None:
    from django_stripe_bridge.connect import ChargeMode, ConnectCharge

    direct = ConnectCharge("acct_1", application_fee_amount=0)
    assert (direct.stripe_account, direct.params()) == ("acct_1", {"application_fee_amount": 0})
    on_behalf = ConnectCharge("acct_1", ChargeMode.DESTINATION, on_behalf_of=True)
    assert on_behalf.params() == {
        "transfer_data": {"destination": "acct_1"},
        "on_behalf_of": "acct_1",
    }
    for bad in (
        {"account": "cus_1"},
        {"account": "acct_1", "application_fee_amount": -1},
        {"account": "acct_1", "application_fee_amount": True},
        {"account": "acct_1", "on_behalf_of": True},  # direct: on_behalf_of does not apply
    ):
        with pytest.raises(ValueError):
            ConnectCharge(**bad)
