"""Finding the real services the tests use (PostgreSQL, Redis), skipping or failing clearly.

Locally a missing service skips the tests that need it, with the reason. Under ``CI=true``
a missing service is a failure: CI must never pass by skipping.
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import time
from types import ModuleType
from urllib.parse import urlparse

import pytest

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip (locally) or fail (under CI=true) because a service is missing."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(reason)


def require_module(name: str, reason: str) -> ModuleType:
    """``import name``, or skip (locally) / fail (under CI=true) with ``reason``.

    Use it instead of ``pytest.importorskip``, which skips under CI too.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(reason)
        raise


def reachable(url: str, default_port: int) -> bool:
    """Whether something listens at the host and port of ``url``."""
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def worker_index() -> int:
    """This pytest-xdist worker's number (``gw3`` → 3); 0 without xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


def owned_redis_url() -> str:
    """A Redis database the tests may FLUSHDB: ``REDIS_URL``'s server, another db number.

    The db is ``TEST_REDIS_FLUSH_DB`` (default 9) plus the xdist worker's number, so that
    parallel workers never flush each other's; the numbers from there skip ``REDIS_URL``'s
    own. No other user of the server may keep data in them.
    """
    parsed = urlparse(redis_url())
    current = int((parsed.path or "/0").lstrip("/") or "0")
    base = int(os.environ.get("TEST_REDIS_FLUSH_DB") or 9)
    db = base + worker_index()
    if base <= current <= db:
        db += 1  # step over REDIS_URL's database
    return parsed._replace(path=f"/{db}").geturl()


class PrivateRedis:
    """A ``redis-server`` of a test's own on a free loopback port, without persistence, that
    the test may kill and start again (on the same port). Use it as a context manager."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server is not installed (a test starts and kills its own)")
        assert binary is not None
        options = ["--port", str(self.port), "--bind", "127.0.0.1"]
        options += ["--save", "", "--appendonly", "no"]  # a restart forgets everything
        self.process = subprocess.Popen([binary, *options], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not reachable(self.url, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.005)

    def kill(self) -> None:
        """SIGKILL: no goodbye to its clients, every key and subscription gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart_at_once(self) -> None:
        self.kill()
        self.start()

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
