"""The OpenAPI schema is the contract: schemathesis finds no difference (issue 10, item 3).

schemathesis (its CLI, as a client developer would run it) reads the bridge's schema from a
live server and runs every phase it has for a plain OpenAPI document (examples, coverage,
fuzzing) with all its checks: no server error, responses and status codes as the schema
says, data the schema allows accepted and data it refuses refused. Zero failures, zero
errors, zero warnings ("validation mismatch" among them).

Stripe is a fake on loopback that answers any well-formed create call (the stand-in would
refuse a token it does not know, which no schema can describe); the webhook's signature is
computed by ``tests/schemathesis_hooks.py``.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache

from django_stripe_bridge.schema import EXAMPLE_TRANSACTION_ID
from tests import fake_stripe, services
from tests.charge_fixtures import TEST_API_KEY, bridge_settings_for
from tests.factories import StripeTransactionFactory
from tests.fake_stripe import FakeStripe

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "whsec_schemathesis_tests"
#: Cases per operation and phase: enough to find a mismatch, few enough for CI.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40"))

CONFIG = """
[warnings]
fail-on = true
"""


def _fake_answers(fake: FakeStripe) -> None:
    ids = itertools.count(1)
    intents: dict[str, dict[str, Any]] = {}

    def charge(form: dict[str, str], path: str) -> tuple[int, Any]:
        return 200, fake_stripe.charge(
            id=f"ch_fake{next(ids)}", amount=int(form["amount"]), currency=form["currency"]
        )

    def create_intent(form: dict[str, str], path: str) -> tuple[int, Any]:
        intent_id = f"pi_fake{next(ids)}"
        status = (
            "requires_confirmation" if form.get("payment_method") else "requires_payment_method"
        )
        intents[intent_id] = fake_stripe.payment_intent(
            id=intent_id, amount=int(form["amount"]), currency=form["currency"], status=status
        )
        return 200, intents[intent_id]

    def confirm(form: dict[str, str], path: str) -> tuple[int, Any]:
        intent = intents[path.split("/")[3]]
        return 200, {**intent, "status": "succeeded"}

    def create_session(form: dict[str, str], path: str) -> tuple[int, Any]:
        session_id = f"cs_test_fake{next(ids)}"
        return 200, {
            "id": session_id,
            "object": "checkout.session",
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "status": "open",
            "payment_status": "unpaid",
            "expires_at": 1_900_000_000,
            "amount_total": None,
            "currency": None,
            "created": 1_899_913_600,
            "livemode": False,
            "payment_intent": None,
        }

    fake.respond("POST", r"/v1/checkout/sessions", create_session)
    fake.respond("POST", r"/v1/charges", charge)
    fake.respond("POST", r"/v1/payment_intents", create_intent)
    fake.respond("POST", r"/v1/payment_intents/[^/]+/confirm", confirm)


@pytest.fixture
def upstream(settings: Any) -> Iterator[str]:
    fake = FakeStripe()
    _fake_answers(fake)
    with fake.serve() as url:
        bridge_settings_for(
            settings,
            API_KEY=TEST_API_KEY,
            API_BASE=url,
            MAX_NETWORK_RETRIES=0,
            TIMEOUT=5,
            CHARGE_THROTTLE_RATE=None,
            WEBHOOK_SECRETS=[WEBHOOK_SECRET],
            CHECKOUT_SUCCESS_URL="/paid?session={CHECKOUT_SESSION_ID}",
            CHECKOUT_REDIRECT_HOSTS=["shop.example", ".example.org"],
        )
        cache.clear()
        yield url


def test_schemathesis_finds_no_difference_between_schema_and_api(
    live_server, upstream, transactional_db, tmp_path
):
    services.require_module("schemathesis", "schemathesis is not installed (the dev extra)")
    # The schema's example id, so that examples reach a transaction that exists.
    StripeTransactionFactory(id=EXAMPLE_TRANSACTION_ID)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    report = tmp_path / "report.json"
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{live_server.url}/api/services/Stripe/schema?format=json",
        # The event stream never ends (a client reading its whole body waits for ever) and
        # live_server is WSGI, where it is 501: its contract is checked by tests/test_sse.py.
        "--exclude-operation-id",
        "stripe_events_stream",
        "--phases",
        "examples,coverage,fuzzing",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "20251201",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks"}
    env["STRIPE_BRIDGE_TEST_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    summary = json.loads(report.read_text())
    assert (summary["failures"], summary["errors"]) == ([], []), output[-20000:]
    assert not {name: found for name, found in summary["warnings"].items() if found}
    cases = summary["test_cases"]
    assert cases["generated"] > 0 and cases["with_failures"] == cases["errored"] == 0
    operations = summary["operations"]
    # Every operation but the event stream (left out above).
    assert operations["tested"] == operations["selected"] == 5, operations
    assert operations["total"] == 6, operations
    # Every operation answered data its schema allows with success, in every phase it had.
    for name, phases in summary["valid_rates"].items():
        for phase, outcome in phases.items():
            assert outcome["rejected"] == 0 and outcome["accepted"] > 0, (name, phase, outcome)
