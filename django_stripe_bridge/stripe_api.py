"""The one module that talks to Stripe.

It builds a ``stripe.StripeClient`` from the ``STRIPE_BRIDGE`` settings, makes the few calls
the bridge needs, and turns Stripe's errors into the bridge's own
(``StripeRequestError`` and its subclasses), whose
``status_code`` and ``error`` say how to answer the bridge's client. Every function returns
plain dicts, so nothing outside this module sees a ``stripe`` type.

Every answer is checked before it is returned (``validated()``:
a malformed one is a 502), and the secret key never leaves this module in a message: errors
and log records are passed through ``redact()`` first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import stripe

from .conf import SETTING_NAME, bridge_settings
from .exceptions import (
    NotConfigured,
    StripeCardError,
    StripeIdempotencyConflict,
    StripeInvalidRequest,
    StripeRequestError,
    StripeUnavailable,
)
from .upstream import error_fields, error_message, plain, redact, validated

logger = logging.getLogger(__name__)

__all__ = [
    "cancel_payment_intent",
    "capture_charge",
    "capture_payment_intent",
    "confirm_payment_intent",
    "create_charge",
    "create_payment_intent",
    "create_refund",
    "get_stripe_client",
    "list_events",
    "redact",
    "register_webhook",
    "retrieve_charge",
    "validated",
]

#: Fields of a Stripe ``card_error`` that the bridge's client may see.
_CARD_ERROR_FIELDS = ("code", "decline_code", "param", "charge", "advice_code", "payment_intent")
#: What the client is told when the bridge cannot use its key; the log says more.
_NOT_CONFIGURED_MESSAGE = "Payments are not available: the server is not configured for Stripe."


class RedactSecretsFilter(logging.Filter):
    """Masks secret keys in records of the ``stripe`` library's logger.

    The library logs Stripe's error messages and response bodies; a server that echoes the
    key (Stripe masks it; a misbehaving proxy or stand-in might not) must not put it in logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(a) if isinstance(a, str) else a for k, a in record.args.items()
            }
        return True


_stripe_logger = logging.getLogger("stripe")
if not any(isinstance(f, RedactSecretsFilter) for f in _stripe_logger.filters):
    _stripe_logger.addFilter(RedactSecretsFilter())


# --- the client ------------------------------------------------------------------------------

_client_lock = threading.Lock()
_cached: tuple[tuple[Any, ...], stripe.StripeClient] | None = None


def _api_key() -> str:
    api_key = bridge_settings.API_KEY
    if not api_key or not isinstance(api_key, str):
        raise NotConfigured(
            f"{SETTING_NAME}['API_KEY'] is not set: the bridge cannot call Stripe. Set it to "
            "your Stripe secret key (sk_test_… or sk_live_…), read from the environment.",
            error={"message": _NOT_CONFIGURED_MESSAGE},
        )
    return api_key


def get_stripe_client() -> stripe.StripeClient:
    """The ``StripeClient`` configured from ``STRIPE_BRIDGE``; raises ``NotConfigured``.

    ``API_KEY``, ``API_BASE``, ``API_VERSION``, ``MAX_NETWORK_RETRIES`` and ``TIMEOUT``
    (seconds, or a ``(connect, read)`` pair) are read on every call; the client is built
    again only when one of them changed.
    """
    global _cached
    api_key = _api_key()
    api_base = bridge_settings.API_BASE
    config = (
        api_key,
        api_base,
        bridge_settings.API_VERSION,
        bridge_settings.MAX_NETWORK_RETRIES,
        bridge_settings.TIMEOUT,
    )
    with _client_lock:
        if _cached is None or _cached[0] != config:
            timeout = bridge_settings.TIMEOUT
            client = stripe.StripeClient(
                api_key,
                stripe_version=bridge_settings.API_VERSION or None,
                # {} rather than None: stripe 12 takes None for a mapping and fails.
                base_addresses={"api": api_base.rstrip("/")} if api_base else {},
                max_network_retries=bridge_settings.MAX_NETWORK_RETRIES,
                http_client=stripe.RequestsClient(
                    timeout=tuple(timeout) if isinstance(timeout, list) else timeout
                ),
            )
            _cached = (config, client)
        return _cached[1]


def api_version() -> str:
    """The Stripe API version the bridge's calls use (``API_VERSION``, else the library's)."""
    return bridge_settings.API_VERSION or stripe.api_version


# --- calls -----------------------------------------------------------------------------------


def _options(idempotency_key: str | None, stripe_account: str | None) -> Any:
    """A call's request options: its idempotency key, and the connected account it acts on
    (``Stripe-Account``; ``None`` for the platform's own objects)."""
    options: dict[str, Any] = {}
    if idempotency_key is not None:
        options["idempotency_key"] = idempotency_key
    if stripe_account:
        options["stripe_account"] = stripe_account
    return options


def list_accounts(page_size: int = 100) -> Iterator[dict[str, Any]]:
    """The platform's connected accounts (``GET /v1/accounts``), page by page."""
    client = get_stripe_client()
    with translate_errors(READ_RETRY):
        pages = iter(client.v1.accounts.list(params={"limit": page_size}).auto_paging_iter())
    while True:
        with translate_errors(READ_RETRY):
            account = next(pages, None)
        if account is None:
            return
        yield plain(account)


def create_charge(
    params: Mapping[str, Any], *, idempotency_key: str, stripe_account: str | None = None
) -> dict[str, Any]:
    """Create a charge (``POST /v1/charges``) and return the charge object."""
    client = get_stripe_client()
    with translate_errors():
        charge = client.v1.charges.create(
            params=dict(params),  # type: ignore[arg-type]
            options=_options(idempotency_key, stripe_account),
        )
    return validated(charge, object="charge")


def create_payment_intent(
    params: Mapping[str, Any], *, idempotency_key: str, stripe_account: str | None = None
) -> dict[str, Any]:
    """Create a PaymentIntent (``POST /v1/payment_intents``) and return it."""
    client = get_stripe_client()
    with translate_errors():
        intent = client.v1.payment_intents.create(
            params=dict(params),  # type: ignore[arg-type]
            options=_options(idempotency_key, stripe_account),
        )
    return validated(intent, object="payment_intent")


def create_checkout_session(
    params: Mapping[str, Any], *, idempotency_key: str, stripe_account: str | None = None
) -> dict[str, Any]:
    """Create a Checkout Session (``POST /v1/checkout/sessions``) and return it."""
    client = get_stripe_client()
    with translate_errors():
        session = client.v1.checkout.sessions.create(
            params=dict(params),  # type: ignore[arg-type]
            options=_options(idempotency_key, stripe_account),
        )
    return validated(session, object="checkout.session")


def confirm_payment_intent(
    intent_id: str,
    params: Mapping[str, Any] | None = None,
    *,
    idempotency_key: str,
    stripe_account: str | None = None,
) -> dict[str, Any]:
    """Confirm a PaymentIntent (``POST /v1/payment_intents/<id>/confirm``) and return it."""
    client = get_stripe_client()
    with translate_errors():
        intent = client.v1.payment_intents.confirm(
            intent_id,
            params=dict(params or {}),  # type: ignore[arg-type]
            options=_options(idempotency_key, stripe_account),
        )
    return validated(intent, object="payment_intent")


def capture_payment_intent(
    intent_id: str,
    *,
    amount: int | None = None,
    idempotency_key: str,
    stripe_account: str | None = None,
) -> dict[str, Any]:
    """Capture an authorized PaymentIntent, all of it or ``amount``; returns the PaymentIntent.

    Under API versions since 2025-03-31 Stripe releases what is not captured; before, it
    refunds it.
    """
    params: dict[str, Any] = {} if amount is None else {"amount_to_capture": amount}
    client = get_stripe_client()
    with translate_errors():
        intent = client.v1.payment_intents.capture(
            intent_id,
            params=params,  # type: ignore[arg-type]
            options=_options(idempotency_key, stripe_account),
        )
    return validated(intent, object="payment_intent")


def capture_charge(
    charge_id: str,
    *,
    amount: int | None = None,
    idempotency_key: str,
    stripe_account: str | None = None,
) -> dict[str, Any]:
    """Capture an uncaptured charge (``capture: false``), all of it or ``amount``."""
    params: dict[str, Any] = {} if amount is None else {"amount": amount}
    client = get_stripe_client()
    with translate_errors():
        charge = client.v1.charges.capture(
            charge_id,
            params=params,  # type: ignore[arg-type]
            options=_options(idempotency_key, stripe_account),
        )
    return validated(charge, object="charge")


def retrieve_charge(charge_id: str, *, stripe_account: str | None = None) -> dict[str, Any]:
    """The charge ``charge_id`` as Stripe has it now."""
    client = get_stripe_client()
    with translate_errors():
        charge = client.v1.charges.retrieve(charge_id, options=_options(None, stripe_account))
    return validated(charge, object="charge")


def cancel_payment_intent(
    intent_id: str,
    *,
    reason: str | None = None,
    idempotency_key: str,
    stripe_account: str | None = None,
) -> dict[str, Any]:
    """Cancel a PaymentIntent (releasing an authorization); returns it."""
    params: dict[str, Any] = {} if reason is None else {"cancellation_reason": reason}
    client = get_stripe_client()
    with translate_errors():
        intent = client.v1.payment_intents.cancel(
            intent_id,
            params=params,  # type: ignore[arg-type]
            options=_options(idempotency_key, stripe_account),
        )
    return validated(intent, object="payment_intent")


def create_refund(
    *,
    payment_intent: str | None = None,
    charge: str | None = None,
    amount: int | None = None,
    reason: str | None = None,
    idempotency_key: str,
    stripe_account: str | None = None,
) -> dict[str, Any]:
    """Refund a PaymentIntent's charge or a charge, in full or ``amount``; returns the
    refund. Refunding an uncaptured charge releases it."""
    if (payment_intent is None) == (charge is None):
        raise ValueError("create_refund needs exactly one of payment_intent and charge")
    params: dict[str, Any] = (
        {"payment_intent": payment_intent} if payment_intent else {"charge": charge}
    )
    if amount is not None:
        params["amount"] = amount
    if reason is not None:
        params["reason"] = reason
    client = get_stripe_client()
    with translate_errors():
        refund = client.v1.refunds.create(
            params=params,  # type: ignore[arg-type]
            options=_options(idempotency_key, stripe_account),
        )
    return validated(refund, object="refund")


def list_events(
    *,
    since: dt.datetime | int | None = None,
    types: Sequence[str] | None = None,
    page_size: int = 100,
    stripe_account: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Stripe's events (newest first), fetched page by page as the iterator advances.

    ``since`` keeps events created at or after that time (``created[gte]``); ``types``
    keeps those types; ``stripe_account`` lists a connected account's events instead of the
    platform's. Stripe keeps events for 30 days. Errors are raised as the bridge's own, also
    when they happen on a later page.
    """
    params: dict[str, Any] = {"limit": page_size}
    if since is not None:
        gte = int(since.timestamp()) if isinstance(since, dt.datetime) else int(since)
        params["created"] = {"gte": gte}
    if types:
        params["types"] = list(types)
    client = get_stripe_client()
    with translate_errors(READ_RETRY):
        listing = client.v1.events.list(params=params, options=_options(None, stripe_account))  # type: ignore[arg-type]
        pages = iter(listing.auto_paging_iter())
    while True:
        with translate_errors(READ_RETRY):
            event = next(pages, None)
        if event is None:
            return
        yield plain(event)


# --- thin events (Event Destinations, API v2) --------------------------------------------------


def parse_event_notification(
    payload: bytes, header: str | None, secrets: Sequence[str], tolerance: int | None
) -> dict[str, Any]:
    """A thin event notification (``object: "v2.core.event"``) as a dict, parsed by the
    ``stripe`` library (``parse_event_notification`` since 13.0, ``parse_thin_event``
    before) with whichever of ``secrets`` signed it. Raises ``InvalidEvent`` if none
    did or the body is not a notification (the caller has verified the signature already:
    this is the library's own reading of it)."""
    from .exceptions import InvalidEvent

    client = stripe.StripeClient(bridge_settings.API_KEY or "sk_unused_for_parsing")
    # Renamed in stripe 13.0; the old name is what 12.x has.
    parse = getattr(client, "parse_event_notification", None) or client.parse_thin_event  # type: ignore[attr-defined]
    notification = None
    for secret in secrets:
        try:
            notification = parse(
                payload, header, secret, tolerance=tolerance if tolerance is not None else 10**10
            )
            break
        except stripe.SignatureVerificationError:
            continue
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidEvent(f"The body is not a thin event notification: {exc}") from None
    if notification is None:
        raise InvalidEvent("No configured secret signed this thin event notification.")
    context = getattr(notification, "context", None)
    related = getattr(notification, "related_object", None)
    return {
        "id": notification.id,
        "object": "v2.core.event",
        "type": notification.type,
        "created": str(notification.created),
        "livemode": bool(getattr(notification, "livemode", False)),
        "context": str(context) if context else None,
        "related_object": (
            {"id": related.id, "type": related.type, "url": related.url} if related else None
        ),
    }


def retrieve_v2_event(event_id: str, *, context: str | None) -> dict[str, Any]:
    """The full v2 event ``event_id`` (``GET /v2/core/events/{id}``), fetched with the
    notification's context as ``Stripe-Context``."""
    return _raw_get(f"/v2/core/events/{urllib.parse.quote(event_id, safe='')}", context)


def retrieve_related_object(url: str, *, context: str | None) -> dict[str, Any]:
    """The object a thin event is about, from its ``related_object.url`` (an API path)."""
    if not url.startswith(("/v1/", "/v2/")) or ".." in url or "?" in url:
        from .exceptions import InvalidEvent

        raise InvalidEvent(f"related_object.url {url[:80]!r} is not a Stripe API path.")
    return _raw_get(url, context)


def retrieve_event(event_id: str, *, stripe_account: str | None = None) -> dict[str, Any]:
    """The v1 (snapshot) event ``event_id``, the platform's or ``stripe_account``'s."""
    client = get_stripe_client()
    with translate_errors(READ_RETRY):
        event = client.v1.events.retrieve(event_id, options=_options(None, stripe_account))
    return plain(event)


def _raw_get(path: str, context: str | None) -> dict[str, Any]:
    client = get_stripe_client()
    options: dict[str, Any] = {"stripe_context": context} if context else {}
    with translate_errors(READ_RETRY):
        response = client.raw_request("get", path, **options)
        obj = client.deserialize(response, api_mode="V2" if path.startswith("/v2/") else "V1")
    result: dict[str, Any] = plain(obj)
    return result


def create_event_destination(
    url: str,
    *,
    events: Sequence[str],
    thin: bool = True,
    connect: bool = False,
    name: str = "django-stripe-bridge",
    description: str | None = None,
) -> str:
    """Create an Event Destination (API v2) sending ``events`` to ``url`` with thin (or
    snapshot) payloads, for the platform's events or (``connect``) its connected accounts';
    return the signing secret, which Stripe shows only now."""
    client = get_stripe_client()
    params: dict[str, Any] = {
        "name": name,
        "type": "webhook_endpoint",
        "event_payload": "thin" if thin else "snapshot",
        "enabled_events": list(events),
        "events_from": ["@accounts"] if connect else ["@self"],
        "webhook_endpoint": {"url": url},
        "include": ["webhook_endpoint.signing_secret"],
    }
    if description:
        params["description"] = description
    with translate_errors(WEBHOOK_RETRY):
        destination = client.v2.core.event_destinations.create(params=params)  # type: ignore[arg-type]
    secret = (plain(destination).get("webhook_endpoint") or {}).get("signing_secret")
    if not isinstance(secret, str) or not secret:
        raise StripeUnavailable("Stripe made the Event Destination but sent no signing secret.")
    return secret


#: Name under which ``register_webhook()`` configures an endpoint in localstripe.
DEFAULT_WEBHOOK_NAME = "django-stripe-bridge"


def register_webhook(
    url: str,
    *,
    events: Sequence[str] | None = None,
    description: str | None = None,
    name: str = DEFAULT_WEBHOOK_NAME,
    connect: bool = False,
) -> str:
    """Register ``url`` to receive Stripe's webhooks and return its signing secret.

    With Stripe (or any server that has ``POST /v1/webhook_endpoints``) this creates a
    webhook endpoint listening to ``events`` (default: every event, ``["*"]``) and returns
    the ``whsec_…`` secret Stripe made for it: put it in ``STRIPE_BRIDGE['WEBHOOK_SECRETS']``.
    ``connect=True`` makes a Connect endpoint: the connected accounts' events, not the
    platform's (its secret goes in ``WEBHOOK_ENDPOINTS``).

    localstripe has no such API. When ``API_BASE`` is set and the server answers that route
    with 404, the endpoint is configured through localstripe's ``POST /_config/webhooks/<name>``
    instead, with a secret made here; registering the same ``name`` again replaces it.
    """
    client = get_stripe_client()
    params: dict[str, Any] = {"url": url, "enabled_events": list(events or ["*"])}
    if connect:
        params["connect"] = True
    if description:
        params["description"] = description
    try:
        with translate_errors(WEBHOOK_RETRY):
            endpoint = client.v1.webhook_endpoints.create(params=params)  # type: ignore[arg-type]
    except StripeInvalidRequest as exc:
        if not bridge_settings.API_BASE or exc.http_status != 404:
            raise
        return _register_localstripe_webhook(url, events=events, name=name, connect=connect)
    return str(endpoint["secret"])


def _register_localstripe_webhook(
    url: str, *, events: Sequence[str] | None, name: str, connect: bool = False
) -> str:
    secret = "whsec_" + secrets.token_urlsafe(24)
    body: dict[str, Any] = {"url": url, "secret": secret}
    if connect:
        body["connect"] = True
    if events and list(events) != ["*"]:
        body["events"] = list(events)
    base = str(bridge_settings.API_BASE).rstrip("/")
    request = urllib.request.Request(  # noqa: S310 (the configured API base, http or https)
        f"{base}/_config/webhooks/{urllib.parse.quote(name, safe='')}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {_api_key()}"},
        method="POST",
    )
    timeout = bridge_settings.TIMEOUT
    try:
        with urllib.request.urlopen(  # noqa: S310
            request, timeout=max(timeout) if isinstance(timeout, list | tuple) else timeout
        ):
            pass
    except urllib.error.HTTPError as exc:
        raise StripeInvalidRequest(
            f"{base} refused the webhook configuration (HTTP {exc.code}).",
            error={"param": "url"},
        ) from None
    except OSError as exc:
        raise StripeUnavailable(f"Could not reach {base}: {redact(str(exc))}") from None
    return secret


# --- errors ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RetryAdvice:
    """What to tell the caller after a failure that may pass, for one kind of call."""

    #: After a connection error or a Stripe server error.
    now: str
    #: After Stripe limited the rate of requests.
    later: str


#: Creating a payment: the same key makes a retry safe.
PAYMENT_RETRY = RetryAdvice(
    now="Retry with the same Idempotency-Key: a payment is never made twice.",
    later="Retry later with the same Idempotency-Key.",
)
#: Reading from Stripe (listing events): nothing changes at Stripe, a retry is harmless.
READ_RETRY = RetryAdvice(
    now="Retry: reading changes nothing at Stripe.",
    later="Retry in a minute.",
)
#: Registering a webhook endpoint: a retry after a lost answer may make a second endpoint.
WEBHOOK_RETRY = RetryAdvice(
    now="Check the network (and API_BASE), then register again; if Stripe made the "
    "endpoint before the answer was lost, its Dashboard lists it twice: delete one.",
    later="Register again in a minute.",
)


@contextlib.contextmanager
def translate_errors(retry: RetryAdvice = PAYMENT_RETRY) -> Iterator[None]:
    """Turn a ``stripe`` error raised inside the block into the bridge's own; ``retry``
    says what the caller should do when the failure may pass."""
    try:
        yield
    except stripe.StripeError as exc:
        translated = translate_error(exc, retry)
        _log(exc, translated)
        raise translated from None


def translate_error(
    exc: stripe.StripeError, retry: RetryAdvice = PAYMENT_RETRY
) -> StripeRequestError:
    """The bridge's error for a ``stripe`` error: what its client should be told."""
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    raw = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(raw, dict)
    message = error_message(raw.get("message") or exc.user_message, "Stripe refused the request.")
    status = exc.http_status
    translated: StripeRequestError

    if isinstance(exc, stripe.CardError) or raw.get("type") == "card_error":
        translated = StripeCardError(message, error=error_fields(raw, _CARD_ERROR_FIELDS))
    elif status == 409 and (
        isinstance(exc, stripe.IdempotencyError) or raw.get("type") == "idempotency_error"
    ):
        # Stripe's answer while the first request with this key is still running.
        translated = StripeIdempotencyConflict(
            "Another request with this Idempotency-Key is still being handled. Retry in a "
            "moment with the same key.",
            error={"code": "request_in_progress"},
        )
    elif isinstance(exc, stripe.IdempotencyError) or raw.get("type") == "idempotency_error":
        translated = StripeIdempotencyConflict(
            "This Idempotency-Key was already used with another request. Send a new key "
            "for a new payment, or the same body to get the first result again."
        )
    elif raw.get("code") == "account_invalid":
        # Stripe-Account names no account of this platform (a connected account's).
        translated = StripeInvalidRequest(
            message, error={"param": "account", "code": "account_invalid"}
        )
    elif isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        translated = NotConfigured(
            f"Stripe refused {SETTING_NAME}['API_KEY'] (HTTP {status}): {message} Check that "
            "the key is a valid secret key for this account, with the permissions needed.",
            error={"message": _NOT_CONFIGURED_MESSAGE},
        )
    elif isinstance(exc, stripe.InvalidRequestError):
        translated = StripeInvalidRequest(message, error=error_fields(raw, ("param", "code")))
    elif isinstance(exc, stripe.APIConnectionError):
        translated = StripeUnavailable(
            f"Stripe could not be reached or did not answer in time. {retry.now}"
        )
    elif isinstance(exc, stripe.RateLimitError):
        translated = StripeUnavailable(f"Stripe is limiting the rate of requests. {retry.later}")
    else:
        translated = StripeUnavailable(
            f"Stripe failed to handle the request (HTTP {status or 'without a status'}). "
            f"{retry.now}"
        )
    translated.http_status = status
    translated.request_id = exc.request_id
    return translated


def _log(exc: stripe.StripeError, translated: StripeRequestError) -> None:
    level = logging.INFO if translated.status_code in (400, 402, 409) else logging.WARNING
    logger.log(
        level,
        "Stripe call failed: %s (HTTP %s, request %s): %s",
        type(exc).__name__,
        exc.http_status,
        error_message(exc.request_id, "-"),
        error_message(exc.user_message, str(exc.__class__.__doc__ or "").strip()),
    )
