"""The ``summary`` payload (the default) carries no personal data (SPEC §5).

Real event payloads captured from the Stripe stand-in (``tests/payloads/``) are filled with
the personal data a live Stripe event carries: billing details, e-mails, addresses,
phone numbers, shipping, card fingerprint and expiry, receipt links, metadata. None of it
may reach a subscriber, live or replayed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from django_stripe_bridge import messaging
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import ingest, open_client

pytestmark = pytest.mark.django_db(transaction=True)

PAYLOADS = Path(__file__).parent / "payloads"

ADDRESS = {
    "city": "Springfield",
    "country": "US",
    "line1": "742 Evergreen Terrace",
    "line2": "Apartment 9B",
    "postal_code": "49007",
    "state": "Oregon",
}
SHIPPING = {
    "address": {**ADDRESS, "line1": "1313 Mockingbird Lane", "postal_code": "90210"},
    "carrier": "UPS",
    "name": "Marge Bouvier",
    "phone": "+15415550199",
    "tracking_number": "1Z999AA10123456784",
}
BILLING = {
    "address": ADDRESS,
    "email": "homer.simpson@example.com",
    "name": "Homer Jay Simpson",
    "phone": "+15415550100",
}
FINGERPRINT = "Xt5EWLLDS7FJjR1c"

#: Every string that identifies the person or the card; none may appear in a summary.
PERSONAL = [
    "Springfield",
    "742 Evergreen Terrace",
    "Apartment 9B",
    "49007",
    "Oregon",
    "1313 Mockingbird Lane",
    "90210",
    "Marge Bouvier",
    "+15415550199",
    "1Z999AA10123456784",
    "homer.simpson@example.com",
    "Homer Jay Simpson",
    "+15415550100",
    FINGERPRINT,
    "receipts.homer@example.net",
    "homer.metadata@example.org",
    "pay.stripe.com/receipts",
    "cus_HomerSimpson01",
    "4242",
    "2031",
]


def _load(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text())


def _with_personal_data(charge: dict[str, Any]) -> None:
    charge.update(
        billing_details=copy.deepcopy(BILLING),
        receipt_email="receipts.homer@example.net",
        receipt_url="https://pay.stripe.com/receipts/acct_1/ch_1/rcpt_HomerSimpson",
        shipping=copy.deepcopy(SHIPPING),
        customer="cus_HomerSimpson01",
        description="Donuts for homer.simpson@example.com",
        metadata={"customer_email": "homer.metadata@example.org"},
    )
    card = charge["payment_method_details"]["card"]
    card.update(fingerprint=FINGERPRINT, last4="4242", exp_month=7, exp_year=2031)
    card["checks"] = {"address_line1_check": "pass", "address_postal_code_check": "pass"}
    if isinstance(charge.get("source"), dict):
        charge["source"].update(
            fingerprint=FINGERPRINT,
            name="Homer Jay Simpson",
            address_line1="742 Evergreen Terrace",
            address_city="Springfield",
            address_zip="49007",
            exp_year=2031,
        )


def charge_event_with_personal_data(charge_id: str) -> dict[str, Any]:
    """A real ``charge.succeeded`` event, filled with personal data."""
    event = _load("charge.succeeded.json")
    event["id"] = f"evt_privacy_{charge_id}"
    charge = event["data"]["object"]
    charge["id"] = charge_id
    _with_personal_data(charge)
    return event


def payment_failed_event_with_personal_data(intent_id: str) -> dict[str, Any]:
    """A real ``payment_intent.payment_failed`` event, filled with personal data."""
    event = _load("payment_intent.payment_failed.json")
    event["id"] = f"evt_privacy_{intent_id}"
    intent = event["data"]["object"]
    intent.update(
        id=intent_id,
        receipt_email="receipts.homer@example.net",
        shipping=copy.deepcopy(SHIPPING),
        customer="cus_HomerSimpson01",
        description="Donuts for homer.simpson@example.com",
        metadata={"customer_email": "homer.metadata@example.org"},
        last_payment_error={
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "charge": "ch_declined",
            "payment_method": {
                "id": "pm_1",
                "object": "payment_method",
                "billing_details": copy.deepcopy(BILLING),
                "card": {"fingerprint": FINGERPRINT, "last4": "4242", "exp_year": 2031},
                "customer": "cus_HomerSimpson01",
            },
        },
    )
    for charge in (intent.get("charges") or {}).get("data", []):
        _with_personal_data(charge)
    return event


def leaks(payload: Any) -> list[str]:
    text = json.dumps(payload)
    return [value for value in PERSONAL if value in text]


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return [
        charge_event_with_personal_data("ch_private"),
        payment_failed_event_with_personal_data("pi_private"),
    ]


def test_the_test_events_do_carry_personal_data(events):
    for event in events:
        assert leaks(event) == PERSONAL


async def test_summary_of_stored_events_has_no_personal_data(events):
    for event in events:
        row = (await ingest(event)).event
        data = messaging.build_data(row)
        headers = messaging.build_headers(row, "succeeded")
        assert leaks(data) == [] and leaks(headers) == []
        # The summary still says what happened to the payment.
        obj = data["object"]
        assert obj["id"] == event["data"]["object"]["id"]
        assert obj["amount"] == event["data"]["object"]["amount"]
        assert obj["status"] == event["data"]["object"]["status"]


async def test_payment_error_keeps_only_its_code_and_message(events):
    row = (await ingest(events[1])).event
    assert messaging.build_data(row)["object"]["last_payment_error"] == {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
    }


async def test_websocket_frames_carry_no_personal_data(events):
    await ingest(events[0])  # stored before the subscription: replayed
    client = await open_client()
    await client.subscribe("id IN ('ch_private', 'pi_private')", subscription="s1")
    replayed = await client.recv()
    assert replayed["replayed"] is True
    await ingest(events[1])  # live
    live = await client.recv()
    assert live["replayed"] is False
    for frame in (replayed, live):
        assert leaks(frame) == [], frame
    await client.close()


@override_settings(STRIPE_BRIDGE={"MESSAGE_PAYLOAD": "full"})
async def test_full_payload_is_the_whole_event(events):
    """The control: with ``full`` the same events do carry everything."""
    row = (await ingest(events[0])).event
    assert messaging.build_data(row) == events[0]
    assert leaks(messaging.build_data(row)) == PERSONAL
