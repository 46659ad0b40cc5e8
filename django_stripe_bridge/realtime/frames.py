"""The protocol's frames: error codes, refused frames, and JSON in and out."""

from __future__ import annotations

import json
from typing import Any

#: Client frames larger than this (in bytes, UTF-8) are refused with ``bad_frame``.
MAX_FRAME_BYTES = 64 * 1024
#: Longest subscription name a client may choose.
MAX_SUBSCRIPTION_NAME = 100


class ErrorCode:
    """Values of ``code`` in ``error`` frames."""

    INVALID_SELECTOR = "invalid_selector"
    FORBIDDEN = "forbidden"
    BAD_FRAME = "bad_frame"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    UNKNOWN_SUBSCRIPTION = "unknown_subscription"
    SUBSCRIPTION_EXISTS = "subscription_exists"
    UNKNOWN_CHANNEL = "unknown_channel"
    LIMIT_EXCEEDED = "limit_exceeded"
    RATE_LIMITED = "rate_limited"
    #: The connection is closed: the server could not read stored events (websocket 1011).
    SERVER_ERROR = "server_error"
    #: The connection is closed: too much held back or queued; reconnect later (1013).
    TRY_AGAIN_LATER = "try_again_later"
    #: The connection is closed: the server is shutting down; reconnect (1012).
    SERVICE_RESTART = "service_restart"


class FrameError(Exception):
    """A client frame that is refused with an ``error`` frame; the connection stays open."""

    def __init__(self, code: str, message: str, subscription: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.subscription = subscription

    def frame(self) -> dict[str, Any]:
        """The ``error`` frame that tells the client."""
        return {
            "type": "error",
            "code": self.code,
            "message": self.message,
            "subscription": self.subscription,
        }


def valid_name(name: Any) -> bool:
    """Whether ``name`` may name a subscription."""
    return isinstance(name, str) and 0 < len(name) <= MAX_SUBSCRIPTION_NAME


def dumps(frame: dict[str, Any]) -> str:
    """A frame as compact JSON text."""
    return json.dumps(frame, separators=(",", ":"), default=str)


def decode(text: str | None) -> dict[str, Any]:
    """A client's text frame as a JSON object; ``FrameError`` if it is not one."""
    if text is None:
        raise FrameError(ErrorCode.BAD_FRAME, "Binary frames are not accepted; send JSON text.")
    if len(text) > MAX_FRAME_BYTES // 4 and len(text.encode("utf-8")) > MAX_FRAME_BYTES:
        raise FrameError(ErrorCode.BAD_FRAME, f"Frame larger than {MAX_FRAME_BYTES} bytes refused.")
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError(ErrorCode.BAD_FRAME, "Frame is not valid JSON.") from None
    if not isinstance(frame, dict):
        raise FrameError(ErrorCode.BAD_FRAME, "Frame must be a JSON object.")
    return frame
