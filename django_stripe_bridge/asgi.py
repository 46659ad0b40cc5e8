"""The bridge's ASGI layer: the webhook and the event streams as lean paths beside Django,
and early body limits.

``with_stripe_webhook(django_asgi_app)`` in a site's ``asgi.py`` answers POSTs to the
bridge's webhook URL itself, serves the app's ``events`` URL (Server-Sent Events,
``realtime.sse_http.serve_events``: an idle stream then holds nothing of Django's request)
and hands every other request to the site, through
``BodyLimitMiddleware`` (an oversized body for one of
the bridge's other routes is refused before it is read). It keeps the
webhook's contract (docs/webhooks.md): the signature is checked on the raw body, a body
over ``WEBHOOK_MAX_BYTES`` is refused from its ``Content-Length`` or cut off while it
streams in, and 200 is answered only once the event is committed — in one transaction with
the other deliveries that arrived meanwhile (``group_commit``).

The view (``webhooks.WebhookView``) stays for WSGI sites and for subclassing; this path
does not call the view's hooks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import DatabaseError, InterfaceError
from django.urls import NoReverseMatch, reverse

from . import metrics
from .body_limit import BodyLimitMiddleware
from .conf import DEFAULT_ENDPOINT, bridge_settings
from .exceptions import EventQuarantined, InvalidEvent, SignatureVerificationError

__all__ = ["BodyLimitMiddleware", "StripeWebhookApp", "with_stripe_webhook"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def with_stripe_webhook(app: ASGIApp, *, path: str | None = None) -> StripeWebhookApp:
    """``app`` with the bridge's webhook served on the lean path.

    ``path`` defaults to where the site's URLconf mounts the webhook
    (``reverse("stripe_bridge:webhook")``); it matches with and without a trailing slash.
    """
    return StripeWebhookApp(app, path=path)


class StripeWebhookApp:
    """ASGI middleware: the webhook and events paths here, everything else to the wrapped
    app."""

    def __init__(self, app: ASGIApp, *, path: str | None = None) -> None:
        self.app = BodyLimitMiddleware(app)
        self._path = path.rstrip("/") if path else None
        self._events_path: str | None = None

    @property
    def path(self) -> str | None:
        """The webhook's path without its trailing slash; ``None`` if the site has none."""
        if self._path is None:
            try:
                self._path = reverse("stripe_bridge:webhook").rstrip("/")
            except NoReverseMatch:
                logger.warning(
                    "with_stripe_webhook: no URL named 'stripe_bridge:webhook' (include "
                    "django_stripe_bridge.urls); every request goes to the site."
                )
                self._path = ""
        return self._path or None

    @property
    def events_path(self) -> str | None:
        """The app's ``events`` path without its trailing slash; ``None`` if the site has
        none."""
        if self._events_path is None:
            try:
                self._events_path = reverse("stripe_bridge:events").rstrip("/")
            except NoReverseMatch:
                self._events_path = ""
        return self._events_path or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._endpoint(scope) if scope["type"] == "http" else None
        if endpoint is not None:
            await handle_webhook(scope, receive, send, endpoint=endpoint)
        elif scope["type"] == "http" and self._is_events(scope):
            from .realtime.sse_http import serve_events

            await serve_events(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _is_events(self, scope: Scope) -> bool:
        events = self.events_path
        return events is not None and _app_path(scope).rstrip("/") == events

    def _endpoint(self, scope: Scope) -> str | None:
        """The webhook endpoint a request is for (``handler`` or a ``WEBHOOK_ENDPOINTS``
        name), or ``None`` for the site's other routes."""
        if self.path is None:
            return None
        path = _app_path(scope).rstrip("/")
        if path == self.path:
            return DEFAULT_ENDPOINT
        parent, _, name = path.rpartition("/")
        if parent == self.path.rpartition("/")[0] and bridge_settings.endpoint_secrets(name):
            return name
        return None


def _app_path(scope: Scope) -> str:
    """The request's path inside the application (without the ``root_path`` it is mounted
    under)."""
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def handle_webhook(
    scope: Scope, receive: Receive, send: Send, *, endpoint: str = DEFAULT_ENDPOINT
) -> None:
    """Answer one webhook request (the ASGI counterpart of ``WebhookView.post``)."""
    # Imported here: this module is imported by asgi.py files before Django is set up.
    from . import webhooks
    from .group_commit import get_committer

    client = (scope.get("client") or ("?",))[0]
    arrived = time.monotonic()
    try:
        if scope.get("method") != "POST":
            raise webhooks.WebhookRefused(
                f"Method {scope.get('method')!s:.20} not allowed: Stripe sends webhooks as POST.",
                status=405,
                code="method_not_allowed",
            )
        secrets = bridge_settings.endpoint_secrets(endpoint) or []
        if not secrets:
            raise webhooks.not_configured(endpoint)
        headers = _headers(scope)
        payload = await _read_body(receive, headers.get("content-length"))
        try:
            webhooks.verify_signature(
                payload,
                headers.get(webhooks.SIGNATURE_HEADER.lower()),
                secrets,
                bridge_settings.WEBHOOK_TOLERANCE,
            )
            notification = webhooks.parse_notification(
                payload, headers.get(webhooks.SIGNATURE_HEADER.lower()), secrets
            )
            event = await _parse(payload) if notification is None else None
            if event is not None:
                webhooks.check_created(event, bridge_settings.WEBHOOK_TOLERANCE)
        except SignatureVerificationError as exc:
            raise webhooks.WebhookRefused(str(exc), code="signature_verification_failed") from exc
        except InvalidEvent as exc:
            raise webhooks.WebhookRefused(str(exc), code="invalid_event") from exc
        try:
            if notification is not None:
                created = await _record_notification(notification, endpoint)
            else:
                assert event is not None
                created = (await get_committer().submit(event)).created
        except (DatabaseError, InterfaceError) as exc:
            raise webhooks.database_unavailable(exc) from exc
        metrics.observe("webhook_commit_seconds", time.monotonic() - arrived)
    except EventQuarantined as exc:
        await _answer(send, 200, webhooks.quarantined_body(exc))
        return
    except webhooks.WebhookRefused as exc:
        webhooks.log_refusal(client, exc)
        extra = {"Retry-After": str(webhooks.RETRY_AFTER)} if exc.status == 503 else {}
        if exc.status == 405:
            extra["Allow"] = "POST"
        await _answer(send, exc.status, webhooks.error_body(exc), extra)
        return
    except Exception:
        # Never a 500 with a traceback: log it, and let Stripe retry later.
        logger.exception("Stripe webhook failed unexpectedly")
        refused = webhooks.ServiceUnavailable("The webhook could not be processed.")
        await _answer(
            send, 503, webhooks.error_body(refused), {"Retry-After": str(webhooks.RETRY_AFTER)}
        )
        return
    await _answer(send, 200, {"received": True, "duplicate": not created})


async def _record_notification(notification: Any, endpoint: str) -> bool:
    """Store a thin event notification once, in a worker thread (its fetch follows)."""
    from channels.db import database_sync_to_async

    from . import thin

    return bool(await database_sync_to_async(thin.record)(notification, endpoint=endpoint))


#: Bodies larger than this are parsed and validated off the event loop: a 1 MiB event
#: holding half a million values takes tens of milliseconds, a small one less than the
#: hand-over to a thread.
PARSE_IN_THREAD_BYTES = 64 * 1024

_parser: ThreadPoolExecutor | None = None


async def _parse(payload: bytes) -> Mapping[str, Any]:
    """The event in a verified body (``webhooks.parse_event``); a large body in the parse
    thread, so that the event loop goes on serving other clients meanwhile."""
    from . import webhooks

    if len(payload) <= PARSE_IN_THREAD_BYTES:
        return webhooks.parse_event(payload)
    global _parser
    if _parser is None:
        # One thread for the whole process: a burst of large bodies waits its turn there,
        # rather than many threads taking the interpreter from the event loop.
        _parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stripe-bridge-parse")
    return await asyncio.get_running_loop().run_in_executor(_parser, webhooks.parse_event, payload)


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers by lower-case name (the last of repeated ones)."""
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }


async def _read_body(receive: Receive, content_length: str | None) -> bytes:
    """The body, refused unread when its declared length is over the limit, and cut off
    as soon as what streams in goes past it."""
    from . import webhooks

    limit = int(bridge_settings.WEBHOOK_MAX_BYTES)
    if content_length:
        if not content_length.isascii() or not content_length.isdigit():
            raise webhooks.WebhookRefused("Malformed Content-Length header.")
        if int(content_length) > limit:
            raise webhooks.too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise webhooks.WebhookRefused("The client went away before sending the body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise webhooks.too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    content = json.dumps(body).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": content})
