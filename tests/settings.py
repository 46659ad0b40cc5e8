"""Settings for the test suite.

The database is SQLite unless ``DATABASE_URL`` names another (the test command runs the
database tests a second time on PostgreSQL). ``REDIS_URL`` is read by the Redis fixtures,
not here: tests that need channels-redis configure it themselves.
"""

import os
import tempfile

from demo_project.settings import database_from_url

SECRET_KEY = "tests-only-secret-key"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "django_stripe_bridge",
    "demo_project",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"
ASGI_APPLICATION = "demo_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_DB_URL = os.environ.get("DATABASE_URL") or "sqlite:///" + os.path.join(
    tempfile.gettempdir(), f"stripe-bridge-tests-{os.getpid()}.sqlite3"
)
DATABASES = {"default": database_from_url(_DB_URL)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so that threads in transactional tests share one database.
    DATABASES["default"]["TEST"] = {"NAME": DATABASES["default"]["NAME"]}

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}

STRIPE_BRIDGE = {
    "API_KEY": "sk_test_bridge_tests",
    "WEBHOOK_SECRETS": ["whsec_tests_primary"],
    "CHARGE_THROTTLE_RATE": None,
    # No background relay thread inside the test process: the tests call the relay directly
    # (and the live-server tests run it in their Daphne processes).
    "OUTBOX_RELAY": False,
    # Thin events are fetched by the tests' own drain() calls unless a test says otherwise.
    "THIN_RELAY": False,
}
