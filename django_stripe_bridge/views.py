"""HTTP endpoints of the bridge: ``charge``, ``payment-intents``, ``transactions/<id>``
and ``schema``.

The views parse and answer; the work is done by ``charges``. Every
failure is answered in Stripe's error shape, ``{"error": {"type", "message", "param", …}}``,
by ``bridge_exception_handler()``, whatever the project's ``REST_FRAMEWORK`` settings say.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from importlib import import_module
from typing import Any

from django.core.exceptions import (
    ImproperlyConfigured,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError
from django.http import Http404, HttpResponseBase
from django.urls import include, re_path
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from drf_spectacular.views import SpectacularAPIView
from rest_framework import exceptions, status
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from . import __version__, charges, checkout, idempotency, schema_events
from . import connect as connect_policy
from .conf import bridge_settings
from .connect import ConnectCharge
from .db import non_atomic_requests
from .exceptions import ConfigurationError, StripeRequestError
from .models import StripeTransaction
from .realtime import policy as subscribe_policy
from .schema import (
    CARD_DECLINED_EXAMPLE,
    CHARGE_EXAMPLE,
    CHECKOUT_SESSION_EXAMPLE,
    COMMON_ERRORS,
    EXAMPLE_TRANSACTION_ID,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    IDEMPOTENCY_PARAMETER,
    OAS_VERSION,
    PAYMENT_INTENT_EXAMPLE,
    SCHEMA_TAG,
    BridgeSchemaGenerator,
    bridge_schema,
    error_response,
)
from .serializers import (
    BODY_PARAM,
    ChargeRequestSerializer,
    ChargeSerializer,
    CheckoutSessionRequestSerializer,
    CheckoutSessionSerializer,
    PaymentIntentRequestSerializer,
    PaymentIntentSerializer,
    TransactionSerializer,
    first_error,
)
from .throttling import ChargeRateThrottle

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"


_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
# Where they were first defined; they live in .idempotency now.
CLIENT_SCOPE_COOKIE = idempotency.CLIENT_SCOPE_COOKIE
CLIENT_SCOPE_MAX_AGE = idempotency.CLIENT_SCOPE_MAX_AGE
CLIENT_SCOPE_SALT = idempotency.CLIENT_SCOPE_SALT
#: Response header of an answer given in summary, to a client that only repeated the
#: content of another's request (docs/http-api.md).
REPLAY_HEADER = "Stripe-Bridge-Replay"


# --- errors ----------------------------------------------------------------------------------


class RequestTooLarge(exceptions.APIException):
    """The body is larger than the view accepts."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def error_body(
    error_type: str, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """``{"error": {...}}`` as every error of the bridge's endpoints is answered."""
    error: dict[str, Any] = {"type": error_type, "message": message}
    if param is not None:
        error["param"] = param
    if code is not None:
        error["code"] = code
    return {"error": error}


def bridge_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Answer any exception in Stripe's error shape; never a traceback, never a secret."""
    headers: dict[str, str] = {}
    if isinstance(exc, StripeRequestError):
        if isinstance(exc, ConfigurationError):
            logger.error("%s", exc)
        return Response({"error": exc.error}, status=exc.status_code)
    if isinstance(exc, ImproperlyConfigured):
        logger.error("The bridge is misconfigured: %s", exc)
        body = error_body(
            "api_error",
            "Payments are not available: the server is not configured for Stripe.",
            code="not_configured",
        )
        return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    if isinstance(exc, exceptions.ValidationError):
        param, detail = first_error(exc.detail)
        code = "parameter_missing" if getattr(detail, "code", None) == "required" else None
        body = error_body(
            "invalid_request_error", str(detail), param=param, code=code or "parameter_invalid"
        )
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.ParseError):
        body = error_body(
            "invalid_request_error", str(exc.detail), param=BODY_PARAM, code="body_invalid"
        )
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        # A body read whole somewhere (a middleware, say) past DATA_UPLOAD_MAX_MEMORY_SIZE.
        exc = RequestTooLarge()
    elif isinstance(exc, SuspiciousOperation):
        logger.warning("Suspicious request refused: %s", exc)
        body = error_body(
            "invalid_request_error", "The request was refused as suspicious.", code="suspicious"
        )
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DatabaseError):
        logger.exception("Database error in %s", type(context.get("view")).__name__)
        request = context.get("request")
        # Only a POST (a payment) has an Idempotency-Key to retry with.
        retry = (
            "with the same Idempotency-Key" if getattr(request, "method", "") == "POST" else "later"
        )
        body = error_body(
            "api_error", f"The database is unavailable. Retry {retry}.", code="database_unavailable"
        )
        return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    if isinstance(exc, exceptions.APIException):
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(math.ceil(exc.wait))
        code = {
            401: "authentication_required",
            403: "permission_denied",
            404: "resource_missing",
            405: "method_not_allowed",
            406: "not_acceptable",
            413: "request_too_large",
            415: "unsupported_media_type",
            429: "rate_limit",
        }.get(exc.status_code, exc.default_code)
        detail = exc.detail if isinstance(exc.detail, str) else first_error(exc.detail)[1]
        body = error_body("invalid_request_error", str(detail), code=str(code))
        return Response(body, status=exc.status_code, headers=headers)
    logger.exception("Unexpected error in %s", type(context.get("view")).__name__)
    body = error_body("api_error", "An unexpected error occurred.", code="internal_error")
    return Response(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)


# --- plumbing: JSON in, JSON out -------------------------------------------------------------


class UnsupportedContentEncoding(exceptions.APIException):
    """The body is compressed (``Content-Encoding``); the bridge reads plain JSON only."""

    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    default_detail = "Compressed request bodies are not accepted."
    default_code = "unsupported_content_encoding"


class BoundedJSONParser(BaseParser):
    """JSON bodies up to the view's ``max_body_bytes``; errors that say what is wrong.

    Not a ``JSONParser``: DRF hands those ``request.body``, read whole (and refused past
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` with an error of its own) before the limit is checked.
    """

    media_type = "application/json"
    renderer_class = JSONRenderer

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        context = parser_context or {}
        view = context.get("view")
        limit = getattr(view, "max_body_bytes", BridgeAPIView.max_body_bytes)
        request = context.get("request")
        content_encoding = request.META.get("HTTP_CONTENT_ENCODING", "") if request else ""
        if content_encoding.strip().lower() not in ("", "identity"):
            raise UnsupportedContentEncoding(
                f"Content-Encoding {content_encoding[:40]!r} is not accepted: send the JSON "
                "body uncompressed."
            )
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        encoding = context.get("encoding") or "utf-8"
        try:
            # bytes.decode() takes text encodings only: a charset such as zlib or base64
            # would otherwise inflate a small body past the limit just checked.
            text = raw.decode(encoding)
        except LookupError:
            raise exceptions.ParseError(
                f"The charset {encoding!r} is not a text encoding: send the body as UTF-8 JSON."
            ) from None
        except ValueError:
            raise exceptions.ParseError(f"The request body is not valid {encoding}.") from None
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"The request body is not valid JSON: {exc}") from None
        where = _lone_surrogate_in(data)
        if where is not None:
            raise exceptions.ParseError(
                f"The request body is not valid Unicode: {where} holds a lone surrogate (a "
                "\\ud800-\\udfff escape without its pair)."
            )
        return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate_in(data: Any) -> str | None:
    """Where a parsed JSON body holds a lone surrogate (that no encoder can write), or None.

    JSON's ``\\ud800`` escapes decode to one; a surrogate *pair* decodes to one character.
    """
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return f"'{where}'" if where else "the body"
        elif isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    return f"a key of '{where}'" if where else "a parameter name"
                name = key if len(key) <= 40 else key[:37] + "..."
                stack.append((item, f"{where}[{name}]" if where else name))
        elif isinstance(value, list):
            stack.extend(
                (item, f"{where}[{index}]" if where else "") for index, item in enumerate(value)
            )
    return None


class JSONContentNegotiation(BaseContentNegotiation):
    """Always answer JSON (errors too), whatever ``Accept`` says; parse by ``Content-Type``."""

    def select_parser(self, request: Any, parsers: Any) -> Any:
        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        return renderers[0], renderers[0].media_type


class BridgeAPIView(APIView):
    """Base of the bridge's JSON endpoints: JSON in and out, errors in Stripe's shape."""

    parser_classes = [BoundedJSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONContentNegotiation
    schema = AutoSchema()
    #: Larger bodies are answered 413 (the bridge's bodies are a few hundred bytes).
    max_body_bytes = 64 * 1024

    def get_exception_handler(self) -> Any:
        return bridge_exception_handler

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        # Payment objects and client secrets must not sit in shared caches.
        response["Cache-Control"] = "no-store"
        return response


class _CreateView(BridgeAPIView):
    """Plumbing shared by the create endpoints: permissions, throttle, idempotency key."""

    request_serializer_class: type[Any]
    #: Names the create call in the content an unscoped key is bound to (default: the
    #: view's class name).
    operation: str = ""

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., HttpResponseBase]:
        view = super().as_view(**initkwargs)
        # The key's claim must be committed before Stripe is called (a concurrent retry
        # must see it), and kept when the call fails, even under ATOMIC_REQUESTS.
        return non_atomic_requests(view)

    def get_permissions(self) -> list[Any]:
        classes = bridge_settings.CHARGE_PERMISSION_CLASSES
        if not isinstance(classes, list | tuple):
            classes = [classes]
        return [permission() for permission in classes]

    def get_throttles(self) -> list[Any]:
        return [*super().get_throttles(), ChargeRateThrottle()]

    def get_idempotency_key(self) -> str | None:
        """The client's ``Idempotency-Key`` header, checked; ``None`` when it sent none."""
        key = self.request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            return None
        if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH or not _PRINTABLE_ASCII.fullmatch(key):
            raise exceptions.ValidationError(
                {
                    IDEMPOTENCY_HEADER: f"The {IDEMPOTENCY_HEADER} header must be 1 to "
                    f"{IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters."
                }
            )
        return key

    def get_connect(self, data: dict[str, Any]) -> ConnectCharge | None:
        """How the payment is made for the connected account the body names (popped from
        ``data``), as ``CONNECT_POLICY`` decides; raises ``AccountRefused`` (403)."""
        return connect_policy.decide(self.request, data.pop("account", None))

    def get_user(self) -> Any:
        """The signed-in user, or ``None`` for an anonymous client."""
        user = getattr(self.request, "user", None)
        return user if user is not None and user.is_authenticated else None

    def get_transaction_user(self) -> Any:
        """The user to record on the transaction: none for a request that only repeats
        another client's (the payment is not theirs)."""
        claim = getattr(self, "claim", None)
        return self.get_user() if claim is None or claim.owner else None

    def get_idempotency_scope(self) -> str | None:
        """Whose idempotency keys these are: the user, else this one client; ``None`` when
        the request shows neither.

        An anonymous client is known by a random token in a signed cookie the bridge sets
        (``CLIENT_SCOPE_COOKIE``).
        """
        user = self.get_user()
        if user is not None:
            return f"user:{user.pk}"
        token = idempotency.client_token(self.request)
        if token is None:
            return None
        self.client_token = token
        return f"client:{token}"

    def withheld(self, answer: Any) -> Any:
        """What a client that only repeated the content of another's request is answered:
        the object without its secrets (``summary()``)."""
        return idempotency.summary(answer)

    def post(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        # Made here rather than in the service so that it can be told to the client: a
        # retry with it after a 502 or 503 is then safe too.
        self.idempotency_key = self.get_idempotency_key() or charges.new_idempotency_key()
        scope = self.get_idempotency_scope()
        if scope is None:
            # The client's first request: it gets a scope (the cookie in this answer), and
            # its key is bound to the request's content, for a retry that comes without it.
            self.client_token = idempotency.new_client_token()
        serializer = self.request_serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.claim = idempotency.claim(
            self.idempotency_key,
            scope=scope or f"client:{self.client_token}",
            operation=self.operation or type(self).__name__,
            body=serializer.validated_data,
            presented=scope is not None,
        )
        # What Stripe sees is the owner's scoped key: no other client can meet this key.
        answer = self.perform_create(serializer.validated_data, self.claim.stripe_key)
        if self.claim.owner:
            return Response(answer)
        return Response(self.withheld(answer), headers={REPLAY_HEADER: "summary"})

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        key = getattr(self, "idempotency_key", None)
        if key:
            response[IDEMPOTENCY_HEADER] = key
        token = getattr(self, "client_token", None)
        if token:
            # Set again on every request, so that it lasts while the client keeps paying.
            path = idempotency.client_scope_path(request.path)
            idempotency.set_client_scope_cookie(response, request, token, path=path)
        return response

    def perform_create(self, data: dict[str, Any], idempotency_key: str) -> Any:
        raise NotImplementedError


class ChargeView(_CreateView):
    """``POST charge``: charge a one-time card token (or a PaymentMethod) through Stripe."""

    request_serializer_class = ChargeRequestSerializer
    operation = "charge"

    @bridge_schema(
        operation_id="stripe_bridge_charge_create",
        tags=[SCHEMA_TAG],
        summary="Charge a card token",
        description="Creates a Stripe charge and answers with the charge object. Its `id` is "
        "the transaction id to subscribe to (channel `stripe`, selector `id = '<id>'`). A JSON "
        "object body, or a one-element array holding it.",
        request=ChargeRequestSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            200: OpenApiResponse(
                ChargeSerializer,
                description="The Stripe charge object.",
                examples=[OpenApiExample("A charge", value=CHARGE_EXAMPLE)],
            ),
            402: error_response(
                "The card was declined; `charge` is the failed charge's id.",
                CARD_DECLINED_EXAMPLE,
            ),
            **COMMON_ERRORS,
        },
        examples=[
            OpenApiExample(
                "Charge 10.00 USD",
                value={"token": "tok_visa", "amount": 1000, "currency": "usd"},
                request_only=True,
            )
        ],
    )
    def post(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)

    def perform_create(self, data: dict[str, Any], idempotency_key: str) -> Any:
        return self.perform_charge(data, idempotency_key)

    def withheld(self, answer: Any) -> Any:
        # The documented fields: no receipt URL, no card or billing details.
        return {name: answer.get(name) for name in ChargeSerializer().fields}

    # --- hook to override ---

    def perform_charge(self, data: dict[str, Any], idempotency_key: str) -> Any:
        """Charge with the validated body; return what to answer (the charge object).

        ``idempotency_key`` is the key for Stripe, already scoped to the client.
        """
        connect = self.get_connect(data)
        return charges.create_charge(
            **data,
            idempotency_key=idempotency_key,
            user=self.get_transaction_user(),
            connect=connect,
        )


class PaymentIntentView(_CreateView):
    """``POST payment-intents``: create (and optionally confirm) a PaymentIntent."""

    request_serializer_class = PaymentIntentRequestSerializer
    operation = "payment-intents"

    @bridge_schema(
        operation_id="stripe_bridge_payment_intent_create",
        tags=[SCHEMA_TAG],
        summary="Create a PaymentIntent",
        description="Creates a PaymentIntent and, with `confirm: true`, confirms it with "
        "`payment_method`. `status` is Stripe's: `succeeded`, `requires_action` (3-D Secure: "
        "finish with Stripe.js and `client_secret`; see `next_action`), "
        "`requires_payment_method`… Its `id` is the transaction id to subscribe to.",
        request=PaymentIntentRequestSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            200: OpenApiResponse(
                PaymentIntentSerializer,
                description="The PaymentIntent.",
                examples=[OpenApiExample("A PaymentIntent", value=PAYMENT_INTENT_EXAMPLE)],
            ),
            402: error_response(
                "The card was declined; `payment_intent` and `charge` name what failed."
            ),
            **COMMON_ERRORS,
        },
        examples=[
            OpenApiExample(
                "Pay 10.00 USD now",
                value={"amount": 1000, "payment_method": "pm_card_visa", "confirm": True},
                request_only=True,
            )
        ],
    )
    def post(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)

    def perform_create(self, data: dict[str, Any], idempotency_key: str) -> Any:
        intent = self.perform_payment_intent(data, idempotency_key)
        return PaymentIntentSerializer(intent).data

    def withheld(self, answer: Any) -> Any:
        # client_secret confirms and reads the PaymentIntent from a browser; next_action may
        # hold the 3-D Secure page's URL.
        return {**answer, "client_secret": None, "next_action": None}

    # --- hook to override ---

    def perform_payment_intent(self, data: dict[str, Any], idempotency_key: str) -> Any:
        """Create the PaymentIntent with the validated body; return Stripe's object.

        ``idempotency_key`` is the key for Stripe, already scoped to the client.
        """
        connect = self.get_connect(data)
        return charges.create_payment_intent(
            **data,
            idempotency_key=idempotency_key,
            user=self.get_transaction_user(),
            connect=connect,
        )


class CheckoutSessionView(_CreateView):
    """``POST checkout-sessions``: a Stripe Checkout Session in payment mode."""

    request_serializer_class = CheckoutSessionRequestSerializer
    operation = "checkout-sessions"

    @bridge_schema(
        operation_id="stripe_bridge_checkout_session_create",
        tags=[SCHEMA_TAG],
        summary="Create a Checkout Session",
        description="Creates a Stripe Checkout Session in payment mode: send the customer to "
        "`url`. Its `id` (cs_…) is the transaction id to subscribe to; the PaymentIntent made "
        "when the customer pays joins it, so either id follows the whole payment. "
        "`success_url`/`cancel_url` default to the settings and are accepted only on hosts "
        "the site allows.",
        request=CheckoutSessionRequestSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            200: OpenApiResponse(
                CheckoutSessionSerializer,
                description="The session: where to send the customer.",
                examples=[OpenApiExample("A Checkout Session", value=CHECKOUT_SESSION_EXAMPLE)],
            ),
            **COMMON_ERRORS,
        },
        examples=[
            OpenApiExample(
                "Pay 25.00 EUR for a T-shirt",
                value={"amount": 2500, "currency": "eur", "name": "T-shirt"},
                request_only=True,
            )
        ],
    )
    def post(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)

    def perform_create(self, data: dict[str, Any], idempotency_key: str) -> Any:
        data = dict(data)
        data["success_url"], data["cancel_url"] = checkout.redirect_urls(
            self.request, data.get("success_url"), data.get("cancel_url")
        )
        session = self.perform_checkout_session(data, idempotency_key)
        return CheckoutSessionSerializer(session).data

    # --- hook to override ---

    def perform_checkout_session(self, data: dict[str, Any], idempotency_key: str) -> Any:
        """Create the session with the validated body (its URLs resolved); return Stripe's
        object. ``idempotency_key`` is the key for Stripe, already scoped to the client.
        """
        connect = self.get_connect(data)
        return charges.create_checkout_session(
            **data,
            idempotency_key=idempotency_key,
            user=self.get_transaction_user(),
            connect=connect,
        )


class TransactionView(BridgeAPIView):
    """``GET transactions/<id>``: a transaction's status and events, for clients that poll."""

    # Who may read it is SUBSCRIBE_POLICY's answer for a subscription to its id (checked in
    # get(): under 'pinned' knowing the id is enough).
    permission_classes = [AllowAny]

    @bridge_schema(
        operation_id="stripe_bridge_transaction_retrieve",
        tags=[SCHEMA_TAG],
        summary="A transaction's current status",
        parameters=[
            OpenApiParameter(
                "transaction_id",
                str,
                OpenApiParameter.PATH,
                description="ch_…, pi_… or cs_…, as answered by charge, payment-intents or "
                "checkout-sessions.",
                examples=[OpenApiExample("A charge", value=EXAMPLE_TRANSACTION_ID)],
            )
        ],
        responses={
            200: TransactionSerializer,
            403: error_response(
                "SUBSCRIBE_POLICY does not let this user follow this transaction (under "
                "'staff': staff, or a seller of its connected account, only)."
            ),
            404: error_response("No transaction has this id."),
        },
    )
    def get(self, request: Any, transaction_id: str, *args: Any, **kwargs: Any) -> Response:
        # The route takes any id, so that every unknown one gets this answer; one that no
        # row can have (too long, or a NUL that PostgreSQL refuses) is not looked up.
        storable = 0 < len(transaction_id) <= 255 and "\x00" not in transaction_id
        tx = StripeTransaction.objects.filter(pk=transaction_id).first() if storable else None
        if tx is None and not transaction_id:
            raise exceptions.NotFound("No transaction id: use transactions/<id>.")
        if tx is None:
            shown = transaction_id if len(transaction_id) <= 60 else transaction_id[:57] + "..."
            raise exceptions.NotFound(f"No such transaction: '{shown}'.")
        if not subscribe_policy.may_read_transaction(request.user, tx.pk, tx.account):
            raise exceptions.PermissionDenied(
                "SUBSCRIBE_POLICY does not let you follow this transaction: it needs a staff "
                "login, or one of a seller of its connected account."
            )
        return Response(TransactionSerializer(tx).data)


class NoRouteView(BridgeAPIView):
    """Any path under the app's prefix that no route matches: a JSON 404, whatever the method.

    Without it Django answers such a path with its HTML page (listing every URL pattern of
    the site when ``DEBUG`` is on).
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []
    schema = None  # type: ignore[assignment]
    #: Routes named in the answer, so that a typo can be found.
    ROUTES = (
        "charge, payment-intents, checkout-sessions, transactions/<id>, webhooks/handler, schema"
    )

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # Every method, OPTIONS included (APIView would describe the view), is this 404.
        self.args, self.kwargs = args, kwargs
        self.request = self.initialize_request(request, *args, **kwargs)
        self.headers = self.default_response_headers
        path = str(kwargs.get("path", ""))
        shown = path if len(path) <= 60 else path[:57] + "..."
        exc = exceptions.NotFound(f"No such route: '{shown}'. The routes are {self.ROUTES}.")
        response = self.handle_exception(exc)
        self.response = self.finalize_response(self.request, response, *args, **kwargs)
        return self.response


# --- schema ----------------------------------------------------------------------------------


class SchemaView(SpectacularAPIView):
    """``GET schema``: OpenAPI 3 description of the bridge's endpoints, in YAML.

    JSON with ``?format=json`` (or ``Accept: application/vnd.oai.openapi+json``). Only the
    bridge's endpoints are described, under the prefix the app is mounted at.
    """

    generator_class = BridgeSchemaGenerator
    # Not described itself (DRF skips views without a schema), whatever the project's
    # DEFAULT_SCHEMA_CLASS is.
    schema = None

    def get_exception_handler(self) -> Any:
        return bridge_exception_handler

    def perform_content_negotiation(self, request: Any, force: bool = False) -> Any:
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:
            # DRF's answer to an unknown ?format= is a bare "Not found."
            fmt = str(request.query_params.get(api_settings.URL_FORMAT_OVERRIDE, ""))[:40]
            raise exceptions.NotAcceptable(
                f"Unknown schema format {fmt!r}: use ?format=json or ?format=yaml (the default)."
            ) from None
        except exceptions.NotAcceptable:
            raise exceptions.NotAcceptable(
                "Could not satisfy the request Accept header: the schema is served as "
                "application/vnd.oai.openapi (YAML) or application/vnd.oai.openapi+json (JSON)."
            ) from None

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(response, "exception", False):
            # Errors in the bridge's JSON shape, not in the YAML that was asked for.
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    #: The URLconf module whose routes the schema describes (named, not imported: the
    #: URLconf imports this module).
    bridge_urlconf = "django_stripe_bridge.urls"

    def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        prefix = re.sub(r"schema/?$", "", request.path_info).lstrip("/")
        routes = import_module(self.bridge_urlconf).urlpatterns
        self.patterns = [re_path("^" + re.escape(prefix), include(routes))]
        self.custom_settings = {
            "OAS_VERSION": OAS_VERSION,
            # The project's hooks, then the one describing the event stream (dotted paths:
            # drf-spectacular imports what custom_settings names).
            "POSTPROCESSING_HOOKS": [
                f"{hook.__module__}.{hook.__qualname__}"
                for hook in [
                    *spectacular_settings.POSTPROCESSING_HOOKS,
                    schema_events.add_events_operation,
                ]
            ],
        }
        if not spectacular_settings.TITLE:
            self.custom_settings.update(
                TITLE="django-stripe-bridge",
                VERSION=__version__,
                DESCRIPTION="Charge cards through Stripe and follow each payment's status.",
            )
        return super().get(request, *args, **kwargs)


__all__ = [
    "BridgeAPIView",
    "ChargeView",
    "NoRouteView",
    "PaymentIntentView",
    "SchemaView",
    "TransactionView",
    "bridge_exception_handler",
]
