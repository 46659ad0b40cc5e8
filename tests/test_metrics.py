"""The metrics as an operator reads them: latency histograms along an event's path, several
worker processes added up in one scrape, and a scrape that stays fast on a large table."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test import Client as HttpClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from prometheus_client import REGISTRY
from prometheus_client.multiprocess import mark_process_dead

from django_stripe_bridge import metrics, monitoring
from django_stripe_bridge.models import StripeEvent
from django_stripe_bridge.testing import sign_payload
from tests.live import ROOT
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import charge_event, open_client

SECRET = "whsec_tests_primary"


def observations(name: str) -> float:
    """How many durations histogram ``name`` of this process holds."""
    return REGISTRY.get_sample_value(f"stripe_bridge_{name}_count") or 0.0


def post_webhook(event: dict) -> int:
    body = json.dumps(event).encode()
    response = HttpClient().post(
        reverse("stripe_bridge:webhook"),
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(body, SECRET)},
    )
    return response.status_code


@pytest.mark.django_db(transaction=True)
async def test_an_event_is_timed_from_its_webhook_to_the_socket():
    before = {name: observations(name) for name in metrics.HISTOGRAMS}
    client = await open_client()
    await client.subscribe("id = 'ch_timed'", subscription="s1", replay="none")
    status = await database_sync_to_async(post_webhook)(
        charge_event("charge.succeeded", "ch_timed")
    )
    assert status == 200
    frame = await client.recv()
    assert frame["headers"]["id"] == "ch_timed" and "sent_at" not in frame
    await client.close()
    after = {name: observations(name) for name in metrics.HISTOGRAMS}
    assert {name: after[name] - before[name] for name in after} == {
        "webhook_commit_seconds": 1,
        "publish_delay_seconds": 1,
        "delivery_delay_seconds": 1,
    }
    # A local round trip takes well under the histogram's largest bucket.
    delivered = REGISTRY.get_sample_value(
        "stripe_bridge_delivery_delay_seconds_bucket", {"le": "1.0"}
    )
    assert delivered and delivered >= 1


WORKER = """
import sys
from django_stripe_bridge import metrics
metrics.incr("events_published", int(sys.argv[1]))
metrics.incr("websockets_open", 2)
metrics.observe("webhook_commit_seconds", 0.02)
print("ready", flush=True)
sys.stdin.read()  # alive until the test closes stdin
"""


def start_worker(directory: Path, published: int) -> subprocess.Popen[str]:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(published)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def figures(body: str) -> dict[str, float]:
    found = {}
    for line in body.splitlines():
        if line.startswith("stripe_bridge_") and "{" not in line:
            name, value = line.split()
            found[name] = float(value)
    return found


@pytest.mark.django_db
def test_two_worker_processes_add_up_in_one_scrape(tmp_path, monkeypatch):
    """prometheus_client's multiprocess mode: each process writes its values to
    PROMETHEUS_MULTIPROC_DIR, and a scrape of any process reads them all."""
    workers = [start_worker(tmp_path, 3), start_worker(tmp_path, 4)]
    try:
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        scraped = figures(monitoring.render())
        assert scraped["stripe_bridge_events_published_total"] == 7
        assert scraped["stripe_bridge_websockets_open"] == 4
        assert scraped["stripe_bridge_webhook_commit_seconds_count"] == 2
        assert scraped["stripe_bridge_unpublished_events"] == 0  # and the database's figures

        # A worker that stopped: its open sockets are gone (what a process manager's
        # exit hook does), its counts stay.
        first = workers.pop(0)
        first.communicate("")
        mark_process_dead(first.pid, str(tmp_path))
        scraped = figures(monitoring.render())
        assert scraped["stripe_bridge_websockets_open"] == 2
        assert scraped["stripe_bridge_events_published_total"] == 7
    finally:
        for worker in workers:
            worker.communicate("")


def fill(total: int, unpublished: int) -> None:
    """``total`` events in one statement, the last ``unpublished`` of them not published.

    ``g`` is the row's number; every column the statement does not name gets its field's
    default, so that fields added to the model later need nothing here.
    """
    postgres = connection.vendor == "postgresql"
    now = "now()" if postgres else "datetime('now')"
    named = {
        "event_id": "'evt_big_' || g",
        "transaction_id": "'ch_big_' || " + ("mod(g, 100000)" if postgres else "(g %% 100000)"),
        "type": "'charge.succeeded'",
        "object_type": "'charge'",
        "object_id": "'ch_big_' || g",
        "created": now,
        "received_at": "now() - interval '1 hour'" if postgres else "datetime('now', '-1 hour')",
        "payload": "'{}'::jsonb" if postgres else "'{}'",
        "published_at": f"CASE WHEN g > %s THEN NULL ELSE {now} END",
    }
    columns, values = [], []
    for field in StripeEvent._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(field.column)
        values.append(named.get(field.name) or sql_literal(field.get_default(), postgres))
    rows = (
        "generate_series(1, %s) AS g"
        if postgres
        else "(WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < %s) "
        "SELECT g FROM n)"
    )
    table = StripeEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - the model's own names
            f"SELECT {', '.join(values)} FROM {rows}",
            [total - unpublished, total],
        )
        cursor.execute(f"ANALYZE {table}")


def sql_literal(value: object, postgres: bool) -> str:
    if isinstance(value, bool):
        return ("true" if value else "false") if postgres else str(int(value))
    if isinstance(value, int):
        return str(value)
    assert isinstance(value, str), value
    return "'" + value.replace("'", "''") + "'"


@pytest.mark.django_db
def test_a_scrape_of_a_million_events_answers_in_under_100_ms():
    """The backlog is read from the partial index of unpublished events, never by counting
    the table: the scrape's time does not grow with the events stored."""
    fill(1_000_000, unpublished=monitoring.BACKLOG_CAP + 5_000)
    monitoring.render()  # warm: the first read of a new table pays for its pages
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        body = monitoring.render()
        timings.append(time.perf_counter() - started)
    scraped = figures(body)
    assert scraped["stripe_bridge_unpublished_events"] == monitoring.BACKLOG_CAP  # "at least"
    assert 3500 < scraped["stripe_bridge_unpublished_oldest_age_seconds"] < 3700
    assert statistics.median(timings) < 0.1, timings

    with CaptureQueriesContext(connection) as queries:
        monitoring.backlog()
    events = [q for q in queries if StripeEvent._meta.db_table in q["sql"]]
    assert len(events) == 3 and len(queries) == 4  # and one of the (small) quarantine
    for query in events:
        assert "published_at" in query["sql"] and "IS NULL" in query["sql"], query["sql"]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN " + query["sql"])
                plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan" not in plan and "stripe_evt_unpublished" in plan, plan
