"""schemathesis hooks for ``tests/test_schemathesis.py`` (loaded through SCHEMATHESIS_HOOKS).

A webhook's ``Stripe-Signature`` is an HMAC of the exact body with the endpoint's secret:
no schema can say that. For a case whose generated header has the documented shape, the
hook signs the body as Stripe does (with the secret in STRIPE_BRIDGE_TEST_WEBHOOK_SECRET),
so positive cases reach the event checks; a missing or malformed header is left as
generated, so negative cases still test the refusal.

An ``Idempotency-Key`` belongs to the client that first sends it: the schema's one example
key, sent with every example, would make every case after the first a 409. A valid key is
made unique per case (one key per payment attempt, as clients are told); an invalid one is
left as generated.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from typing import Any

import schemathesis

from django_stripe_bridge.testing import sign_payload

# As django_stripe_bridge.schema says (not imported: it needs Django's settings).
_VALID_KEY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_KEY_MAX_LENGTH = 255
_SHAPE = re.compile(r"t=[0-9]{1,12}(,v1=[0-9a-f]{64})+")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    if case.path.endswith(("/charge", "/payment-intents", "/checkout-sessions")):
        _one_key_per_case(case)
    if not case.path.endswith("/webhooks/handler"):
        return
    header = (case.headers or {}).get("Stripe-Signature")
    if not isinstance(header, str) or not _SHAPE.fullmatch(header):
        return
    # What the requests library sends for this body: bytes as they are, anything else as
    # json.dumps with its defaults writes it.
    if isinstance(case.body, bytes):
        body = case.body
    elif case.body is None:
        body = b"null"
    else:
        try:
            body = json.dumps(case.body, allow_nan=False).encode()
        except (TypeError, ValueError):
            return  # not JSON (a negative case): sent unsigned, refused as such

    secret = os.environ["STRIPE_BRIDGE_TEST_WEBHOOK_SECRET"]
    case.headers["Stripe-Signature"] = sign_payload(body, secret, timestamp=int(time.time()))


def _one_key_per_case(case: Any) -> None:
    key = (case.headers or {}).get("Idempotency-Key")
    if not isinstance(key, str) or not _VALID_KEY.fullmatch(key) or len(key) > _KEY_MAX_LENGTH:
        return
    suffix = "-" + uuid.uuid4().hex[:8]
    case.headers["Idempotency-Key"] = key[: _KEY_MAX_LENGTH - len(suffix)] + suffix
