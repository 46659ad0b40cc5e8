"""The bridge's errors: one base class, with configuration and signature errors beneath it."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation


class StripeBridgeError(Exception):
    """Base class of every error the bridge raises."""


class ConfigurationError(StripeBridgeError, ImproperlyConfigured):
    """A ``STRIPE_BRIDGE`` setting is missing or wrong; the message names it."""


class InvalidEvent(StripeBridgeError, ValueError):
    """A payload is not a Stripe event; the message says what is wrong."""


class SignatureVerificationError(StripeBridgeError, SuspiciousOperation):
    """A webhook's ``Stripe-Signature`` header is missing, malformed, wrong or stale."""
