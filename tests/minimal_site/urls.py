from django.urls import include, path

urlpatterns = [path("api/services/Stripe/", include("django_stripe_bridge.urls"))]
