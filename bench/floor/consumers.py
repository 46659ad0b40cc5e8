"""The floor websocket consumer: one group per id, the id's latest row on connect."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from .models import FloorEvent
from .views import group

#: Group joins and leaves in flight at once. Without a bound, a burst of connections takes
#: more Redis connections than channels-redis's pool allows (redis-py refuses the 101st) and
#: handshakes fail with 500: the least a consumer must do to survive a reconnect storm.
GROUP_OPS = 32
_limits: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def group_ops() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    return _limits.setdefault(loop, asyncio.Semaphore(GROUP_OPS))


@database_sync_to_async
def latest(object_id: str) -> FloorEvent | None:
    return FloorEvent.objects.filter(object_id=object_id).order_by("-id").first()


class FloorConsumer(AsyncWebsocketConsumer):
    """``?id=<object id>[&replay=latest]``: join its group; send its latest row if asked."""

    async def connect(self) -> None:
        params = parse_qs(self.scope["query_string"].decode())
        self.object_id = params["id"][0]
        async with group_ops():
            await self.channel_layer.group_add(group(self.object_id), self.channel_name)
        await self.accept()
        await self.send(json.dumps({"type": "subscribed", "id": self.object_id}))
        if params.get("replay", ["none"])[0] == "latest":
            row = await latest(self.object_id)
            if row is not None:
                frame = {"type": "message", "replayed": True, "event_id": row.event_id}
                await self.send(json.dumps({**frame, "status": row.status}))

    async def disconnect(self, code: int) -> None:
        async with group_ops():
            await self.channel_layer.group_discard(group(self.object_id), self.channel_name)

    async def floor_event(self, message: dict[str, Any]) -> None:
        frame = {"type": "message", "replayed": False, "event_id": message["event_id"]}
        await self.send(json.dumps({**frame, "status": message["status"]}))
