"""The demo page: charge a test card and watch its status arrive over the websocket."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from django_stripe_bridge.conf import bridge_settings


def index(request: HttpRequest) -> HttpResponse:
    """Render the payment page with the Stripe base and publishable key the browser needs."""
    return render(
        request,
        "demo_project/index.html",
        {
            "publishable_key": bridge_settings.PUBLISHABLE_KEY or "",
            "api_base": bridge_settings.API_BASE or "",
            "offline": bool(bridge_settings.API_BASE),
        },
    )
