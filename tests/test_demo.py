"""The README's demo command, and the demo page in a real headless Chromium under each server."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests import services
from tests.live import ROOT, free_port, run_server

pytestmark = [pytest.mark.standin, pytest.mark.browser]

START_TIMEOUT = 120


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`./run demo`, exactly as the README says, on a free port with its own database."""
    services.require_module("localstripe", "the demo extra (localstripe) is not installed")
    port = free_port()
    var_dir = tmp_path_factory.mktemp("demo-var")
    log_path = var_dir / "demo.log"
    env = {**os.environ, "DEMO_PORT": str(port), "DEMO_VAR_DIR": str(var_dir)}
    for name in ("DATABASE_URL", "REDIS_URL", "STRIPE_API_KEY", "STRIPE_API_BASE"):
        env.pop(name, None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["./run", "demo"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def admin_up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"./run demo exited:\n{log_path.read_text()}")
        try:
            return http("GET", base + "/admin/login/")[0] == 200
        except OSError:
            return False

    try:
        wait_for(admin_up, START_TIMEOUT, "the demo to serve /admin/login/")
        yield base, log_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_demo_serves_the_admin(demo):
    base, _ = demo
    status, body = http("GET", base + "/admin/")
    assert status == 200  # redirected to the login page
    assert "Django" in body or "log in" in body.lower()


def test_readme_curl_charge_and_its_webhook(demo):
    base, log_path = demo
    status, charge = http(
        "POST", base + "/api/services/Stripe/charge", {"amount": 1000, "token": "tok_visa"}
    )
    assert status == 200, charge
    assert charge["id"].startswith("ch_")
    assert charge["status"] == "succeeded"

    def webhook_arrived():
        code, tx = http("GET", f"{base}/api/services/Stripe/transactions/{charge['id']}")
        events = [e["type"] for e in tx.get("events", [])] if code == 200 else []
        return "charge.succeeded" in events and tx

    tx = wait_for(webhook_arrived, 20, "the charge.succeeded webhook to reach the demo")
    assert tx["status"] == "succeeded"
    from django_stripe_bridge.testing import TEST_API_KEY

    assert TEST_API_KEY not in log_path.read_text()


def chromium_path() -> str:
    path = (
        os.environ.get("CHROMIUM_PATH")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not path:
        services.missing("Chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def demo_site(request, server_kind):
    """The demo site's base URL under ``server_kind``: ``./run demo`` itself for Daphne; for
    another server, the same site wired the same way (the offline stand-in, its webhook
    registered, the in-memory channel layer)."""
    if server_kind == "daphne":
        base, _ = request.getfixturevalue("demo")
        yield base
        return
    services.require_module("localstripe", "the demo extra (localstripe) is not installed")
    from demo_project.run import embedded_stripe

    port = free_port()
    env = {"REDIS_URL": ""}
    with embedded_stripe(env, port), run_server(server_kind, env, port=port) as server:
        yield server.url


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the page tests."""
    sync_api = services.require_module("playwright.sync_api", "playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


#: Where the browser tests leave their screenshots, to be looked at after a run.
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR") or ROOT / "var" / "screenshots")
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 800}


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize(
    ("viewport", "card", "currency", "typed", "amount", "shown", "status", "event"),
    [
        (
            PHONE,
            "4242 4242 4242 4242",
            "usd",
            "12.34",
            1234,
            "12.34 USD",
            "succeeded",
            "charge.succeeded",
        ),
        (
            LAPTOP,
            "4000 0000 0000 0002",
            "usd",
            "12.34",
            1234,
            "12.34 USD",
            "failed",
            "charge.failed",
        ),
        # A zero-decimal currency: 500 JPY is amount=500, not 50000.
        (
            LAPTOP,
            "4242 4242 4242 4242",
            "jpy",
            "500",
            500,
            "500 JPY",
            "succeeded",
            "charge.succeeded",
        ),
        (PHONE, "4000 0000 0000 0002", "jpy", "500", 500, "500 JPY", "failed", "charge.failed"),
    ],
    ids=["phone-success-usd", "laptop-decline-usd", "laptop-success-jpy", "phone-decline-jpy"],
)
def test_demo_page_shows_the_status_arriving_live(
    demo_site, browser, request, viewport, card, currency, typed, amount, shown, status, event
):
    base = demo_site
    page = browser.new_page(viewport=viewport)
    try:
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        requests_to_django: list[str] = []
        page.on(
            "request",
            lambda r: (
                requests_to_django.append(r.post_data or "")
                if r.url.startswith(base) and r.method == "POST"
                else None
            ),
        )
        page.goto(base + "/")
        assert no_horizontal_scroll(page)
        # The CVC field fills its half of the row, as the expiry field does.
        exp, cvc, row = (
            page.locator(s).bounding_box()
            for s in ("#card-exp", "#card-cvc", "#card-exp >> xpath=../..")
        )
        assert abs((cvc["x"] + cvc["width"]) - (row["x"] + row["width"])) < 2
        assert abs(cvc["width"] - exp["width"]) < 2
        page.select_option("#currency", currency)
        page.fill("#amount", typed)
        page.fill("#card-number", card)
        assert page.inner_text("#pay") == f"Pay {shown}"
        page.click("#pay")
        # Only a websocket message sets this exact status (the charge response adds
        # "(waiting for webhook)"), so this proves the live push arrived.
        page.wait_for_selector(f'#status[data-status="{status}"]', timeout=20_000)
        assert event in page.inner_text("#log")
        assert f"{event} → {status}, {shown}" in page.inner_text("#log")
        assert page.inner_text("#charged") == shown
        transaction = page.inner_text("#transaction")
        assert transaction.startswith("ch_")
        code, stored = http("GET", f"{base}/api/services/Stripe/transactions/{transaction}")
        assert code == 200 and (stored["amount"], stored["currency"]) == (amount, currency)
        assert no_horizontal_scroll(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(SCREENSHOTS / f"demo-{request.node.callspec.id}.png"), full_page=True
        )
        assert not errors, errors
        # The card number went to the Stripe stand-in, never to Django.
        assert requests_to_django
        digits = card.replace(" ", "")
        assert not any(digits[:8] in body or card[:9] in body for body in requests_to_django)
    finally:
        page.close()


@pytest.mark.parametrize("model", ["stripeevent", "stripetransaction"])
def test_admin_changelists_fit_1280_px(demo, browser, model):
    """Every column in view at 1,280 px, with the navigation sidebar and the filters."""
    base, log_path = demo
    for token in ("tok_visa", "tok_chargeDeclined"):
        http("POST", base + "/api/services/Stripe/charge", {"amount": 1000, "token": token})
    password = re.search(r"user: admin  password: (\S+)", log_path.read_text()).group(1)  # type: ignore[union-attr]
    page = browser.new_page(viewport=LAPTOP)
    try:
        page.goto(base + "/admin/login/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools")
        url = f"{base}/admin/django_stripe_bridge/{model}/"

        def rows() -> int:
            page.goto(url)
            return page.locator("#result_list tbody tr").count()

        wait_for(lambda: rows() >= 2, 20, "rows in the changelist")
        assert page.locator("#nav-sidebar").is_visible()
        assert page.locator("#changelist-filter").is_visible()
        table = page.locator("#result_list").bounding_box()
        assert table["x"] + table["width"] <= LAPTOP["width"]
        last = page.locator("#result_list thead th").last.bounding_box()
        assert last["x"] + last["width"] <= LAPTOP["width"]
        assert no_horizontal_scroll(page)
        assert page.evaluate(
            "(() => { const r = document.querySelector('.results');"
            " return r.scrollWidth <= r.clientWidth; })()"
        ), "the results table scrolls sideways: its last columns are cut off"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"admin-{model}-1280.png"), full_page=True)
    finally:
        page.close()
