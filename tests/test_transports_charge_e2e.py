"""Charge → live status on both transports (issue 18), end to end with real parts: a charge
POSTed through the bridge's API to the offline Stripe stand-in, the stand-in's signed
webhook to a live Daphne or Uvicorn process, and a websocket or Server-Sent Events
subscriber that sees the charge's status arrive live.

The stand-in sends its webhooks ``WEBHOOK_DELAY`` seconds after the event, so the
subscriber (which subscribes as soon as the charge's id is known, as the demo page does)
is subscribed before the webhook arrives: the status it gets is live, not replayed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests import services
from tests.live import LiveServer, free_port, run_server
from tests.realtime_fixtures import unique_prefix
from tests.transports import TRANSPORTS, open_stream

pytestmark = [pytest.mark.redis, pytest.mark.standin]

#: Seconds between a Stripe event and its webhook: time enough to subscribe.
WEBHOOK_DELAY = 3.0
CHARGE_PATH = "/api/services/Stripe/charge"


@pytest.fixture(scope="module")
def site(server_kind: str, redis_url: str) -> Iterator[LiveServer]:
    """A live server whose Stripe is the stand-in, its webhook registered."""
    services.require_module("localstripe", "the demo extra (localstripe) is not installed")
    from django_stripe_bridge.testing import TEST_API_KEY, run_stripe_standin

    port = free_port()
    secret = "whsec_" + secrets.token_hex(16)
    with run_stripe_standin(webhook_delay=WEBHOOK_DELAY) as standin:
        standin.register_webhook(
            f"http://127.0.0.1:{port}/api/services/Stripe/webhooks/handler", secret
        )
        env = {
            "STRIPE_API_KEY": TEST_API_KEY,
            "STRIPE_API_BASE": standin.base_url,
            "STRIPE_WEBHOOK_SECRET": secret,
            "REDIS_URL": redis_url,
            "CHANNELS_REDIS_PREFIX": unique_prefix(),
        }
        with run_server(server_kind, env, port=port) as server:
            yield server


def post_charge(server: LiveServer, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        server.url + CHARGE_PATH,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("token", "answer", "event", "status"),
    [
        ("tok_visa", 200, "charge.succeeded", "succeeded"),
        ("tok_chargeDeclined", 402, "charge.failed", "failed"),
    ],
    ids=["succeeded", "declined"],
)
async def test_a_charge_s_status_arrives_live(site, transport, token, answer, event, status):
    code, charge = await asyncio.to_thread(
        post_charge, site, {"amount": 1234, "currency": "usd", "token": token}
    )
    assert code == answer, charge
    charge_id = charge["id"] if code == 200 else charge["error"]["charge"]
    assert charge_id.startswith("ch_"), charge
    conn = await open_stream(transport, site, f"id = '{charge_id}'", "latest")
    assert (await conn.recv())["type"] == "subscribed"
    frame = await conn.recv(timeout=WEBHOOK_DELAY + 15)
    assert (frame["type"], frame["replayed"]) == ("message", False), frame
    assert frame["headers"]["id"] == charge_id
    assert (frame["headers"]["type"], frame["headers"]["status"]) == (event, status)
    assert frame["headers"]["amount"] == 1234
    await conn.close()
