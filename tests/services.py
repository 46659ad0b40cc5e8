"""Finding the real services the tests use (PostgreSQL, Redis), skipping or failing clearly.

Locally a missing service skips the tests that need it, with the reason. Under ``CI=true``
a missing service is a failure: CI must never pass by skipping.
"""

from __future__ import annotations

import importlib
import os
import socket
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
