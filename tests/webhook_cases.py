"""The cases every deployment of the webhook endpoint must pass, as one reusable base.

A subclass says how a request reaches the endpoint (:meth:`WebhookCases.deliver`) and how
to look at what was stored (:meth:`WebhookCases.stored_event`, :meth:`stored_count`,
:meth:`transaction_status`), and configures the endpoint with :attr:`secrets` and
:attr:`max_bytes`. ``tests/test_webhooks.py`` runs the cases in-process through Django's
test client, ``tests/test_webhooks_e2e.py`` over HTTP against a live Daphne server.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.webhook_fixtures import event_body, fresh_event, sign_payload


@dataclass
class Answer:
    """The endpoint's answer: status, parsed JSON body (or ``None``), headers."""

    status: int
    json: Any
    headers: dict[str, str]


class WebhookCases:
    """Valid, refused, rotated, oversized and duplicate deliveries of Stripe events."""

    #: The endpoint's configured signing secrets: the current one and the one rotated in.
    secrets: tuple[str, ...] = ("whsec_cases_current", "whsec_cases_rotated_in")
    #: The endpoint's ``WEBHOOK_MAX_BYTES``.
    max_bytes: int = 64 * 1024
    #: The endpoint's ``WEBHOOK_TOLERANCE``.
    tolerance: int = 300

    # -- hooks for subclasses --------------------------------------------------------------

    def deliver(
        self, body: bytes, signature: str | None, content_type: str = "application/json"
    ) -> Answer:
        """POST ``body`` to the endpoint with ``signature`` as ``Stripe-Signature``."""
        raise NotImplementedError

    def stored_event(self, event_id: str) -> dict[str, Any] | None:
        """The stored row of ``event_id`` (``payload`` parsed, ``received_at``…), or ``None``."""
        raise NotImplementedError

    def stored_count(self) -> int:
        """How many events are stored."""
        raise NotImplementedError

    def transaction_status(self, transaction_id: str) -> str | None:
        """The stored status of a transaction, or ``None`` when there is no row."""
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------------

    @property
    def secret(self) -> str:
        return self.secrets[0]

    def deliver_event(self, event: dict[str, Any], secret: str | None = None) -> Answer:
        body = event_body(event)
        return self.deliver(body, sign_payload(body, secret or self.secret))

    def assert_refused(self, answer: Answer, status: int = 400, *, before: int) -> None:
        assert answer.status == status, answer
        error = answer.json["error"]
        assert error["type"] == ("api_error" if status >= 500 else "invalid_request_error")
        assert isinstance(error["message"], str) and error["message"]
        for secret in self.secrets:
            assert secret not in json.dumps(answer.json)
        assert "Traceback" not in json.dumps(answer.json)
        assert self.stored_count() == before, "a refused request stored something"

    # -- accepted --------------------------------------------------------------------------

    def test_valid_event_is_stored_and_answered_after_commit(self) -> None:
        event = fresh_event("charge.succeeded")
        answer = self.deliver_event(event)
        assert answer.status == 200, answer
        assert answer.json == {"received": True, "duplicate": False}
        row = self.stored_event(event["id"])
        assert row is not None
        assert row["payload"] == event
        assert row["type"] == "charge.succeeded"
        assert row["transaction_id"] == event["data"]["object"]["id"]
        assert self.transaction_status(row["transaction_id"]) == "succeeded"

    def test_signature_by_the_second_configured_secret(self) -> None:
        event = fresh_event("charge.succeeded")
        answer = self.deliver_event(event, secret=self.secrets[1])
        assert answer.status == 200, answer
        assert self.stored_event(event["id"]) is not None

    def test_rotated_secret_with_two_v1_signatures(self) -> None:
        # While a secret rolls, Stripe signs with the expiring and the new secret.
        event = fresh_event("charge.succeeded")
        body = event_body(event)
        now = int(time.time())
        old = sign_payload(body, "whsec_expired_and_removed", now).split(",")[1]
        new = sign_payload(body, self.secrets[1], now).split(",")[1]
        answer = self.deliver(body, f"t={now},{old},{new}")
        assert answer.status == 200, answer
        assert self.stored_event(event["id"]) is not None

    def test_timestamp_just_within_tolerance(self) -> None:
        event = fresh_event("charge.succeeded")
        body = event_body(event)
        answer = self.deliver(body, sign_payload(body, self.secret, int(time.time()) - 240))
        assert answer.status == 200, answer

    def test_body_of_exactly_max_bytes(self) -> None:
        event = fresh_event("charge.succeeded")
        body = event_body(event)
        body += b" " * (self.max_bytes - len(body))  # JSON allows trailing whitespace
        answer = self.deliver(body, sign_payload(body, self.secret))
        assert answer.status == 200, answer

    def test_duplicate_delivery_changes_nothing(self) -> None:
        event = fresh_event("charge.succeeded")
        first = self.deliver_event(event)
        assert first.json == {"received": True, "duplicate": False}
        row = self.stored_event(event["id"])
        before = self.stored_count()

        second = self.deliver_event(event)
        assert second.status == 200, second
        assert second.json == {"received": True, "duplicate": True}

        # Even a repeat that claims something else changes nothing: the first one stands.
        altered = {**event, "type": "charge.failed"}
        third = self.deliver_event(altered)
        assert third.json == {"received": True, "duplicate": True}
        after = self.stored_event(event["id"])
        # The first delivery's own publishing may set published_at meanwhile (on the lean
        # path it follows the answer); the repeats change nothing else.
        assert after is not None and row is not None
        assert {**after, "published_at": None} == {**row, "published_at": None}
        assert self.stored_count() == before
        assert self.transaction_status(row["transaction_id"]) == "succeeded"

    # -- refused: signature ----------------------------------------------------------------

    def test_missing_signature(self) -> None:
        before = self.stored_count()
        answer = self.deliver(event_body(fresh_event("charge.succeeded")), None)
        self.assert_refused(answer, before=before)
        assert "Stripe-Signature" in answer.json["error"]["message"]

    @pytest.mark.parametrize(
        "header",
        [
            "nonsense",
            "t=,v1=abc",
            "t=12ab,v1=abc",
            "v1=abc",
            "t=1700000000",
            "t=1700000000,v0=abc",
            "t=1700000000,t=1700000001,v1=abc",
            ",,,",
            "t=1700000000," + "v1=abc," * 1000,
        ],
        ids=[
            "garbage",
            "empty-t",
            "non-numeric-t",
            "no-t",
            "no-v1",
            "only-v0",
            "two-t",
            "commas",
            "too-long",
        ],
    )
    def test_malformed_signature(self, header: str) -> None:
        before = self.stored_count()
        answer = self.deliver(event_body(fresh_event("charge.succeeded")), header)
        self.assert_refused(answer, before=before)

    def test_wrong_secret(self) -> None:
        before = self.stored_count()
        answer = self.deliver_event(fresh_event("charge.succeeded"), secret="whsec_not_ours")
        self.assert_refused(answer, before=before)
        assert "WEBHOOK_SECRETS" in answer.json["error"]["message"]

    def test_stale_signature(self) -> None:
        before = self.stored_count()
        body = event_body(fresh_event("charge.succeeded"))
        old = int(time.time()) - self.tolerance - 60
        answer = self.deliver(body, sign_payload(body, self.secret, old))
        self.assert_refused(answer, before=before)
        assert "old" in answer.json["error"]["message"]

    def test_future_dated_signature(self) -> None:
        before = self.stored_count()
        body = event_body(fresh_event("charge.succeeded"))
        future = int(time.time()) + self.tolerance + 60
        answer = self.deliver(body, sign_payload(body, self.secret, future))
        self.assert_refused(answer, before=before)
        assert "future" in answer.json["error"]["message"]

    def test_event_created_beyond_the_tolerance_ahead_of_the_clock_is_refused(self) -> None:
        """An event "created" in 2100 would outrank every later event of its payment, and
        freeze its status: it is refused, and the true events that follow are read."""
        before = self.stored_count()
        intent = f"pi_future_{uuid.uuid4().hex[:12]}"
        future = fresh_event("payment_intent.requires_action", obj={"id": intent})
        future["created"] = 4_102_444_800  # 2100-01-01
        answer = self.deliver_event(future)
        self.assert_refused(answer, before=before)
        assert answer.json["error"]["code"] == "invalid_event"
        assert "ahead of the server's clock" in answer.json["error"]["message"]
        succeeded = fresh_event("payment_intent.succeeded", obj={"id": intent})
        succeeded["created"] = int(time.time())
        assert self.deliver_event(succeeded).status == 200
        assert self.transaction_status(intent) == "succeeded"

    def test_event_created_just_within_the_tolerance_ahead_is_stored(self) -> None:
        event = fresh_event("charge.succeeded")
        event["created"] = int(time.time()) + self.tolerance - 30
        answer = self.deliver_event(event)
        assert answer.status == 200, answer
        assert self.stored_event(event["id"]) is not None

    def test_tampered_body(self) -> None:
        before = self.stored_count()
        event = fresh_event("charge.succeeded")
        body = event_body(event)
        signature = sign_payload(body, self.secret)
        tampered = body.replace(b'"livemode": false', b'"livemode": true', 1)
        assert tampered != body
        answer = self.deliver(tampered, signature)
        self.assert_refused(answer, before=before)

    # -- refused: not an event -------------------------------------------------------------

    @pytest.mark.parametrize(
        "body",
        [b"", b"not json", b"{'id': 'evt_1'}", b'{"id": "evt_1"', b"\xff\xfe\x00"],
        ids=["empty", "text", "python-repr", "truncated", "binary"],
    )
    def test_body_that_is_not_json(self, body: bytes) -> None:
        before = self.stored_count()
        answer = self.deliver(body, sign_payload(body, self.secret))
        self.assert_refused(answer, before=before)

    @pytest.mark.parametrize(
        "shape",
        [
            "array",
            "string",
            "number",
            "null",
            "empty-object",
            "charge-not-event",
            "id-not-evt",
            "object-not-event",
            "no-type",
            "type-not-string",
            "created-string",
            "created-bool",
            "created-float",
            "no-data",
            "data-object-not-object",
            "event-in-a-list",
        ],
    )
    def test_json_that_is_not_an_event(self, shape: str) -> None:
        event = fresh_event("charge.succeeded")
        shapes: dict[str, Any] = {
            "array": [1, 2],
            "string": "evt_123",
            "number": 42,
            "null": None,
            "empty-object": {},
            "charge-not-event": event["data"]["object"],
            "id-not-evt": {**event, "id": "ch_123"},
            "object-not-event": {**event, "object": "charge"},
            "no-type": {k: v for k, v in event.items() if k != "type"},
            "type-not-string": {**event, "type": ["charge.succeeded"]},
            "created-string": {**event, "created": str(event["created"])},
            "created-bool": {**event, "created": True},
            "created-float": {**event, "created": event["created"] + 0.5},
            "no-data": {k: v for k, v in event.items() if k != "data"},
            "data-object-not-object": {**event, "data": {"object": "ch_1"}},
            "event-in-a-list": [event],
        }
        before = self.stored_count()
        body = json.dumps(shapes[shape]).encode()
        answer = self.deliver(body, sign_payload(body, self.secret))
        self.assert_refused(answer, before=before)
        assert self.stored_event(event["id"]) is None

    # -- refused: size ---------------------------------------------------------------------

    def test_oversized_body(self) -> None:
        before = self.stored_count()
        event = fresh_event("charge.succeeded")
        body = event_body(event)
        body += b" " * (self.max_bytes + 1 - len(body))
        answer = self.deliver(body, sign_payload(body, self.secret))
        self.assert_refused(answer, 413, before=before)
        assert "WEBHOOK_MAX_BYTES" in answer.json["error"]["message"]
        assert self.stored_event(event["id"]) is None
