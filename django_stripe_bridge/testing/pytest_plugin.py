"""pytest fixtures for the offline Stripe stand-in.

Enable in the root ``conftest.py`` (pytest only reads ``pytest_plugins`` there):

    pytest_plugins = ["django_stripe_bridge.testing.pytest_plugin"]

Fixtures:

``stripe_standin`` (session)
    One stand-in for the whole session: a ``StripeStandIn``
    (``.base_url``, ``.reset()``, ``.register_webhook()`` …). Nothing is reset for you.
``stripe_standin_clean`` (function)
    The same stand-in, emptied (objects, events, idempotency keys, webhooks) before the test.
``stripe_client`` (function)
    A ``stripe.StripeClient`` pointed at ``stripe_standin_clean``.

Without localstripe/aiohttp (``pip install django-stripe-bridge[demo]``) the tests using these
fixtures are skipped with the reason, except under ``CI=true`` where they fail: CI must not
pass by skipping. The ini option ``stripe_standin_webhook_delay`` (seconds, default ``1.0``)
sets how long after an event its webhooks are sent; ``stripe_standin_async_delay`` (default
``1.0``) how long until refunds settle or fail and disputes open or close
(``stripe_standin.settle()`` makes that happen at once).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest

from ._launcher import StripeStandIn


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "stripe_standin_webhook_delay",
        "seconds between a stand-in event and its webhook deliveries",
        default="1.0",
    )
    parser.addini(
        "stripe_standin_async_delay",
        "seconds until stand-in refunds settle or fail and disputes open or close",
        default="1.0",
    )


def unavailable_reason() -> str | None:
    """Why the stand-in cannot run here (a missing package), or ``None``."""
    missing = [
        name for name in ("localstripe", "aiohttp") if importlib.util.find_spec(name) is None
    ]
    if not missing:
        return None
    return (
        f"the offline Stripe stand-in needs {' and '.join(missing)} "
        "(pip install 'django-stripe-bridge[demo]')"
    )


def require_standin() -> None:
    """Skip the test when the stand-in cannot run, or fail it under ``CI=true``."""
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def stripe_standin(pytestconfig: pytest.Config) -> Iterator[StripeStandIn]:
    """The session's offline Stripe stand-in (started on first use)."""
    require_standin()
    delay = float(pytestconfig.getini("stripe_standin_webhook_delay"))
    async_delay = float(pytestconfig.getini("stripe_standin_async_delay"))
    with StripeStandIn(webhook_delay=delay, async_delay=async_delay) as standin:
        yield standin


@pytest.fixture
def stripe_standin_clean(stripe_standin: StripeStandIn) -> StripeStandIn:
    """The stand-in with no objects, events, idempotency keys or webhooks."""
    stripe_standin.reset(webhooks=True)
    return stripe_standin


@pytest.fixture
def stripe_client(stripe_standin_clean: StripeStandIn) -> Any:
    """A ``stripe.StripeClient`` for the emptied stand-in."""
    return stripe_standin_clean.client()
