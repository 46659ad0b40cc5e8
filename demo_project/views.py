"""The demo page: charge a test card and watch its status arrive over the websocket."""

import json

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse

from django_stripe_bridge.conf import bridge_settings
from django_stripe_bridge.idempotency import ensure_client_scope
from django_stripe_bridge.money import decimals

#: Currencies the page offers unless ``STRIPE_BRIDGE['CURRENCIES']`` names others; JPY shows
#: a zero-decimal currency (¥500 is ``amount=500``).
DEMO_CURRENCIES = ("usd", "eur", "gbp", "jpy")


def page_currencies() -> list[str]:
    """The currencies to offer, the default one first."""
    default = str(bridge_settings.DEFAULT_CURRENCY).lower()
    allowed = [str(code).lower() for code in (bridge_settings.CURRENCIES or DEMO_CURRENCIES)]
    return [default, *(code for code in allowed if code != default)]


# The browser's idempotency scope comes with the page, before any payment (docs/http-api.md).
@ensure_client_scope
def index(request: HttpRequest) -> HttpResponse:
    """Render the payment page with the Stripe base and publishable key the browser needs."""
    api_base = (bridge_settings.API_BASE or "").rstrip("/")
    currencies = page_currencies()
    config = {
        # Decimals of each currency's smallest unit: the page turns "10.50 USD" into 1050.
        "decimals": {code: decimals(code) for code in currencies},
        "offline": bool(api_base),
        "apiBase": api_base,
        "publishableKey": bridge_settings.PUBLISHABLE_KEY or "",
        "chargeUrl": reverse("stripe_bridge:charge"),
        "csrfToken": get_token(request),
    }
    # Escape "<" so that no value can close the <script> element holding the JSON.
    config_json = json.dumps(config).replace("<", "\\u003c")
    return render(
        request,
        "demo_project/index.html",
        {
            "config": config_json,
            "offline": config["offline"],
            "api_base": api_base,
            "currencies": currencies,
        },
    )
