"""The README's demo command, and the demo page in a real headless Chromium under each server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

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


@pytest.mark.parametrize(
    ("card", "status", "event"),
    [
        ("4242 4242 4242 4242", "succeeded", "charge.succeeded"),
        ("4000 0000 0000 0002", "failed", "charge.failed"),
    ],
)
def test_demo_page_shows_the_status_arriving_live(
    demo_site, browser, tmp_path, card, status, event
):
    base = demo_site
    page = browser.new_page()
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
        page.fill("#amount", "1234")
        page.fill("#card-number", card)
        page.click("#pay")
        # Only a websocket message sets this exact status (the charge response adds
        # "(waiting for webhook)"), so this proves the live push arrived.
        page.wait_for_selector(f'#status[data-status="{status}"]', timeout=20_000)
        assert event in page.inner_text("#log")
        assert page.inner_text("#transaction").startswith("ch_")
        page.screenshot(path=str(tmp_path / "demo.png"))
        assert not errors, errors
        # The card number went to the Stripe stand-in, never to Django.
        assert requests_to_django
        digits = card.replace(" ", "")
        assert not any(digits[:8] in body or card[:9] in body for body in requests_to_django)
    finally:
        page.close()
