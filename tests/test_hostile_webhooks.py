"""Hostile (and odd but signed) webhook deliveries: 200 or a 4xx that names the problem.

A signed body is trusted to come from Stripe, not to be well formed: whatever it holds, the
answer is never a 500 and never a 503 that would make Stripe retry a request that can never
succeed. A refused request stores nothing; an accepted one is published without errors.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_stripe_bridge.events import MAX_TIMESTAMP
from django_stripe_bridge.ingest import ingest_event
from django_stripe_bridge.models import StripeEvent, StripeTransaction
from tests.factories import charge_object, make_event
from tests.webhook_fixtures import *  # noqa: F403
from tests.webhook_fixtures import sign_payload

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/services/Stripe/webhooks/handler"
SECRET = "whsec_tests_primary"  # tests/settings.py


def deliver(body: bytes | str, signature: str | None = None, **extra: Any) -> Any:
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if signature is None:
        signature = sign_payload(body, SECRET)
    return Client().generic(
        "POST", URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature, **extra
    )


def assert_refused(response: Any, status: int = 400, *, says: str = "") -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json"
    error = json.loads(response.content)["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert says.lower() in error["message"].lower(), error
    return error


def event(event_id: str, **changes: Any) -> dict[str, Any]:
    obj = changes.pop("obj", {})
    evt = make_event("charge.succeeded", charge_object(f"ch_{event_id}", **obj), event_id=event_id)
    evt.update(changes)
    return evt


def body_of(evt: Any) -> str:
    return json.dumps(evt)  # ASCII: lone surrogates travel as \ud800 escapes


# --- created -----------------------------------------------------------------------------------


@pytest.mark.parametrize("created", [MAX_TIMESTAMP + 1, 10**30, 2**63])
def test_a_created_past_year_9999_is_a_400_naming_it(created):
    response = deliver(body_of(event("evt_late", created=created)))
    assert_refused(response, says="created")
    assert StripeEvent.objects.count() == 0


def test_the_last_second_of_year_9999_is_storable_but_no_webhook_brings_it():
    """The webhook refuses an event from the future; the model holds the last second."""
    response = deliver(body_of(event("evt_last", created=MAX_TIMESTAMP)))
    assert_refused(response, says="ahead of the server's clock")
    ingest_event(event("evt_last", created=MAX_TIMESTAMP), publish=False)
    assert StripeEvent.objects.get().created_timestamp == MAX_TIMESTAMP


# --- text no database can store ----------------------------------------------------------------

UNSTORABLE = [
    pytest.param({"id": "evt_\ud800"}, "'id'", id="surrogate-in-id"),
    pytest.param({"id": "evt_nul\x00"}, "'id'", id="nul-in-id"),
    pytest.param({"type": "charge.\udfff"}, "'type'", id="surrogate-in-type"),
    pytest.param({"type": "charge.\x00"}, "'type'", id="nul-in-type"),
    pytest.param({"api_version": "\ud800"}, "api_version", id="surrogate-in-api-version"),
    pytest.param({"obj": {"id": "ch_\ud800"}}, "data.object.id", id="surrogate-in-object-id"),
    pytest.param({"obj": {"id": "ch_\x00"}}, "data.object.id", id="nul-in-object-id"),
    pytest.param({"obj": {"currency": "\x00\x00\x00"}}, "currency", id="nul-in-currency"),
    pytest.param({"obj": {"description": "a\x00b"}}, "description", id="nul-in-a-value"),
    pytest.param({"obj": {"description": "\udc00"}}, "description", id="surrogate-in-a-value"),
    pytest.param({"obj": {"metadata": {"\x00": "x"}}}, "metadata", id="nul-in-a-key"),
    pytest.param({"obj": {"metadata": {"\ud800": "x"}}}, "metadata", id="surrogate-in-a-key"),
    pytest.param({"obj": {"refunds": ["ok", "\ud800"]}}, "refunds[1]", id="in-a-list"),
]


@pytest.mark.parametrize(("changes", "where"), UNSTORABLE)
def test_text_no_database_can_store_is_a_400_naming_where(changes, where):
    response = deliver(body_of(event("evt_text", **copy.deepcopy(changes))))
    assert_refused(response, says=where)
    assert StripeEvent.objects.count() == 0
    assert StripeTransaction.objects.count() == 0


def test_printable_unicode_is_stored():
    evt = event("evt_uni", obj={"description": "\u202eRTL \U0001f600 é", "metadata": {"ключ": "✓"}})
    assert deliver(body_of(evt)).status_code == 200
    stored = StripeEvent.objects.get().payload["data"]["object"]
    assert stored["description"] == "\u202eRTL \U0001f600 é"


# --- numbers JSON cannot hold --------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_a_non_finite_number_is_a_400(literal):
    text = body_of(event("evt_nan", obj={"amount": 1})).replace(
        '"amount": 1', f'"amount": {literal}'
    )
    assert literal in text
    response = deliver(text)
    assert_refused(response, says="amount")
    assert StripeEvent.objects.count() == 0


def test_deeply_nested_json_is_a_400():
    text = body_of(event("evt_deep", obj={"x": "HOLE"})).replace(
        '"HOLE"', "[" * 100_000 + "]" * 100_000
    )
    response = deliver(text)
    assert_refused(response, says="nested")
    assert StripeEvent.objects.count() == 0


# --- odd types where the bridge reads a field ----------------------------------------------


@pytest.mark.parametrize("value", [["charge"], {"a": 1}, 5, None], ids=repr)
def test_data_object_object_must_be_a_string(value):
    response = deliver(body_of(event("evt_obj", obj={"object": value})))
    if value is None:
        # Absent or null: an object the bridge does not know; stored, no transaction.
        assert response.status_code == 200
        return
    assert_refused(response, says="data.object.object")
    assert StripeEvent.objects.count() == 0


@pytest.mark.parametrize("status", [["succeeded"], {"s": 1}, 5, None], ids=repr)
@pytest.mark.parametrize("event_type", ["payment_intent.succeeded", "charge.dispute.closed"])
def test_an_odd_status_is_stored_and_sets_no_status(event_type, status):
    obj = {"id": "pi_odd", "object": "payment_intent", "status": status, "amount": 1000}
    if event_type == "charge.dispute.closed":
        obj = {"id": "dp_odd", "object": "dispute", "charge": "ch_disp", "status": status}
    response = deliver(body_of(make_event(event_type, obj, event_id="evt_status")))
    assert response.status_code == 200, response.content
    assert StripeEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", 10**30),
        ("amount", -(10**19)),
        ("amount", 2**63),
        ("amount", True),
        ("amount_refunded", 10**30),
        ("amount_refunded", True),
    ],
)
def test_an_amount_out_of_range_or_boolean_is_stored_but_not_taken(field, value):
    evt = event("evt_amount", obj={field: value})
    if field == "amount_refunded":
        evt["type"] = "charge.refunded"
    response = deliver(body_of(evt))
    assert response.status_code == 200, response.content
    tx = StripeTransaction.objects.get(pk="ch_evt_amount")
    if field == "amount":
        assert tx.amount is None  # not 1 for true, not a number the column cannot hold
    else:
        assert tx.amount_refunded == 0


# --- Stripe-Signature -------------------------------------------------------------------------


def test_a_validly_signed_absurd_timestamp_is_a_400_not_a_503():
    body = body_of(event("evt_t"))
    response = deliver(body, sign_payload(body.encode(), SECRET, timestamp=10**400))
    assert_refused(response, says="Stripe-Signature")
    assert StripeEvent.objects.count() == 0


def test_an_over_long_signature_header_says_so():
    body = body_of(event("evt_long"))
    header = sign_payload(body.encode(), SECRET) + ",v1=" + "0" * 64 * 5000
    assert_refused(deliver(body, header), says="longer than")


def test_many_signatures_in_a_header_of_normal_size_still_verify():
    body = body_of(event("evt_many"))
    good = sign_payload(body.encode(), SECRET)
    timestamp, v1 = good.split(",")
    header = ",".join([timestamp, *["v1=" + "0" * 64] * 50, v1])
    assert deliver(body, header).status_code == 200


# --- methods -------------------------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"])
def test_other_methods_are_a_json_405(method, slash):
    response = Client().generic(method, URL + slash)
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response["Allow"] == "POST"
    if method != "HEAD":
        assert "POST" in json.loads(response.content)["error"]["message"]


# --- anything, signed --------------------------------------------------------------------------

odd_text = st.one_of(
    st.text(max_size=6), st.sampled_from(["\ud800", "\x00", "evt_", "charge", "ch_1", "pi_1"])
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        odd_text,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(odd_text, inner, max_size=3)
    ),
    max_leaves=6,
)
EVENT_FIELDS = ["id", "object", "type", "created", "livemode", "api_version", "data"]
OBJECT_FIELDS = ["id", "object", "amount", "amount_refunded", "currency", "status"]
OBJECT_FIELDS += ["payment_intent", "charge", "last_payment_error", "outcome", "paid"]
TYPES = ["charge.succeeded", "charge.refunded", "charge.dispute.closed", "refund.created"]
TYPES += ["payment_intent.succeeded", "payment_intent.payment_failed", "customer.created"]


@st.composite
def odd_events(draw: Any) -> Any:
    """A Stripe-shaped event with some of its fields (or its object's) replaced by anything."""
    evt = make_event(
        draw(st.sampled_from(TYPES)),
        charge_object(draw(st.sampled_from(["ch_h1", "pi_h1", "ch_h2"]))),
        event_id=f"evt_h{draw(st.integers(0, 10**9))}",
    )
    for name in draw(st.lists(st.sampled_from(OBJECT_FIELDS), max_size=3)):
        evt["data"]["object"][name] = draw(json_values)
    for name in draw(st.lists(st.sampled_from(EVENT_FIELDS), max_size=1)):
        evt[name] = draw(json_values)
    return draw(st.one_of(st.just(evt), json_values))


@hypothesis_settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(evt=odd_events())
def test_any_signed_json_is_200_or_400_and_a_400_stores_nothing(evt, caplog):
    caplog.clear()
    before = StripeEvent.objects.count()
    response = deliver(body_of(evt))
    assert response.status_code in (200, 400), (response.status_code, response.content)
    if response.status_code == 400:
        assert StripeEvent.objects.count() == before
        return
    # Stored and published (after commit): nothing after the commit failed either.
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not failures, [r.getMessage() for r in failures]
    row = StripeEvent.objects.get(event_id=evt["id"])
    assert row.published_at is not None
    if StripeTransaction.objects.filter(pk=row.transaction_id).exists():
        tx_url = f"/api/services/Stripe/transactions/{quote(row.transaction_id, safe='')}"
        if "/" not in row.transaction_id:  # ids with a slash cannot be polled
            assert Client().get(tx_url).status_code == 200


@hypothesis_settings(max_examples=60, deadline=None)
@given(raw=st.binary(max_size=80))
def test_any_signed_bytes_are_200_or_400(raw):
    response = deliver(raw, sign_payload(raw, SECRET, timestamp=int(time.time())))
    assert response.status_code in (200, 400), (response.status_code, response.content)
