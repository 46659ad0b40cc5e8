"""The documentation site: MkDocs builds it in strict mode, with every page, search and
the API reference generated from the docstrings."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request

import pytest

from tests import services
from tests.live import ROOT, free_port


@pytest.fixture(scope="module")
def site_and_output(tmp_path_factory):
    services.require_module("mkdocs", "the docs extra (mkdocs) is not installed")
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return out, build.stdout + build.stderr


@pytest.fixture(scope="module")
def site(site_and_output):
    return site_and_output[0]


@pytest.fixture(scope="module")
def site_build_output(site_and_output):
    return site_and_output[1]


def test_every_docs_page_is_in_the_navigation(site):
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:", 1)[1]
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert [page for page in pages if f": {page}" not in nav] == []
    for page in pages:
        built = site / "index.html" if page == "index.md" else site / page[:-3] / "index.html"
        assert built.exists(), page


def test_the_home_page_holds_the_readmes_integration_steps(site):
    home = (site / "index.html").read_text()
    assert "django-admin startproject mysite" in home
    assert "ASGI_APPLICATION" in home and "whitenoise" in home
    # README links to docs/x.md become links to the site's pages.
    assert 'href="scaling/"' in home and "docs/scaling.md" not in home


def test_the_api_reference_comes_from_the_docstrings(site):
    reference = re.sub(r"<[^>]+>", "", (site / "reference" / "index.html").read_text())
    from django_stripe_bridge import money, stripe_api

    for function in (stripe_api.register_webhook, money.format_amount):
        first_line = (function.__doc__ or "").strip().splitlines()[0]
        words = first_line.replace("``", "").split()[:3]
        assert function.__name__ in reference
        assert " ".join(words) in reference, words


def test_search_indexes_every_page(site):
    index = json.loads((site / "search" / "search_index.json").read_text())
    locations = {doc["location"].split("#")[0] for doc in index["docs"]}
    assert {"", "reference/", "websocket-protocol/", "settings/"} <= locations


def test_run_docs_serves_the_site(site):
    """``./run docs`` (the README's command) serves the pages on DOCS_PORT."""
    port = free_port()
    process = subprocess.Popen(
        ["./run", "docs"],
        cwd=ROOT,
        env={**os.environ, "DOCS_PORT": str(port), "NO_MKDOCS_2_WARNING": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "./run docs exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/reference/", timeout=5) as r:
                    assert "register_webhook" in r.read().decode()
                    break
            except OSError:
                assert time.monotonic() < deadline, "./run docs did not serve in 60 s"
                time.sleep(0.3)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)


def build_reference(root, docstring: str) -> subprocess.CompletedProcess[str]:
    """A strict build of a one-page site whose reference shows a module with ``docstring``,
    under the site's own docstring settings and markup hook."""
    (root / "docs").mkdir(parents=True, exist_ok=True)
    (root / "docs" / "index.md").write_text("# Reference\n\n::: sample_module\n")
    (root / "sample_module.py").write_text(f'"""{docstring}"""\n\n\ndef thing():\n    """A."""\n')
    config = (ROOT / "mkdocs.yml").read_text().split("\nnav:", 1)[0]
    config = config.replace("docs/hooks/", f"{ROOT}/docs/hooks/")
    (root / "mkdocs.yml").write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(root / "site")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.mark.parametrize(
    "markup",
    [
        "Call :func:`thing` first.",
        "See :class:`~sample_module.Thing`.",
        "From code::\n\n    thing()\n",
    ],
)
def test_the_strict_build_fails_on_rest_markup_shown_literally(tmp_path, markup):
    services.require_module("mkdocs", "the docs extra (mkdocs) is not installed")
    build = build_reference(tmp_path, f"A module.\n\n{markup}")
    assert build.returncode != 0
    assert "index.md shows reST markup literally" in build.stderr, build.stderr


def test_the_strict_build_passes_the_same_in_markdown(tmp_path):
    services.require_module("mkdocs", "the docs extra (mkdocs) is not installed")
    build = build_reference(
        tmp_path, "A module.\n\nCall ``thing()`` first. From code:\n\n    thing()\n"
    )
    assert build.returncode == 0, build.stderr
    page = (tmp_path / "site" / "index.html").read_text()
    assert "<code>thing()</code>" in page and "<pre>" in page


def test_the_docs_build_is_quiet(site_build_output):
    """No warning with a fix left: the docs extra brings a signature formatter (Ruff)."""
    assert "Formatting signatures requires" not in site_build_output
    assert "WARNING" not in site_build_output
    docs_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["docs"]
    assert any(requirement.startswith(("ruff", "black")) for requirement in docs_extra)


def test_the_packages_docstrings_use_no_rest_roles():
    """help() shows docstrings as written: Markdown reads well there, reST roles do not."""
    role = re.compile(r":(func|class|meth|mod|data|attr|exc|obj):`")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in (ROOT / "django_stripe_bridge").rglob("*.py")
        if "migrations" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if role.search(line)
    ]
    assert found == []
