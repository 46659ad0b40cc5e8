"""ASGI entry point of the demo: HTTP through Django, websockets through Channels.

Run it with ``daphne demo_project.asgi:application``.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from django_stripe_bridge.asgi import with_stripe_webhook  # noqa: E402
from django_stripe_bridge.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Stripe's webhooks take the lean path (no middleware, group commit); the demo
        # serves its own static files so that one Daphne process is the whole site (a
        # production site puts a web server or WhiteNoise in front instead).
        "http": with_stripe_webhook(ASGIStaticFilesHandler(django_asgi_app)),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
