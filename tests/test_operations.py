"""Staff operations (capture, cancel, refund): the service functions and the admin actions,
against the offline Stripe stand-in.

Every operation is checked three ways: what Stripe now has (read back from the stand-in),
that the operation itself left the transaction row alone, and that the events Stripe sends
for it, ingested as the webhook does, are stored for the transaction.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from django_stripe_bridge import operations, stripe_api
from django_stripe_bridge.charges import record_transaction
from django_stripe_bridge.exceptions import (
    OperationRefused,
    StripeInvalidRequest,
    StripeUnavailable,
)
from django_stripe_bridge.ingest import ingest_event
from django_stripe_bridge.models import StripeEvent, StripeTransaction
from tests.charge_fixtures import *  # noqa: F403

pytestmark = [pytest.mark.django_db, pytest.mark.standin]

CHANGELIST = "admin:django_stripe_bridge_stripetransaction_changelist"


def authorized(amount: int = 2000, pm: str = "pm_card_visa") -> StripeTransaction:
    """A manual-capture PaymentIntent, authorized, recorded as the bridge records it."""
    intent = stripe_api.create_payment_intent(
        {
            "amount": amount,
            "currency": "usd",
            "payment_method": pm,
            "confirm": True,
            "capture_method": "manual",
        },
        idempotency_key=str(uuid.uuid4()),
    )
    assert intent["status"] == "requires_capture"
    return record_transaction(intent)


def paid(amount: int = 2000, pm: str = "pm_card_visa") -> StripeTransaction:
    intent = stripe_api.create_payment_intent(
        {"amount": amount, "currency": "usd", "payment_method": pm, "confirm": True},
        idempotency_key=str(uuid.uuid4()),
    )
    return record_transaction(intent)


def held_charge(amount: int = 3000) -> StripeTransaction:
    charge = stripe_api.create_charge(
        {"amount": amount, "currency": "usd", "source": "tok_visa", "capture": False},
        idempotency_key=str(uuid.uuid4()),
    )
    return record_transaction(charge)


def deliver_webhooks() -> list[str]:
    """Ingest every event the stand-in has (oldest first), as its webhooks would bring them;
    returns their types. Events already stored are skipped, as the webhook does."""
    events = list(reversed(list(stripe_api.list_events())))
    for event in events:
        ingest_event(event, publish=False)
    return [event["type"] for event in events]


def stored_types(transaction: StripeTransaction) -> list[str]:
    return list(
        StripeEvent.objects.filter(transaction_id=transaction.pk)
        .order_by("created", "id")
        .values_list("type", flat=True)
    )


def snapshot(transaction: StripeTransaction) -> tuple[Any, ...]:
    row = StripeTransaction.objects.get(pk=transaction.pk)
    return (
        row.status,
        row.amount,
        row.amount_captured,
        row.amount_refunded,
        row.state,
        row.updated_at,
    )


def intent_of(transaction: StripeTransaction) -> dict[str, Any]:
    client = stripe_api.get_stripe_client()
    return client.v1.payment_intents.retrieve(transaction.pk).to_dict()


def charge_of(transaction: StripeTransaction) -> dict[str, Any]:
    if transaction.kind == StripeTransaction.Kind.CHARGE:
        return stripe_api.retrieve_charge(transaction.pk)
    return stripe_api.retrieve_charge(intent_of(transaction)["latest_charge"])


# --- service functions -----------------------------------------------------------------------


def test_capture_in_full(bridge_stripe: Any) -> None:
    tx = authorized()
    deliver_webhooks()
    before = snapshot(tx)
    result = operations.capture(tx)
    assert (result["object"], result["status"], result["amount_received"]) == (
        "payment_intent",
        "succeeded",
        2000,
    )
    assert snapshot(tx) == before  # the operation wrote nothing
    assert {"charge.captured", "payment_intent.succeeded"} <= set(deliver_webhooks())
    assert {"charge.captured", "payment_intent.succeeded"} <= set(stored_types(tx))
    assert StripeTransaction.objects.get(pk=tx.pk).status == "succeeded"


def test_capture_in_part(bridge_stripe: Any) -> None:
    tx = authorized()
    result = operations.capture(tx, 1200)
    assert (result["amount_received"], result["amount_capturable"]) == (1200, 0)
    charge = charge_of(tx)
    assert (charge["amount_captured"], charge["amount_refunded"]) == (1200, 0)
    deliver_webhooks()
    assert "charge.captured" in stored_types(tx)
    row = StripeTransaction.objects.get(pk=tx.pk)
    assert (row.status, row.amount, row.amount_captured, row.amount_refunded) == (
        "succeeded",
        2000,
        1200,
        0,
    )


def test_capture_an_uncaptured_charge(bridge_stripe: Any) -> None:
    tx = held_charge()
    result = operations.capture(tx, 2500)
    assert (result["object"], result["captured"], result["amount_captured"]) == (
        "charge",
        True,
        2500,
    )
    deliver_webhooks()
    assert "charge.captured" in stored_types(tx)


@pytest.mark.parametrize("amount", [0, -5, 2001, True])
def test_capture_refuses_a_bad_amount_before_stripe(bridge_stripe: Any, amount: Any) -> None:
    tx = authorized()
    with pytest.raises(OperationRefused) as refused:
        operations.capture(tx, amount)
    assert "capture" in str(refused.value)
    assert intent_of(tx)["status"] == "requires_capture"


def test_stripe_refusals_come_back_translated(bridge_stripe: Any) -> None:
    tx = authorized()
    operations.capture(tx)
    with pytest.raises(StripeInvalidRequest) as twice:
        operations.capture(tx)
    assert "requires_capture" in twice.value.message
    with pytest.raises(StripeInvalidRequest) as cancel_captured:
        operations.cancel(tx)
    assert "status of succeeded" in cancel_captured.value.message


def test_cancel_an_authorization(bridge_stripe: Any) -> None:
    tx = authorized()
    before = snapshot(tx)
    result = operations.cancel(tx)
    assert (result["status"], result["amount_capturable"]) == ("canceled", 0)
    assert snapshot(tx) == before
    deliver_webhooks()
    assert "payment_intent.canceled" in stored_types(tx)
    row = StripeTransaction.objects.get(pk=tx.pk)
    assert (row.status, row.amount_captured, row.amount_refunded) == ("canceled", 0, 0)


def test_cancel_an_uncaptured_charge_releases_it(bridge_stripe: Any) -> None:
    tx = held_charge()
    result = operations.cancel(tx)
    assert (result["object"], result["amount"], result["charge"]) == ("refund", 3000, tx.pk)
    assert charge_of(tx)["refunded"] is True
    deliver_webhooks()
    assert "charge.refunded" in stored_types(tx)
    row = StripeTransaction.objects.get(pk=tx.pk)
    assert (row.status, row.amount_captured, row.amount_refunded) == ("canceled", 0, 0)


def test_cancel_refuses_a_captured_charge(bridge_stripe: Any) -> None:
    charge = stripe_api.create_charge(
        {"amount": 1000, "currency": "usd", "source": "tok_visa"},
        idempotency_key=str(uuid.uuid4()),
    )
    tx = record_transaction(charge)
    with pytest.raises(OperationRefused) as refused:
        operations.cancel(tx)
    assert "Refund" in str(refused.value)
    assert charge_of(tx)["amount_refunded"] == 0


def test_refund_in_part_then_the_rest(bridge_stripe: Any) -> None:
    tx = paid()
    first = operations.refund(tx, 500, reason="requested_by_customer")
    assert (first["object"], first["amount"], first["status"], first["reason"]) == (
        "refund",
        500,
        "succeeded",
        "requested_by_customer",
    )
    deliver_webhooks()
    tx.refresh_from_db()
    assert tx.amount_refunded == 500
    rest = operations.refund(tx)
    assert rest["amount"] == 1500
    deliver_webhooks()
    tx.refresh_from_db()
    assert (tx.amount_refunded, tx.status) == (2000, "refunded")
    with pytest.raises(OperationRefused):
        operations.refund(tx, 1)


def test_refund_refusals(bridge_stripe: Any) -> None:
    tx = paid()
    with pytest.raises(OperationRefused) as too_much:
        operations.refund(tx, 2001)
    assert "20.00 USD" in str(too_much.value)
    with pytest.raises(OperationRefused) as reason:
        operations.refund(tx, reason="because")
    assert "requested_by_customer" in str(reason.value)
    assert charge_of(tx)["amount_refunded"] == 0


def test_a_refund_that_fails_later(bridge_stripe: Any) -> None:
    tx = paid(pm="pm_card_refundFail")
    refund = operations.refund(tx)
    assert refund["status"] == "succeeded"
    deliver_webhooks()
    bridge_stripe.settle()
    types = deliver_webhooks()
    assert {"charge.refund.updated", "refund.failed"} <= set(types)
    assert {"refund.created", "charge.refunded", "refund.failed"} <= set(stored_types(tx))
    assert charge_of(tx)["amount_refunded"] == 0


# --- admin actions ---------------------------------------------------------------------------


def start(client: Client, action: str, *transactions: StripeTransaction) -> Any:
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [tx.pk for tx in transactions]},
    )


def confirm(client: Client, action: str, tx: StripeTransaction, **fields: str) -> Any:
    page = start(client, action, tx)
    token = re.search(r'name="token" value="([0-9a-f]{32})"', page.content.decode())
    assert token, "the confirmation page has no token"
    return client.post(
        reverse(CHANGELIST),
        {
            "action": action,
            "_selected_action": [tx.pk],
            "confirm": "yes",
            "token": token.group(1),
            **fields,
        },
        follow=True,
    )


def texts(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_the_confirmation_page(bridge_stripe: Any, admin_client: Client) -> None:
    tx = authorized()
    page = start(admin_client, "capture_payment", tx)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Capture a payment" in html
    assert tx.pk in html and "20.00 USD" in html
    assert 'name="amount"' in html and 'name="reason"' not in html
    assert "webhook" in html
    assert intent_of(tx)["status"] == "requires_capture"  # nothing sent yet
    refund_page = start(admin_client, "refund_payment", tx).content.decode()
    assert 'name="reason"' in refund_page and 'name="amount"' in refund_page
    cancel_page = start(admin_client, "cancel_authorization", tx).content.decode()
    assert 'name="amount"' not in cancel_page


def test_admin_partial_capture(bridge_stripe: Any, admin_client: Client) -> None:
    tx = authorized()
    deliver_webhooks()
    before = snapshot(tx)
    response = confirm(admin_client, "capture_payment", tx, amount="12.00")
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == reverse(CHANGELIST)
    [message] = texts(response)
    assert "capture" in message and "12.00 USD" in message and "webhook" in message
    assert intent_of(tx)["amount_received"] == 1200
    assert snapshot(tx) == before
    deliver_webhooks()
    assert "charge.captured" in stored_types(tx)


def test_admin_refund_in_full_and_a_repeated_submission(
    bridge_stripe: Any, admin_client: Client
) -> None:
    tx = paid(1500)
    page = start(admin_client, "refund_payment", tx).content.decode()
    token = re.search(r'name="token" value="([0-9a-f]{32})"', page)
    assert token
    form = {
        "action": "refund_payment",
        "_selected_action": [tx.pk],
        "confirm": "yes",
        "token": token.group(1),
        "amount": "",
        "reason": "duplicate",
    }
    admin_client.post(reverse(CHANGELIST), form)
    admin_client.post(reverse(CHANGELIST), form)  # the same page submitted twice
    refunds = stripe_api.get_stripe_client().v1.refunds.list({"payment_intent": tx.pk}).data
    assert [(r.amount, r.reason) for r in refunds] == [(1500, "duplicate")]
    deliver_webhooks()
    assert StripeTransaction.objects.get(pk=tx.pk).status == "refunded"


def test_admin_cancel(bridge_stripe: Any, admin_client: Client) -> None:
    tx = authorized()
    response = confirm(admin_client, "cancel_authorization", tx)
    assert "cancel" in texts(response)[0]
    assert intent_of(tx)["status"] == "canceled"
    deliver_webhooks()
    assert "payment_intent.canceled" in stored_types(tx)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("abc", "is not an amount"),
        ("-1", "greater than zero"),
        ("12.345", "at most 2 decimal places"),
        ("25.00", "only 20.00 USD is authorized"),
    ],
)
def test_admin_refuses_a_bad_amount(
    bridge_stripe: Any, admin_client: Client, amount: str, expected: str
) -> None:
    tx = authorized()
    response = confirm(admin_client, "capture_payment", tx, amount=amount)
    assert response.status_code == 200
    assert response.redirect_chain == []  # the page again, with the message
    [message] = texts(response)
    assert expected in message
    assert "Capture a payment" in response.content.decode()
    assert intent_of(tx)["status"] == "requires_capture"


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("1E999999999", "too large an amount"),  # overflowed the decimal context: a 500
        ("9" * 30, "too large an amount"),
        ("1E-999999999", "at most 2 decimal places"),  # was taken as 0
        ("1.00000000000000000000000000001", "at most 2 decimal places"),  # was rounded to 1.00
    ],
)
@pytest.mark.parametrize("action", ["refund_payment", "capture_payment"])
def test_admin_refuses_an_absurd_amount_with_a_form_error(
    bridge_stripe: Any, admin_client: Client, action: str, amount: str, expected: str
) -> None:
    tx = authorized() if action == "capture_payment" else paid()
    response = confirm(admin_client, action, tx, amount=amount)
    assert response.status_code == 200
    assert response.redirect_chain == []
    [message] = texts(response)
    assert expected in message
    intent = intent_of(tx)
    assert intent["status"] == ("requires_capture" if action == "capture_payment" else "succeeded")
    refunds = stripe_api.get_stripe_client().v1.refunds.list({"payment_intent": tx.pk}).data
    assert refunds == []


def test_admin_shows_stripes_refusal(bridge_stripe: Any, admin_client: Client) -> None:
    tx = paid()
    response = confirm(admin_client, "cancel_authorization", tx)
    [message] = texts(response)
    assert message.startswith(f"Sent to Stripe, which refused to cancel {tx.pk}: ")
    assert "status of succeeded" in message
    assert "sk_test" not in message


def test_admin_says_a_refund_over_what_is_left_was_not_sent(
    bridge_stripe: Any, admin_client: Client
) -> None:
    tx = paid()
    operations.refund(tx, 1500)
    deliver_webhooks()
    assert StripeTransaction.objects.get(pk=tx.pk).amount_refunded == 1500
    response = confirm(admin_client, "refund_payment", tx, amount="10.00")
    [message] = texts(response)
    assert message.startswith(f"Not sent to Stripe: the refund of {tx.pk} was refused here.")
    assert "only 5.00 USD is left to refund" in message
    assert charge_of(tx)["amount_refunded"] == 1500  # Stripe was not asked


def test_admin_says_stripe_was_asked_but_did_not_answer(
    bridge_stripe: Any, admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    tx = paid()

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise StripeUnavailable("Stripe could not be reached.")

    monkeypatch.setattr(stripe_api, "create_refund", unreachable)  # a fault: Stripe is away
    [message] = texts(confirm(admin_client, "refund_payment", tx))
    assert message.startswith(f"Sent to Stripe, which did not answer the refund of {tx.pk}:")
    assert "Confirm again" in message


def test_admin_operates_on_one_transaction_at_a_time(
    bridge_stripe: Any, admin_client: Client
) -> None:
    first, second = authorized(), authorized()
    response = start(admin_client, "capture_payment", first, second)
    assert response.status_code == 302
    assert texts(response) == ["Select exactly one transaction for this operation."]
    assert intent_of(first)["status"] == intent_of(second)["status"] == "requires_capture"


def test_admin_operations_need_the_change_permission(bridge_stripe: Any, client: Client) -> None:
    tx = authorized()
    staff = User.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_stripetransaction"))
    client.force_login(staff)
    listing = client.get(reverse(CHANGELIST)).content.decode()
    assert "capture_payment" not in listing
    response = confirm_without_page(client, "capture_payment", tx)
    assert intent_of(tx)["status"] == "requires_capture"
    assert "capture" not in " ".join(texts(response)).lower()

    staff.user_permissions.add(Permission.objects.get(codename="change_stripetransaction"))
    client.force_login(User.objects.get(pk=staff.pk))
    assert "capture_payment" in client.get(reverse(CHANGELIST)).content.decode()
    response = confirm(client, "capture_payment", tx)
    assert intent_of(tx)["status"] == "succeeded"


def confirm_without_page(client: Client, action: str, tx: StripeTransaction) -> Any:
    return client.post(
        reverse(CHANGELIST),
        {
            "action": action,
            "_selected_action": [tx.pk],
            "confirm": "yes",
            "token": uuid.uuid4().hex,
        },
        follow=True,
    )


# --- the whole loop: admin action → Stripe → signed webhook → row ---------------------------


@pytest.mark.django_db(transaction=True)
def test_the_webhook_of_an_admin_capture_reaches_the_bridge(
    bridge_stripe: Any, admin_client: Client, live_server: Any
) -> None:
    """The stand-in posts its signed webhook to the bridge (pytest-django's live server);
    the transaction's row moves only then."""
    from django_stripe_bridge.conf import bridge_settings

    secret = bridge_settings.WEBHOOK_SECRETS[0]
    bridge_stripe.register_webhook(
        live_server.url + "/api/services/Stripe/webhooks/handler", secret, name="operations"
    )
    try:
        tx = authorized()
        confirm(admin_client, "capture_payment", tx, amount="15.00")
        deadline = time.monotonic() + 15
        while "charge.captured" not in stored_types(tx):
            assert time.monotonic() < deadline, f"no charge.captured webhook: {stored_types(tx)}"
            time.sleep(0.1)

        def delivered() -> list[dict[str, Any]]:
            deliveries = bridge_stripe.webhook_deliveries()
            return [d for d in deliveries if d["type"] == "charge.captured"]

        # The row is committed before the answer goes back, and the stand-in records the
        # delivery only once it has the answer.
        while not delivered():
            assert time.monotonic() < deadline, "the stand-in recorded no delivery"
            time.sleep(0.05)
        assert delivered()[-1]["status"] == 200
        event = StripeEvent.objects.get(transaction_id=tx.pk, type="charge.captured")
        assert (event.payload["data"]["object"]["amount_captured"], event.livemode) == (1500, False)
    finally:
        bridge_stripe.unregister_webhook("operations")
