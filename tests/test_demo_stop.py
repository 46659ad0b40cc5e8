"""``./run demo`` stops everything it started, whoever stops it, and says how to log in."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from django_stripe_bridge.testing import TEST_API_KEY
from tests import services
from tests.live import ROOT, free_port

pytestmark = [pytest.mark.standin]


def demo_env(port: int, var_dir: Path) -> dict[str, str]:
    env = {**os.environ, "DEMO_PORT": str(port), "DEMO_VAR_DIR": str(var_dir)}
    for name in ("DATABASE_URL", "REDIS_URL", "STRIPE_API_KEY", "STRIPE_API_BASE"):
        env.pop(name, None)
    return env


def descendants(root: int) -> set[int]:
    """The processes under ``root`` (children, grandchildren, …), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        children = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= children
        frontier = children
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def bound(port: int) -> bool:
    """Whether something listens on ``port`` (closed connections in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def start(args: list[str], port: int, var_dir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    services.require_module("localstripe", "the demo extra (localstripe) is not installed")
    log = var_dir / "demo.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=demo_env(port, var_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, log


def wait_until_listening(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while "Listening on TCP address" not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def ports_in(log: Path) -> set[int]:
    return {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))}


def assert_nothing_left(started: set[int], ports: set[int], log: Path) -> None:
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in started if alive(pid)] == [], log.read_text()
    assert [port for port in ports if bound(port)] == [], log.read_text()


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_timeout_run_demo_leaves_no_process_and_no_bound_port(tmp_path):
    port = free_port()
    process, log = start(["timeout", "30", "./run", "demo"], port, tmp_path)
    started: set[int] = set()
    try:
        wait_until_listening(process, log)
        started = descendants(process.pid)
        assert process.wait(30) == 124  # timeout's status when it had to stop the command
        assert_nothing_left(started, ports_in(log) | {port}, log)
        assert "Stopped." in log.read_text()
    finally:
        kill_all(started | {process.pid})


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_demo_process_alone_stops_everything(tmp_path, signum):
    """As a process manager or `kill` does: only the main process gets the signal."""
    port = free_port()
    process, log = start(["./run", "demo"], port, tmp_path)
    started: set[int] = set()
    try:
        wait_until_listening(process, log)
        started = descendants(process.pid)
        assert len(started) >= 2, "Daphne and the Stripe stand-in"
        os.kill(process.pid, signum)
        assert process.wait(30) == 0
        assert_nothing_left(started, ports_in(log) | {port}, log)
    finally:
        kill_all(started | {process.pid})


def test_every_start_says_how_to_log_in(tmp_path):
    port = free_port()
    logins = []
    for _ in range(2):
        process, log = start(["./run", "demo"], port, tmp_path)
        try:
            wait_until_listening(process, log)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        logins.append(re.search(r"user: admin  password: (\S+)", log.read_text()))
    assert logins[0] and logins[1], log.read_text()
    assert logins[0].group(1) == logins[1].group(1)
    # Once the password was changed, the demo says how to set one.
    env = {**demo_env(port, tmp_path), "DJANGO_SETTINGS_MODULE": "demo_project.settings"}
    code = (
        "from django.contrib.auth.models import User\n"
        "user = User.objects.get(username='admin')\n"
        "user.set_password('changed-pw-1')\n"
        "user.save()\n"
    )
    subprocess.run(
        [".venv/bin/python", "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True
    )
    process, log = start(["./run", "demo"], port, tmp_path)
    try:
        wait_until_listening(process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert "manage.py changepassword admin" in log.read_text()
    assert logins[0].group(1) not in log.read_text()


def test_a_restarted_demo_still_knows_the_charges_its_database_holds(tmp_path):
    """The stand-in keeps its objects beside the demo's database: after a restart a payment
    the admin lists can still be refunded (it was "No such charge" when the stand-in
    started empty)."""
    port = free_port()
    process, log = start(["./run", "demo"], port, tmp_path)
    try:
        wait_until_listening(process, log)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/services/Stripe/charge",
            data=json.dumps({"amount": 1000, "token": "tok_visa"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            charge_id = json.load(response)["id"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert "demo.sqlite3.stripe-standin" in log.read_text()

    process, log = start(["./run", "demo"], port, tmp_path)
    try:
        wait_until_listening(process, log)
        text = log.read_text()
        assert "delete both to start afresh" in text
        base = re.search(r"stand-in \(localstripe\) at (\S+);", text).group(1)  # type: ignore[union-attr]
        refund = urllib.request.Request(
            f"{base}/v1/refunds",
            data=urllib.parse.urlencode({"charge": charge_id}).encode(),
            headers={"Authorization": f"Bearer {TEST_API_KEY}"},
        )
        with urllib.request.urlopen(refund, timeout=10) as response:
            assert json.load(response)["amount"] == 1000
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
