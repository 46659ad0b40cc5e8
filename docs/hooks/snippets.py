"""MkDocs hook: snippets. A line ``--8<-- "FILE:name"`` in a page becomes the text of FILE
between its ``--8<-- [start:name]`` and ``--8<-- [end:name]`` markers.

Text shown in more than one place is written once, where GitHub renders it too (mostly
the README), and included elsewhere; tests/test_readme_install.py runs the README's
integration steps, so what the site shows is what is tested. Markers may sit inside HTML
comments (they do in the README) and are dropped from included text, also those of
sections nested in the one included. Links to ``docs/x.md`` become ``x.md`` (the site's
pages). A snippet whose file or section does not exist fails the build.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

_INCLUDE = re.compile(r'^(?P<indent>[ \t]*)--8<-- "(?P<file>[^":]+):(?P<name>[\w-]+)"[ \t]*$', re.M)
_MARKER = re.compile(r"^.*--8<-- \[(?P<kind>start|end):(?P<name>[\w-]+)\].*\n?", re.M)
_DOCS_LINK = re.compile(r"\]\(docs/([\w./-]+\.md(?:#[\w-]+)?)\)")


def section(root: Path, file: str, name: str) -> str:
    """The text of ``file`` (relative to ``root``) between the markers of section ``name``."""
    path = root / file
    if not path.is_file():
        raise PluginError(f'snippet "{file}:{name}": no file {file}')
    text = path.read_text()
    start = re.search(rf"^.*--8<-- \[start:{re.escape(name)}\].*\n", text, re.M)
    end = re.search(rf"^.*--8<-- \[end:{re.escape(name)}\].*$", text, re.M)
    if not start or not end or end.start() < start.end():
        raise PluginError(f'snippet "{file}:{name}": no section {name} in {file}')
    return _MARKER.sub("", text[start.end() : end.start()])


def expand(markdown: str, root: Path) -> str:
    """``markdown`` with every snippet line replaced by its section."""

    def include(match: re.Match[str]) -> str:
        text = _DOCS_LINK.sub(r"](\1)", section(root, match["file"], match["name"]))
        indent = match["indent"]
        return "".join(indent + line if line.strip() else line for line in text.splitlines(True))

    return _INCLUDE.sub(include, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    return expand(markdown, Path(config["config_file_path"]).parent)
