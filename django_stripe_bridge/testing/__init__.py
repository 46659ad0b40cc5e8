"""An offline Stripe for tests and the demo.

No test here reaches Stripe. ``run_stripe_standin()`` starts *the stand-in*: localstripe (a
stateful fake Stripe API server) extended to behave like Stripe where an integration can
tell the difference — test tokens and test PaymentMethods, declines with their codes,
manual and partial capture, cancel and expiry under the caller's API version, refunds that
fail later, disputes and inquiries, ``charge.*``/``refund.*``/``payment_intent.*``/
``charge.dispute.*`` events, ``Idempotency-Key`` replays, minimum amounts and currencies.
It runs as a subprocess bound to 127.0.0.1, with nothing on disk:

    from django_stripe_bridge.testing import TEST_API_KEY, run_stripe_standin

    with run_stripe_standin() as standin:
        client = stripe.StripeClient(TEST_API_KEY, base_addresses={"api": standin.base_url})
        charge = client.v1.charges.create(
            {"amount": 1000, "currency": "usd", "source": "tok_visa"}
        )
        standin.register_webhook("http://127.0.0.1:8000/webhooks/", "whsec_test")
        standin.settle()         # what Stripe does "later" (failing refunds, disputes): now
        standin.expire_authorization(pi_id)  # an uncaptured authorization expires
        standin.reset()          # forget everything between tests

With pytest, enable the plugin (``pytest_plugins = ["django_stripe_bridge.testing.pytest_plugin"]``
in the root ``conftest.py``) for the ``stripe_standin`` fixtures. From a shell:
``python -m django_stripe_bridge.testing.standin --port 8420``.

Importing this package needs neither localstripe nor aiohttp (the ``demo`` extra): only the
subprocess does. See ``docs/testing.md``.
"""

from __future__ import annotations

from ._cards import DECLINES_BY_NUMBER, TEST_PAYMENT_METHODS, TEST_TOKENS, Decline, TestCard
from ._currencies import MINIMUM_AMOUNTS, SUPPORTED_CURRENCIES, ZERO_DECIMAL_CURRENCIES
from ._launcher import (
    TEST_API_KEY,
    TEST_PUBLISHABLE_KEY,
    StandInError,
    StripeStandIn,
    run_stripe_standin,
)
from ._signing import sign_payload

__all__ = [
    "DECLINES_BY_NUMBER",
    "MINIMUM_AMOUNTS",
    "SUPPORTED_CURRENCIES",
    "TEST_API_KEY",
    "TEST_PAYMENT_METHODS",
    "TEST_PUBLISHABLE_KEY",
    "TEST_TOKENS",
    "ZERO_DECIMAL_CURRENCIES",
    "Decline",
    "StandInError",
    "StripeStandIn",
    "TestCard",
    "run_stripe_standin",
    "sign_payload",
]
