"""The operations commands: republish, sync, webhook_setup, prune."""

from __future__ import annotations

import datetime as dt
import http.server
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from django_stripe_bridge import messaging
from django_stripe_bridge.ingest import ingest_event
from django_stripe_bridge.management.commands._timeparse import parse_point_in_time
from django_stripe_bridge.messaging import transaction_group
from django_stripe_bridge.models import IdempotencyKey, StripeEvent, StripeTransaction
from django_stripe_bridge.webhooks import verify_signature
from tests.factories import StripeEventFactory, charge_object, make_event
from tests.webhook_fixtures import *  # noqa: F403
from tests.webhook_fixtures import fresh_event, wait_for

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_every_command_has_help() -> None:
    for name in (
        "stripe_bridge_republish",
        "stripe_bridge_sync",
        "stripe_bridge_webhook_setup",
        "stripe_bridge_prune",
    ):
        with pytest.raises(SystemExit) as info:
            call_command(name, "--help", stdout=io.StringIO())
        assert info.value.code == 0


# -- points in time ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3d", NOW - dt.timedelta(days=3)),
        ("12h", NOW - dt.timedelta(hours=12)),
        ("30m", NOW - dt.timedelta(minutes=30)),
        ("90s", NOW - dt.timedelta(seconds=90)),
        ("2w", NOW - dt.timedelta(weeks=2)),
        (" 90D ", NOW - dt.timedelta(days=90)),
        ("2025-05-01", dt.datetime(2025, 5, 1, tzinfo=dt.UTC)),
        ("2025-05-01T10:30:00Z", dt.datetime(2025, 5, 1, 10, 30, tzinfo=dt.UTC)),
        ("2025-05-01T10:30:00+02:00", dt.datetime(2025, 5, 1, 8, 30, tzinfo=dt.UTC)),
        ("2025-05-01 10:30", dt.datetime(2025, 5, 1, 10, 30, tzinfo=dt.UTC)),
    ],
)
def test_points_in_time(text: str, expected: dt.datetime) -> None:
    assert parse_point_in_time(text, "--since", now=NOW) == expected


@pytest.mark.parametrize("text", ["", "3 days", "d3", "-3d", "2025-13-01", "yesterday", "1y"])
def test_bad_points_in_time_name_the_option(text: str) -> None:
    with pytest.raises(CommandError, match="--since"):
        parse_point_in_time(text, "--since", now=NOW)


# -- republish -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_republish_named_events(in_memory_layer: None, channel_receiver: Any) -> None:
    first = StripeEventFactory(charge_id="ch_rp")
    second = StripeEventFactory(charge_id="ch_rp")
    receiver = channel_receiver(transaction_group("ch_rp"))
    out, _ = run("stripe_bridge_republish", second.event_id, first.event_id, "-v", "2")
    assert [receiver.receive()["event_id"], receiver.receive()["event_id"]] == [
        second.event_id,
        first.event_id,
    ]
    assert "Published 2 event(s)" in out
    assert f"{first.event_id}: published" in out
    assert StripeEvent.objects.filter(published_at__isnull=True).count() == 0


@pytest.mark.django_db
def test_republish_unpublished_only(in_memory_layer: None, channel_receiver: Any) -> None:
    old = StripeEventFactory(charge_id="ch_u", created_ts=1_000)
    new = StripeEventFactory(charge_id="ch_u", created_ts=2_000)
    done = StripeEventFactory(charge_id="ch_u", published_at=timezone.now())
    receiver = channel_receiver(transaction_group("ch_u"))
    out, _ = run("stripe_bridge_republish", "--unpublished")
    assert [receiver.receive()["event_id"], receiver.receive()["event_id"]] == [
        old.event_id,
        new.event_id,
    ]
    receiver.receive_nothing()
    assert "Published 2 event(s)" in out
    assert done.event_id not in out


@pytest.mark.django_db
def test_republish_unknown_event_fails() -> None:
    known = StripeEventFactory()
    with pytest.raises(CommandError, match="1 failed: evt_missing"):
        run("stripe_bridge_republish", known.event_id, "evt_missing")
    assert StripeEvent.objects.get(pk=known.pk).published_at is not None


@pytest.mark.django_db
def test_republish_exits_non_zero_when_publishing_fails(in_memory_layer: None) -> None:
    row = StripeEventFactory()
    layer = messaging.get_layer()
    with (
        mock.patch.object(layer, "group_send", side_effect=OSError("down")),
        pytest.raises(CommandError, match="Published 0 event"),
    ):
        run("stripe_bridge_republish", "--unpublished")
    assert StripeEvent.objects.get(pk=row.pk).published_at is None


@pytest.mark.django_db
def test_republish_needs_ids_or_unpublished_and_a_layer() -> None:
    with pytest.raises(CommandError, match="--unpublished"):
        run("stripe_bridge_republish")
    with override_settings(CHANNEL_LAYERS={}), pytest.raises(CommandError, match="CHANNEL_LAYERS"):
        run("stripe_bridge_republish", "--unpublished")


# -- prune ---------------------------------------------------------------------------------


@pytest.fixture
def aged_events(db: None) -> dict[str, StripeEvent]:
    now = int(timezone.now().timestamp())
    day = 86_400
    return {
        # ch_a: two old events and a recent one → both old ones go.
        "a_old1": StripeEventFactory(charge_id="ch_a", created_ts=now - 200 * day),
        "a_old2": StripeEventFactory(charge_id="ch_a", created_ts=now - 100 * day),
        "a_new": StripeEventFactory(charge_id="ch_a", created_ts=now - 1 * day),
        # ch_b: only old events → the latest stays.
        "b_old": StripeEventFactory(charge_id="ch_b", created_ts=now - 300 * day),
        "b_latest": StripeEventFactory(charge_id="ch_b", created_ts=now - 120 * day),
        # ch_c: two old events in the same second → the later row stays.
        "c_tie1": StripeEventFactory(charge_id="ch_c", created_ts=now - 150 * day),
        "c_tie2": StripeEventFactory(charge_id="ch_c", created_ts=now - 150 * day),
        # ch_d: one recent event.
        "d_new": StripeEventFactory(charge_id="ch_d", created_ts=now - 10 * day),
    }


@pytest.mark.django_db
def test_prune_keeps_the_latest_event_of_each_transaction(
    aged_events: dict[str, StripeEvent],
) -> None:
    out, _ = run("stripe_bridge_prune", "--older-than", "90d")
    left = set(StripeEvent.objects.values_list("event_id", flat=True))
    assert left == {aged_events[key].event_id for key in ("a_new", "b_latest", "c_tie2", "d_new")}
    assert "Deleted 4 event(s)" in out


@pytest.mark.django_db
def test_prune_dry_run_deletes_nothing(aged_events: dict[str, StripeEvent]) -> None:
    out, _ = run("stripe_bridge_prune", "--older-than", "90d", "--dry-run")
    assert "Would delete 4 event(s)" in out
    assert StripeEvent.objects.count() == len(aged_events)


@pytest.mark.django_db
def test_prune_in_batches(aged_events: dict[str, StripeEvent]) -> None:
    with mock.patch("django_stripe_bridge.management.commands.stripe_bridge_prune.BATCH_SIZE", 1):
        out, _ = run("stripe_bridge_prune", "--older-than", "90d", "-v", "2")
    assert "Deleted 4 event(s)" in out
    assert StripeEvent.objects.count() == 4


@pytest.mark.django_db
@pytest.mark.parametrize(("older_than", "left"), [("90d", {"1h", "30d"}), ("1h", {"1h"})])
def test_prune_deletes_old_idempotency_claims_never_within_a_day(
    older_than: str, left: set[str]
) -> None:
    for age in ("1h", "30d", "100d"):
        claim = IdempotencyKey.objects.create(key_digest=age, scope_digest="s", stripe_key=age)
        hours = {"1h": 1, "30d": 30 * 24, "100d": 100 * 24}[age]
        made = timezone.now() - dt.timedelta(hours=hours)
        IdempotencyKey.objects.filter(pk=claim.pk).update(created_at=made)
    out, _ = run("stripe_bridge_prune", "--older-than", older_than, "--dry-run")
    assert f"and {3 - len(left)} idempotency key claim(s)" in out
    out, _ = run("stripe_bridge_prune", "--older-than", older_than)
    assert f"Deleted {3 - len(left)} idempotency key claim(s)." in out
    assert set(IdempotencyKey.objects.values_list("pk", flat=True)) == left


@pytest.mark.django_db
def test_prune_needs_an_age() -> None:
    with pytest.raises(CommandError):
        run("stripe_bridge_prune")
    with pytest.raises(CommandError, match="--older-than"):
        run("stripe_bridge_prune", "--older-than", "soon")


# -- sync (against the stand-in) -----------------------------------------------------------


def _make_payments(client: Any) -> list[str]:
    charge = client.v1.charges.create({"amount": 1200, "currency": "usd", "source": "tok_visa"})
    client.v1.refunds.create({"charge": charge.id, "amount": 200})
    other = client.v1.charges.create({"amount": 900, "currency": "usd", "source": "tok_visa"})
    return [charge.id, other.id]


@pytest.mark.standin
@pytest.mark.django_db
def test_sync_ingests_what_the_webhook_never_delivered(bridge_on_standin: Any) -> None:
    from django_stripe_bridge import stripe_api

    client = bridge_on_standin.client()
    charge_id, other_id = _make_payments(client)
    events = list(stripe_api.list_events(since=0))
    assert len(events) >= 4
    # The webhook delivered one event; the rest never arrived.
    delivered = next(e for e in events if e["type"] == "charge.succeeded")
    ingest_event(delivered, publish=False)

    out, _ = run("stripe_bridge_sync", "--since", "1h")
    assert f"ingested {len(events) - 1}, 1 already stored" in out
    assert "checked" in out  # progress
    stored = set(StripeEvent.objects.values_list("event_id", flat=True))
    assert stored == {e["id"] for e in events}
    assert StripeTransaction.objects.get(pk=charge_id).status == "partially_refunded"
    assert StripeTransaction.objects.get(pk=other_id).status == "succeeded"

    again, _ = run("stripe_bridge_sync", "--since", "1h")
    assert f"ingested 0, {len(events)} already stored" in again
    assert StripeEvent.objects.count() == len(events)


@pytest.mark.standin
@pytest.mark.django_db
def test_sync_pages_through_many_events(bridge_on_standin: Any) -> None:
    client = bridge_on_standin.client()
    for _ in range(4):
        client.v1.charges.create({"amount": 500, "currency": "usd", "source": "tok_visa"})
    with mock.patch("django_stripe_bridge.management.commands.stripe_bridge_sync.CHUNK", 3):
        out, _ = run("stripe_bridge_sync", "--since", "2025-01-01")
    total = StripeEvent.objects.count()
    assert total >= 4
    assert out.count("checked") >= 2
    assert f"ingested {total}, 0 already stored" in out


@pytest.mark.standin
@pytest.mark.django_db
def test_sync_since_excludes_older_events(bridge_on_standin: Any) -> None:
    client = bridge_on_standin.client()
    _make_payments(client)
    future = (timezone.now() + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    out, _ = run("stripe_bridge_sync", "--since", future)
    assert "Checked 0 event(s)" in out
    assert StripeEvent.objects.count() == 0


@pytest.mark.django_db
def test_sync_reports_stripe_errors(settings: Any) -> None:
    settings.STRIPE_BRIDGE = {**settings.STRIPE_BRIDGE, "API_KEY": None}
    with pytest.raises(CommandError, match="API_KEY"):
        run("stripe_bridge_sync")


@pytest.mark.django_db
def test_sync_skips_invalid_events_and_fails() -> None:
    good = fresh_event("charge.succeeded")
    bad = {"id": "evt_bad", "object": "event", "type": "x", "created": 1, "data": {}}
    with (
        mock.patch("django_stripe_bridge.stripe_api.list_events", return_value=iter([good, bad])),
        pytest.raises(CommandError, match="1 invalid"),
    ):
        run("stripe_bridge_sync")
    assert StripeEvent.objects.filter(event_id=good["id"]).exists()


@pytest.mark.django_db
def test_sync_of_an_account_refuses_an_event_naming_another() -> None:
    """Listed with ``Stripe-Account: acct_A``, an event that says it is ``acct_B``'s is not
    stored under either account."""
    own, stray = fresh_event("charge.succeeded"), fresh_event("charge.succeeded")
    stray["account"] = "acct_B"
    with (
        mock.patch("django_stripe_bridge.stripe_api.list_events", return_value=iter([own, stray])),
        pytest.raises(CommandError, match="1 invalid"),
    ):
        run("stripe_bridge_sync", "--account", "acct_A")
    assert StripeEvent.objects.get(event_id=own["id"]).account == "acct_A"
    assert not StripeEvent.objects.filter(event_id=stray["id"]).exists()


# -- webhook setup ---------------------------------------------------------------------------


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, list[tuple[bytes, str]]]]:
    """A loopback HTTP server recording (body, Stripe-Signature) of each POST."""
    received: list[tuple[bytes, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, self.headers.get("Stripe-Signature", "")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


@pytest.mark.standin
def test_webhook_setup_registers_and_prints_the_secret(
    bridge_on_standin: Any, webhook_receiver: tuple[str, list[tuple[bytes, str]]]
) -> None:
    url, received = webhook_receiver
    out, _ = run("stripe_bridge_webhook_setup", "--url", url)
    assert url in out
    [secret] = [
        word.split("=", 1)[1] for word in out.split() if word.startswith("STRIPE_WEBHOOK_SECRET=")
    ]
    assert secret.startswith("whsec_")

    bridge_on_standin.client().v1.charges.create(
        {"amount": 700, "currency": "usd", "source": "tok_visa"}
    )
    body, signature = wait_for(lambda: received and received[0], timeout=10)
    verify_signature(body, signature, [secret], 300)
    assert json.loads(body)["object"] == "event"


@pytest.mark.standin
def test_webhook_setup_secret_only(bridge_on_standin: Any) -> None:
    out, _ = run(
        "stripe_bridge_webhook_setup",
        "--url",
        "http://127.0.0.1:9/hook",
        "--event",
        "charge.succeeded",
        "--secret-only",
    )
    assert out.strip().startswith("whsec_") and len(out.split()) == 1


@pytest.mark.standin
@pytest.mark.parametrize("thin", [False, True])
def test_webhook_setup_registers_a_connect_endpoint_and_prints_its_secret_once(
    bridge_on_standin: Any, webhook_receiver: tuple[str, list[tuple[bytes, str]]], thin: bool
) -> None:
    """``--connect`` (and ``--connect --thin``): the connected accounts' events, each naming
    its account, signed with the one secret printed, as the WEBHOOK_ENDPOINTS entry of the
    URL's last segment; the platform's own events do not go there."""
    url, received = webhook_receiver
    out, _ = run("stripe_bridge_webhook_setup", "--url", url, "--connect", *(["--thin"] * thin))
    assert "the connected accounts' events" in out
    [line] = [line for line in out.splitlines() if "WEBHOOK_ENDPOINTS" in line]
    secret = line.split('["', 1)[1].split('"]', 1)[0]
    assert secret.startswith("whsec_") and out.count(secret) == 1
    assert line.strip() == f'STRIPE_BRIDGE[\'WEBHOOK_ENDPOINTS\'] = {{"hook": ["{secret}"]}}'

    client = bridge_on_standin.client()
    account = client.v1.accounts.create({"type": "standard"}).id
    client.v1.charges.create({"amount": 700, "currency": "usd", "source": "tok_visa"})
    made = client.v1.charges.create(
        {"amount": 800, "currency": "usd", "source": "tok_visa"},
        options={"stripe_account": account},
    )
    wait_for(lambda: received, timeout=10)
    time.sleep(0.5)  # anything of the platform's would have come by now too
    for body, signature in received:
        verify_signature(body, signature, [secret], 300)
        event = json.loads(body)
        if thin:
            assert (event["object"], event["context"]) == ("v2.core.event", account)
            assert event["related_object"]["id"] == made.id
        else:
            assert (event["object"], event["account"]) == ("event", account)
            assert event["data"]["object"]["id"] == made.id


def test_webhook_setup_refuses_a_relative_url() -> None:
    with pytest.raises(CommandError, match="absolute"):
        run("stripe_bridge_webhook_setup", "--url", "/webhooks/handler")


def test_webhook_setup_reports_stripe_errors(settings: Any) -> None:
    settings.STRIPE_BRIDGE = {**settings.STRIPE_BRIDGE, "API_KEY": None}
    with pytest.raises(CommandError, match="API_KEY"):
        run("stripe_bridge_webhook_setup", "--url", "https://example.com/hook")


@pytest.mark.django_db
def test_ingest_and_prune_together_keep_status(aged_events: dict[str, StripeEvent]) -> None:
    # After pruning, the newest event of a transaction is what replay 'latest' shows.
    run("stripe_bridge_prune", "--older-than", "90d")
    latest = StripeEvent.objects.filter(transaction_id="ch_b").get()
    assert latest.event_id == aged_events["b_latest"].event_id
    ingest_event(make_event("charge.refunded", charge_object("ch_b", amount_refunded=1000)))
    assert StripeEvent.objects.filter(transaction_id="ch_b").count() == 2
