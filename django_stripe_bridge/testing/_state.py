"""Keeping the stand-in's objects in a file, so that a restart finds them again (the demo's).

localstripe keeps every object in one dict (``resources.store``); this writes it with
``pickle`` after each request that may change it and when the stand-in stops, and reads it
back at start. The file is the stand-in's own, written by this process alone: loading it
trusts it as much as the code. Webhook registrations, idempotency replays and what is
scheduled for "later" are not kept (the demo registers its webhook on every start).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any


def load(store: dict[str, Any], path: Path) -> int:
    """Fill ``store`` from ``path`` if it exists; returns how many objects were read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    saved = pickle.loads(data)  # noqa: S301 - our own file (see the module's docstring)
    dict.clear(store)
    dict.update(store, saved)
    return len(saved)


def save(store: dict[str, Any], path: Path) -> None:
    """Write ``store`` to ``path`` atomically (a crash leaves the previous file whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(pickle.dumps(dict(store), protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(temporary, path)
