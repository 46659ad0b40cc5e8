"""The demo pages: charge a test card, or pay on Stripe Checkout, and watch the status
arrive over the websocket."""

import json
import re

from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse

from django_stripe_bridge.conf import bridge_settings
from django_stripe_bridge.idempotency import ensure_client_scope
from django_stripe_bridge.models import StripeTransaction
from django_stripe_bridge.money import decimals, format_amount

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
        "checkoutUrl": reverse("stripe_bridge:checkout-sessions"),
        # Server-Sent Events, where websockets cannot pass (a proxy that strips Upgrade).
        "eventsUrl": reverse("stripe_bridge:events"),
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
            "canceled": request.GET.get("checkout") == "canceled",
        },
    )


_SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{1,250}")


def checkout_success(request: HttpRequest) -> HttpResponse:
    """Where Stripe Checkout sends the customer back: the payment's status now, then live.

    The page never decides that the payment succeeded from the redirect alone: it shows what
    the webhooks said so far (``processing`` until they come) and follows the session.
    """
    session_id = request.GET.get("session_id", "")
    if not _SESSION_ID.fullmatch(session_id):
        raise Http404("No Checkout Session id in the URL.")
    tx = StripeTransaction.objects.filter(pk=session_id).first()
    status = (tx.status if tx is not None else "") or "processing"
    config = {"sessionId": session_id, "pollUrl": reverse("stripe_bridge:transaction", args=[""])}
    return render(
        request,
        "demo_project/checkout_success.html",
        {
            "config": json.dumps(config).replace("<", "\\u003c"),
            "session_id": session_id,
            "status": status,
            "amount": format_amount(tx.amount, tx.currency) if tx and tx.currency else "—",
        },
    )
