"""Thin events (Event Destinations, API v2) on the offline Stripe: notifications stored once
and answered, fetched through the durable queue (retried across failures and a new worker),
folded to the same status as snapshot events, refused when the account does not match."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
import stripe
from django.core.management import call_command
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from django_stripe_bridge import thin
from django_stripe_bridge.models import StripeEvent, StripeTransaction, ThinEvent
from django_stripe_bridge.payment_state import fold
from django_stripe_bridge.testing import TEST_API_KEY, sign_payload
from tests.charge_fixtures import *  # noqa: F403
from tests.charge_fixtures import bridge_settings_for
from tests.relay import *  # noqa: F403
from tests.relay import Relay

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.standin]

PLATFORM_SECRET = "whsec_thin_platform"


@pytest.fixture
def destinations(bridge_stripe: Any, relay: Relay, settings: Any) -> Iterator[dict[str, Any]]:
    """A snapshot webhook and thin Event Destinations (the platform's and the connected
    accounts'), registered through ``stripe_bridge_webhook_setup``."""
    bridge_stripe.reset(webhooks=True)
    bridge_settings_for(settings, THIN_RETRY_DELAY=0.01, TIMEOUT=1)
    client = stripe.StripeClient(
        TEST_API_KEY, base_addresses={"api": bridge_stripe.base_url}, max_network_retries=0
    )
    account = client.v1.accounts.create({"type": "standard"}).id
    secrets = {}
    for name, flags in (("thin", []), ("thinconnect", ["--connect"])):
        out = StringIO()
        call_command(
            "stripe_bridge_webhook_setup",
            "--url",
            f"{relay.url}/{name}",
            "--thin",
            *flags,
            "--secret-only",
            stdout=out,
        )
        secrets[name] = out.getvalue().strip()
        assert secrets[name].startswith("whsec_")
    bridge_stripe.register_webhook(relay.url + "/platform", PLATFORM_SECRET, name="platform")
    bridge_settings_for(
        settings,
        WEBHOOK_SECRETS=[PLATFORM_SECRET],
        WEBHOOK_ENDPOINTS={name: [secret] for name, secret in secrets.items()},
    )
    yield {"client": client, "account": account, "standin": bridge_stripe}
    bridge_stripe.reset(webhooks=True)


def forward(relay: Relay, only: str | None = None, wait: float = 1.5) -> list[dict[str, Any]]:
    """Hand the deliveries so far to the bridge's endpoints (``only`` one path); answers."""
    import time

    time.sleep(wait)
    answers = []
    for path, signature, body in relay.take():
        name = path.strip("/")
        if only is not None and name != only:
            continue
        url = (
            reverse("stripe_bridge:webhook")
            if name == "platform"
            else reverse("stripe_bridge:webhook-endpoint", args=[name])
        )
        answer = HttpClient().post(
            url, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
        )
        assert answer.status_code == 200, answer.content
        answers.append({"path": name, "body": json.loads(body), **answer.json()})
    return answers


def make_payments(client: Any, account: str) -> dict[str, str]:
    """A refunded-in-part charge, a captured authorization, a decline, and a direct charge
    on the connected account."""
    charge = client.v1.charges.create({"amount": 2000, "currency": "usd", "source": "tok_visa"})
    client.v1.refunds.create({"charge": charge.id, "amount": 500})
    held = client.v1.payment_intents.create(
        {
            "amount": 3000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "capture_method": "manual",
        }
    )
    client.v1.payment_intents.capture(held.id)
    with pytest.raises(stripe.CardError) as declined:
        client.v1.charges.create({"amount": 700, "currency": "usd", "source": "tok_chargeDeclined"})
    direct = client.v1.charges.create(
        {"amount": 1500, "currency": "usd", "source": "tok_visa"},
        options={"stripe_account": account},
    )
    return {
        "refunded": charge.id,
        "captured": held.id,
        "declined": str(declined.value.error.charge),  # type: ignore[union-attr]
        "direct": direct.id,
    }


def test_thin_and_snapshot_destinations_end_in_the_same_status_storing_each_event_once(
    destinations: dict[str, Any], relay: Relay
) -> None:
    ids = make_payments(destinations["client"], destinations["account"])
    delivered = forward(relay, wait=2.0)
    thin_answers = [a for a in delivered if a["path"].startswith("thin")]
    snapshots = [a["body"] for a in delivered if a["path"] == "platform"]
    assert thin_answers and snapshots
    assert {a["body"]["object"] for a in thin_answers} == {"v2.core.event"}
    # Answered at once; nothing fetched yet (THIN_RELAY is off in the tests).
    assert ThinEvent.objects.filter(status="pending").count() == len(thin_answers)
    stored_before = set(StripeEvent.objects.values_list("event_id", flat=True))

    result = thin.drain()
    assert (result.done, result.retried, result.refused) == (len(thin_answers), 0, 0)
    # The platform's snapshot deliveries were ingested first: each thin event stood for one
    # of them, so nothing new was stored for the platform's payments.
    platform_thin = {a["body"]["id"] for a in thin_answers if a["path"] == "thin"}
    folded_from = set(
        ThinEvent.objects.filter(event_id__in=platform_thin).values_list(
            "stripe_event_id", flat=True
        )
    )
    assert folded_from <= stored_before
    assert StripeEvent.objects.filter(event_id__in=folded_from).count() == len(folded_from)

    # Each payment's status is what its snapshot events fold to.
    for key in ("refunded", "captured", "declined"):
        tx = StripeTransaction.objects.get(pk=ids[key])
        own = [e for e in snapshots if tx.pk in json.dumps(e["data"]["object"])]
        assert tx.status == fold(own).status, key
    assert StripeTransaction.objects.get(pk=ids["refunded"]).status == "partially_refunded"
    assert StripeTransaction.objects.get(pk=ids["captured"]).status == "succeeded"
    # The connected account's payment came only through the thin Connect destination.
    direct = StripeTransaction.objects.get(pk=ids["direct"])
    assert (direct.status, direct.account, direct.direct) == (
        "succeeded",
        destinations["account"],
        True,
    )
    # A repeat of a notification changes nothing.
    again = forward_again(thin_answers[0])
    assert again["duplicate"] is True
    assert thin.drain().done == 0


def forward_again(answer: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(answer["body"]).encode()
    secret = _secret_of(answer["path"])
    return (
        HttpClient()
        .post(
            reverse("stripe_bridge:webhook-endpoint", args=[answer["path"]]),
            body,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=sign_payload(body, secret),
        )
        .json()
    )


def _secret_of(name: str) -> str:
    from django_stripe_bridge.conf import bridge_settings

    return bridge_settings.endpoint_secrets(name)[0]


def test_thin_events_alone_give_the_same_statuses(
    destinations: dict[str, Any], relay: Relay
) -> None:
    ids = make_payments(destinations["client"], destinations["account"])
    delivered = forward(relay, only="thin", wait=2.0)
    assert delivered
    assert not StripeEvent.objects.exists()
    assert thin.drain().done == len(delivered)
    statuses = dict(StripeTransaction.objects.values_list("id", "status"))
    assert statuses[ids["refunded"]] == "partially_refunded"
    assert statuses[ids["captured"]] == "succeeded"
    assert statuses[ids["declined"]] == "failed"
    assert ids["direct"] not in statuses  # the Connect destination's were not handed over


def test_a_failing_fetch_is_retried_until_it_succeeds_also_by_a_new_worker(
    destinations: dict[str, Any], relay: Relay
) -> None:
    client = destinations["client"]
    charge = client.v1.charges.create({"amount": 1200, "currency": "usd", "source": "tok_visa"})
    delivered = forward(relay, only="thin")
    assert len(delivered) == 1
    destinations["standin"]._request(
        "POST",
        "/_standin/faults",
        {"path": "/v2/core/events/", "answers": [500, "timeout"], "hold": 3},
    )

    first = thin.drain()
    row = ThinEvent.objects.get()
    assert (first.retried, row.attempts, row.status) == (1, 1, "pending")
    assert "500" in row.last_error or "failed" in row.last_error
    assert row.next_attempt_at > timezone.now() - dt.timedelta(seconds=1)
    second = thin.drain(now=timezone.now() + dt.timedelta(seconds=1))
    row.refresh_from_db()
    assert (second.retried, row.attempts) == (1, 2)
    assert "did not answer in time" in row.last_error  # the stand-in held it past TIMEOUT
    assert not StripeEvent.objects.exists()

    # After a restart a new worker (the management command) finishes it.
    import time

    time.sleep(0.1)  # the backoff after two failures (THIN_RETRY_DELAY 0.01 s doubled)
    out = StringIO()
    call_command("stripe_bridge_thin", stdout=out)
    row.refresh_from_db()
    assert "1 folded" in out.getvalue()
    assert (row.status, row.attempts, row.last_error) == ("done", 3, "")
    assert StripeTransaction.objects.get(pk=charge.id).status == "succeeded"
    assert StripeEvent.objects.filter(transaction_id=charge.id).count() == 1
    # Nothing is folded twice.
    assert thin.drain(now=timezone.now() + dt.timedelta(hours=1)).done == 0
    call_command("stripe_bridge_thin", stdout=out)
    assert "0 thin event(s) waiting" in out.getvalue()
    assert StripeEvent.objects.count() == 1


def test_a_worker_that_dies_mid_fetch_leaves_the_row_to_be_retried(
    destinations: dict[str, Any], relay: Relay
) -> None:
    charge = destinations["client"].v1.charges.create(
        {"amount": 1300, "currency": "usd", "source": "tok_visa"}
    )
    assert len(forward(relay, only="thin")) == 1
    row = ThinEvent.objects.get()
    now = timezone.now()
    assert thin._claim(row.pk, now) is not None  # claimed, then the worker died
    assert thin._claim(row.pk, now) is None  # nobody else takes it meanwhile
    assert thin.drain(now=now + dt.timedelta(seconds=thin.lease() - 1)).done == 0
    result = thin.drain(now=now + dt.timedelta(seconds=thin.lease() + 1))
    row.refresh_from_db()
    assert (result.done, row.status) == (1, "done")
    assert StripeTransaction.objects.get(pk=charge.id).status == "succeeded"


def test_the_background_fetch_runs_after_the_commit(
    destinations: dict[str, Any], relay: Relay, settings: Any
) -> None:
    import time

    bridge_settings_for(settings, THIN_RELAY=True)
    charge = destinations["client"].v1.charges.create(
        {"amount": 900, "currency": "usd", "source": "tok_visa"}
    )
    assert forward(relay, only="thin")[0]["duplicate"] is False
    deadline = time.monotonic() + 10
    while not StripeTransaction.objects.filter(pk=charge.id, status="succeeded").exists():
        assert time.monotonic() < deadline, "the background fetch never folded the event"
        time.sleep(0.05)
    thin._kicked.join(5)  # type: ignore[union-attr]


def test_a_notification_whose_event_belongs_to_another_account_is_refused(
    destinations: dict[str, Any], relay: Relay
) -> None:
    destinations["client"].v1.charges.create(
        {"amount": 800, "currency": "usd", "source": "tok_visa"}
    )
    genuine = forward(relay, only="thin", wait=1.5)[0]["body"]
    ThinEvent.objects.all().delete()
    # Signed with the endpoint's secret, but naming a connected account as its context.
    forged = {**genuine, "context": destinations["account"]}
    answer = forward_again({"path": "thin", "body": forged})
    assert answer["duplicate"] is False
    result = thin.drain()
    row = ThinEvent.objects.get()
    assert (result.refused, row.status) == (1, "refused")
    assert "context" in row.last_error
    assert not StripeEvent.objects.exists() and not StripeTransaction.objects.exists()


def test_a_ping_is_answered_and_recorded(destinations: dict[str, Any], relay: Relay) -> None:
    client = destinations["client"]
    listed = client.v2.core.event_destinations.list()
    thin_one = [d.id for d in listed.data if d.webhook_endpoint.url.endswith("/thin")]
    client.v2.core.event_destinations.ping(thin_one[0])
    delivered = forward(relay, wait=0.5)
    assert [a["body"]["type"] for a in delivered] == ["v2.core.event_destination.ping"]
    row = ThinEvent.objects.get()
    assert (row.type, row.status, row.attempts) == ("v2.core.event_destination.ping", "done", 0)
    assert thin.drain().done == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"object": "v2.core.event", "type": "v1.charge.succeeded"}, 400, "invalid_event"),
        ({"object": "v2.core.event", "id": "nope", "type": "x"}, 400, "invalid_event"),
    ],
)
def test_a_bad_notification_is_refused_and_nothing_stored(
    destinations: dict[str, Any], body: dict[str, Any], status: int, code: str
) -> None:
    raw = json.dumps({"created": "2025-01-01T00:00:00.000Z", **body}).encode()
    answer = HttpClient().post(
        reverse("stripe_bridge:webhook-endpoint", args=["thin"]),
        raw,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign_payload(raw, _secret_of("thin")),
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
    unsigned = HttpClient().post(
        reverse("stripe_bridge:webhook-endpoint", args=["thin"]),
        raw,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign_payload(raw, "whsec_wrong"),
    )
    assert unsigned.status_code == 400
    assert not ThinEvent.objects.exists()
