"""SPEC §6 Operations: ``manage.py help`` lists the commands, and their documented output."""

from __future__ import annotations

import io
import subprocess
import sys
from typing import Any

import pytest
from django.core.management import ManagementUtility, call_command

from django_stripe_bridge.models import StripeEvent
from tests.factories import StripeEventFactory
from tests.live import ROOT
from tests.webhook_fixtures import *  # noqa: F403

COMMANDS = [
    "stripe_bridge_prune",
    "stripe_bridge_rebuild",
    "stripe_bridge_republish",
    "stripe_bridge_sync",
    "stripe_bridge_thin",
    "stripe_bridge_webhook_setup",
]


def test_manage_py_help_lists_the_commands_under_the_app():
    text = ManagementUtility(["manage.py", "help"]).main_help_text()
    section = text.split("[django_stripe_bridge]", 1)[1].split("[", 1)[0]
    assert section.split() == COMMANDS


def test_the_top_level_manage_py_runs_the_demo_and_each_command_has_help(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DEMO_VAR_DIR": str(tmp_path), "HOME": str(tmp_path)}
    listing = subprocess.run(
        [sys.executable, "manage.py", "help", "--commands"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    assert set(COMMANDS) <= set(listing.stdout.split())
    usage = subprocess.run(
        [sys.executable, "manage.py", "stripe_bridge_prune", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert usage.returncode == 0, usage.stderr
    assert "--older-than" in usage.stdout


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("stripe_bridge_sync", ["--since"]),
        ("stripe_bridge_republish", ["EVENT_ID", "--unpublished"]),
        ("stripe_bridge_webhook_setup", ["--url"]),
        ("stripe_bridge_prune", ["--older-than"]),
    ],
)
def test_each_commands_help_names_its_documented_options(
    name: str, options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        call_command(name, "--help")
    text = capsys.readouterr().out
    for option in options:
        assert option in text


@pytest.mark.django_db
def test_republish_accepts_event_ids_and_unpublished_together(in_memory_layer: Any) -> None:
    named = StripeEventFactory(charge_id="ch_both", published_at=None)
    pending = StripeEventFactory(charge_id="ch_both2", published_at=None)
    out = io.StringIO()
    call_command("stripe_bridge_republish", named.event_id, "--unpublished", stdout=out)
    assert "Published" in out.getvalue()
    assert not StripeEvent.objects.filter(pk__in=[named.pk, pending.pk], published_at=None).exists()
