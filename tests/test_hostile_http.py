"""Hostile input to the HTTP API: every answer is a 4xx (or 502/503) in the error shape.

Never a 500, an HTML page, a traceback, a secret or a half-written row; the message names
what is wrong. The webhook has its own module (``test_hostile_webhooks.py``).
"""

from __future__ import annotations

import bz2
import gzip
import json
import zlib
from typing import Any

import pytest
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_stripe_bridge.models import StripeTransaction
from django_stripe_bridge.views import bridge_exception_handler
from tests.charge_fixtures import *  # noqa: F403
from tests.charge_fixtures import API, bridge_settings_for
from tests.factories import StripeTransactionFactory

pytestmark = pytest.mark.django_db

VISA = {"token": "tok_visa", "amount": 1000}
JSON_TYPES = ("application/json",)


def assert_error(response: Any, status: int | tuple[int, ...], *, says: str = "") -> dict:
    """``response`` is ``status`` with a JSON ``{"error": {...}}`` body; its ``error``."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.content[:300])
    assert response["Content-Type"].split(";")[0] in JSON_TYPES, response["Content-Type"]
    body = json.loads(response.content)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["type"], str) and error["type"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert "Traceback" not in error["message"]
    assert says.lower() in error["message"].lower(), error
    return error


def post_raw(client: Any, path: str, body: bytes, content_type: str = "application/json", **kw):
    return client.generic("POST", f"{API}/{path}", body, content_type=content_type, **kw)


@pytest.fixture
def no_stripe_key(settings: Any) -> None:
    """No API key: a body that passes validation is answered 503, never sent anywhere."""
    bridge_settings_for(settings, API_KEY=None, CHARGE_THROTTLE_RATE=None)


# --- lone surrogates (JSON "\ud800" escapes) --------------------------------------------------

SURROGATE_BODIES = [
    pytest.param({**VISA, "metadata": {"\ud800": "x"}}, "metadata", id="metadata-key"),
    pytest.param({**VISA, "metadata": {"order": "a\udfffb"}}, "metadata", id="metadata-value"),
    pytest.param({**VISA, "tok\ud800en": "x"}, "body", id="unknown-parameter-name"),
    pytest.param({**VISA, "description": "\ud83d"}, "description", id="description"),
    pytest.param([{**VISA, "metadata": {"k": ["\udc00"]}}], "metadata", id="in-array-body"),
]


@pytest.mark.parametrize("path", ["charge", "payment-intents"])
@pytest.mark.parametrize(("body", "where"), SURROGATE_BODIES)
def test_a_lone_surrogate_anywhere_is_a_400_that_says_so(no_stripe_key, client, path, body, where):
    if path == "payment-intents":
        body = json.loads(json.dumps(body).replace('"token": "tok_visa", ', ""))
    response = post_raw(client, path, json.dumps(body).encode())
    error = assert_error(response, 400, says="surrogate")
    assert where in error["message"] or error.get("param") == where
    assert StripeTransaction.objects.count() == 0


def test_a_real_astral_character_is_fine(no_stripe_key, client):
    # A surrogate *pair* is one character (U+1F600) and must not be mistaken for a lone one.
    body = {**VISA, "description": "\U0001f600", "metadata": {"emoji": "\U0001f600"}}
    response = post_raw(client, "charge", json.dumps(body).encode())
    assert_error(response, 503)  # valid: only the missing key is left


# --- charsets and encodings ------------------------------------------------------------------

BOMB = zlib.compress(b'{"token": "tok_visa", "amount": 1000' + b" " * 5_000_000 + b"}")


@pytest.mark.parametrize(
    ("charset", "body"),
    [
        ("zlib", BOMB),
        ("zlib_codec", zlib.compress(json.dumps(VISA).encode())),
        ("bz2", bz2.compress(json.dumps(VISA).encode())),
        ("base64", b"eyJ0b2tlbiI6ICJ0b2tfdmlzYSIsICJhbW91bnQiOiAxMDAwfQ=="),
        ("hex", json.dumps(VISA).encode().hex().encode()),
        ("rot13", json.dumps(VISA).encode()),
        ("uu", json.dumps(VISA).encode()),
        ("punycode", b"\xff"),
        ("idna", b"\xff" * 70),
    ],
)
def test_a_charset_that_is_not_a_text_encoding_is_refused(no_stripe_key, client, charset, body):
    # bytes-to-bytes codecs would decompress a small body into a huge one (past the 64 KiB
    # limit) or fail with a TypeError; they are not text encodings.
    response = post_raw(client, "charge", body, content_type=f"application/json; charset={charset}")
    assert_error(response, (400, 415), says=charset)


def test_latin_1_and_utf_16_bodies_still_work(no_stripe_key, client):
    for charset in ("latin-1", "utf-16"):
        response = post_raw(
            client,
            "charge",
            json.dumps(VISA).encode(charset),
            content_type=f"application/json; charset={charset}",
        )
        # Valid, so the missing key is the only problem left.
        assert_error(response, 503)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_a_compressed_body_is_415_naming_the_content_encoding(no_stripe_key, client, encoding):
    response = post_raw(
        client, "charge", gzip.compress(json.dumps(VISA).encode()), HTTP_CONTENT_ENCODING=encoding
    )
    assert_error(response, 415, says="Content-Encoding")


def test_identity_content_encoding_is_fine(no_stripe_key, client):
    response = post_raw(
        client, "charge", json.dumps(VISA).encode(), HTTP_CONTENT_ENCODING="identity"
    )
    assert_error(response, 503)


# --- size ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64 * 1024 + 1, 3 * 1024 * 1024, 10 * 1024 * 1024])
@pytest.mark.parametrize("path", ["charge", "payment-intents"])
def test_a_large_body_is_413_not_read_whole(no_stripe_key, client, path, size):
    # Past DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) Django refused reading the whole body, which
    # DRF does for JSONParser subclasses: that was a 500.
    response = post_raw(client, path, b"[" + b" " * size + b"]")
    assert_error(response, 413, says="larger than 65536 bytes")


@pytest.mark.parametrize(
    ("exc", "status"),
    [(RequestDataTooBig("too big"), 413), (SuspiciousOperation("odd"), 400)],
    ids=["data-too-big", "suspicious"],
)
def test_djangos_refusals_of_a_request_keep_their_4xx(exc, status):
    # E.g. a middleware or a project parser that reads request.body past
    # DATA_UPLOAD_MAX_MEMORY_SIZE: Django's own answer would be a 400, not a 500.
    response = bridge_exception_handler(exc, {})
    assert response.status_code == status
    assert set(response.data["error"]) >= {"type", "message", "code"}


# --- metadata: NUL like description ---------------------------------------------------------


@pytest.mark.parametrize("metadata", [{"a\x00": "x"}, {"a": "x\x00y"}], ids=["key", "value"])
def test_a_nul_character_in_metadata_is_a_400(no_stripe_key, client, metadata):
    response = post_raw(client, "charge", json.dumps({**VISA, "metadata": metadata}).encode())
    error = assert_error(response, 400, says="NUL")
    assert error["param"].startswith("metadata")


# --- transactions/<id> --------------------------------------------------------------------------

ODD_IDS = ["a" * 256, "x" * 5000, "ch-1", "ch.1", "ch%20x", "%E2%80%AE", "ch_1;x", "%00", "%ff"]


@pytest.mark.parametrize("slash", ["", "/"])
@pytest.mark.parametrize("tx_id", ODD_IDS, ids=lambda t: t[:12])
def test_any_transaction_id_is_a_json_404(client, tx_id, slash):
    response = client.get(f"{API}/transactions/{tx_id}{slash}")
    error = assert_error(response, 404)
    assert error["code"] == "resource_missing"
    assert len(error["message"]) < 200  # a 5,000-character id is not echoed whole


@pytest.mark.parametrize("method", ["put", "delete", "post", "patch"])
def test_other_methods_on_an_odd_transaction_id_are_json(client, method):
    response = getattr(client, method)(f"{API}/transactions/ch-1.x")
    assert_error(response, 405)


def test_a_transaction_whose_id_is_not_alphanumeric_can_be_polled(client):
    # Stripe ids are alphanumeric, but an event (or a stand-in) may carry another: knowing
    # the id is enough, whatever it is.
    StripeTransactionFactory(id="ch-odd.1")
    response = client.get(f"{API}/transactions/ch-odd.1")
    assert response.status_code == 200
    assert response.json()["id"] == "ch-odd.1"


# --- schema ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["xyz", "JSON", "html", "api", "%00"])
def test_an_unknown_schema_format_is_406_naming_it(client, fmt):
    response = client.get(f"{API}/schema?format={fmt}")
    error = assert_error(response, 406, says="format")
    assert "json" in error["message"] and "yaml" in error["message"]


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "a/" + "b" * 300])
def test_an_unsatisfiable_accept_header_on_the_schema_is_a_json_406(client, accept):
    response = client.get(f"{API}/schema", HTTP_ACCEPT=accept)
    assert_error(response, 406, says="Accept")


@pytest.mark.parametrize("slash", ["", "/"])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_other_methods_on_the_schema_are_a_json_405(client, method, slash):
    response = getattr(client, method)(f"{API}/schema{slash}")
    assert_error(response, 405, says=method.upper())


def test_the_schema_still_serves_yaml_and_json(client):
    assert client.get(f"{API}/schema").content.startswith(b"openapi:")
    assert client.get(f"{API}/schema?format=json").json()["openapi"].startswith("3.")
    paths = client.get(f"{API}/schema?format=json").json()["paths"]
    assert "/api/services/Stripe/transactions/{transaction_id}" in paths


# --- throttle ----------------------------------------------------------------------------------


def test_x_forwarded_for_does_not_escape_the_throttle_without_num_proxies(client, settings):
    # Without NUM_PROXIES the client address is REMOTE_ADDR (docs/http-api.md): a client
    # that makes up a new X-Forwarded-For for every request is still one client.
    bridge_settings_for(settings, API_KEY=None, CHARGE_THROTTLE_RATE="2/min")
    cache.clear()
    statuses = [
        post_raw(
            client, "charge", json.dumps(VISA).encode(), HTTP_X_FORWARDED_FOR=f"10.0.0.{i}"
        ).status_code
        for i in range(3)
    ]
    assert statuses == [503, 503, 429]
    cache.clear()


def test_num_proxies_still_takes_the_client_from_x_forwarded_for(client, settings):
    bridge_settings_for(settings, API_KEY=None, CHARGE_THROTTLE_RATE="1/min")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    cache.clear()
    first = post_raw(client, "charge", b"{}", HTTP_X_FORWARDED_FOR="10.9.0.1")
    second = post_raw(client, "charge", b"{}", HTTP_X_FORWARDED_FOR="10.9.0.2")
    again = post_raw(client, "charge", b"{}", HTTP_X_FORWARDED_FOR="10.9.0.1")
    assert (first.status_code, second.status_code, again.status_code) == (400, 400, 429)
    cache.clear()


# --- any JSON at all ---------------------------------------------------------------------------

odd_text = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["\ud800", "a\udfff", "\x00", "\u202e", "tok_visa", "pm_card_visa", "usd"]),
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        odd_text,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(odd_text, inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ["token", "amount", "currency", "description", "metadata", "receipt_email"]
FIELDS += ["payment_method", "confirm"]
near_valid = st.fixed_dictionaries(
    {},
    optional={
        "token": st.one_of(st.just("tok_visa"), json_values),
        "amount": st.one_of(st.just(1000), json_values),
        **{name: json_values for name in FIELDS[2:]},
    },
)
bodies = st.one_of(json_values, near_valid, st.lists(near_valid, min_size=1, max_size=2))


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, path=st.sampled_from(["charge", "payment-intents"]))
def test_any_json_body_is_answered_4xx_or_503_in_the_error_shape(no_stripe_key, client, body, path):
    raw = json.dumps(body).encode()  # ASCII: surrogates travel as \ud800 escapes
    response = post_raw(client, path, raw)
    # 503: the body was valid, and the bridge has no key (so nothing is sent anywhere).
    assert_error(response, (400, 413, 503))
    assert StripeTransaction.objects.count() == 0


@hypothesis_settings(max_examples=60, deadline=None)
@given(raw=st.binary(max_size=64))
def test_any_bytes_are_answered_4xx_in_the_error_shape(raw):
    from django.test import Client

    assert_error(post_raw(Client(), "charge", raw), 400)
