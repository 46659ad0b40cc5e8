"""``Idempotency-Key`` handling, as Stripe documents it for API v1.

- A ``POST`` with a key Stripe has seen replays the first response (same status and body,
  header ``Idempotent-Replayed: true``) without running the request again.
- The same key with other parameters, or on another endpoint, is refused with HTTP 400
  ``idempotency_error``; while the first request still runs, with HTTP 409.
- Keys are scoped to the API key. Only responses of requests that ran are kept: successes
  and card declines (402). Validation errors (400, 404) and authentication failures are not
  saved, so a corrected retry with the same key runs.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from aiohttp import web

from . import _context
from ._errors import StripeAPIError

MAX_KEY_LENGTH = 255
MAX_SAVED = 20_000


@dataclass(frozen=True)
class _Saved:
    method: str
    path: str
    fingerprint: str
    status: int
    body: bytes
    content_type: str
    request_id: str | None


_saved: OrderedDict[tuple[str, str], _Saved] = OrderedDict()
_running: set[tuple[str, str]] = set()


def api_key_of(request: web.Request) -> str | None:
    """The secret key a request authenticates with (``Bearer`` or HTTP basic), if any."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme == "Basic":
        try:
            value = base64.b64decode(value).decode().split(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
    elif scheme != "Bearer":
        return None
    return value if value.startswith("sk_") and len(value) > 5 else None


def clear() -> None:
    _saved.clear()


def _fingerprint(content_type: str, body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    if content_type == "application/json":
        try:
            return json.dumps(json.loads(text or "null"), sort_keys=True)
        except ValueError:
            return text
    return json.dumps(sorted(parse_qsl(text, keep_blank_values=True)))


def _error(status: int, message: str) -> web.Response:
    return StripeAPIError(status, message, type="idempotency_error").to_response()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.headers.get("Idempotency-Key")
    api_key = api_key_of(request)
    if request.method != "POST" or not request.path.startswith("/v1/") or not key or not api_key:
        return await handler(request)
    if len(key) > MAX_KEY_LENGTH:
        return StripeAPIError(
            400,
            f"Invalid idempotency key: the value must be at most {MAX_KEY_LENGTH} characters.",
            param="Idempotency-Key",
        ).to_response()
    _context.current().idempotency_key = key
    fingerprint = _fingerprint(request.content_type, await request.read())
    scope = (api_key, key)
    saved = _saved.get(scope)
    if saved is not None:
        if (saved.method, saved.path) != (request.method, request.path):
            return _error(
                400,
                "Keys for idempotent requests can only be used for the same endpoint they "
                f"were first used for ('{saved.path}' vs '{request.path}'). Try using a key "
                f"other than '{key}' if you meant to execute a different request.",
            )
        if saved.fingerprint != fingerprint:
            return _error(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
            )
        headers = {"Idempotent-Replayed": "true"}
        if saved.request_id:
            headers["Original-Request"] = saved.request_id
        return web.Response(
            status=saved.status,
            body=saved.body,
            headers=headers,
            content_type=saved.content_type,
        )
    if scope in _running:
        return _error(
            409,
            "There is currently another in-progress request using this Idempotent Key (that "
            "probably means you submitted twice, and the other request is still going "
            f"through): {key}. Please try again later.",
        )
    _running.add(scope)
    try:
        response = await handler(request)
    finally:
        _running.discard(scope)
    body = getattr(response, "body", None)
    if (200 <= response.status < 300 or response.status == 402) and isinstance(body, bytes):
        _saved[scope] = _Saved(
            method=request.method,
            path=request.path,
            fingerprint=fingerprint,
            status=response.status,
            body=body,
            content_type=response.content_type,
            request_id=_context.current().request_id,
        )
        while len(_saved) > MAX_SAVED:
            _saved.popitem(last=False)
    return response
