"""SPEC §8: locally a missing service skips with its reason; under CI=true it fails."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests import services
from tests.live import ROOT

TESTS = Path(__file__).parent


@pytest.mark.parametrize(
    ("ci", "outcome"), [("", pytest.skip.Exception), ("true", pytest.fail.Exception)]
)
def test_a_missing_module_skips_locally_and_fails_under_ci(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="needed for audit"):
        services.require_module("no_such_module_for_the_audit", "needed for audit")


def test_a_present_module_is_returned():
    assert services.require_module("json", "stdlib").dumps([]) == "[]"


def test_no_test_skips_by_itself():
    """Skips go through tests.services (or the stand-in plugin), which fail under CI=true."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("importorskip", "skipif"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.attr}")
    assert not offenders, offenders


def test_ci_runs_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"```sh\n(\./run test)\n```", readme)
    assert command, "the README's second command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "export CI=true" in ci
    assert ci.rstrip().splitlines()[-1] == command.group(1)
    assert "apt-get install" in ci and "chromium" in ci
