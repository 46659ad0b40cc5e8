"""The bench server: the demo's stack with the floor's websocket route beside the bridge's.

``BENCH_WEBHOOK_PATH`` picks how the bridge's webhook is served: ``view`` (default) through
Django like every other URL, ``asgi`` through ``django_stripe_bridge.asgi.with_stripe_webhook``
mounted in front of Django. The floor is served through Django either way.
``OK_PATH`` answers 200 at once, before Django and the bridge, once it has read the body: the
ceiling the load can reach on this server (``bench_floors.py`` measures it before the rounds).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.floor.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.urls import re_path  # noqa: E402

from bench.floor.consumers import FloorConsumer  # noqa: E402
from django_stripe_bridge.routing import websocket_urlpatterns  # noqa: E402

WEBHOOK_PATHS = ("view", "asgi")
#: The path that only reads the body and answers 200 (the load's ceiling).
OK_PATH = "/bench/ok"
_OK_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"17")],
}
_OK_BODY = {"type": "http.response.body", "body": b'{"received":true}'}


def answering_ok(app):
    """``app`` with ``OK_PATH`` answered at once (after the body is read), before anything else."""

    async def application(scope, receive, send):
        if scope["type"] != "http" or scope.get("path") != OK_PATH:
            return await app(scope, receive, send)
        while (await receive()).get("more_body"):
            pass
        await send(_OK_START)
        await send(_OK_BODY)

    return application


def http_application():
    """Django behind the demo's static files handler, with the bridge's ASGI webhook in
    front when ``BENCH_WEBHOOK_PATH=asgi``."""
    mode = os.environ.get("BENCH_WEBHOOK_PATH") or "view"
    site = ASGIStaticFilesHandler(django_asgi_app)
    if mode == "view":
        return answering_ok(site)
    if mode == "asgi":
        try:
            from django_stripe_bridge.asgi import with_stripe_webhook
        except ImportError as error:
            raise ImproperlyConfigured(
                "BENCH_WEBHOOK_PATH=asgi needs django_stripe_bridge.asgi.with_stripe_webhook, "
                f"which this checkout does not have ({error})."
            ) from error
        return answering_ok(with_stripe_webhook(site))
    raise ImproperlyConfigured(f"BENCH_WEBHOOK_PATH must be one of {WEBHOOK_PATHS}, not {mode!r}")


application = ProtocolTypeRouter(
    {
        "http": http_application(),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(
                URLRouter(
                    [
                        *websocket_urlpatterns,
                        re_path(r"^bench/floor/ws/?$", FloorConsumer.as_asgi()),
                    ]
                )
            )
        ),
    }
)
