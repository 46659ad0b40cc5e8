"""The websocket transport of the ``stripe`` channel (``ws/stripe/``).

Protocol (docs/websocket-protocol.md): the client sends ``subscribe``, ``unsubscribe`` and
``ping`` frames; the server answers ``subscribed``, ``unsubscribed``, ``pong``, ``error``,
and sends a ``message`` frame for each event that matches a subscription. Everything but
the socket itself — subscriptions, policy, replay, recovery, groups — is the
``Engine``'s.
"""

from __future__ import annotations

import functools
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer

from .. import messaging, metrics, outbox
from ..conf import bridge_settings
from . import layer_receive
from .closed_input import DropInputAfterClose
from .engine import Engine
from .frames import ErrorCode, FrameError, decode, dumps
from .heap import heap
from .limits import TokenBucket
from .subscription import Subscription
from .transport import RetryingReceive, Transport

__all__ = ["ErrorCode", "FrameError", "StripeEventConsumer", "Subscription"]

logger = logging.getLogger(__name__)


class StripeEventConsumer(DropInputAfterClose, Transport, AsyncWebsocketConsumer):
    """Serve ``ws/stripe/``: subscriptions with selectors, replay, and live Stripe events."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.engine = Engine(self)
        self._bucket = TokenBucket(bridge_settings.FRAME_BURST)
        self._counted = False
        #: The layer whose pump reads this connection's messages (layer_receive.py), if any.
        self._pump_layer: Any = None

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        """The connection's subscriptions by name."""
        return self.engine.subscriptions

    # -- connection -----------------------------------------------------------------------

    @property
    def channel_receive(self) -> Any:
        return self._channel_receive

    @channel_receive.setter
    def channel_receive(self, receive: Any) -> None:
        # Channels sets this to the layer's receive() and closes the socket if it raises.
        if self._pump_layer is None and layer_receive.attach(self.channel_layer):
            self._pump_layer = self.channel_layer
            receive = functools.partial(
                layer_receive.receive, self.channel_layer, self.channel_name
            )
        self._channel_receive = RetryingReceive(receive, self.engine)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Also when the server cancels the consumer without a disconnect message.
            await self._close_down()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Events go straight to the handler: it touches no database, so the thread hop of
        # Channels' close_old_connections() for every event is not needed.
        if message.get("type") == messaging.EVENT_MESSAGE_TYPE:
            await self.stripe_event(message)
        elif message.get("type") == messaging.EVENTS_MESSAGE_TYPE:
            await self.stripe_events(message)
        else:
            await super().dispatch(message)

    async def connect(self) -> None:
        outbox.ensure_relay()
        await self.accept()
        self._counted = True
        metrics.incr("websockets_open")
        heap.opened()
        self.engine.start()
        query = self.scope.get("query_string", b"").decode("latin-1")
        params = parse_qs(query, keep_blank_values=True, encoding="utf-8")
        if "selector" in params or "channel" in params:
            frame: dict[str, Any] = {"action": "subscribe", "subscription": "default"}
            for key in ("selector", "channel", "replay", "since"):
                if key in params:
                    frame[key] = params[key][-1]
            await self.engine.handle(frame)

    async def disconnect(self, code: int) -> None:
        await self._close_down()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        if self.engine.closed:
            return
        if not self._bucket.take(
            bridge_settings.MAX_FRAMES_PER_SECOND, bridge_settings.FRAME_BURST
        ):
            metrics.incr("frames_refused")
            metrics.incr("connections_rate_limited")
            rate = bridge_settings.MAX_FRAMES_PER_SECOND
            await self.send_error(
                FrameError(
                    ErrorCode.RATE_LIMITED,
                    f"More than {rate} frames per second; the connection is closed.",
                )
            )
            await self.close_with(1008)
            await self._close_down()  # frames still queued are dropped (closed_input.py)
            return
        try:
            frame = decode(text_data)
        except FrameError as error:
            await self.send_error(error)
            return
        await self.engine.handle(frame)

    # -- live events (channel-layer handlers) ---------------------------------------------

    async def stripe_event(self, message: dict[str, Any]) -> None:
        """Deliver an event to each subscription it matches, once."""
        await self.engine.deliver(message)

    async def stripe_events(self, message: dict[str, Any]) -> None:
        """A batch of events (the broadcast group's), in order."""
        await self.engine.deliver_batch(message)

    # -- frames ---------------------------------------------------------------------------

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Send one JSON frame to the client."""
        if not self.engine.closed:
            await self.send(text_data=dumps(frame))

    async def close_with(self, code: int) -> None:
        """Close the websocket with ``code``, or ``4000 + code % 1000`` where the server
        refuses it (Daphne's websocket library sends only 1000 and 3000 to 4999)."""
        try:
            await self.close(code=code)
        except Exception:
            await self.close(code=4000 + code % 1000)

    async def _close_down(self) -> None:
        """Stop the engine and leave every group; safe to call more than once."""
        if self._counted:
            self._counted = False
            metrics.incr("websockets_open", -1)
            heap.gone()
        if self._pump_layer is not None:
            layer_receive.detach(self._pump_layer)
            self._pump_layer = None
        await self.engine.close()
