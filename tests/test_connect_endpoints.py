"""Several webhook endpoints, each with its own secrets: while a secret is rotated both the
old and the new one sign for their endpoint, on the view and on the lean ASGI path, and no
other endpoint's secret (nor the platform's) does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings
from django.urls import reverse

from django_stripe_bridge.asgi import with_stripe_webhook
from django_stripe_bridge.models import StripeEvent
from django_stripe_bridge.testing import sign_payload
from tests.factories import charge_object, make_event
from tests.test_webhook_asgi import PATH, call, site

PLATFORM = "whsec_ep_platform"
OLD, NEW = "whsec_ep_connect_old", "whsec_ep_connect_new"
OTHER = "whsec_ep_thin"
SETTINGS = {
    "WEBHOOK_SECRETS": [PLATFORM],
    "WEBHOOK_ENDPOINTS": {"connect": [OLD, NEW], "thin": [OTHER]},
}


def connect_event(charge_id: str) -> bytes:
    event = make_event("charge.succeeded", charge_object(charge_id))
    event["account"] = "acct_1Rotating"
    return json.dumps(event).encode()


@pytest.mark.django_db(transaction=True)
@override_settings(STRIPE_BRIDGE=SETTINGS)
def test_both_secrets_of_an_endpoint_sign_while_rotating_and_no_other_does(client: Any) -> None:
    url = reverse("stripe_bridge:webhook-endpoint", args=["connect"])
    app = with_stripe_webhook(site)
    lean = PATH.rpartition("/")[0] + "/connect"

    def by_view(body: bytes, secret: str) -> int:
        signature = sign_payload(body, secret)
        answer = client.post(
            url, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
        )
        assert secret not in answer.content.decode()
        return int(answer.status_code)

    def by_lean_path(body: bytes, secret: str) -> int:
        answer = async_to_sync(call)(
            app, body, {"stripe-signature": sign_payload(body, secret)}, path=lean
        )
        return int(answer.status)

    for number, send in enumerate((by_view, by_lean_path)):
        for secret in (PLATFORM, OTHER, "whsec_unknown"):
            assert send(connect_event(f"ch_refused{number}"), secret) == 400, secret
        assert send(connect_event(f"ch_old{number}"), OLD) == 200
        assert send(connect_event(f"ch_new{number}"), NEW) == 200
    stored = StripeEvent.objects.all()
    assert sorted(e.transaction_id for e in stored) == ["ch_new0", "ch_new1", "ch_old0", "ch_old1"]
    assert {e.account for e in stored} == {"acct_1Rotating"}
