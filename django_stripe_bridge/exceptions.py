"""The bridge's errors: one base class, with configuration and signature errors beneath it."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation


class StripeBridgeError(Exception):
    """Base class of every error the bridge raises."""


class ConfigurationError(StripeBridgeError, ImproperlyConfigured):
    """A ``STRIPE_BRIDGE`` setting is missing or wrong; the message names it."""


class InvalidEvent(StripeBridgeError, ValueError):
    """A payload is not a Stripe event; the message says what is wrong."""


class EventQuarantined(StripeBridgeError):
    """A verified event the database refused to store, kept apart instead
    (``quarantine``); the webhook answers it 200."""

    def __init__(self, event_id: str, reason: str) -> None:
        super().__init__(f"Event {event_id} could not be stored ({reason}); it was quarantined.")
        self.event_id = event_id
        self.reason = reason


class SignatureVerificationError(StripeBridgeError, SuspiciousOperation):
    """A webhook's ``Stripe-Signature`` header is missing, malformed, wrong or stale."""


class OperationRefused(StripeBridgeError, ValueError):
    """A staff operation (capture, cancel, refund) was refused before reaching Stripe; the
    message says why."""


class StripeRequestError(StripeBridgeError):
    """A call to Stripe failed; says how the bridge answers its own client.

    ``status_code`` is the HTTP status of the bridge's response and ``error`` the body's
    ``error`` object (``type``, ``message`` and, where they apply, ``code``, ``param``,
    ``decline_code``, ``charge``): safe to show to the client, never holding the secret key.
    """

    status_code = 502
    error_type = "api_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        error: dict[str, Any] | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        #: Stripe's HTTP status and request id (``None`` when Stripe did not answer).
        self.http_status = http_status
        self.request_id = request_id
        self.error: dict[str, Any] = {"type": self.error_type, "message": message}
        if self.default_code:
            self.error["code"] = self.default_code
        self.error.update({key: value for key, value in (error or {}).items() if value is not None})


class StripeCardError(StripeRequestError):
    """Stripe declined the card (HTTP 402); ``error`` names ``decline_code`` and the charge."""

    status_code = 402
    error_type = "card_error"
    default_code = "card_declined"


class StripeInvalidRequest(StripeRequestError):
    """Stripe refused a parameter (HTTP 400); ``error['param']`` names it."""

    status_code = 400
    error_type = "invalid_request_error"


class StripeIdempotencyConflict(StripeRequestError):
    """The ``Idempotency-Key`` was used before with another request (HTTP 409)."""

    status_code = 409
    error_type = "idempotency_error"
    default_code = "idempotency_key_in_use"


class StripeUnavailable(StripeRequestError):
    """Stripe could not be reached, did not answer in time, or failed (HTTP 502)."""

    status_code = 502
    error_type = "api_error"
    default_code = "stripe_unavailable"


class NotConfigured(StripeRequestError, ConfigurationError):
    """The bridge has no usable Stripe key (HTTP 503); the message names the setting."""

    status_code = 503
    error_type = "api_error"
    default_code = "not_configured"


class AccountRefused(StripeRequestError):
    """A create call named a connected account this request may not charge for (HTTP 403)."""

    status_code = 403
    error_type = "invalid_request_error"
    default_code = "account_forbidden"
