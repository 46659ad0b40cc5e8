"""The webhook endpoint in-process: the shared cases, plus transactions, faults and bursts."""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any
from unittest import mock

import pytest
from django.db import InterfaceError, OperationalError, connections
from django.test import Client
from django.urls import reverse

from django_stripe_bridge.exceptions import SignatureVerificationError
from django_stripe_bridge.models import StripeEvent, StripeTransaction
from django_stripe_bridge.webhooks import WebhookView, compute_signature, verify_signature
from tests.webhook_cases import Answer, WebhookCases
from tests.webhook_fixtures import *  # noqa: F403
from tests.webhook_fixtures import event_body, fresh_event, run_concurrently, sign_payload

SECRET = "whsec_tests_primary"  # tests/settings.py


def webhook_url() -> str:
    return reverse("stripe_bridge:webhook")


def post(client: Client, body: bytes, signature: str | None, **extra: Any) -> Answer:
    headers = {"Stripe-Signature": signature} if signature is not None else {}
    response = client.post(
        webhook_url(), body, content_type="application/json", headers=headers, **extra
    )
    try:
        parsed = json.loads(response.content)
    except ValueError:
        parsed = None
    return Answer(response.status_code, parsed, dict(response.headers))


def deliver_signed(client: Client, event: dict[str, Any], secret: str = SECRET) -> Answer:
    body = event_body(event)
    return post(client, body, sign_payload(body, secret))


def _row(event_id: str) -> dict[str, Any] | None:
    row = StripeEvent.objects.filter(event_id=event_id).values().first()
    if row is not None:
        row.pop("id")
    return row


@pytest.mark.django_db
class TestWebhookEndpoint(WebhookCases):
    """The shared cases through Django's test client (CSRF checks on, as in production)."""

    @pytest.fixture(autouse=True)
    def _endpoint(self, settings: Any) -> None:
        settings.STRIPE_BRIDGE = {
            **settings.STRIPE_BRIDGE,
            "WEBHOOK_SECRETS": list(self.secrets),
            "WEBHOOK_MAX_BYTES": self.max_bytes,
            "WEBHOOK_TOLERANCE": self.tolerance,
        }
        self.client = Client(enforce_csrf_checks=True)

    def deliver(
        self, body: bytes, signature: str | None, content_type: str = "application/json"
    ) -> Answer:
        return post(self.client, body, signature)

    def stored_event(self, event_id: str) -> dict[str, Any] | None:
        return _row(event_id)

    def stored_count(self) -> int:
        return StripeEvent.objects.count()

    def transaction_status(self, transaction_id: str) -> str | None:
        tx = StripeTransaction.objects.filter(pk=transaction_id).first()
        return tx.status if tx else None


# -- verify_signature as a pure function ---------------------------------------------------


class TestVerifySignature:
    body = b'{"id": "evt_1"}'

    def test_returns_the_timestamp(self) -> None:
        header = sign_payload(self.body, "whsec_a", 1_700_000_000)
        assert verify_signature(self.body, header, ["whsec_a"], 300, now=1_700_000_100) == (
            1_700_000_000
        )

    def test_matches_stripes_scheme(self) -> None:
        # Hex HMAC-SHA256 of "<t>.<payload>" keyed with the whole secret, as Stripe documents.
        assert compute_signature(b"{}", "whsec_x", 12) == (
            "a1a23aaa11a5e60d05ced9d65a8cc37815848ba1b24be623e8a0ef3a117faa11"
        )

    def test_any_secret_any_signature(self) -> None:
        ts = 1_700_000_000
        a = sign_payload(self.body, "whsec_a", ts).split(",")[1]
        b = sign_payload(self.body, "whsec_b", ts).split(",")[1]
        header = f"t={ts}, {a}, {b}, v0=ignored"
        for secrets in (["whsec_a"], ["whsec_b"], ["whsec_c", "whsec_b"]):
            verify_signature(self.body, header, secrets, 300, now=ts)
        with pytest.raises(SignatureVerificationError):
            verify_signature(self.body, header, ["whsec_c"], 300, now=ts)

    def test_no_secrets_matches_nothing(self) -> None:
        header = sign_payload(self.body, "whsec_a", 100)
        with pytest.raises(SignatureVerificationError):
            verify_signature(self.body, header, [], None, now=100)

    @pytest.mark.parametrize(
        ("offset", "word"), [(-301, "old"), (301, "future")], ids=["stale", "future"]
    )
    def test_tolerance_both_ways(self, offset: int, word: str) -> None:
        header = sign_payload(self.body, "whsec_a", 1_000_000 + offset)
        with pytest.raises(SignatureVerificationError, match=word):
            verify_signature(self.body, header, ["whsec_a"], 300, now=1_000_000)
        # At the edge it passes; with tolerance None any age passes.
        edge = sign_payload(self.body, "whsec_a", 1_000_000 + (300 if offset > 0 else -300))
        verify_signature(self.body, edge, ["whsec_a"], 300, now=1_000_000)
        verify_signature(self.body, header, ["whsec_a"], None, now=1_000_000)

    def test_messages_never_contain_a_secret(self) -> None:
        secret = "whsec_super_secret_value"
        for header in (None, "", "junk", sign_payload(self.body, "whsec_other"), "t=1,v1=x"):
            with pytest.raises(SignatureVerificationError) as info:
                verify_signature(self.body, header, [secret], 300)
            assert secret not in str(info.value)

    def test_is_a_suspicious_operation(self) -> None:
        from django.core.exceptions import SuspiciousOperation

        assert issubclass(SignatureVerificationError, SuspiciousOperation)


# -- the endpoint beyond the shared cases --------------------------------------------------


@pytest.mark.django_db
def test_both_paths_with_and_without_trailing_slash(client: Client) -> None:
    for suffix in ("", "/"):
        url = webhook_url().rstrip("/") + suffix
        body = event_body(fresh_event("charge.succeeded"))
        response = client.post(
            url,
            body,
            content_type="application/json",
            headers={"Stripe-Signature": sign_payload(body, SECRET)},
        )
        assert response.status_code == 200, (url, response.content)


@pytest.mark.django_db
def test_other_methods_are_not_allowed(client: Client) -> None:
    assert client.get(webhook_url()).status_code == 405
    assert StripeEvent.objects.count() == 0


@pytest.mark.django_db
def test_not_configured_answers_503_naming_the_setting(client: Client, settings: Any) -> None:
    settings.STRIPE_BRIDGE = {**settings.STRIPE_BRIDGE, "WEBHOOK_SECRETS": []}
    answer = deliver_signed(client, fresh_event("charge.succeeded"))
    assert answer.status == 503
    assert answer.json["error"]["code"] == "webhook_not_configured"
    assert "WEBHOOK_SECRETS" in answer.json["error"]["message"]
    assert answer.headers["Retry-After"]
    assert StripeEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_atomic_requests_do_not_delay_commit_or_publishing(
    settings: Any, signal_log: Any, in_memory_layer: None, channel_receiver: Any
) -> None:
    settings.DATABASES["default"]["ATOMIC_REQUESTS"] = True
    from django.db import connections

    connections["default"].settings_dict["ATOMIC_REQUESTS"] = True
    try:
        event = fresh_event("charge.succeeded")
        tx_id = event["data"]["object"]["id"]
        from django_stripe_bridge.messaging import transaction_group

        receiver = channel_receiver(transaction_group(tx_id))
        from django_stripe_bridge import ingest

        real_ingest, in_atomic_at_call = ingest.ingest_event, []

        def spy(*args: Any, **kwargs: Any) -> Any:
            in_atomic_at_call.append(connections["default"].in_atomic_block)
            return real_ingest(*args, **kwargs)

        with mock.patch.object(ingest, "ingest_event", spy):
            answer = deliver_signed(Client(), event)
        assert answer.status == 200, answer
        assert in_atomic_at_call == [False]
        # Signals and the publish ran right after ingest's own commit, outside any atomic
        # block: ATOMIC_REQUESTS did not wrap the view.
        assert [entry["in_atomic"] for entry in signal_log.received] == [False]
        assert receiver.receive(2)["event_id"] == event["id"]
        assert StripeEvent.objects.get(event_id=event["id"]).published_at is not None
    finally:
        connections["default"].settings_dict["ATOMIC_REQUESTS"] = False


def failing_statements(table: str, error: type[Exception]) -> Any:
    """The database failing every statement that touches ``table`` (a fault, injected)."""

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if table in sql.lower():
            raise error("server closed the connection")
        return execute(sql, params, many, context)

    return connections["default"].execute_wrapper(wrapper)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
# The insert of the event fails, or the update of its transaction after it (nothing of
# the half-done work may stay).
@pytest.mark.parametrize("table", ["stripeevent", "stripetransaction"])
def test_database_unavailable_answers_503(
    client: Client, error: type[Exception], table: str, caplog: pytest.LogCaptureFixture
) -> None:
    event = fresh_event("charge.succeeded")
    with failing_statements(table, error):
        answer = deliver_signed(client, event)
    assert answer.status == 503, answer
    assert answer.json["error"]["code"] == "database_unavailable"
    assert int(answer.headers["Retry-After"]) > 0
    assert StripeEvent.objects.count() == 0
    assert StripeTransaction.objects.count() == 0
    assert "server closed the connection" not in answer.json["error"]["message"]


@pytest.mark.django_db
def test_database_unavailable_in_ingest_answers_503(client: Client) -> None:
    with mock.patch(
        "django_stripe_bridge.ingest.ingest_event", side_effect=OperationalError("db down")
    ):
        answer = deliver_signed(client, fresh_event("charge.succeeded"))
    assert answer.status == 503
    assert StripeEvent.objects.count() == 0


@pytest.mark.django_db
def test_unexpected_error_is_never_a_500(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with mock.patch("django_stripe_bridge.ingest.ingest_event", side_effect=RuntimeError("bug")):
        answer = deliver_signed(client, fresh_event("charge.succeeded"))
    assert answer.status == 503
    assert "bug" not in json.dumps(answer.json)
    assert "Traceback" not in json.dumps(answer.json)


@pytest.mark.django_db
def test_refusals_are_logged_without_body_or_secret(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    event = fresh_event("charge.succeeded")
    with caplog.at_level(logging.WARNING, logger="django_stripe_bridge"):
        deliver_signed(client, event, secret="whsec_wrong")
    records = [r for r in caplog.records if r.name == "django_stripe_bridge.webhooks"]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    text = records[0].getMessage()
    assert "signature" in text
    assert event["id"] not in text and SECRET not in text and "whsec_wrong" not in text


@pytest.mark.django_db
def test_body_over_data_upload_max_memory_size_is_accepted(client: Client, settings: Any) -> None:
    # Django's own limit must not refuse what WEBHOOK_MAX_BYTES allows.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    event = fresh_event("charge.succeeded")
    body = event_body(event) + b" " * 4096
    answer = post(client, body, sign_payload(body, SECRET))
    assert answer.status == 200, answer


class _CountingStream:
    """A request whose body has no Content-Length; records how much the view reads."""

    def __init__(self, body: bytes) -> None:
        self.stream = io.BytesIO(body)
        self.requested: list[int] = []
        self.META: dict[str, str] = {}

    def read(self, size: int = -1) -> bytes:
        self.requested.append(size)
        return self.stream.read(size)


def test_body_without_content_length_is_read_at_most_max_plus_one(settings: Any) -> None:
    from django_stripe_bridge.webhooks import WebhookRefused

    settings.STRIPE_BRIDGE = {**settings.STRIPE_BRIDGE, "WEBHOOK_MAX_BYTES": 100}
    request = _CountingStream(b"x" * 10_000)
    with pytest.raises(WebhookRefused) as info:
        WebhookView().read_payload(request)  # type: ignore[arg-type]
    assert info.value.status == 413
    assert request.requested == [101]
    assert request.stream.tell() == 101

    small = _CountingStream(b"y" * 100)
    assert WebhookView().read_payload(small) == b"y" * 100  # type: ignore[arg-type]


@pytest.mark.django_db
def test_content_length_is_checked_before_reading(client: Client, settings: Any) -> None:
    settings.STRIPE_BRIDGE = {**settings.STRIPE_BRIDGE, "WEBHOOK_MAX_BYTES": 100}
    with mock.patch("django.http.request.HttpRequest.read") as read:
        answer = post(client, b"z" * 500, "t=1,v1=x")
    assert answer.status == 413
    read.assert_not_called()


@pytest.mark.django_db(transaction=True)
def test_burst_of_concurrent_deliveries_all_answered_200() -> None:
    events = [fresh_event("charge.succeeded") for _ in range(20)]

    def deliver(index: int) -> int:
        return deliver_signed(Client(), events[index]).status

    started = time.monotonic()
    statuses = run_concurrently(deliver, len(events), timeout=60)
    assert statuses == [200] * len(events)
    assert StripeEvent.objects.count() == len(events)
    assert time.monotonic() - started < 60


@pytest.mark.django_db(transaction=True)
def test_burst_of_one_event_for_one_transaction_stores_it_once(signal_log: Any) -> None:
    event = fresh_event("charge.succeeded")
    answers = run_concurrently(lambda i: deliver_signed(Client(), event), 10)
    assert {a.status for a in answers} == {200}
    assert sorted(a.json["duplicate"] for a in answers) == [False] + [True] * 9
    assert StripeEvent.objects.filter(event_id=event["id"]).count() == 1
    assert len(signal_log.created) == 1
