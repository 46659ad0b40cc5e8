"""WebSocket consumer (placeholder until the real-time issue lands)."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class StripeEventConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.close()
