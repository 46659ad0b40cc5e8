"""Django's error reports (the DEBUG page, the e-mails to ADMINS) never show a Redis password.

Django hides settings by name only: ``CHANNEL_LAYERS``' ``redis://:password@host`` was shown
in full on the technical 500 page.
"""

from __future__ import annotations

import sys

import pytest
from django.test import RequestFactory, override_settings
from django.views.debug import (
    ExceptionReporter,
    get_default_exception_reporter_filter,
    get_exception_reporter_filter,
)
from django.views.debug import SafeExceptionReporterFilter as DjangoFilter

from django_stripe_bridge.checks import check_error_reports
from django_stripe_bridge.error_reports import (
    SafeExceptionReporterFilter,
    hide_url_passwords,
)
from django_stripe_bridge.layers import redis_channel_layer
from tests.test_audit_demo import demo_settings

PASSWORD = "s3cret-Redis-pw"
URL = f"redis://:{PASSWORD}@127.0.0.1:6381/0"
STARS = "*" * 20  # Django's cleansed_substitute
FILTER = "django_stripe_bridge.error_reports.SafeExceptionReporterFilter"
LAYERS = {
    "default": redis_channel_layer(
        URL,
        f"rediss://default:{PASSWORD}@cache.example:6380/1",
        {"address": "redis://127.0.0.1:6382", "password": PASSWORD},
    )
}


@pytest.fixture(autouse=True)
def _filter_read_afresh():
    # Django reads DEFAULT_EXCEPTION_REPORTER_FILTER once (lru_cache), not at each override.
    get_default_exception_reporter_filter.cache_clear()
    yield
    get_default_exception_reporter_filter.cache_clear()


def technical_500() -> tuple[str, str]:
    """The DEBUG page (HTML and text) for an error whose frame holds the URL, on a request
    whose ``META`` holds it as ``runserver`` passes the environment."""
    request = RequestFactory().get("/boom", REDIS_URL=URL)
    redis_url = URL  # noqa: F841 (a frame variable the page shows)
    try:
        raise ConnectionError("Redis is down")
    except ConnectionError:
        reporter = ExceptionReporter(request, *sys.exc_info())
    return reporter.get_traceback_html(), reporter.get_traceback_text()


@override_settings(CHANNEL_LAYERS=LAYERS, DEBUG=True, DEFAULT_EXCEPTION_REPORTER_FILTER=FILTER)
def test_the_debug_page_shows_no_redis_password():
    html, text = technical_500()
    for page in (html, text):
        assert "CHANNEL_LAYERS" in page and "127.0.0.1:6381" in page
        assert PASSWORD not in page
        assert f"redis://:{STARS}@127.0.0.1:6381/0" in page
    assert f"rediss://default:{STARS}@cache.example" in text


@override_settings(CHANNEL_LAYERS=LAYERS, DEFAULT_EXCEPTION_REPORTER_FILTER=FILTER)
def test_safe_settings_hide_every_url_password():
    reporter_filter = get_exception_reporter_filter(None)
    assert isinstance(reporter_filter, SafeExceptionReporterFilter)
    shown = reporter_filter.get_safe_settings()
    assert PASSWORD not in repr(shown)
    hosts = shown["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"]
    assert [host.get("address") for host in hosts] == [
        f"redis://:{STARS}@127.0.0.1:6381/0",
        f"rediss://default:{STARS}@cache.example:6380/1",
        "redis://127.0.0.1:6382",
    ]
    assert hosts[0]["socket_timeout"] == LAYERS["default"]["CONFIG"]["hosts"][0]["socket_timeout"]
    # Django's own rules still apply.
    assert shown["SECRET_KEY"] == "********************"


@override_settings(CHANNEL_LAYERS=LAYERS)
def test_djangos_own_filter_shows_it():
    """Why the bridge ships a filter: Django's default shows the password."""
    assert PASSWORD in repr(DjangoFilter().get_safe_settings())


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("redis://:pw@h:6379/0", f"redis://:{STARS}@h:6379/0"),
        ("redis://user:pw@h", f"redis://user:{STARS}@h"),
        ("https://TOKEN@example.com/x", f"https://{STARS}@example.com/x"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("a@b.example and http://h/x@y", "a@b.example and http://h/x@y"),
        ("one redis://:a@h two redis://:b@k", f"one redis://:{STARS}@h two redis://:{STARS}@k"),
        (
            (["redis://:pw@h"], {"k": "redis://:pw@h"}),
            ([f"redis://:{STARS}@h"], {"k": f"redis://:{STARS}@h"}),
        ),
        (6379, 6379),
    ],
)
def test_hide_url_passwords(value, shown):
    assert hide_url_passwords(value) == shown


@override_settings(CHANNEL_LAYERS=LAYERS)
def test_a_check_warns_while_the_filter_would_show_the_password():
    [warning] = check_error_reports()
    assert warning.id == "stripe_bridge.W010"
    assert FILTER in warning.hint
    with override_settings(DEFAULT_EXCEPTION_REPORTER_FILTER=FILTER):
        assert check_error_reports() == []
    with override_settings(CHANNEL_LAYERS={"default": redis_channel_layer("redis://h:6379/0")}):
        assert check_error_reports() == []


def test_the_demo_selects_the_filter(monkeypatch, tmp_path):
    demo = demo_settings(monkeypatch, tmp_path, REDIS_URL=URL)
    assert demo.DEFAULT_EXCEPTION_REPORTER_FILTER == FILTER
    with override_settings(
        CHANNEL_LAYERS=demo.CHANNEL_LAYERS,
        DEFAULT_EXCEPTION_REPORTER_FILTER=demo.DEFAULT_EXCEPTION_REPORTER_FILTER,
    ):
        assert PASSWORD not in repr(get_exception_reporter_filter(None).get_safe_settings())
        assert check_error_reports() == []
