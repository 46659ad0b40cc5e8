"""A Django site set up exactly as the README's "Add it to your Django site" says.

Nothing else from the test settings: no drf-spectacular in INSTALLED_APPS, no
REST_FRAMEWORK settings. tests/test_minimal_site.py runs it in a subprocess.
"""

import os

SECRET_KEY = "minimal-site-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "tests.minimal_site.urls"
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # The README's lines:
    "rest_framework",
    "channels",
    "django_stripe_bridge",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["MINIMAL_SITE_DB"]}
}
STRIPE_BRIDGE = {
    "API_KEY": "sk_test_minimal_site",
    "WEBHOOK_SECRETS": ["whsec_minimal_site"],
}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
