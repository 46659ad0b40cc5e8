"""Signing webhook bodies as Stripe does, for the stand-in and for tests."""

from __future__ import annotations

import hashlib
import hmac
import time


def sign_payload(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header (``t=…,v1=…``) for ``body`` signed with ``secret``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
