"""The app as a package: migrations committed, typed, static files and templates shipped."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

import django_stripe_bridge

PACKAGE = Path(django_stripe_bridge.__file__).parent


@pytest.mark.django_db
def test_no_missing_migrations():
    out = StringIO()
    call_command("makemigrations", "django_stripe_bridge", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_typed_marker_and_client_are_in_the_package():
    assert (PACKAGE / "py.typed").exists()
    assert (PACKAGE / "static" / "django_stripe_bridge" / "stripe-bridge.js").exists()


def test_every_command_has_help():
    from django.core.management import get_commands, load_command_class

    names = sorted(n for n, app in get_commands().items() if app == "django_stripe_bridge")
    assert names == [
        "stripe_bridge_prune",
        "stripe_bridge_rebuild",
        "stripe_bridge_republish",
        "stripe_bridge_sync",
        "stripe_bridge_thin",
        "stripe_bridge_webhook_setup",
    ]
    for name in names:
        command = load_command_class("django_stripe_bridge", name)
        assert command.help, name
