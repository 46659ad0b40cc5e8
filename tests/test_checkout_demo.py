"""Issue 17: the whole Checkout trip on the demo, in headless Chromium.

The demo creates a session; the browser goes to the stand-in's payment page, pays (card,
declined card, 3-D Secure, a bank debit that settles 3 s after the redirect) or cancels, and
comes back to the demo's success page, which shows the status the webhooks give, live. The
stand-in delivers webhooks a second after each event, so the success page subscribes
between the redirect and the webhook.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests import services
from tests.live import free_port, run_server
from tests.test_demo import SCREENSHOTS, browser  # noqa: F401 - the module's Chromium

pytestmark = [pytest.mark.standin, pytest.mark.browser]

WAIT = 20_000  # ms


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[str, Any]]:
    """The demo under Daphne with its stand-in; "later" happens only on settle()."""
    services.require_module("localstripe", "the demo extra (localstripe) is not installed")
    from demo_project.run import embedded_stripe

    port = free_port()
    env = {"REDIS_URL": ""}
    with (
        embedded_stripe(env, port, async_delay=600) as standin,
        run_server("daphne", env, port=port) as server,
    ):
        yield server.url, standin


@pytest.fixture
def page(browser):  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors


def start_checkout(page: Any, base: str) -> str:
    """From the demo's page to the payment page; the session id."""
    page.goto(base + "/")
    page.fill("#amount", "25.00")
    page.click("#pay-checkout")
    page.wait_for_url(re.compile(r".*/_standin/checkout/cs_"), timeout=WAIT)
    return page.url.rsplit("/", 1)[1]


def wait_status(page: Any, status: str) -> None:
    page.wait_for_selector(f'#status[data-status="{status}"]', timeout=WAIT)


def served_status(base: str, session_id: str) -> str:
    """What the success page says before any script runs (a reload)."""
    url = f"{base}/checkout/success?session_id={session_id}"
    with urllib.request.urlopen(url, timeout=10) as response:
        html = response.read().decode()
    found = re.search(r'id="status" data-status="([a-z_]+)"', html)
    assert found, html
    return found.group(1)


def test_card_paid_shows_succeeded_live_and_at_once_on_reload(site, page):
    base, _ = site
    session_id = start_checkout(page, base)
    page.click('button[value="card_success"]')
    page.wait_for_url(re.compile(r".*/checkout/success\?session_id=cs_"), timeout=WAIT)
    assert session_id in page.url
    wait_status(page, "succeeded")
    page.wait_for_selector('#status[data-final="true"]', timeout=WAIT)
    assert page.inner_text("#charged") in ("25.00 USD", "—")
    assert served_status(base, session_id) == "succeeded"
    page.reload()
    assert page.get_attribute("#status", "data-status") == "succeeded"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "checkout-success.png"), full_page=True)


def test_a_declined_card_stays_on_the_payment_page_then_another_card_pays(site, page):
    base, _ = site
    start_checkout(page, base)
    page.click('button[value="card_decline"]')
    page.wait_for_selector("#error", timeout=WAIT)
    assert "declined" in page.inner_text("#error")
    assert "/_standin/checkout/" in page.url
    page.click('button[value="card_success"]')
    page.wait_for_url(re.compile(r".*/checkout/success"), timeout=WAIT)
    wait_status(page, "succeeded")


def test_three_d_secure(site, page):
    base, _ = site
    start_checkout(page, base)
    page.click('button[value="card_3ds"]')
    page.wait_for_url(re.compile(r".*/_standin/3ds/pi_"), timeout=WAIT)
    page.click('button[value="complete"]')
    page.wait_for_url(re.compile(r".*/checkout/success"), timeout=WAIT)
    wait_status(page, "succeeded")


def test_a_delayed_method_shows_processing_then_paid_without_a_reload(site, page):
    base, standin = site
    session_id = start_checkout(page, base)
    page.click('button[value="delayed"]')
    page.wait_for_url(re.compile(r".*/checkout/success"), timeout=WAIT)
    redirected = time.monotonic()
    wait_status(page, "processing")
    page.evaluate("window.sameDocument = true")
    assert served_status(base, session_id) == "processing"
    time.sleep(max(0.0, 3 - (time.monotonic() - redirected)))
    assert standin.settle() == 1  # the bank settles the debit, 3 s after the redirect
    wait_status(page, "succeeded")
    assert page.evaluate("window.sameDocument") is True  # no reload
    log = page.inner_text("#log")
    assert log.index("processing") < log.index("succeeded")


def test_a_delayed_method_that_fails(site, page):
    base, standin = site
    start_checkout(page, base)
    page.click('button[value="delayed_fail"]')
    page.wait_for_url(re.compile(r".*/checkout/success"), timeout=WAIT)
    wait_status(page, "processing")
    standin.settle()
    wait_status(page, "failed")


def test_cancel_goes_back_to_the_demo(site, page):
    base, _ = site
    start_checkout(page, base)
    page.click("#cancel")
    page.wait_for_url(re.compile(r".*/\?checkout=canceled"), timeout=WAIT)
    assert page.is_visible("#checkout-canceled")


def test_an_expired_session_reads_expired(site, page):
    base, standin = site
    session_id = start_checkout(page, base)
    standin.client().v1.checkout.sessions.expire(session_id)
    page.goto(f"{base}/checkout/success?session_id={session_id}")
    wait_status(page, "expired")
