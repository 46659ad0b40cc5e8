"""A thin event's fetch retried across a real server restart: Daphne or Uvicorn (an OS
process serving the demo site) takes a thin notification from the offline Stripe and
answers 200; the stand-in answers the fetch 500, then times out; the process is killed
(SIGKILL) while a retry hangs, and started again at once; the new process retries until the
fetch succeeds, and the event is folded exactly once."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.live import LiveServer, free_port, kill_and_restart, run_server

pytestmark = [pytest.mark.standin]

#: Short delays, so that the test takes seconds: the first retry after 0.3 s, then 0.6 s…; a
#: request times out after 3 s (no retry inside the library: this is also how long the test
#: has to see the hanging try and kill the server); a claimed fetch holds its row 7 s (longer
#: than its two requests can take; past that a new process may take it); the relay thread
#: goes round every 0.2 s.
BRIDGE = {
    "THIN_RETRY_DELAY": 0.3,
    "TIMEOUT": 3,
    "MAX_NETWORK_RETRIES": 0,
    "THIN_LEASE": 7,
    "OUTBOX_INTERVAL": 0.2,
}
#: Seconds the stand-in holds a request it answers with a timeout (longer than TIMEOUT).
HOLD = 15


def row(server: LiveServer, sql: str, *params: Any) -> sqlite3.Row | None:
    """One row from the live server's SQLite database (read-only, from this process)."""
    with sqlite3.connect(f"file:{server.database_path}?mode=ro", uri=True, timeout=10) as db:
        db.row_factory = sqlite3.Row
        return db.execute(sql, params).fetchone()


def thin_row(server: LiveServer) -> sqlite3.Row | None:
    return row(server, "SELECT * FROM django_stripe_bridge_thinevent")


def claimed(thin: sqlite3.Row) -> bool:
    """Whether a worker holds the row: its next attempt is a lease away, not a backoff."""
    next_at = dt.datetime.fromisoformat(thin["next_attempt_at"]).replace(tzinfo=dt.UTC)
    return next_at - dt.datetime.now(dt.UTC) > dt.timedelta(seconds=BRIDGE["THIN_LEASE"] / 2)


def faults_left(standin: Any) -> list[Any]:
    """The stand-in's fault answers not given yet (each request under the path takes one)."""
    return [
        a
        for fault in standin._request("GET", "/_standin/faults")["faults"]
        for a in fault["answers"]
    ]


def wait_for(what: str, test: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = test()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def thin_site(server_kind: str, stripe_standin: Any) -> Iterator[tuple[LiveServer, Any]]:
    """A live server with a thin Event Destination of the stand-in pointed at it."""
    from django_stripe_bridge.testing import TEST_API_KEY

    stripe_standin.reset(webhooks=True)
    client = stripe_standin.client()
    port = free_port()
    destination = client.v2.core.event_destinations.create(
        {
            "name": "restart",
            "type": "webhook_endpoint",
            "event_payload": "thin",
            "enabled_events": ["v1.charge.succeeded"],
            "webhook_endpoint": {
                "url": f"http://127.0.0.1:{port}/api/services/Stripe/webhooks/thin"
            },
            "include": ["webhook_endpoint.signing_secret"],
        }
    )
    secret = destination.webhook_endpoint.signing_secret
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.live_settings",
        "STRIPE_API_KEY": TEST_API_KEY,
        "STRIPE_API_BASE": stripe_standin.base_url,
        "STRIPE_CHARGE_THROTTLE_RATE": "off",
        "STRIPE_BRIDGE_TEST": json.dumps({**BRIDGE, "WEBHOOK_ENDPOINTS": {"thin": [secret]}}),
    }
    try:
        with run_server(server_kind, env, port=port) as server:
            yield server, client
    finally:
        stripe_standin.reset(webhooks=True)


def test_a_failing_fetch_is_retried_across_a_killed_and_restarted_server(
    thin_site: tuple[LiveServer, Any], stripe_standin: Any
) -> None:
    server, client = thin_site
    stripe_standin._request(
        "POST",
        "/_standin/faults",
        {"path": "/v2/core/events/", "answers": [500, "timeout", "timeout", 500], "hold": HOLD},
    )
    charge = client.v1.charges.create({"amount": 4200, "currency": "usd", "source": "tok_visa"})

    # Delivered and answered 200 at once, before any fetch succeeded.
    delivery = wait_for(
        "the thin notification's delivery",
        lambda: [
            d for d in stripe_standin.webhook_deliveries() if d["type"] == "v1.charge.succeeded"
        ],
    )
    assert [d.get("status") for d in delivery] == [200]
    # First process: the fetch answered 500 (attempt 1), then timed out (attempt 2)…
    wait_for("two failed fetches", lambda: (thin_row(server) or {"attempts": 0})["attempts"] >= 2)
    first = thin_row(server)
    assert first is not None and (first["status"], first["attempts"]) == ("pending", 2)
    assert "did not answer in time" in first["last_error"]
    # … and its third try hangs in the stand-in: killed then, and started again at once.
    wait_for("the third fetch under way", lambda: faults_left(stripe_standin) == [500])
    assert claimed(thin_row(server))  # type: ignore[arg-type]
    killed_at = time.monotonic()
    kill_and_restart(server)
    assert thin_row(server)["status"] == "pending"  # type: ignore[index]

    # The new process takes the row once the dead one's lease ends: 500, then the fetch
    # succeeds, and the charge's event is folded. (The killed try was never counted: the
    # row counts the tries whose end was recorded, 2 + 2.)
    done = wait_for(
        "the fetch to succeed in the new process",
        lambda: (t := thin_row(server)) is not None and t["status"] == "done" and t,
        timeout=30,
    )
    assert done["attempts"] == 4 and done["last_error"] == "", server.log()
    assert time.monotonic() - killed_at < 25
    # The new process met the last fault itself (its first try, the third counted).
    assert faults_left(stripe_standin) == []
    assert "fetch 3 failed" in server.log()
    # Folded exactly once: one StripeEvent, the transaction's status right; and a while later
    # (the relay going round many times) still so.
    time.sleep(1.5)
    again = thin_row(server)
    assert again is not None and (again["status"], again["attempts"]) == ("done", 4)
    events = row(
        server,
        "SELECT COUNT(*) AS n, MIN(event_id) AS id FROM django_stripe_bridge_stripeevent",
    )
    assert events is not None and events["n"] == 1 and events["id"] == done["stripe_event_id"]
    tx = row(server, "SELECT * FROM django_stripe_bridge_stripetransaction WHERE id = ?", charge.id)
    assert tx is not None and (tx["status"], tx["amount"]) == ("succeeded", 4200)
    # Nothing else came of it: one notification, one thin event row.
    assert row(server, "SELECT COUNT(*) AS n FROM django_stripe_bridge_thinevent")["n"] == 1  # type: ignore[index]
