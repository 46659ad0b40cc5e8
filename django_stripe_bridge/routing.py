"""WebSocket routes: add ``websocket_urlpatterns`` to your ASGI ``URLRouter``."""

from django.urls import re_path

from .realtime import websocket as consumers

websocket_urlpatterns = [
    re_path(r"^ws/stripe/?$", consumers.StripeEventConsumer.as_asgi()),
]
