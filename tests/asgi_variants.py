"""ASGI applications for the server checks (tests/test_checks_server.py): right and wrong."""

from channels.generic.websocket import WebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application
from django.urls import path, re_path

from django_stripe_bridge.routing import websocket_urlpatterns

django_only = get_asgi_application()


class OtherConsumer(WebsocketConsumer):
    pass


no_websocket = ProtocolTypeRouter({"http": django_only})
other_consumer = ProtocolTypeRouter(
    {
        "http": django_only,
        "websocket": URLRouter([re_path(r"^ws/other/$", OtherConsumer.as_asgi())]),
    }
)
readme = ProtocolTypeRouter(
    {
        "http": django_only,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
nested = ProtocolTypeRouter(
    {"websocket": URLRouter([path("site/", URLRouter(websocket_urlpatterns))])}
)


async def opaque(scope, receive, send):
    """An application whose routing the check cannot see into."""
    await readme(scope, receive, send)
