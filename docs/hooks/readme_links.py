"""MkDocs hook: include the README's integration section in the site's home page.

``index.md`` holds the line ``--8<-- "README.md:integration"``; it is replaced by the
README's text between its ``[start:integration]`` and ``[end:integration]`` markers, so the
steps are written (and tested, by tests/test_readme_install.py) once. The README links to
``docs/x.md``; on the site those pages are ``x.md``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_INCLUDE = '--8<-- "README.md:integration"'
_START = "<!-- --8<-- [start:integration] -->"
_END = "<!-- --8<-- [end:integration] -->"
_DOCS_LINK = re.compile(r"\]\(docs/([\w./-]+\.md(?:#[\w-]+)?)\)")


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    if _INCLUDE not in markdown:
        return markdown
    readme = (Path(config["config_file_path"]).parent / "README.md").read_text()
    section = readme.split(_START, 1)[1].split(_END, 1)[0]
    return markdown.replace(_INCLUDE, _DOCS_LINK.sub(r"](\1)", section))
