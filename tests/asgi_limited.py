"""The test site as an ASGI application behind the bridge's body limit (served by Uvicorn)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from django.core.asgi import get_asgi_application

from django_stripe_bridge.asgi import BodyLimitMiddleware

#: Without the middleware: what the tests compare against.
plain = get_asgi_application()
application = BodyLimitMiddleware(plain)
