from __future__ import annotations

import pytest
from django.conf import settings

from tests import services

pytest_plugins = ["django_stripe_bridge.testing.pytest_plugin"]


def pytest_report_header(config: pytest.Config) -> str:
    if not settings.configured:
        return "stripe-bridge: Django not configured"
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    return f"stripe-bridge: database {engine}, CI={services.in_ci()}"


def _is_postgres() -> bool:
    # Without the Django plugin (`-p no:django`) settings are not configured: not PostgreSQL.
    return settings.configured and "postgresql" in settings.DATABASES["default"]["ENGINE"]


def _uses_database(item: pytest.Item) -> bool:
    fixtures = getattr(item, "fixturenames", ())
    return item.get_closest_marker("django_db") is not None or "django_db_setup" in fixtures


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the PostgreSQL pass, run only the tests that touch the database."""
    if not _is_postgres():
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
    selected = [item for item in items if _uses_database(item)]
    deselected = [item for item in items if not _uses_database(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis server's URL (``REDIS_URL``, else the local default); skips/fails if absent."""
    url = services.redis_url()
    if not services.reachable(url, 6379):
        services.missing(f"Redis is not reachable at {url} (set REDIS_URL)")
    return url
