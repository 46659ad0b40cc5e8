"""The README and the docs agree with the code and with each other.

Every management command, ``./run`` command, setting, system check id, extra and demo
environment variable they name exists; and no code snippet is written out in two places
(one place holds it, the others include it: docs/hooks/snippets.py).
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from collections import defaultdict

import pytest
from django.core.management import get_commands

from django_stripe_bridge.conf import DEFAULTS
from tests.live import ROOT

PAGES = {
    path.relative_to(ROOT).as_posix(): path.read_text()
    for path in [ROOT / "README.md", ROOT / "bench" / "README.md", *(ROOT / "docs").glob("*.md")]
}
ALL = "\n".join(PAGES.values())
CODE = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)
EXTRAS: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
    "optional-dependencies"
]


def test_every_documented_management_command_exists():
    named = set(re.findall(r"manage\.py\s+([a-z_]+)", ALL))
    commands = {*get_commands(), "help"}  # help is manage.py's own
    assert named - commands == set()
    ours = {name for name in commands if name.startswith("stripe_bridge_")}
    operations = PAGES["docs/operations.md"]
    # Operations documents each of the bridge's commands under its own heading...
    assert {name for name in ours if f"### `{name}`" not in operations} == set()
    # ...and says how many there are.
    count = ["One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight"][len(ours) - 1]
    assert f"{count} management commands" in operations


def test_every_documented_run_command_exists():
    run = (ROOT / "run").read_text()
    branches = set(re.findall(r"^    (\w+)\)$", run, re.MULTILINE))
    assert set(re.findall(r"\./run ([a-z]+)", ALL)) - branches == set()


def test_every_documented_setting_exists_and_every_setting_is_documented():
    table = PAGES["docs/settings.md"].split("## System checks", 1)[0]
    rows = re.findall(r"^\| (`[A-Z_]+`(?: / `[A-Z_]+`)*) \|", table, re.MULTILINE)
    in_table = {name for row in rows for name in re.findall(r"`([A-Z_]+)`", row)}
    assert set(DEFAULTS) - in_table == set(), "settings missing from docs/settings.md"
    named = in_table | set(re.findall(r"STRIPE_BRIDGE\[['\"]([A-Z_]+)['\"]\]", ALL))
    for block in re.findall(r"STRIPE_BRIDGE = \{(.*?)\n\}", ALL, re.DOTALL):
        named |= set(re.findall(r"^\s+\"([A-Z_]+)\":", block, re.MULTILINE))
    assert named - set(DEFAULTS) == set()


def test_every_documented_check_exists_and_every_check_is_documented():
    source = (ROOT / "django_stripe_bridge" / "checks.py").read_text()
    ids = set(re.findall(r'id="(stripe_bridge\.[EW]\d{3})"', source))
    assert set(re.findall(r"stripe_bridge\.[EW]\d{3}", ALL)) - ids == set()
    table_row = r"^\| `(stripe_bridge\.[EW]\d{3})` \|"
    documented = set(re.findall(table_row, PAGES["docs/settings.md"], re.MULTILINE))
    assert ids - documented == set()


def requirements(extra: str) -> set[str]:
    """Distribution names an extra brings, through the extras it includes."""
    names: set[str] = set()
    for requirement in EXTRAS[extra]:
        name = re.match(r"[\w.-]+", requirement).group(0).lower()  # type: ignore[union-attr]
        included = re.match(r"django-stripe-bridge\[([\w,]+)\]", requirement)
        if included:
            for inner in included.group(1).split(","):
                names |= requirements(inner)
        else:
            names.add(name)
    return names


def test_every_documented_extra_exists_and_holds_what_the_docs_say():
    named = {
        extra
        for group in re.findall(r"django-stripe-bridge\[([\w,]+)\]", ALL)
        for extra in group.split(",")
    }
    named |= set(re.findall(r"the `(\w+)` extra", ALL))
    assert named - set(EXTRAS) == set()
    # "<package> (in the `x` extra" anywhere; "`x` brings … [Package](…) … `package`" in
    # the README's install section.
    claims = re.findall(r"([\w-]+)`?\*{0,2} \(in the `(\w+)` extra", ALL)
    for extra, text in re.findall(r"`(\w+)` brings ([^;]*?)(?:;|\n\n)", PAGES["README.md"]):
        claims += [(a or b, extra) for a, b in re.findall(r"\[(\w+)\]\(|`([\w-]+)`", text)]
    assert len(claims) >= 5, "the docs say which extra brings what"
    wrong = [(p, e) for p, e in claims if p.lower().replace("_", "-") not in requirements(e)]
    assert wrong == []


def test_every_demo_setting_of_the_readme_is_read_by_the_demo():
    table = PAGES["README.md"].split("### Demo settings", 1)[1].split("\n\n", 2)[1]
    variables = re.findall(r"^\| `([A-Z_]+)` \|", table, re.MULTILINE)
    assert len(variables) > 5
    demo = "\n".join(p.read_text() for p in (ROOT / "demo_project").glob("*.py"))
    assert [name for name in variables if f'"{name}"' not in demo] == []


def snippet_lines(code: str) -> list[str]:
    return [
        line.strip()
        for line in code.splitlines()
        if line.strip() and not line.strip().startswith(("#", "//", "$"))
    ]


def test_no_snippet_is_written_out_in_two_places():
    """Three code lines in a row in two pages (or twice in one) are a copy: include it."""
    where: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for page, text in PAGES.items():
        for _, code in CODE.findall(text):
            lines = snippet_lines(code)
            for i in range(len(lines) - 2):
                where[tuple(lines[i : i + 3])].add(page)
    copies = {" | ".join(lines): sorted(pages) for lines, pages in where.items() if len(pages) > 1}
    assert copies == {}


@pytest.mark.parametrize("page", sorted(p for p in PAGES if p.startswith("docs/")))
def test_every_snippet_include_names_a_section_that_exists(page):
    spec = importlib.util.spec_from_file_location("snippets", ROOT / "docs/hooks/snippets.py")
    assert spec and spec.loader
    snippets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snippets)
    assert "--8<--" not in snippets.expand(PAGES[page], ROOT)
