"""An exception-reporter filter that hides the passwords of URLs in Django's error reports.

Django hides settings whose *name* looks secret (``PASSWORD``, ``SECRET_KEY``…), never a
password inside a value: ``CHANNEL_LAYERS``' ``redis://:password@host`` (and
``REDIS_URL``/``DATABASE_URL`` in the request's ``META`` under ``runserver``) would be shown
on the ``DEBUG`` page and mailed to ``ADMINS``. Select it in the settings
(``DEFAULT_EXCEPTION_REPORTER_FILTER``, see docs/settings.md).
"""

from __future__ import annotations

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter as DjangoFilter

__all__ = ["SafeExceptionReporterFilter", "hide_url_passwords", "holds_url_password"]

#: ``scheme://user:password@`` (or ``scheme://token@``): the user info of a URL.
_USER_INFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^@/?#\s]+)@")


def _masked(match: re.Match[str]) -> str:
    user, colon, _ = match["info"].partition(":")
    # A user info without a colon may be a token (https://TOKEN@host): hidden whole.
    shown = f"{user}:" if colon else ""
    return f"{match['scheme']}{shown}{DjangoFilter.cleansed_substitute}@"


def holds_url_password(text: str) -> bool:
    """Whether ``text`` holds a URL with a password or token in it."""
    return _USER_INFO.search(text) is not None


def hide_url_passwords(value: Any) -> Any:
    """``value`` with the password of every URL in it (in strings, dicts, lists, tuples)
    replaced by stars; anything else as it is."""
    if isinstance(value, str):
        return _USER_INFO.sub(_masked, value)
    if isinstance(value, dict):
        return {key: hide_url_passwords(item) for key, item in value.items()}
    if isinstance(value, list):
        return [hide_url_passwords(item) for item in value]
    if isinstance(value, tuple):
        return tuple(hide_url_passwords(item) for item in value)
    return value


class SafeExceptionReporterFilter(DjangoFilter):
    """Django's filter, plus: no URL's password in settings, ``META`` or frame variables."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        # Django's recursion into dicts, lists and tuples comes back through here.
        cleansed = super().cleanse_setting(key, value)
        return hide_url_passwords(cleansed) if isinstance(cleansed, str) else cleansed

    def cleanse_special_types(self, request: Any, value: Any) -> Any:
        return hide_url_passwords(super().cleanse_special_types(request, value))
