"""Whose an ``Idempotency-Key`` is: a retry never pays twice, and never answers another client.

A client's key is claimed (an ``IdempotencyKey`` row,
committed) before its create call reaches Stripe, by the client's *scope*: the signed-in
user, else a random token in the signed ``stripe_bridge_client`` cookie. Requests in the
owner's scope go to Stripe with the owner's key, so Stripe replays the first answer. A
client that presented no scope (its first request, the cookie not yet set) gets a new one,
and its key is also bound to the request's content: the same request without the cookie (a
retry after a lost response) replays the payment, answered without its secrets, since anyone
who learnt the key and the body could send it. Anything else with the key is refused (409).
docs/http-api.md explains the choice.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.urls import NoReverseMatch, reverse

from .exceptions import StripeIdempotencyConflict

__all__ = [
    "CLIENT_SCOPE_COOKIE",
    "Claim",
    "claim",
    "client_scope_path",
    "client_token",
    "content_digest",
    "ensure_client_scope",
    "new_client_token",
    "scoped_idempotency_key",
    "set_client_scope_cookie",
    "summary",
]

#: The signed cookie that gives an anonymous client its own idempotency scope.
CLIENT_SCOPE_COOKIE = "stripe_bridge_client"
#: How long a browser keeps it, renewed by every create request (Stripe keeps keys 24 h).
CLIENT_SCOPE_MAX_AGE = 30 * 24 * 3600
CLIENT_SCOPE_SALT = "django_stripe_bridge.idempotency-scope"
_CLIENT_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")

#: What a client that may not use the key is told: the same whether the key is another
#: client's or was sent with another body, so that it learns nothing of the first request.
CONFLICT_MESSAGE = (
    "This Idempotency-Key was already used by another client or with another request. Send "
    "a new key for a new payment, or the same request from the same client to get the first "
    "result again."
)
#: The fields of an object that ``summary()`` keeps.
SUMMARY_FIELDS = ("id", "object", "status", "amount", "currency", "livemode", "created")


@dataclasses.dataclass(frozen=True)
class Claim:
    """The outcome of ``claim()``: the key to send Stripe, and who is asking."""

    #: The key for Stripe: the owner's, so that Stripe replays the first request.
    stripe_key: str
    #: ``False``: a request with the same content as the owner's, from a client that cannot
    #: show it is the owner. Answer it without secrets (``summary()``, or fewer fields).
    owner: bool


def scoped_idempotency_key(key: str, scope: str) -> str:
    """The key sent to Stripe for a client's ``key`` within ``scope`` (``user:<pk>``, …).

    Two scopes never give one key, so no client can replay another's request at Stripe.
    """
    digest = hashlib.sha256(f"{len(scope)}:{scope}:{key}".encode()).hexdigest()
    return f"sbk_{digest}"


def content_digest(operation: str, body: Mapping[str, Any]) -> str:
    """SHA-256 of ``operation`` and the validated ``body``, whatever the order of its keys."""
    canonical = json.dumps(
        [operation, body], sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim(
    key: str,
    *,
    scope: str,
    operation: str,
    body: Mapping[str, Any],
    presented: bool = True,
) -> Claim:
    """Claim ``key`` for ``scope`` (or find it claimed) before calling Stripe with it.

    ``operation`` names the create call (``"charge"``…) and ``body`` its validated
    parameters. ``presented=False`` says the client showed no scope and ``scope`` was made
    for it just now (a new cookie): the key is then bound to the request's content as well.
    Raises ``StripeIdempotencyConflict`` (409) when
    the key belongs to another client and the content does not bind it to this request.
    Call it outside a transaction (the views are ``non_atomic_requests``): the claim must be
    committed before Stripe is called, so that a concurrent retry sees it.
    """
    from .models import IdempotencyKey

    digest = content_digest(operation, body)
    scope_digest = _sha256(scope)
    record, created = IdempotencyKey.objects.get_or_create(
        key_digest=_sha256(key),
        defaults={
            "scope_digest": scope_digest,
            "content_digest": "" if presented else digest,
            "stripe_key": scoped_idempotency_key(key, scope),
        },
    )
    if created or hmac.compare_digest(record.scope_digest, scope_digest):
        return Claim(stripe_key=record.stripe_key, owner=True)
    if record.content_digest and hmac.compare_digest(record.content_digest, digest):
        return Claim(stripe_key=record.stripe_key, owner=False)
    raise StripeIdempotencyConflict(CONFLICT_MESSAGE)


def summary(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a non-owner's replay may be told of a Stripe object: no secret, no personal data."""
    return {name: obj[name] for name in SUMMARY_FIELDS if name in obj}


# --- the scope cookie ------------------------------------------------------------------------


def new_client_token() -> str:
    """A fresh random scope token for an anonymous client."""
    return secrets.token_urlsafe(24)


def client_token(request: HttpRequest) -> str | None:
    """The scope token of the request's valid signed cookie, or ``None``."""
    token = request.get_signed_cookie(CLIENT_SCOPE_COOKIE, default=None, salt=CLIENT_SCOPE_SALT)
    return token if isinstance(token, str) and _CLIENT_TOKEN.fullmatch(token) else None


def client_scope_path(create_path: str | None = None) -> str:
    """The cookie's path: the folder of a create endpoint (``/api/services/Stripe/``).

    Without ``create_path``, that of the app's ``charge`` route (``/`` if it has none).
    """
    if create_path is None:
        try:
            create_path = reverse("stripe_bridge:charge")
        except NoReverseMatch:
            return "/"
    path = create_path.rstrip("/")
    return path[: path.rfind("/") + 1] or "/"


def set_client_scope_cookie(
    response: HttpResponseBase, request: HttpRequest, token: str, *, path: str
) -> None:
    """Set (or renew) the signed scope cookie holding ``token`` on ``response``."""
    response.set_signed_cookie(
        CLIENT_SCOPE_COOKIE,
        token,
        salt=CLIENT_SCOPE_SALT,
        max_age=CLIENT_SCOPE_MAX_AGE,
        path=path,
        secure=request.is_secure(),
        httponly=True,
        samesite="Lax",
    )


def ensure_client_scope(view: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate the view of the page that hosts a payment: its response gives the browser a
    scope cookie (if it has none) before any payment, so that the first create request is
    already scoped and a retry of it gets the full answer, ``client_secret`` included."""

    def give_scope(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if client_token(request) is None:
            set_client_scope_cookie(response, request, new_client_token(), path=client_scope_path())
        return response

    if iscoroutinefunction(view):

        async def wrapped_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            return give_scope(request, await view(request, *args, **kwargs))

        return functools.wraps(view)(wrapped_async)

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return give_scope(request, view(request, *args, **kwargs))

    return wrapped


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
