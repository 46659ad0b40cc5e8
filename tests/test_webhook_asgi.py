"""The lean webhook path (``with_stripe_webhook``) and group commit, in process.

The shared webhook cases run against the ASGI path; then what is its own: requests that
arrive together share one transaction, a batch whose commit fails answers 503 to every
request in it and stores nothing, bodies are refused before they are read, and every other
request reaches the wrapped app untouched.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import OperationalError, connections

from django_stripe_bridge import group_commit
from django_stripe_bridge.asgi import StripeWebhookApp, with_stripe_webhook
from django_stripe_bridge.models import StripeEvent, StripeTransaction
from tests.factories import charge_object, make_event
from tests.webhook_cases import Answer, WebhookCases
from tests.webhook_fixtures import *  # noqa: F403
from tests.webhook_fixtures import event_body, sign_payload

PATH = "/api/services/Stripe/webhooks/handler"
SECRET = "whsec_tests_primary"


async def site(scope: dict, receive: Any, send: Any) -> None:
    """The wrapped site: answers 299 with the path it got, so pass-through shows."""
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


async def call(
    app: Any,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    method: str = "POST",
    path: str = PATH,
    chunks: int = 1,
    declared_length: bool = True,
) -> Answer:
    """One request through ``app``; the body sent in ``chunks`` pieces."""
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if declared_length:
        raw.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": method, "path": path, "headers": raw, "client": ("t", 1)}
    size = max(1, -(-len(body) // chunks))
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    read = {"count": 0}

    async def receive() -> dict:
        if not messages:
            await asyncio.sleep(3600)
        read["count"] += 1
        return messages.pop(0)

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, content = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    got = {k.decode(): v.decode() for k, v in start["headers"]}
    got["x-chunks-read"] = str(read["count"])
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = content.decode()
    return Answer(start["status"], parsed, got)


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "Stripe-Signature": sign_payload(body, secret)}


@pytest.mark.django_db(transaction=True)
class TestWebhookCasesOnTheASGIPath(WebhookCases):
    """The shared cases through ``with_stripe_webhook`` and group commit."""

    @pytest.fixture(autouse=True)
    def _endpoint(self, settings: Any) -> None:
        settings.STRIPE_BRIDGE = {
            **settings.STRIPE_BRIDGE,
            "WEBHOOK_SECRETS": list(self.secrets),
            "WEBHOOK_MAX_BYTES": self.max_bytes,
            "WEBHOOK_TOLERANCE": self.tolerance,
        }
        self.app = with_stripe_webhook(site)

    def deliver(
        self, body: bytes, signature: str | None, content_type: str = "application/json"
    ) -> Answer:
        headers = {"Content-Type": content_type}
        if signature is not None:
            headers["Stripe-Signature"] = signature
        return async_to_sync(call)(self.app, body, headers)

    def stored_event(self, event_id: str) -> dict[str, Any] | None:
        row = StripeEvent.objects.filter(event_id=event_id).values().first()
        if row is not None:
            row.pop("id")
        return row

    def stored_count(self) -> int:
        return StripeEvent.objects.count()

    def transaction_status(self, transaction_id: str) -> str | None:
        tx = StripeTransaction.objects.filter(pk=transaction_id).first()
        return tx.status if tx else None


def event_for(n: int, charge_id: str = "ch_batch", **fields: Any) -> dict[str, Any]:
    return make_event(
        "charge.succeeded" if n == 0 else "charge.refunded",
        charge_object(charge_id, amount_refunded=min(n * 100, 1000), **fields),
        created=1_700_000_000 + n,
        event_id=f"evt_batch_{charge_id}_{n}",
    )


async def deliver_together(app: Any, events: list[dict]) -> list[Answer]:
    bodies = [event_body(e) for e in events]
    return await asyncio.gather(*(call(app, body, signed(body)) for body in bodies))


@pytest.mark.django_db(transaction=True)
def test_requests_that_arrive_together_share_one_transaction(signal_log: Any) -> None:
    committer = group_commit.GroupCommitter()
    commits: list[int] = []

    def ingest(events: Any, **options: Any) -> Any:
        commits.append(len(events))
        return group_commit.ingest_events(events, **options)

    committer._ingest = ingest

    async def run() -> list[Answer]:
        group_commit._committers[asyncio.get_running_loop()] = committer
        app = with_stripe_webhook(site)
        events = [event_for(n) for n in range(8)] + [event_for(0, "ch_other")]
        events.append(event_for(3))  # a repeat within the burst
        answers = await deliver_together(app, events)
        # Answered once committed; published just after, in order, marked in one update.
        unpublished = StripeEvent.objects.filter(published_at__isnull=True)
        for _ in range(100):
            if not await unpublished.aexists():
                break
            await asyncio.sleep(0.05)
        assert not await unpublished.aexists()
        return answers

    answers = async_to_sync(run)()
    assert [a.status for a in answers] == [200] * 10
    assert [a.json["duplicate"] for a in answers] == [False] * 9 + [True]
    # All ten were waiting when the worker ran: one transaction.
    assert commits == [10] and committer.batch_sizes == [10]
    assert StripeEvent.objects.count() == 9
    tx = StripeTransaction.objects.get(pk="ch_batch")
    assert (tx.status, tx.amount_refunded) == ("partially_refunded", 700)
    # One event_received per request (the repeat with created=False), after the commit.
    assert sorted(e["created"] for e in signal_log.received) == [False] + [True] * 9
    assert not any(e["in_atomic"] for e in signal_log.received)


@pytest.mark.django_db(transaction=True)
def test_a_batch_whose_commit_fails_answers_503_to_every_request_and_stores_nothing() -> None:
    def fail_the_last_write(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        # Everything else ran: the events are inserted, the transactions folded.
        if sql.lstrip().upper().startswith(("UPDATE", "WITH")) and "stripetransaction" in sql:
            raise OperationalError("the database went away")
        return execute(sql, params, many, context)

    committer = group_commit.GroupCommitter()
    store = committer._store

    def failing_store(*args: Any) -> Any:
        with connections["default"].execute_wrapper(fail_the_last_write):
            return store(*args)

    committer._store = failing_store  # type: ignore[method-assign]

    async def run() -> list[Answer]:
        group_commit._committers[asyncio.get_running_loop()] = committer
        # Two events of one charge, so its row is updated; all five go in one batch.
        events = [event_for(n, "ch_fail") for n in range(5)]
        return await deliver_together(with_stripe_webhook(site), events)

    answers = async_to_sync(run)()
    assert committer.batch_sizes == []  # no batch was committed
    assert [a.status for a in answers] == [503] * 5
    assert all(a.json["error"]["code"] == "database_unavailable" for a in answers)
    assert all(int(a.headers["retry-after"]) > 0 for a in answers)
    assert StripeEvent.objects.count() == 0
    assert not StripeTransaction.objects.exists()


def test_a_body_over_the_limit_is_refused_before_it_is_read(settings: Any) -> None:
    settings.STRIPE_BRIDGE = {**settings.STRIPE_BRIDGE, "WEBHOOK_MAX_BYTES": 1000}
    app = with_stripe_webhook(site)
    big = b"x" * 5000
    declared = async_to_sync(call)(app, big, signed(big), chunks=50)
    assert declared.status == 413 and declared.json["error"]["code"] == "payload_too_large"
    assert declared.headers["x-chunks-read"] == "0"  # refused from Content-Length alone
    streamed = async_to_sync(call)(app, big, signed(big), chunks=50, declared_length=False)
    assert streamed.status == 413
    # 100-byte pieces: the 11th goes past 1,000 bytes, and nothing after it is read.
    assert streamed.headers["x-chunks-read"] == "11"


def test_other_requests_go_to_the_site_untouched() -> None:
    app = with_stripe_webhook(site)
    for path in ["/", "/api/services/Stripe/charge", PATH + "/extra", "/admin/"]:
        answer = async_to_sync(call)(app, b"{}", {}, path=path)
        assert (answer.status, answer.json) == (299, path) or answer.json == {}
        assert answer.status == 299


def test_the_path_comes_from_the_urlconf_and_takes_a_trailing_slash() -> None:
    app = StripeWebhookApp(site)
    assert app.path == PATH
    assert app._endpoint({"path": PATH + "/"}) == "handler"
    assert app._endpoint({"path": "/mount" + PATH, "root_path": "/mount"}) == "handler"
    assert app._endpoint({"path": PATH + "x"}) is None
    assert StripeWebhookApp(site, path="/hooks/stripe/").path == "/hooks/stripe"


def test_wrong_method_and_missing_secret(settings: Any) -> None:
    app = with_stripe_webhook(site)
    answer = async_to_sync(call)(app, b"", {}, method="GET")
    assert (answer.status, answer.headers["allow"]) == (405, "POST")
    settings.STRIPE_BRIDGE = {**settings.STRIPE_BRIDGE, "WEBHOOK_SECRETS": []}
    body = event_body(event_for(1))
    answer = async_to_sync(call)(app, body, signed(body))
    assert answer.status == 503 and answer.json["error"]["code"] == "webhook_not_configured"


def test_an_unexpected_error_is_a_503_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(event: Any) -> Any:
        raise RuntimeError("a bug")

    class Broken:
        submit = staticmethod(broken)

    monkeypatch.setattr("django_stripe_bridge.group_commit.get_committer", lambda: Broken)
    app = with_stripe_webhook(site)
    body = event_body(event_for(1))
    answer = async_to_sync(call)(app, body, signed(body))
    assert answer.status == 503
    assert "bug" not in json.dumps(answer.json) and "Traceback" not in json.dumps(answer.json)
