from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import traceback
import uuid
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings

from django_stripe_bridge.conf import bridge_settings
from django_stripe_bridge.testing import TEST_API_KEY
from tests import services
from tests.live import TEST_SERVERS

pytest_plugins = ["django_stripe_bridge.testing.pytest_plugin"]


def pytest_report_header(config: pytest.Config) -> str:
    if not settings.configured:
        return "stripe-bridge: Django not configured"
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    return f"stripe-bridge: database {engine}, CI={services.in_ci()}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-durations",
        action="store_true",
        help="write each unit of work's seconds to tests/durations.json (tests/scheduling.py)",
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadfile`: modules (split by server kind), the longest first."""
    if config.getvalue("dist") != "loadfile":
        return None
    from tests.scheduling import LongestFirstScheduling

    return LongestFirstScheduling(config, log)


def pytest_configure(config: pytest.Config) -> None:
    # A suite started in the background by a script (`./run test &` in a CI script) inherits
    # SIGINT ignored, as POSIX shells leave `&` jobs; so would the demo and the CLIs that
    # tests start and stop with Ctrl-C's signal. Exec resets a handled signal, not an ignored one.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if config.getoption("record_durations") and not hasattr(config, "workerinput"):
        from tests.scheduling import DurationRecorder

        config.pluginmanager.register(DurationRecorder(), "duration-recorder")
    # Soak tests (an idle period longer than every timeout in play); CI runs them too.
    config.addinivalue_line("markers", "slow: a soak test of 30 s or more (few, and run in CI)")
    config.addinivalue_line(
        "markers", "serial: timing-sensitive; under xdist it runs while no other test runs"
    )
    # The live servers inherit this environment and REDIS_URL: each run, and each xdist worker
    # of it, gets a channels-redis prefix of its own, so that servers of parallel workers
    # never share a group (and deliver one worker's events to another worker's sockets).
    # (Not in xdist's controller, which runs no test: its workers would inherit its prefix.)
    if config.getoption("numprocesses", None) and not hasattr(config, "workerinput"):
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    base = os.environ.get("CHANNELS_REDIS_PREFIX") or "asgi"
    os.environ["CHANNELS_REDIS_PREFIX"] = f"{base}-{worker}-{uuid.uuid4().hex[:8]}"


def _is_postgres() -> bool:
    # Without the Django plugin (`-p no:django`) settings are not configured: not PostgreSQL.
    return settings.configured and "postgresql" in settings.DATABASES["default"]["ENGINE"]


def _uses_database(item: pytest.Item) -> bool:
    fixtures = getattr(item, "fixturenames", ())
    return item.get_closest_marker("django_db") is not None or "django_db_setup" in fixtures


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the PostgreSQL pass, run only the tests that touch the database; elsewhere, leave
    out those of PostgreSQL's own behaviour (marked ``postgres``)."""
    if not _is_postgres():
        _deselect(config, items, lambda item: item.get_closest_marker("postgres") is not None)
        return
    db = settings.DATABASES["default"]
    url = f"postgres://{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
    if not services.reachable(url, 5432):
        reason = f"PostgreSQL is not reachable at {url} (DATABASE_URL)"
        if services.in_ci():
            raise pytest.UsageError(f"{reason}; CI=true: a missing service is a failure.")
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))
        return
    _deselect(config, items, lambda item: not _uses_database(item))


def _deselect(
    config: pytest.Config, items: list[pytest.Item], left_out: Callable[[pytest.Item], bool]
) -> None:
    deselected = [item for item in items if left_out(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not left_out(item)]


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """pytest-django's, and before it drops the test databases, the threads that outlive a
    test close their connections: PostgreSQL refuses to drop a database in use ("being
    accessed by other users"). Those are asgiref's one thread for the ORM calls of async
    tests (``aget()``, ``sync_to_async``: its connection stays open unless a later call
    through Channels' ``database_sync_to_async`` happened to close it) and the group
    committers' threads (one whose event loop ended with marks still due keeps its own)."""
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    from django_stripe_bridge import group_commit

    # Thread-sensitive, called from no sync thread: it runs in that shared thread.
    asyncio.run(sync_to_async(connections.close_all)())
    group_commit.close_connections()


@pytest.fixture(scope="session", params=TEST_SERVERS)
def server_kind(request: pytest.FixtureRequest) -> str:
    """Each ASGI server the live-server tests run under, in turn (``tests.live.TEST_SERVERS``)."""
    return request.param


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis server's URL (``REDIS_URL``, else the local default); skips/fails if absent."""
    url = services.redis_url()
    if not services.reachable(url, 6379):
        services.missing(f"Redis is not reachable at {url} (set REDIS_URL)")
    return url


@pytest.fixture(autouse=True)
def serial_alone(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Under pytest-xdist, a test marked ``serial`` (one that measures time or CPU) waits
    until no other worker runs a test, and they wait for it: a readers-writer lock on files
    the workers share. The gate keeps the readers from starving the writer."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    shared = tmp_path_factory.getbasetemp().parent  # pytest-N/, above each popen-gwN/
    serial = request.node.get_closest_marker("serial") is not None
    with open(shared / "serial-gate.lock", "a") as gate, open(shared / "serial.lock", "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if serial else fcntl.LOCK_SH)
        fcntl.flock(gate, fcntl.LOCK_UN)
        yield


class SecretWatch(logging.Handler):
    """Collects log records that contain a Stripe key or webhook secret in use."""

    FIXED = frozenset({TEST_API_KEY, "sk_test_bridge_tests", "whsec_tests_primary"})

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.leaks: list[str] = []

    def secrets(self) -> set[str]:
        found = set(self.FIXED)
        try:
            found.add(bridge_settings.API_KEY)
            found.update(bridge_settings.webhook_secrets)
        except Exception:  # noqa: S110  (odd settings in a test are that test's business)
            pass
        return {s for s in found if isinstance(s, str) and len(s) >= 8}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += "".join(traceback.format_exception(*record.exc_info))
        for secret in self.secrets():
            if secret in text:
                self.leaks.append(f"{record.name}: {text[:300]}")


@pytest.fixture(autouse=True)
def no_secret_in_logs() -> Iterator[None]:
    """Every test: no log record, at any level, carries the API key or a webhook secret."""
    watch = SecretWatch()
    root = logging.getLogger()
    level = root.level
    root.addHandler(watch)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(watch)
        root.setLevel(level)
    assert not watch.leaks, "a secret reached the logs:\n" + "\n".join(watch.leaks)
