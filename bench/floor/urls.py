"""The demo's URLs plus the floor webhook."""

from django.urls import include, path

from . import views

WEBHOOK_PATH = "/bench/floor/webhook"

urlpatterns = [
    path(WEBHOOK_PATH.lstrip("/"), views.webhook),
    path("", include("demo_project.urls")),
]
