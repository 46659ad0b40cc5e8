"""Stripe-shaped API errors raised inside the stand-in (subclassing localstripe's error)."""

from __future__ import annotations

from typing import Any

from localstripe.errors import UserError

DOC_URL = "https://stripe.com/docs/error-codes/"


class StripeAPIError(UserError):
    """An error answered as ``{"error": {"type": ..., "message": ..., "code": ...}}``.

    localstripe's ``UserError`` always says ``invalid_request_error``; this one carries the
    type Stripe uses (``card_error``, ``idempotency_error``, ``api_error`` …) and the
    ``code``/``param``/``doc_url`` fields.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        **fields: Any,
    ) -> None:
        contents: dict[str, Any] = {}
        if code:
            contents["code"] = code
            contents["doc_url"] = DOC_URL + code.replace("_", "-")
        if param:
            contents["param"] = param
        contents.update({key: value for key, value in fields.items() if value is not None})
        super().__init__(status, message, contents)
        self.body["error"]["type"] = type


def invalid(message: str, *, code: str | None = None, param: str | None = None) -> StripeAPIError:
    return StripeAPIError(400, message, code=code, param=param)


def no_such(object_name: str, object_id: str, param: str = "id") -> StripeAPIError:
    readable = object_name.replace("_", " ")
    return StripeAPIError(
        404, f"No such {readable}: '{object_id}'", code="resource_missing", param=param
    )


def unexpected_state(message: str) -> StripeAPIError:
    return StripeAPIError(400, message, code="payment_intent_unexpected_state")
