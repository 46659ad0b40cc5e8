"""HTTP routes of the bridge; include them under a prefix of their own.

Every path answers with and without a trailing slash, never with a redirect
(Stripe does not follow redirects for webhooks, and POST bodies do not survive them).
Every other path under the prefix is a JSON 404 (the last route matches anything).
"""

from django.urls import re_path

from . import views, webhooks
from .realtime import sse_http

app_name = "stripe_bridge"

urlpatterns = [
    re_path(r"^charge/?$", views.ChargeView.as_view(), name="charge"),
    re_path(r"^payment-intents/?$", views.PaymentIntentView.as_view(), name="payment-intents"),
    re_path(
        r"^checkout-sessions/?$", views.CheckoutSessionView.as_view(), name="checkout-sessions"
    ),
    re_path(
        # Any id: an unknown or malformed one is the view's JSON 404, not Django's HTML page.
        r"^transactions/(?P<transaction_id>[^/]*)/?$",
        views.TransactionView.as_view(),
        name="transaction",
    ),
    re_path(r"^events/?$", sse_http.events_view, name="events"),
    re_path(r"^webhooks/handler/?$", webhooks.WebhookView.as_view(), name="webhook"),
    # The other endpoints of WEBHOOK_ENDPOINTS (a Connect endpoint, an Event Destination).
    re_path(
        r"^webhooks/(?P<endpoint>[A-Za-z0-9_-]{1,40})/?$",
        webhooks.WebhookView.as_view(),
        name="webhook-endpoint",
    ),
    re_path(r"^schema/?$", views.SchemaView.as_view(), name="schema"),
    # Last: the JSON 404 for anything else under the prefix (an id holding "/", a typo).
    re_path(r"^(?P<path>.*)$", views.NoRouteView.as_view(), name="no-route"),
]
