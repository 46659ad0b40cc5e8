"""WebSocket routes: add ``websocket_urlpatterns`` to your ASGI ``URLRouter``."""

from django.urls import re_path

from .realtime.websocket import StripeEventConsumer

websocket_urlpatterns = [
    re_path(r"^ws/stripe/?$", StripeEventConsumer.as_asgi()),
]
