"""HTTP routes of the bridge; include them under any prefix.

Every path answers with and without a trailing slash, never with a redirect
(Stripe does not follow redirects for webhooks, and POST bodies do not survive them).
"""

from django.urls import re_path

from . import views, webhooks

app_name = "stripe_bridge"

urlpatterns = [
    re_path(r"^charge/?$", views.ChargeView.as_view(), name="charge"),
    re_path(r"^payment-intents/?$", views.PaymentIntentView.as_view(), name="payment-intents"),
    re_path(
        # Any id: an unknown or malformed one is the view's JSON 404, not Django's HTML page.
        r"^transactions/(?P<transaction_id>[^/]*)/?$",
        views.TransactionView.as_view(),
        name="transaction",
    ),
    re_path(r"^webhooks/handler/?$", webhooks.WebhookView.as_view(), name="webhook"),
    re_path(r"^schema/?$", views.SchemaView.as_view(), name="schema"),
]
