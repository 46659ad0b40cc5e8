"""The server checks: a site whose websockets cannot reach the bridge is told what to add."""

from __future__ import annotations

import pytest
from django.core import checks
from django.test import override_settings

from django_stripe_bridge.checks import check_server

APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "django_stripe_bridge",
]


def ids() -> list[str]:
    return sorted(message.id or "" for message in check_server())


def test_check_is_registered():
    assert check_server in checks.registry.registry.get_checks()


@pytest.mark.parametrize(
    ("application", "expected"),
    [
        ("tests.asgi_variants.readme", []),
        ("tests.asgi_variants.nested", []),
        ("demo_project.asgi.application", []),
        # Wrapped in something the check cannot see into: no warning rather than a wrong one.
        ("tests.asgi_variants.opaque", []),
        ("tests.asgi_variants.django_only", ["stripe_bridge.W008"]),
        ("tests.asgi_variants.no_websocket", ["stripe_bridge.W008"]),
        ("tests.asgi_variants.other_consumer", ["stripe_bridge.W008"]),
        ("tests.asgi_variants.missing", ["stripe_bridge.W007"]),
        ("tests.no_such_module.application", ["stripe_bridge.W007"]),
        (None, ["stripe_bridge.W007"]),
    ],
)
def test_the_asgi_application_must_route_the_consumer(application, expected):
    with override_settings(ASGI_APPLICATION=application, DEBUG=False):
        assert ids() == expected


def test_each_warning_says_what_to_add():
    with override_settings(ASGI_APPLICATION=None, DEBUG=True):
        messages = {m.id: m for m in check_server()}
    assert "ASGI_APPLICATION" in messages["stripe_bridge.W007"].hint
    assert "websocket_urlpatterns" in messages["stripe_bridge.W007"].hint
    assert '"daphne" first in INSTALLED_APPS' in messages["stripe_bridge.W009"].hint
    with override_settings(ASGI_APPLICATION="tests.asgi_variants.no_websocket"):
        (message,) = check_server()
    assert "websocket_urlpatterns" in message.hint and "ProtocolTypeRouter" in message.hint
    with override_settings(ASGI_APPLICATION="tests.no_such_module.application"):
        (message,) = check_server()
    assert "ModuleNotFoundError" in message.msg


@pytest.mark.parametrize(
    ("installed", "debug", "expected"),
    [
        (APPS, True, ["stripe_bridge.W009"]),  # runserver is Django's (or staticfiles'): HTTP only
        ([*APPS, "daphne"], True, ["stripe_bridge.W009"]),  # staticfiles' runserver wins
        (["daphne", *APPS], True, []),
        ([a for a in APPS if a != "django.contrib.staticfiles"] + ["daphne"], True, []),
        (APPS, False, []),  # runserver is for development; production runs its own server
    ],
)
def test_runserver_must_be_daphnes(installed, debug, expected):
    with override_settings(
        INSTALLED_APPS=installed, DEBUG=debug, ASGI_APPLICATION="tests.asgi_variants.readme"
    ):
        assert ids() == expected
