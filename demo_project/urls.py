from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.index, name="demo-index"),
    path("checkout/success", views.checkout_success, name="demo-checkout-success"),
    path("admin/", admin.site.urls),
    path("api/services/Stripe/", include("django_stripe_bridge.urls")),
]
