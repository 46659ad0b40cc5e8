"""The OpenAPI description of the bridge's HTTP API: the same constraints as its validation.

drf-spectacular generates it from the views and serializers; the extensions here give each
of the bridge's strict fields the schema of what it accepts (patterns, bounds read from
the settings, ``additionalProperties: false`` where unknown fields are refused), and
``BridgeSchemaGenerator`` adds what a serializer cannot say: the one-element-array
form of the bodies and the webhook, a plain Django view. ``tests/test_schemathesis.py``
holds the API to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from drf_spectacular.extensions import (
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)

from . import serializers, upstream
from .conf import SETTING_NAME, bridge_settings

#: The tag of the bridge's operations.
SCHEMA_TAG = "stripe-bridge"
#: The OpenAPI version written: 3.1, whose schemas are JSON Schema (``propertyNames``, …).
OAS_VERSION = "3.1.0"
#: The transaction id the schema's examples use.
EXAMPLE_TRANSACTION_ID = "ch_1Cmms9I56A1133zjexAcwndb"
#: Stripe's limit on idempotency keys.
IDEMPOTENCY_KEY_MAX_LENGTH = 255
#: Printable ASCII, no space at either end: what the views accept as an Idempotency-Key.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
#: No NUL character (refused by every string field).
NO_NUL = "^[^\\u0000]*$"
STRIPE_ID_PATTERN = "^[A-Za-z0-9_]+$"
#: A connected account's id.
ACCOUNT_ID_PATTERN = "^acct_[A-Za-z0-9_]+$"
#: Stripe-Signature as Stripe sends it (any other shape is refused as unsigned).
SIGNATURE_PATTERN = r"^t=[0-9]{1,12}(,v1=[0-9a-f]{64})+$"
SIGNATURE_EXAMPLE = (
    "t=1732500000,v1=" + "5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"
)


def bridge_schema(**kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``extend_schema`` for a view method, built on drf-spectacular's ``AutoSchema``.

    ``extend_schema`` bases a method's schema on ``DEFAULT_SCHEMA_CLASS``, which a project
    that never set up drf-spectacular leaves at DRF's own class; the bridge's schema must
    work in such a project too.
    """

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        method.schema = AutoSchema  # type: ignore[attr-defined]
        decorated = extend_schema(**kwargs)(method)
        del method.schema  # type: ignore[attr-defined]
        return decorated

    return decorate


# --- fields: the schema of what each strict field accepts -----------------------------------


class AmountFieldSchema(OpenApiSerializerFieldExtension):
    target_class = serializers.AmountField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        minimum = max(1, int(bridge_settings.MIN_AMOUNT))
        return {
            "type": "integer",
            "minimum": minimum,
            "maximum": int(bridge_settings.MAX_AMOUNT),
            "examples": [max(minimum, 1000)],
        }


class CurrencyFieldSchema(OpenApiSerializerFieldExtension):
    target_class = serializers.CurrencyField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        allowed = bridge_settings.CURRENCIES
        if allowed is None:
            return {"type": "string", "pattern": "^[A-Za-z]{3}$", "examples": ["usd"]}
        # Any case is accepted: "USD" as well as "usd".
        codes = sorted({str(code).lower() for code in allowed})
        either = "|".join("".join(f"[{c}{c.upper()}]" for c in code) for code in codes)
        return {"type": "string", "pattern": f"^({either})$", "examples": codes[:1]}


class StripeIdFieldSchema(OpenApiSerializerFieldExtension):
    target_class = serializers.StripeIdField
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        field = self.target
        return {
            "type": "string",
            "pattern": STRIPE_ID_PATTERN,
            "minLength": 1,
            "maxLength": field.max_length,
        }


class AccountIdFieldSchema(OpenApiSerializerFieldExtension):
    target_class = serializers.AccountIdField
    priority = 1  # before StripeIdFieldSchema, which matches its subclasses

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        return {
            "type": "string",
            "pattern": ACCOUNT_ID_PATTERN,
            "minLength": 6,
            "maxLength": self.target.max_length,
        }


class StrictCharFieldSchema(OpenApiSerializerFieldExtension):
    target_class = serializers.StrictCharField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        field = self.target
        schema: dict[str, Any] = {"type": "string", "pattern": NO_NUL}
        if field.max_length is not None:
            schema["maxLength"] = field.max_length
        if not field.allow_blank:
            schema["minLength"] = 1
        return schema


class StrictEmailFieldSchema(OpenApiSerializerFieldExtension):
    target_class = serializers.StrictEmailField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        field = self.target
        email = {
            "type": "string",
            # The pattern, not "format": "email", whose validators differ from one another.
            "pattern": serializers.EMAIL_PATTERN,
            "maxLength": field.max_length,
        }
        if field.allow_blank:
            return {"anyOf": [email, {"type": "string", "maxLength": 0}]}
        return email


class MetadataFieldSchema(OpenApiSerializerFieldExtension):
    target_class = serializers.MetadataField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        return {
            "type": "object",
            "maxProperties": serializers.METADATA_MAX_KEYS,
            "propertyNames": {
                "minLength": 1,
                "maxLength": serializers.METADATA_KEY_MAX_LENGTH,
                "pattern": "^[^\\[\\]\\u0000]*$",
            },
            "additionalProperties": {
                "type": "string",
                "maxLength": serializers.METADATA_VALUE_MAX_LENGTH,
                "pattern": NO_NUL,
            },
        }


class LineItemsFieldSchema(OpenApiSerializerFieldExtension):
    target_class = serializers.LineItemsField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        return {
            "type": "array",
            "minItems": 1,
            "maxItems": serializers.MAX_LINE_ITEMS,
            "items": {
                "type": "object",
                "properties": {
                    "price": {"type": "string", "pattern": "^(price|plan)_[A-Za-z0-9_]{1,250}$"},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 999_999},
                },
                "required": ["price"],
                "additionalProperties": False,
            },
        }


class PaymentMethodTypesFieldSchema(OpenApiSerializerFieldExtension):
    target_class = serializers.PaymentMethodTypesField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        return {
            "type": "array",
            "minItems": 1,
            "maxItems": serializers.MAX_PAYMENT_METHOD_TYPES,
            "uniqueItems": True,
            "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,49}$"},
        }


class RedirectURLFieldSchema(OpenApiSerializerFieldExtension):
    """An http(s) URL on one of the hosts allowed now: the pattern the field checks."""

    target_class = serializers.RedirectURLField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        from .checkout import URL_MAX_LENGTH, redirect_url_pattern

        url = {"type": "string", "maxLength": URL_MAX_LENGTH, "pattern": redirect_url_pattern()}
        return {"anyOf": [url, {"type": "null"}]}


# --- serializers -----------------------------------------------------------------------------


_BLANK = {"type": "string", "maxLength": 0}


class RequestBodySchema(OpenApiSerializerExtension):
    """A request body: unknown fields are refused."""

    target_class = serializers.RequestBodySerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        for name, field_schema in list(schema.get("properties", {}).items()):
            # drf-spectacular offers "" as an alternative to a pattern for a blank-allowed
            # field; the patterns here match "" already, and "oneOf" would then refuse it.
            options = field_schema.get("oneOf")
            if isinstance(options, list) and len(options) == 2 and options[1] == _BLANK:
                schema["properties"][name] = options[0]
        if _is(self.target, serializers.CheckoutSessionRequestSerializer):
            # amount with name, or line_items (CheckoutSessionRequestSerializer.validate).
            schema["oneOf"] = [
                {"required": ["amount", "name"], "not": {"required": ["line_items"]}},
                {
                    "required": ["line_items"],
                    "not": {
                        "anyOf": [
                            {"required": ["amount"]},
                            {"required": ["name"]},
                            {"required": ["currency"]},
                        ]
                    },
                },
            ]
        if isinstance(self.target, serializers.PaymentIntentRequestSerializer) or (
            self.target is serializers.PaymentIntentRequestSerializer
        ):
            # confirm: true needs a payment_method (PaymentIntentRequestSerializer.validate).
            schema["anyOf"] = [
                {"not": {"required": ["confirm"]}},
                {"properties": {"confirm": {"const": False}}},
                {
                    "required": ["payment_method"],
                    "properties": {"payment_method": {"type": "string"}},
                },
            ]
        return schema


def _is(target: Any, cls: type) -> bool:
    return isinstance(target, cls) or target is cls


def _id(prefixes: tuple[str, ...]) -> dict[str, Any]:
    either = "|".join(re.escape(prefix) for prefix in prefixes)
    return {"type": "string", "pattern": f"^({either})[A-Za-z0-9_]+$"}


def _shape_properties(name: str) -> dict[str, Any]:
    """The JSON Schema of what ``upstream.validated()`` checks of ``name`` objects."""
    shape = upstream.SHAPES[name]
    amount = {"type": "integer", "minimum": 0}
    properties: dict[str, Any] = {
        "id": _id(shape.prefixes),
        "object": {"type": "string", "const": name},
        "status": {"type": "string", "enum": list(shape.statuses)},
        "amount": amount,
        "currency": {"type": "string", "pattern": "^[a-z]{3}$"},
        "created": {"type": "integer", "minimum": 0},
        "livemode": {"type": "boolean"},
    }
    if name == "charge":
        properties.update(
            amount_refunded=amount,
            paid={"type": "boolean"},
            captured={"type": "boolean"},
            payment_intent={"anyOf": [_id(("pi_",)), {"type": "null"}]},
            failure_code={"type": ["string", "null"]},
            failure_message={"type": ["string", "null"]},
        )
    return properties


class ChargeSchema(OpenApiSerializerExtension):
    """The charge object ``POST charge`` answers with: Stripe's whole object, checked."""

    target_class = serializers.ChargeSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        properties = _shape_properties("charge")
        properties["id"]["description"] = "The transaction id to subscribe to (ch_…)."
        return {
            "type": "object",
            "description": "Stripe's charge object, whole; these fields are always there.",
            "properties": properties,
            "required": list(properties),
        }


class CheckoutSessionSchema(OpenApiSerializerExtension):
    """What ``POST checkout-sessions`` answers."""

    target_class = serializers.CheckoutSessionSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        shape = _shape_properties("checkout.session")
        properties = {
            "id": {**shape["id"], "description": "The transaction id to subscribe to (cs_…)."},
            "url": {
                "type": "string",
                "pattern": "^https?://",
                "description": "Stripe's payment page: send the customer there.",
            },
            "status": shape["status"],
            "payment_status": {"type": "string", "enum": list(upstream.CHECKOUT_PAYMENT_STATUSES)},
            "expires_at": {"type": "integer", "minimum": 0},
        }
        return {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }


class PaymentIntentSchema(OpenApiSerializerExtension):
    """What ``POST payment-intents`` answers: a projection of the PaymentIntent."""

    target_class = serializers.PaymentIntentSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        shape = _shape_properties("payment_intent")
        properties = {
            "id": {**shape["id"], "description": "The transaction id to subscribe to (pi_…)."},
            "object": shape["object"],
            "status": shape["status"],
            "client_secret": {
                "type": "string",
                "pattern": "^pi_[A-Za-z0-9_]+_secret_",
                "description": "For Stripe.js (3-D Secure).",
            },
            "amount": shape["amount"],
            "currency": shape["currency"],
            "next_action": {"type": ["object", "null"]},
        }
        return {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }


# --- pieces the views' decorators use --------------------------------------------------------


def error_response(description: str, example: dict[str, Any] | None = None) -> OpenApiResponse:
    """An error response in the bridge's shape, with an example when one is given."""
    examples = [OpenApiExample(description[:60], value=example)] if example else None
    return OpenApiResponse(serializers.ErrorSerializer, description=description, examples=examples)


def _error(error_type: str, message: str, **fields: Any) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message, **fields}}


IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    {
        "type": "string",
        "minLength": 1,
        "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH,
        "pattern": IDEMPOTENCY_KEY_PATTERN,
    },
    OpenApiParameter.HEADER,
    description="One payment attempt of this client (at most 255 printable ASCII "
    "characters). It belongs to the client that first sent it (the signed-in user, else the "
    "stripe_bridge_client cookie, else, on a first request without the cookie, the request's "
    "content): the same request again from that client returns the first result without "
    "paying twice; the same request without the cookie (a retry after a lost answer) returns "
    "it in summary, without client_secret (header Stripe-Bridge-Replay); anything else is "
    "409. When absent the bridge makes one; either way the response's Idempotency-Key header "
    "holds it, for a safe retry after a 502 or 503.",
    examples=[OpenApiExample("An order", value="order-42-attempt-1")],
)

COMMON_ERRORS = {
    400: error_response(
        "A parameter is missing or wrong; `param` names it (`body` for the body as a whole).",
        _error(
            "invalid_request_error",
            "'amount' must be at least 1.",
            param="amount",
            code="parameter_invalid",
        ),
    ),
    401: error_response("CHARGE_PERMISSION_CLASSES asks for credentials that were not sent."),
    403: error_response(
        "CHARGE_PERMISSION_CLASSES refused the request (or a CSRF failure), or "
        "CONNECT_POLICY refused the connected `account` it names (code `account_forbidden`)."
    ),
    409: error_response(
        "The Idempotency-Key was used before by another client, or with another body.",
        _error(
            "idempotency_error",
            "This Idempotency-Key was already used by another client or with another request.",
            code="idempotency_key_in_use",
        ),
    ),
    413: error_response("The body is larger than 64 KiB."),
    415: error_response("The body is not sent as application/json, or is compressed."),
    429: error_response("Too many requests from this IP (CHARGE_THROTTLE_RATE); see Retry-After."),
    502: error_response(
        "Stripe could not be reached, did not answer in time, failed, or answered something "
        "that is not the object asked for."
    ),
    503: error_response(
        f"The bridge has no usable Stripe key ({SETTING_NAME}['API_KEY']), or the database is "
        "unavailable."
    ),
}

CHARGE_EXAMPLE = {
    "id": EXAMPLE_TRANSACTION_ID,
    "object": "charge",
    "amount": 1000,
    "amount_refunded": 0,
    "currency": "usd",
    "status": "succeeded",
    "paid": True,
    "captured": True,
    "created": 1732500000,
    "livemode": False,
    "payment_intent": None,
    "failure_code": None,
    "failure_message": None,
}
PAYMENT_INTENT_EXAMPLE = {
    "id": "pi_3Pq1Cmms9I56A1133zjexAcw",
    "object": "payment_intent",
    "status": "requires_action",
    "client_secret": "pi_3Pq1Cmms9I56A1133zjexAcw_secret_Xy12",
    "amount": 1000,
    "currency": "usd",
    "next_action": {"type": "use_stripe_sdk"},
}

CHECKOUT_SESSION_EXAMPLE = {
    "id": "cs_test_a1b2c3d4e5f6g7h8",
    "url": "https://checkout.stripe.com/c/pay/cs_test_a1b2c3d4e5f6g7h8",
    "status": "open",
    "payment_status": "unpaid",
    "expires_at": 1767312000,
}

CARD_DECLINED_EXAMPLE = _error(
    "card_error",
    "Your card has insufficient funds.",
    code="card_declined",
    decline_code="insufficient_funds",
    charge=EXAMPLE_TRANSACTION_ID,
)


# --- the webhook, a plain Django view --------------------------------------------------------


def webhook_operation(error_ref: str = "#/components/schemas/Error") -> dict[str, Any]:
    """``POST webhooks/handler`` as an OpenAPI operation."""
    error = {"content": {"application/json": {"schema": {"$ref": error_ref}}}}
    text = {"type": "string", "pattern": NO_NUL}
    # Any JSON a database can store: no NUL in any string or key.
    storable = {"$ref": "#/components/schemas/StorableJSON"}
    return {
        "operationId": "stripe_webhook",
        "summary": "Receive a Stripe webhook",
        "description": (
            "Called by Stripe, not by clients. The raw body must be signed with one of "
            f"{SETTING_NAME}['WEBHOOK_SECRETS'] (Stripe-Signature: t=…,v1=…, an HMAC-SHA256 of "
            "'t.body'). The event is stored once and published after commit."
        ),
        "tags": [SCHEMA_TAG],
        "security": [],
        "parameters": [
            {
                "name": "Stripe-Signature",
                "in": "header",
                "required": True,
                "description": "t=<Unix time>,v1=<hex HMAC-SHA256 of 't.body'>.",
                "schema": {"type": "string", "pattern": SIGNATURE_PATTERN},
                "example": SIGNATURE_EXAMPLE,
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": "A Stripe event.",
                        "required": ["id", "object", "type", "created", "data"],
                        "propertyNames": {"pattern": NO_NUL},
                        "additionalProperties": storable,
                        "properties": {
                            "id": {**text, "pattern": "^evt_[^\\u0000]*$", "maxLength": 255},
                            "object": {"type": "string", "const": "event"},
                            "type": {**text, "minLength": 1, "maxLength": 100},
                            "created": {"type": "integer", "minimum": 0, "maximum": 253402300799},
                            "livemode": {"type": "boolean"},
                            "data": {
                                "type": "object",
                                "required": ["object"],
                                "propertyNames": {"pattern": NO_NUL},
                                "additionalProperties": storable,
                                "properties": {
                                    "object": {
                                        "type": "object",
                                        "propertyNames": {"pattern": NO_NUL},
                                        "additionalProperties": storable,
                                        "properties": {"object": text},
                                    }
                                },
                            },
                        },
                    },
                    "example": {
                        "id": "evt_1Cmms9I56A1133zjexAcwndb",
                        "object": "event",
                        "type": "charge.succeeded",
                        "created": 1732500000,
                        "livemode": False,
                        "data": {
                            "object": {
                                "id": "ch_1Cmms9I56A1133zjexAcwndb",
                                "object": "charge",
                                "amount": 1000,
                                "currency": "usd",
                                "status": "succeeded",
                            }
                        },
                    },
                }
            },
        },
        "responses": {
            "200": {
                "description": (
                    "Stored (or already stored: duplicate true); or refused by the database "
                    "for its data and kept apart for an operator (quarantined true)."
                ),
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["received", "duplicate"],
                            "properties": {
                                "received": {"type": "boolean", "const": True},
                                "duplicate": {"type": "boolean"},
                                "quarantined": {"type": "boolean", "const": True},
                                "message": {"type": "string"},
                            },
                        },
                        "example": {"received": True, "duplicate": False},
                    }
                },
            },
            "400": {
                "description": (
                    "Bad or stale signature, not a Stripe event, or one created ahead of the "
                    "server's clock."
                ),
                **error,
            },
            "413": {"description": "Body larger than WEBHOOK_MAX_BYTES.", **error},
            "503": {"description": "Database unavailable or no secret set; retry.", **error},
        },
    }


STORABLE_JSON = {
    "description": "Any JSON value without a NUL character in a string or key.",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": {"$ref": "#/components/schemas/StorableJSON"}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": "#/components/schemas/StorableJSON"},
        },
    ],
}


# --- the generator ---------------------------------------------------------------------------


class BridgeSchemaGenerator(SchemaGenerator):
    """drf-spectacular's generator, with paths as the bridge answers them (no trailing slash).

    Adds the one-element-array form of the request bodies and the webhook's operation.
    """

    def get_schema(self, request: Any = None, public: bool = False) -> dict[str, Any]:
        schema = super().get_schema(request=request, public=public)
        paths = {(path.rstrip("/") or "/"): item for path, item in schema.get("paths", {}).items()}
        for item in paths.values():
            for operation in item.values():
                _accept_one_element_array(operation)
        if request is not None:
            prefix = re.sub(r"schema/?$", "", request.path_info)
            paths[prefix + "webhooks/handler"] = {"post": webhook_operation()}
            schema.setdefault("components", {}).setdefault("schemas", {})["StorableJSON"] = (
                STORABLE_JSON
            )
        schema["paths"] = paths
        return schema


def _accept_one_element_array(operation: Any) -> None:
    if not isinstance(operation, dict):
        return
    if "requestBody" in operation:
        # Every create call needs a body, also one whose fields are each optional alone
        # (checkout-sessions: amount with name, or line_items).
        operation["requestBody"]["required"] = True
    content = operation.get("requestBody", {}).get("content", {})
    for media in content.values():
        body = media.get("schema")
        if isinstance(body, dict) and "$ref" in body:
            media["schema"] = {
                "oneOf": [
                    body,
                    {
                        "type": "array",
                        "description": "The same object, as the one element of an array "
                        "(as Backendless SDKs send arguments).",
                        "items": body,
                        "minItems": 1,
                        "maxItems": 1,
                    },
                ]
            }
