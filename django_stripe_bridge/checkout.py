"""Where Stripe Checkout sends the customer back: the success and cancel URLs of a session.

A URL comes from the settings (``CHECKOUT_SUCCESS_URL``, ``CHECKOUT_CANCEL_URL``; a path is
made absolute on the request's host) or from the request, and then only on a host the site
allows: ``CHECKOUT_REDIRECT_HOSTS``, else ``ALLOWED_HOSTS``, never ``*``. Anything else would
let whoever calls the endpoint send a paying customer to a site of theirs: an open redirect
with the site's name on the payment page.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ValidationError

from .conf import SETTING_NAME, bridge_settings

#: The placeholder Stripe replaces with the session's id in ``success_url``.
SESSION_ID_PLACEHOLDER = "{CHECKOUT_SESSION_ID}"
URL_MAX_LENGTH = 2048


def allowed_redirect_hosts() -> list[str]:
    """The host patterns a request's URL may point at (Django's ``ALLOWED_HOSTS`` syntax)."""
    hosts = bridge_settings.CHECKOUT_REDIRECT_HOSTS
    if hosts is None:
        hosts = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not hosts:
            hosts = [".localhost", "127.0.0.1", "[::1]"]  # as Django allows in DEBUG
    return [host for host in hosts if isinstance(host, str) and host != "*"]


def redirect_url_pattern() -> str:
    """The regular expression of the URLs a request may name: ``http(s)://``, an allowed
    host (in lowercase), an optional port, then a path, query or fragment without spaces,
    control characters or backslashes. The OpenAPI schema states the same pattern."""
    hosts = [_host_pattern(host) for host in allowed_redirect_hosts()]
    host = "|".join(hosts) if hosts else "(?!)"  # no host allowed: nothing matches
    return rf"^https?://({host})(:[0-9]{{1,5}})?([/?#][^\x00-\x20\x7f\\]*)?$"


def _host_pattern(host: str) -> str:
    """An ``ALLOWED_HOSTS`` entry as a regular expression: ``.example.com`` is the domain and
    its subdomains."""
    host = host.lower()
    if host.startswith("."):
        return rf"([a-z0-9-]+\.)*{re.escape(host[1:])}"
    return re.escape(host)


def redirect_host_problem(url: str) -> str | None:
    """``None`` when ``url`` may be a redirect; ``"invalid"`` when it is no absolute http(s)
    URL of at most ``URL_MAX_LENGTH`` characters; else the refused host."""
    if len(url) > URL_MAX_LENGTH:
        return "invalid"
    if re.fullmatch(redirect_url_pattern(), url):
        return None
    shape = re.fullmatch(r"https?://([^/?#]*)([/?#][^\x00-\x20\x7f\\]*)?", url)
    if shape is None or not shape.group(1):
        return "invalid"
    return shape.group(1)


def redirect_urls(
    request: Any, success_url: str | None, cancel_url: str | None
) -> tuple[str, str | None]:
    """The session's success and cancel URLs: the request's (already checked), else the
    settings' (a path is made absolute on the request's host)."""
    success = success_url or _configured(request, "CHECKOUT_SUCCESS_URL")
    if not success:
        raise ValidationError(
            {
                "success_url": "Missing 'success_url': send one on a host this site allows, or "
                f"set {SETTING_NAME}['CHECKOUT_SUCCESS_URL'] (with {SESSION_ID_PLACEHOLDER} "
                "where the session id goes)."
            }
        )
    return success, cancel_url or _configured(request, "CHECKOUT_CANCEL_URL")


def _configured(request: Any, name: str) -> str | None:
    value = getattr(bridge_settings, name)
    if not value:
        return None
    value = str(value)
    if value.startswith("/"):
        # build_absolute_uri would percent-encode the placeholder's braces.
        return request.build_absolute_uri("/").rstrip("/") + value
    return value
