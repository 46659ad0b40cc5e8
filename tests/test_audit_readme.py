"""The README's claims that can be checked without running the demo (test_demo.py does that)."""

from __future__ import annotations

import re

import pytest
from django.core.management import get_commands

from tests.live import ROOT

README = (ROOT / "README.md").read_text()


def test_every_relative_link_exists():
    links = re.findall(r"\]\(([^)#]+)\)", README)
    relative = [link for link in links if not link.startswith(("http://", "https://"))]
    assert relative
    assert [link for link in relative if not (ROOT / link).exists()] == []


def test_every_manage_py_command_exists():
    named = set(re.findall(r"manage\.py (\w+)", README))
    assert {"migrate", "check", "stripe_bridge_webhook_setup"} <= named
    assert named <= set(get_commands())


def test_every_demo_variable_is_read_by_the_demo():
    table = README.split("### Demo settings", 1)[1].split("\n## ", 1)[0]
    variables = re.findall(r"^\| `([A-Z_]+)` \|", table, flags=re.MULTILINE)
    assert len(variables) >= 10
    sources = (ROOT / "demo_project" / "settings.py").read_text()
    sources += (ROOT / "demo_project" / "run.py").read_text()
    assert [name for name in variables if f'"{name}"' not in sources] == []


@pytest.mark.parametrize(
    "path",
    [
        "run",
        "manage.py",
        ".ci/run",
        "django_stripe_bridge/static/django_stripe_bridge/stripe-bridge.js",
        "django_stripe_bridge/routing.py",
    ],
)
def test_files_the_readme_names_exist(path):
    assert (ROOT / path).exists()
