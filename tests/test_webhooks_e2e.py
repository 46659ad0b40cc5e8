"""End to end: a live server (Daphne, then Uvicorn), the Stripe stand-in delivering webhooks,
Redis subscribers.

The shared webhook cases run over HTTP against the live server. With the stand-in and Redis,
real charges made on the stand-in reach the server as signed webhooks, become rows (read
from the server's SQLite file) and arrive at a channels-redis subscriber in this process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from django_stripe_bridge.messaging import broadcast_group, transaction_group
from tests.live import LiveServer, http_request, run_server
from tests.webhook_cases import Answer, WebhookCases
from tests.webhook_fixtures import *  # noqa: F403
from tests.webhook_fixtures import ChannelReceiver, wait_for

WEBHOOK_PATH = "/api/services/Stripe/webhooks/handler"
EVENTS_TABLE = "django_stripe_bridge_stripeevent"
TRANSACTIONS_TABLE = "django_stripe_bridge_stripetransaction"


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Answer:
    answer = http_request(method, url, body, headers)
    try:
        parsed = json.loads(answer.body)
    except ValueError:
        parsed = None
    return Answer(answer.status, parsed, answer.headers)


def query(server: LiveServer, sql: str, *params: Any) -> list[sqlite3.Row]:
    """Rows from the live server's SQLite database (read-only, from this process)."""
    with sqlite3.connect(f"file:{server.database_path}?mode=ro", uri=True, timeout=10) as db:
        db.row_factory = sqlite3.Row
        return db.execute(sql, params).fetchall()


def event_rows(server: LiveServer, transaction_id: str) -> list[sqlite3.Row]:
    return query(
        server,
        f"SELECT * FROM {EVENTS_TABLE} WHERE transaction_id = ? ORDER BY created, id",  # noqa: S608
        transaction_id,
    )


def tx_status(server: LiveServer, transaction_id: str) -> str | None:
    rows = query(
        server,
        f"SELECT status FROM {TRANSACTIONS_TABLE} WHERE id = ?",  # noqa: S608
        transaction_id,
    )
    return rows[0]["status"] if rows else None


# -- the shared cases over HTTP ------------------------------------------------------------


@pytest.fixture(scope="module")
def cases_server(server_kind: str) -> Iterator[LiveServer]:
    """A live server configured with the shared cases' secrets (no Stripe, no Redis)."""
    env = {
        "STRIPE_WEBHOOK_SECRET": ",".join(WebhookCases.secrets),
        "STRIPE_API_KEY": "sk_test_not_used",
    }
    with run_server(server_kind, env) as server:
        yield server


class TestWebhookCasesOnLiveServer(WebhookCases):
    """The shared cases against each live server, configured through the demo's environment."""

    max_bytes = 1024 * 1024  # the default WEBHOOK_MAX_BYTES

    @pytest.fixture(autouse=True)
    def _server(self, cases_server: LiveServer) -> None:
        self.server = cases_server

    def deliver(
        self, body: bytes, signature: str | None, content_type: str = "application/json"
    ) -> Answer:
        headers = {"Content-Type": content_type}
        if signature is not None:
            headers["Stripe-Signature"] = signature
        return http("POST", self.server.url + WEBHOOK_PATH, body, headers)

    def stored_event(self, event_id: str) -> dict[str, Any] | None:
        rows = query(
            self.server,
            f"SELECT * FROM {EVENTS_TABLE} WHERE event_id = ?",  # noqa: S608
            event_id,
        )
        if not rows:
            return None
        row = dict(rows[0])
        row.pop("id")
        row["payload"] = json.loads(row["payload"])
        return row

    def stored_count(self) -> int:
        return query(self.server, f"SELECT COUNT(*) AS n FROM {EVENTS_TABLE}")[0]["n"]  # noqa: S608

    def transaction_status(self, transaction_id: str) -> str | None:
        return tx_status(self.server, transaction_id)


# -- the stand-in delivering to the live server, Redis subscribers ---------------------------


@pytest.fixture(scope="module")
def live_bridge(
    server_kind: str, redis_url: str, stripe_standin: Any
) -> Iterator[tuple[LiveServer, str]]:
    """A live server wired to the stand-in and Redis; yields it and its webhook secret."""
    from django_stripe_bridge.testing import TEST_API_KEY

    secret = f"whsec_e2e_{uuid.uuid4().hex}"
    env = {
        "STRIPE_API_KEY": TEST_API_KEY,
        "STRIPE_API_BASE": stripe_standin.base_url,
        "STRIPE_WEBHOOK_SECRET": secret,
        "REDIS_URL": redis_url,
        "STRIPE_CHARGE_THROTTLE_RATE": "off",
    }
    with run_server(server_kind, env) as server:
        yield server, secret


@pytest.fixture
def redis_layer(redis_url: str) -> Any:
    """A channels-redis layer in this process, as the server's (same hosts and prefix)."""
    from channels_redis.core import RedisChannelLayer

    # The server's prefix: the one tests/conftest.py gave this run (and xdist worker).
    return RedisChannelLayer(hosts=[redis_url], prefix=os.environ["CHANNELS_REDIS_PREFIX"])


def receive_types(receiver: ChannelReceiver, *types: str, timeout: float = 10) -> dict:
    """Messages until one of each of ``types`` arrived, in any order: ``{type: message}``."""
    deadline = time.monotonic() + timeout
    found: dict[str, dict] = {}
    while set(types) - set(found):
        message = receiver.receive(max(0.1, deadline - time.monotonic()))
        if message["headers"]["type"] in types:
            found.setdefault(message["headers"]["type"], message)
    return found


@pytest.mark.redis
@pytest.mark.standin
def test_charge_and_refund_reach_rows_and_a_redis_subscriber(
    live_bridge: tuple[LiveServer, str],
    stripe_standin_clean: Any,
    redis_layer: Any,
    channel_receiver: Any,
) -> None:
    server, secret = live_bridge
    stripe_standin_clean.register_webhook(server.url + WEBHOOK_PATH, secret)
    client = stripe_standin_clean.client()

    broad = channel_receiver(broadcast_group(), layer=redis_layer)
    charge = client.v1.charges.create({"amount": 2500, "currency": "usd", "source": "tok_visa"})
    pinned = channel_receiver(transaction_group(charge.id), layer=redis_layer)

    message = receive_types(pinned, "charge.succeeded")["charge.succeeded"]
    assert message["transaction_id"] == charge.id
    assert message["headers"]["id"] == charge.id
    assert message["headers"]["status"] == "succeeded"
    assert message["headers"]["amount"] == 2500
    assert message["data"]["object"]["id"] == charge.id
    assert "billing_details" not in message["data"]["object"]
    # The broadcast group got it too (it may carry other processes' events: filter).
    while True:
        other = broad.receive(10)
        if other["event_id"] == message["event_id"]:
            break

    client.v1.refunds.create({"charge": charge.id})
    refunded = receive_types(pinned, "charge.refunded")["charge.refunded"]
    assert refunded["headers"]["status"] == "refunded"

    # Each row is marked published right after its commit; give the last one that moment.
    def all_published() -> list[sqlite3.Row] | None:
        rows = event_rows(server, charge.id)
        types = {row["type"] for row in rows}
        done = {"charge.succeeded", "charge.refunded"} <= types
        return rows if done and all(row["published_at"] for row in rows) else None

    wait_for(all_published, timeout=10)
    assert tx_status(server, charge.id) == "refunded"

    # The polling fallback agrees.
    answer = http("GET", f"{server.url}/api/services/Stripe/transactions/{charge.id}")
    assert answer.status == 200 and answer.json["status"] == "refunded"

    deliveries = [d for d in stripe_standin_clean.webhook_deliveries() if d.get("status")]
    assert deliveries and {d["status"] for d in deliveries} == {200}


@pytest.mark.redis
@pytest.mark.standin
def test_payment_intent_events_reach_the_intents_group(
    live_bridge: tuple[LiveServer, str],
    stripe_standin_clean: Any,
    redis_layer: Any,
    channel_receiver: Any,
) -> None:
    server, secret = live_bridge
    stripe_standin_clean.register_webhook(server.url + WEBHOOK_PATH, secret)
    payment_intents = stripe_standin_clean.client().v1.payment_intents
    intent = payment_intents.create(
        {
            "amount": 4100,
            "currency": "eur",
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        }
    )
    # Joined before the confirm: its events cannot reach the group before the receiver does
    # (under load, joining could take longer than the stand-in's delivery delay).
    pinned = channel_receiver(transaction_group(intent.id), layer=redis_layer)
    payment_intents.confirm(intent.id, {"payment_method": "pm_card_visa"})
    found = receive_types(pinned, "payment_intent.succeeded", "charge.succeeded")
    assert found["payment_intent.succeeded"]["headers"]["status"] == "succeeded"
    # The charge's own events belong to the PaymentIntent's transaction.
    charge = found["charge.succeeded"]
    assert charge["headers"]["id"] == intent.id and charge["headers"]["object"] == "charge"
    wait_for(lambda: tx_status(server, intent.id) == "succeeded")


@pytest.mark.redis
@pytest.mark.standin
def test_sync_on_the_live_server_ingests_what_was_never_delivered(
    live_bridge: tuple[LiveServer, str], stripe_standin_clean: Any
) -> None:
    server, _ = live_bridge
    # No webhook registered: the server hears nothing of these payments.
    client = stripe_standin_clean.client()
    charge = client.v1.charges.create({"amount": 800, "currency": "usd", "source": "tok_visa"})
    client.v1.refunds.create({"charge": charge.id, "amount": 300})
    assert event_rows(server, charge.id) == []

    first = server.manage("stripe_bridge_sync", "--since", "1h")
    assert first.returncode == 0, first.stderr
    rows = event_rows(server, charge.id)
    assert {row["type"] for row in rows} >= {"charge.succeeded", "charge.refunded"}
    assert tx_status(server, charge.id) == "partially_refunded"

    second = server.manage("stripe_bridge_sync", "--since", "1h")
    assert second.returncode == 0, second.stderr
    assert "ingested 0," in second.stdout
    assert len(event_rows(server, charge.id)) == len(rows)
