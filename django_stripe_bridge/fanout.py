"""Which channel-layer groups have members: a batch of events skips the empty ones.

Most payments have no subscriber of their own, yet channels-redis's ``group_send`` costs two
round trips to Redis even for an empty group (drop the expired members, read the rest).
``occupied()`` asks once for every group of a batch, on each Redis server, and the
publisher sends only to the groups that have members.

Skipping an empty group loses nothing: a subscription joins its groups before it reads what
is stored (``realtime.engine``), and an event is published only once it is committed, so a
subscriber that joins after the question reads the event from the database.

Only channels-redis's ``RedisChannelLayer`` (not a subclass that changes ``group_send``) is
asked; for any other layer ``occupied()`` answers ``None``: send to every group.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any


async def occupied(layer: Any, groups: Collection[str]) -> set[str] | None:
    """The ones of ``groups`` that have a live member on ``layer``, in one round trip per
    Redis server; ``None`` when the layer cannot be asked (send to all of them).

    A member whose ``group_expiry`` has passed does not count, as ``group_send`` drops it.
    Raises what Redis raises (the layer is down: ``group_send`` would fail too).
    """
    if not groups or not _askable(layer):
        return None
    oldest = f"({int(time.time()) - int(layer.group_expiry)}"
    by_server: dict[int, list[str]] = {}
    for group in groups:
        by_server.setdefault(layer.consistent_hash(group), []).append(group)
    found: set[str] = set()
    for index, members in by_server.items():
        pipe = layer.connection(index).pipeline(transaction=False)
        for group in members:
            pipe.zcount(layer._group_key(group), oldest, "+inf")
        counts = await pipe.execute()
        found.update(group for group, count in zip(members, counts, strict=True) if count)
    return found


def _askable(layer: Any) -> bool:
    """Whether ``layer`` is channels-redis's core layer with its own ``group_send``."""
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:
        return False
    if not isinstance(layer, RedisChannelLayer):
        return False
    send = getattr(type(layer), "group_send", None)
    if send is not RedisChannelLayer.group_send or "group_send" in vars(layer):
        return False  # a subclass, or a test, changed how groups are sent to
    return all(
        hasattr(layer, name) for name in ("_group_key", "consistent_hash", "connection")
    ) and isinstance(getattr(layer, "group_expiry", None), int | float)
