"""Stripe's webhook endpoint: verify the signature, ingest the event, answer after commit.

``verify_signature()`` is Stripe's signing scheme as a pure function. ``WebhookView``
reads the raw body (never more than ``WEBHOOK_MAX_BYTES`` + 1 bytes), verifies it, parses
the event and hands it to ``django_stripe_bridge.ingest.ingest_event()``, the one path by
which events become rows. Subclass the view and override its hooks to change one step.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db import DatabaseError, InterfaceError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.http.request import RawPostDataException
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from . import ingest, metrics, thin
from .conf import DEFAULT_ENDPOINT, SETTING_NAME, bridge_settings
from .db import non_atomic_requests
from .events import VerifiedEvent, validate_event, validate_shape
from .exceptions import EventQuarantined, InvalidEvent, SignatureVerificationError

logger = logging.getLogger(__name__)

#: The header Stripe signs its webhooks in.
SIGNATURE_HEADER = "Stripe-Signature"
#: The only signature scheme Stripe uses for live webhooks (``v0`` is a test scheme).
SIGNATURE_SCHEME = "v1"
#: A longer header is refused unread: Stripe's carry one or two signatures.
MAX_SIGNATURE_HEADER_LENGTH = 4096
#: A ``t=`` with more digits is refused (Unix time has 10 until the year 2286).
MAX_TIMESTAMP_DIGITS = 12
#: The bound on an event's ``created`` ahead of the clock when ``WEBHOOK_TOLERANCE`` is off.
DEFAULT_TOLERANCE = 300
#: Seconds Stripe is asked to wait before retrying after a 503.
RETRY_AFTER = 60


# -- signature verification ----------------------------------------------------------------


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``v1`` signature of ``payload`` at ``timestamp``: hex HMAC-SHA256 of ``t.payload``."""
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """``(timestamp, [v1 signatures])`` from a ``Stripe-Signature`` header, or raise."""
    malformed = SignatureVerificationError(
        f"Malformed {SIGNATURE_HEADER} header: expected 't=<timestamp>,v1=<signature>'."
    )
    if len(header) > MAX_SIGNATURE_HEADER_LENGTH:
        raise SignatureVerificationError(
            f"The {SIGNATURE_HEADER} header is longer than {MAX_SIGNATURE_HEADER_LENGTH} "
            "characters: Stripe's carry one or two signatures."
        )
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key:
            raise malformed
        if key == "t":
            timestamps.append(value.strip())
        elif key == SIGNATURE_SCHEME:
            signatures.append(value.strip())
        # Other schemes (v0, future ones) are ignored, as Stripe's libraries do.
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise malformed
    if len(timestamps[0]) > MAX_TIMESTAMP_DIGITS:
        # Signed or not, it is no Unix time: and one this long cannot be compared with now.
        raise SignatureVerificationError(
            f"The {SIGNATURE_HEADER} timestamp has more than {MAX_TIMESTAMP_DIGITS} digits: "
            "it must be a Unix time in seconds."
        )
    if not signatures:
        raise SignatureVerificationError(
            f"The {SIGNATURE_HEADER} header has no {SIGNATURE_SCHEME} signature."
        )
    return int(timestamps[0]), signatures


def verify_signature(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    tolerance: int | None,
    now: float | None = None,
) -> int:
    """Check a ``Stripe-Signature`` header against the raw body; return its timestamp.

    Any configured secret may match any ``v1`` signature (so a secret can be rotated while
    Stripe signs with both). Signatures are compared in constant time. A timestamp more
    than ``tolerance`` seconds from ``now``, in the past or the future, is refused;
    ``tolerance=None`` turns that check off. Raises ``SignatureVerificationError``
    with a message that says what is wrong and never contains a secret.
    """
    if not header:
        raise SignatureVerificationError(
            f"No {SIGNATURE_HEADER} header: this endpoint accepts only webhooks signed by Stripe."
        )
    timestamp, signatures = parse_signature_header(header)
    matched = False
    for secret in secrets:
        expected = compute_signature(payload, secret, timestamp)
        # Every candidate is compared, so timing says nothing about which one matched.
        for signature in signatures:
            matched |= hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))
    if not matched:
        raise SignatureVerificationError(
            f"No {SIGNATURE_SCHEME} signature matches the body for any configured webhook "
            f"secret. Check that {SETTING_NAME}['WEBHOOK_SECRETS'] holds this endpoint's "
            "signing secret and that no proxy rewrites the request body."
        )
    if tolerance is not None:
        age = (time.time() if now is None else now) - timestamp
        if age > tolerance:
            raise SignatureVerificationError(
                f"The signature timestamp is {int(age)} s old, beyond the {tolerance} s "
                "tolerance (a replayed request, or a server clock that is wrong)."
            )
        if -age > tolerance:
            raise SignatureVerificationError(
                f"The signature timestamp is {int(-age)} s in the future, beyond the "
                f"{tolerance} s tolerance (check the server clock)."
            )
    return timestamp


def parse_notification(
    payload: bytes, header: str | None, secrets: Sequence[str]
) -> Mapping[str, Any] | None:
    """The thin event notification a verified body holds (Event Destinations, API v2), read
    by the ``stripe`` library; ``None`` when the body is something else (a snapshot event)."""
    if b'"v2.core.event"' not in payload:
        return None  # cheap: a snapshot event is not parsed twice
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidEvent("The body is not JSON (a Stripe event).") from exc
    if not thin.is_thin(body):
        return None
    from . import stripe_api

    notification = stripe_api.parse_event_notification(
        payload, header, secrets, bridge_settings.WEBHOOK_TOLERANCE
    )
    return thin.validate_notification(notification)


def parse_event(payload: bytes) -> Mapping[str, Any]:
    """The Stripe event a verified body holds; raise ``InvalidEvent`` if it holds none.

    A body as Stripe sends them (UTF-8, no escaped NUL or surrogate, finite numbers, an
    integer ``created``) comes back as a ``VerifiedEvent`` that carries its text; any other
    is read and checked with more care (``validate_event``).
    """
    plain = _parse_plain(payload)
    if plain is not None:
        return validate_shape(plain)
    try:
        event = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidEvent("The body is not JSON (a Stripe event).") from exc
    except RecursionError as exc:
        raise InvalidEvent("The body is nested too deeply to be a Stripe event.") from exc
    created = event.get("created") if isinstance(event, dict) else None
    if isinstance(created, float) and created.is_integer():
        # 1732500000.0 is the same JSON number as 1732500000 (JSON Schema agrees).
        event["created"] = int(created)
    return validate_event(event)


#: An escape of a NUL or of a UTF-16 surrogate (lone, or half of a pair): the only way text
#: that is UTF-8 can bring either into a parsed event.
_RISKY_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


class _NotFinite(ValueError):
    """A number JSON cannot hold: the careful path says where."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def _no_constant(text: str) -> float:
    raise _NotFinite(text)  # NaN, Infinity, -Infinity


_PLAIN_JSON = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)


def _parse_plain(payload: bytes) -> VerifiedEvent | None:
    """The event of a body that cannot hold anything a database refuses, with its text;
    ``None`` for any other body (or one that is not JSON), left to the careful path.

    Strict UTF-8 has no lone surrogate, and JSON text no raw NUL: only an escape brings one
    in, and only an odd literal a number that is not finite.
    """
    if b"\\u" in payload and _RISKY_ESCAPE.search(payload):
        return None
    try:
        text = payload.decode("utf-8")
        event = _PLAIN_JSON.decode(text)
    except (ValueError, RecursionError):  # not UTF-8 or not JSON: the careful path says so
        return None
    if not isinstance(event, dict) or isinstance(event.get("created"), float):
        return None
    return VerifiedEvent(event, text)


def check_created(
    event: Mapping[str, Any], tolerance: int | None, now: float | None = None
) -> None:
    """Raise ``InvalidEvent`` if ``event`` was ``created`` more than ``tolerance``
    seconds (``None``: the default, 300) ahead of the server's clock.

    Stripe creates an event before it signs a delivery of it, and the signature's timestamp
    is within the tolerance of the clock: a later ``created`` is no Stripe event's, and
    would outrank every true event of its payment (docs/webhooks.md).
    """
    limit = DEFAULT_TOLERANCE if tolerance is None else tolerance
    ahead = event["created"] - (time.time() if now is None else now)
    if ahead > limit:
        raise InvalidEvent(
            f"'created' is {int(ahead)} s ahead of the server's clock, beyond the {limit} s "
            "tolerance: Stripe creates an event before it sends it. Check the server clock."
        )


# -- errors the endpoint answers with ------------------------------------------------------------


class WebhookRefused(Exception):
    """A request the view answers with an error; nothing is stored."""

    status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status or self.status
        self.code = code or self.code


class ServiceUnavailable(WebhookRefused):
    """The bridge cannot take the event right now; Stripe retries after a 503."""

    status = 503
    error_type = "api_error"
    code = "service_unavailable"


def error_body(exc: WebhookRefused) -> dict[str, Any]:
    """The JSON body of a refusal (Stripe shows it in the Dashboard)."""
    return {"error": {"type": exc.error_type, "code": exc.code, "message": exc.message}}


def error_response(exc: WebhookRefused) -> JsonResponse:
    """The JSON answer for a refused request."""
    response = JsonResponse(error_body(exc), status=exc.status)
    if exc.status == 503:
        response["Retry-After"] = str(RETRY_AFTER)
    return response


def too_large(limit: int) -> WebhookRefused:
    """The refusal of a body over ``WEBHOOK_MAX_BYTES``."""
    return WebhookRefused(
        f"The body is larger than {SETTING_NAME}['WEBHOOK_MAX_BYTES'] ({limit} bytes).",
        status=413,
        code="payload_too_large",
    )


def unknown_endpoint(name: str) -> WebhookRefused:
    """The refusal of a ``webhooks/<name>`` that ``WEBHOOK_ENDPOINTS`` does not name."""
    return WebhookRefused(
        f"No webhook endpoint {name[:40]!r}: {SETTING_NAME}['WEBHOOK_ENDPOINTS'] names the "
        "endpoints besides 'handler'.",
        status=404,
        code="unknown_endpoint",
    )


def not_configured(endpoint: str = DEFAULT_ENDPOINT) -> ServiceUnavailable:
    """The refusal while no signing secret is set."""
    if endpoint != DEFAULT_ENDPOINT:
        return ServiceUnavailable(
            f"{SETTING_NAME}['WEBHOOK_ENDPOINTS'][{endpoint!r}] has no secret: the bridge "
            "cannot verify this endpoint's webhooks. Set it to its signing secret (whsec_…).",
            code="webhook_not_configured",
        )
    return ServiceUnavailable(
        f"{SETTING_NAME}['WEBHOOK_SECRETS'] is empty: the bridge cannot verify "
        "webhooks. Set it to the endpoint's signing secret (whsec_…).",
        code="webhook_not_configured",
    )


def database_unavailable(exc: Exception) -> ServiceUnavailable:
    """The refusal when storing failed on the database; logs the cause (never the body)."""
    logger.error("Stripe webhook not stored: %s: %s", type(exc).__name__, exc)
    return ServiceUnavailable(
        "The database is unavailable; the event was not stored. Stripe will retry.",
        code="database_unavailable",
    )


def quarantined_body(exc: EventQuarantined) -> dict[str, Any]:
    """The 200 answer to an event kept apart: received, not stored, and why (Stripe shows
    the body in the Dashboard; docs/webhooks.md says why it is not an error status)."""
    return {"received": True, "duplicate": False, "quarantined": True, "message": str(exc)}


def log_refusal(client: str, exc: WebhookRefused) -> None:
    """Log a refused webhook: the reason and the client, never the body or a secret."""
    level = logging.ERROR if exc.status >= 500 else logging.WARNING
    logger.log(
        level,
        "Refused a Stripe webhook from %s with %d (%s): %s",
        client,
        exc.status,
        exc.code,
        exc.message,
    )


# -- the view ------------------------------------------------------------------------------


@method_decorator(csrf_exempt, name="dispatch")
class WebhookView(View):
    """``POST webhooks/handler``: Stripe's signed events, stored once, answered after commit.

    Answers 200 ``{"received": true, "duplicate": …}`` once the event row is committed;
    400 for a bad signature or a body that is not an event, 413 for an oversized body, 503
    when the bridge is not configured or the database is unavailable (Stripe retries).
    """

    http_method_names = ["post"]

    #: The raw body of the request being handled, set before the hooks run.
    payload: bytes = b""

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., HttpResponseBase]:
        view = super().as_view(**initkwargs)
        # Under ATOMIC_REQUESTS the whole view would run in one transaction: the answer
        # could claim "stored" before the commit, and on_commit publishing would wait for
        # the end of the request. ingest_event manages its own transaction instead.
        return non_atomic_requests(view)

    # -- hooks to override ---------------------------------------------------------------

    def get_endpoint(self) -> str:
        """The endpoint's name: ``handler``, or the ``<name>`` of ``webhooks/<name>``."""
        return str(self.kwargs.get("endpoint") or DEFAULT_ENDPOINT)

    def get_secrets(self) -> list[str]:
        """The signing secrets a request may be signed with: ``WEBHOOK_SECRETS`` for
        ``webhooks/handler``, the endpoint's own in ``WEBHOOK_ENDPOINTS`` for another."""
        secrets = bridge_settings.endpoint_secrets(self.get_endpoint())
        if secrets is None:
            raise unknown_endpoint(self.get_endpoint())
        return secrets

    def validate_request(self, request: HttpRequest) -> None:
        """Raise ``SignatureVerificationError`` unless ``self.payload`` is signed by Stripe."""
        verify_signature(
            self.payload,
            request.headers.get(SIGNATURE_HEADER),
            self.get_secrets(),
            bridge_settings.WEBHOOK_TOLERANCE,
        )

    def parse_events(self, request: HttpRequest) -> list[Mapping[str, Any]]:
        """The Stripe events in the verified body; raise ``InvalidEvent`` if there are none."""
        return [parse_event(self.payload)]

    def handle_event(self, event: Mapping[str, Any]) -> ingest.IngestResult:
        """Store one verified event (publishing and signals follow its commit).

        Raises ``EventQuarantined`` when the database refused the event for its data
        and it was kept apart instead.
        """
        from .quarantine import DATA_ERRORS, quarantine

        try:
            return ingest.ingest_event(event)
        except DATA_ERRORS as exc:
            raise quarantine(event, exc) from exc

    def handle_notification(self, notification: Mapping[str, Any]) -> bool:
        """Store a verified thin event notification once (its fetch follows the commit);
        whether it was new."""
        return thin.record(notification, endpoint=self.get_endpoint())

    # -- plumbing ------------------------------------------------------------------------

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        refused = WebhookRefused(
            f"Method {request.method!s:.20} not allowed: Stripe sends webhooks as POST.",
            status=405,
            code="method_not_allowed",
        )
        response = error_response(refused)
        response["Allow"] = "POST"
        return response

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        arrived = time.monotonic()
        try:
            if not self.get_secrets():
                raise not_configured(self.get_endpoint())
            self.payload = self.read_payload(request)
            try:
                self.validate_request(request)
                notification = parse_notification(
                    self.payload, request.headers.get(SIGNATURE_HEADER), self.get_secrets()
                )
                events = [] if notification is not None else self.parse_events(request)
                for event in events:
                    check_created(event, bridge_settings.WEBHOOK_TOLERANCE)
            except SignatureVerificationError as exc:
                raise WebhookRefused(str(exc), code="signature_verification_failed") from exc
            except InvalidEvent as exc:
                raise WebhookRefused(str(exc), code="invalid_event") from exc
            if notification is not None:
                created = self.handle_notification(notification)
                return JsonResponse({"received": True, "duplicate": not created})
            results = [self.handle_event(event) for event in events]
            metrics.observe("webhook_commit_seconds", time.monotonic() - arrived)
        except EventQuarantined as exc:
            return JsonResponse(quarantined_body(exc))
        except WebhookRefused as exc:
            self.log_refusal(request, exc)
            return error_response(exc)
        except (DatabaseError, InterfaceError) as exc:
            return error_response(database_unavailable(exc))
        except Exception:
            # Never a 500 with a traceback: log it, and let Stripe retry later.
            logger.exception("Stripe webhook failed unexpectedly")
            return error_response(ServiceUnavailable("The webhook could not be processed."))
        duplicate = all(not result.created for result in results)
        return JsonResponse({"received": True, "duplicate": duplicate})

    def read_payload(self, request: HttpRequest) -> bytes:
        """The raw body, refusing one over ``WEBHOOK_MAX_BYTES`` without reading it all.

        Read from the stream, not ``request.body``: that would read everything, and
        ``DATA_UPLOAD_MAX_MEMORY_SIZE`` would refuse a body the bridge is set to accept.
        """
        limit = int(bridge_settings.WEBHOOK_MAX_BYTES)
        length = request.META.get("CONTENT_LENGTH") or ""
        if length:
            if not length.isascii() or not length.isdigit():
                raise WebhookRefused("Malformed Content-Length header.")
            if int(length) > limit:
                raise too_large(limit)
        try:
            body = request.read(limit + 1)
        except (OSError, RawPostDataException) as exc:
            raise WebhookRefused("The request body could not be read.") from exc
        if len(body) > limit:
            raise too_large(limit)
        return body

    def log_refusal(self, request: HttpRequest, exc: WebhookRefused) -> None:
        """Log a refused webhook: the reason and the client, never the body or a secret."""
        log_refusal(request.META.get("REMOTE_ADDR", "?"), exc)
