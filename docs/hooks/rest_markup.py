"""MkDocs hook: a page that shows reST markup literally is a warning (an error with
``--strict``, as the suite and ``./run docs`` build).

The docstrings are written in the site's own syntax, Markdown (code in ``double
backticks``, a code block indented under a line ending in ``:``), which also reads well in
``help()``. A reST role (``:func:`x```, ``:class:`X```) or literal-block marker (``text::``)
would reach the reference page as text; this hook names the page and the markup instead.
"""

from __future__ import annotations

import logging
import re
from typing import Any

log = logging.getLogger("mkdocs.hooks.rest_markup")

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|ref|const):(?=<code>|`)")
_LITERAL_MARKER = re.compile(r"(\S+)::</p>")


def problems(html: str) -> list[str]:
    """The reST markup shown literally in a rendered page."""
    found = [match.group(0) for match in _ROLE.finditer(html)]
    found += [f"…{match.group(1)[-20:]}::" for match in _LITERAL_MARKER.finditer(html)]
    return found


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    for markup in problems(html):
        log.warning(
            "%s shows reST markup literally (%s): write docstrings in Markdown, "
            "``name`` for code and an indented block after a line ending in ':'.",
            page.file.src_uri,
            markup,
        )
    return html
