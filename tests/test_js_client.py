"""The JavaScript client's unit tests (``tests/js/``), run with Node's built-in test runner.

They drive ``stripe-bridge.js`` with a fake WebSocket: subscribe, reconnect with backoff and
jitter, re-subscribe with replay, drop repeated events, pings, refusals. The browser test
of the demo page runs the same file in headless Chromium against a live server.
"""

from __future__ import annotations

import shutil
import subprocess

from tests import services
from tests.live import ROOT


def test_javascript_client_unit_tests():
    node = shutil.which("node")
    if node is None:
        services.missing("Node.js is not installed (needed for tests/js/)")
    result = subprocess.run(
        [node, "--test", "tests/js/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
