"""Settings of the demo site, read from the environment.

Defaults run everything on one machine with nothing installed but Python: SQLite,
the in-memory channel layer and the offline Stripe stand-in. See README.md for the
variables (`STRIPE_API_KEY`, `DATABASE_URL`, `REDIS_URL`, …).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

import django_stripe_bridge

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("DEMO_VAR_DIR", BASE_DIR / "var"))


def env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


DEBUG = env_flag("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        # Production-like runs never sign sessions with a key published in this file.
        raise ImproperlyConfigured("DJANGO_DEBUG=0 needs DJANGO_SECRET_KEY to be set.")
    SECRET_KEY = "demo-only-insecure-key-set-DJANGO_SECRET_KEY-in-production"  # noqa: S105
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "daphne",
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
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_project.urls"
ASGI_APPLICATION = "demo_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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


def database_from_url(url: str) -> dict[str, Any]:
    """A DATABASES entry from a dj-database-url URL, tuned for concurrent webhooks on SQLite."""
    config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=0))
    if config["ENGINE"] == "django.db.backends.postgresql":
        # A connection pool (psycopg_pool): under ASGI, Django would otherwise open a new
        # connection for every request (persistent connections are for WSGI only).
        config.setdefault("OPTIONS", {})["pool"] = {"min_size": 2, "max_size": 10}
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # IMMEDIATE transactions take the write lock up front, so concurrent webhooks wait
        # for each other (up to `timeout` seconds) instead of failing with "database is locked".
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    return config


if not os.environ.get("DATABASE_URL"):
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'demo.sqlite3'}"
    )
}

if os.environ.get("REDIS_URL"):
    from django_stripe_bridge.layers import redis_channel_layer

    CHANNEL_LAYERS = {
        # Safe socket timeouts on every redis-py version (docs/scaling.md). Several URLs,
        # comma-separated, shard the layer over several Redis servers.
        "default": redis_channel_layer(
            *os.environ["REDIS_URL"].split(","),
            pubsub=os.environ.get("CHANNELS_REDIS_PUBSUB") == "1",
            # Lets several sites (or test runs) share one Redis without hearing each other.
            prefix=os.environ.get("CHANNELS_REDIS_PREFIX") or "asgi",
        )
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# Django hides secret-looking setting names only: this also hides REDIS_URL's password in
# CHANNEL_LAYERS (and any URL's) on the DEBUG page and in error e-mails.
DEFAULT_EXCEPTION_REPORTER_FILTER = "django_stripe_bridge.error_reports.SafeExceptionReporterFilter"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "django-stripe-bridge demo API",
    "VERSION": django_stripe_bridge.__version__,
    "SERVE_INCLUDE_SCHEMA": False,
}

_throttle = os.environ.get("STRIPE_CHARGE_THROTTLE_RATE", "10/min")

STRIPE_BRIDGE = {
    "API_KEY": os.environ.get("STRIPE_API_KEY") or None,
    "PUBLISHABLE_KEY": os.environ.get("STRIPE_PUBLISHABLE_KEY") or None,
    "API_BASE": os.environ.get("STRIPE_API_BASE") or None,
    "WEBHOOK_SECRETS": [
        secret.strip()
        for secret in os.environ.get("STRIPE_WEBHOOK_SECRET", "").split(",")
        if secret.strip()
    ],
    "CHARGE_THROTTLE_RATE": None if _throttle.lower() in ("off", "none", "") else _throttle,
    # Stripe Checkout brings the customer back here (paths: made absolute on the request's host).
    "CHECKOUT_SUCCESS_URL": "/checkout/success?session_id={CHECKOUT_SESSION_ID}",
    "CHECKOUT_CANCEL_URL": "/?checkout=canceled",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"django.request": {"level": "WARNING"}},
}
