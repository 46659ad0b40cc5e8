"""Request and response shapes of the HTTP API (docs/http-api.md), as DRF serializers.

Request fields are strict where DRF is lenient: a string field refuses numbers, ``amount``
refuses strings and fractions, ``confirm`` refuses ``"true"``; unknown fields are refused, so
a typo such as ``curency`` is an error instead of a silent default. Every error names its
parameter: the first key of ``serializer.errors`` (see ``first_error()``) is the ``param``
of the error response, ``body`` for the body as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.settings import api_settings

from .conf import SETTING_NAME, bridge_settings
from .models import StripeEvent, StripeTransaction

#: ``param`` of errors about the request body as a whole.
BODY_PARAM = "body"
#: Values of ``capture_method``: ``manual`` authorizes now and captures later.
CAPTURE_METHODS = ("automatic", "manual")
#: Stripe's limits on metadata.
METADATA_MAX_KEYS = 50
METADATA_KEY_MAX_LENGTH = 40
METADATA_VALUE_MAX_LENGTH = 500
DESCRIPTION_MAX_LENGTH = 1000
EMAIL_MAX_LENGTH = 254

_STRIPE_ID = re.compile(r"[A-Za-z0-9_]+")
#: An e-mail address as Stripe's receipts need one: a dot-atom local part and a domain name
#: with a top-level domain. The OpenAPI schema states the same pattern.
EMAIL_PATTERN = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_EMAIL = re.compile(EMAIL_PATTERN)
_CURRENCY = re.compile(r"[A-Za-z]{3}")


def first_error(detail: Any, param: str | None = None) -> tuple[str | None, str]:
    """``(param, message)`` of the first error in a DRF error detail (``serializer.errors``).

    The message is DRF's ``ErrorDetail`` (a ``str``) when there is one, with its ``code``.
    """
    if isinstance(detail, Mapping):
        if not detail:
            return param, "Invalid request."
        key, value = next(iter(detail.items()))
        if key == api_settings.NON_FIELD_ERRORS_KEY:
            key = param or BODY_PARAM
        return first_error(value, key)
    if isinstance(detail, list | tuple):
        return first_error(detail[0], param) if detail else (param, "Invalid request.")
    return param, detail if isinstance(detail, str) else str(detail)


def _messages(name: str, **extra: str) -> dict[str, str]:
    return {
        "required": f"Missing required parameter '{name}'.",
        "null": f"'{name}' must not be null.",
        "blank": f"'{name}' must not be empty.",
        **extra,
    }


# --- strict fields ---------------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """A string that must be a JSON string (DRF's ``CharField`` turns ``12`` into ``"12"``)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StripeIdField(StrictCharField):
    """A Stripe id or test id (``tok_visa``, ``pm_card_visa``): letters, digits, underscores."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 255)
        # " tok_visa" is refused, as the schema's pattern says, not silently trimmed.
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not _STRIPE_ID.fullmatch(value):
            self.fail("invalid")
        return value


class StrictEmailField(StrictCharField):
    """An e-mail address, as a JSON string (not trimmed: the schema's pattern is the rule)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if value and not _EMAIL.fullmatch(value):
            self.fail("invalid")
        return value


class StrictChoiceField(serializers.ChoiceField):
    """One of ``choices``, sent as a JSON string (DRF would match ``1`` to ``"1"``)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false`` as JSON booleans; ``"true"``, ``1`` and ``"yes"`` are refused."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class AmountField(serializers.IntegerField):
    """An amount in the smallest currency unit, between ``MIN_AMOUNT`` and ``MAX_AMOUNT``.

    A JSON integer, or a number with no fraction (``1000.0``); ``10.5``, ``true`` and strings
    such as ``"1000"`` are refused. The limits are read from the settings at each request.
    """

    default_error_messages = {
        "invalid": "'amount' must be an integer number of the smallest currency unit "
        "(e.g. 1000 for 10.00 USD), sent as a JSON number.",
        "min_value": "'amount' must be at least {min_value}.",
        "max_value": "'amount' must be at most {max_value}.",
    }

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        if isinstance(data, float):
            if not data.is_integer():
                self.fail("invalid")
            data = int(data)
        # Nothing below 1 is an amount to charge, whatever MIN_AMOUNT says (check E007).
        minimum = max(1, bridge_settings.MIN_AMOUNT)
        if data < minimum:
            self.fail("min_value", min_value=minimum)
        if data > bridge_settings.MAX_AMOUNT:
            self.fail("max_value", max_value=bridge_settings.MAX_AMOUNT)
        return int(data)


class CurrencyField(StrictCharField):
    """A three-letter ISO currency code, lowercased; one of ``CURRENCIES`` when that is set."""

    default_error_messages = {
        "invalid": "'currency' must be a three-letter ISO currency code such as 'usd'.",
        "not_allowed": "'currency' must be one of: {allowed}.",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not _CURRENCY.fullmatch(value):
            self.fail("invalid")
        value = value.lower()
        allowed = bridge_settings.CURRENCIES
        if allowed is not None and value not in {str(code).lower() for code in allowed}:
            self.fail("not_allowed", allowed=", ".join(str(code).lower() for code in allowed))
        return value


class MetadataField(serializers.DictField):
    """Stripe metadata: at most 50 keys of at most 40 characters, string values of at most 500.

    Errors about one value name it as Stripe does, e.g. ``metadata[order]``.
    """

    child = serializers.CharField()
    default_error_messages = {
        "not_a_dict": "'metadata' must be a JSON object whose values are strings.",
    }

    def to_internal_value(self, data: Any) -> dict[str, str]:
        if not isinstance(data, dict):
            self.fail("not_a_dict", input_type=type(data).__name__)
        if len(data) > METADATA_MAX_KEYS:
            raise ValidationError(f"'metadata' may have at most {METADATA_MAX_KEYS} keys.")
        for key, value in data.items():
            shown = key if len(key) <= 60 else key[:57] + "..."
            if (
                not key
                or len(key) > METADATA_KEY_MAX_LENGTH
                or "[" in key
                or "]" in key
                or "\x00" in key
            ):
                raise ValidationError(
                    f"Metadata key '{shown}' is not allowed: keys have 1 to "
                    f"{METADATA_KEY_MAX_LENGTH} characters, without square brackets or NUL."
                )
            param = f"metadata[{shown}]"
            if not isinstance(value, str):
                raise ValidationError({param: f"'{param}' must be a string."})
            if "\x00" in value:
                raise ValidationError({param: f"'{param}' must not contain NUL characters."})
            if len(value) > METADATA_VALUE_MAX_LENGTH:
                raise ValidationError(
                    {param: f"'{param}' must be at most {METADATA_VALUE_MAX_LENGTH} characters."}
                )
        return dict(data)


# --- requests --------------------------------------------------------------------------------


class RequestBodySerializer(serializers.Serializer):
    """A JSON object body, also accepted as a one-element array holding it (Backendless SDKs).

    Fields it does not declare are refused.
    """

    def run_validation(self, data: Any = serializers.empty) -> Any:
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        if not isinstance(data, dict):
            raise ValidationError(
                {
                    BODY_PARAM: "The body must be a JSON object (or a one-element JSON array "
                    "holding one)."
                }
            )
        unknown = [key for key in data if key not in self.fields]
        if unknown:
            name = str(unknown[0])[:60]
            raise ValidationError(
                {name: f"Unknown parameter '{name}'. Accepted: {', '.join(self.fields)}."}
            )
        return super().run_validation(data)


class AccountIdField(StripeIdField):
    """A connected account's id (``acct_…``)."""

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not value.startswith("acct_") or len(value) < 6:
            self.fail("invalid")
        return value


def _account() -> AccountIdField:
    return AccountIdField(
        required=False,
        allow_null=True,
        error_messages=_messages(
            "account",
            invalid="'account' must be a connected account's id such as 'acct_1A2b3C'.",
            max_length="'account' must be at most 255 characters.",
        ),
        help_text="A connected account (acct_…) to charge for. The server decides whether "
        "this request may, and how (a direct or destination charge): 403 otherwise.",
    )


def _amount() -> AmountField:
    return AmountField(
        error_messages=_messages("amount"),
        help_text="In the smallest currency unit (1000 = 10.00 USD). "
        f"Between {SETTING_NAME}['MIN_AMOUNT'] and ['MAX_AMOUNT'].",
    )


def _currency() -> CurrencyField:
    return CurrencyField(
        required=False,
        allow_null=True,
        error_messages=_messages("currency"),
        help_text=f"Three-letter ISO code; default {SETTING_NAME}['DEFAULT_CURRENCY'].",
    )


def _description() -> StrictCharField:
    return StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=DESCRIPTION_MAX_LENGTH,
        error_messages=_messages(
            "description",
            invalid="'description' must be a string.",
            max_length=f"'description' must be at most {DESCRIPTION_MAX_LENGTH} characters.",
        ),
    )


def _capture_method(help_text: str) -> StrictChoiceField:
    return StrictChoiceField(
        choices=CAPTURE_METHODS,
        required=False,
        default="automatic",
        error_messages=_messages(
            "capture_method",
            invalid_choice="'capture_method' must be 'automatic' or 'manual'.",
        ),
        help_text=help_text,
    )


def _metadata() -> MetadataField:
    return MetadataField(
        required=False,
        allow_null=True,
        error_messages=_messages("metadata"),
        help_text="At most 50 string keys (≤ 40 characters) and string values (≤ 500).",
    )


class ChargeRequestSerializer(RequestBodySerializer):
    """Body of ``POST charge``."""

    token = StripeIdField(
        error_messages=_messages(
            "token",
            invalid="'token' must be a Stripe card token or PaymentMethod id, "
            "such as 'tok_visa', as a string.",
            max_length="'token' must be at most 255 characters.",
        ),
        help_text="A one-time card token (tok_…) or PaymentMethod id (pm_…).",
    )
    amount = _amount()
    account = _account()
    currency = _currency()
    description = _description()
    metadata = _metadata()
    receipt_email = StrictEmailField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=EMAIL_MAX_LENGTH,
        error_messages=_messages(
            "receipt_email",
            invalid="'receipt_email' must be an e-mail address.",
            max_length=f"'receipt_email' must be at most {EMAIL_MAX_LENGTH} characters.",
        ),
    )


class PaymentIntentRequestSerializer(RequestBodySerializer):
    """Body of ``POST payment-intents``."""

    amount = _amount()
    account = _account()
    currency = _currency()
    payment_method = StripeIdField(
        required=False,
        allow_null=True,
        error_messages=_messages(
            "payment_method",
            invalid="'payment_method' must be a PaymentMethod id such as 'pm_card_visa'.",
            max_length="'payment_method' must be at most 255 characters.",
        ),
    )
    confirm = StrictBooleanField(
        required=False,
        default=False,
        error_messages=_messages("confirm", invalid="'confirm' must be true or false."),
    )
    capture_method = _capture_method(
        "'manual' authorizes the amount and leaves it to be captured later "
        "(status requires_capture); 'automatic' (the default) takes it at once."
    )
    description = _description()
    metadata = _metadata()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("confirm") and not attrs.get("payment_method"):
            raise ValidationError(
                {"payment_method": "'payment_method' is required when 'confirm' is true."}
            )
        return attrs


#: Lines of one Checkout Session at most (Stripe's limit in payment mode).
MAX_LINE_ITEMS = 100
MAX_PAYMENT_METHOD_TYPES = 20
NAME_MAX_LENGTH = 250
#: Longest redirect URL accepted (Stripe's own limit is higher).
URL_MAX_LENGTH = 2048
_PAYMENT_METHOD_TYPE = re.compile(r"[a-z][a-z0-9_]{0,49}")
_PRICE_ID = re.compile(r"(price|plan)_[A-Za-z0-9_]{1,250}")


class LineItemsField(serializers.Field):
    """Checkout ``line_items``: 1 to 100 ``{"price": "price_…", "quantity": n}``.

    Errors name the refused part as Stripe does, e.g. ``line_items[1][quantity]``.
    """

    default_error_messages = {
        "invalid": "'line_items' must be a JSON array of 1 to "
        f"{MAX_LINE_ITEMS} objects, each with a 'price' (price_…) and a 'quantity'.",
    }

    def to_internal_value(self, data: Any) -> list[Any]:
        from .charges import CheckoutItem

        if not isinstance(data, list) or not 1 <= len(data) <= MAX_LINE_ITEMS:
            self.fail("invalid")
        items = []
        for index, item in enumerate(data):
            where = f"line_items[{index}]"
            if not isinstance(item, dict) or set(item) - {"price", "quantity"}:
                raise ValidationError(
                    {where: f"'{where}' must be an object with 'price' and 'quantity' only."}
                )
            price, quantity = item.get("price"), item.get("quantity", 1)
            if not isinstance(price, str) or not _PRICE_ID.fullmatch(price):
                raise ValidationError(
                    {f"{where}[price]": f"'{where}[price]' must be a Stripe Price id (price_…)."}
                )
            # A JSON number with no fraction (2.0 too), as the schema's "integer" allows.
            whole = isinstance(quantity, int | float) and not isinstance(quantity, bool)
            if not whole or quantity != int(quantity) or not 1 <= quantity <= 999_999:
                raise ValidationError(
                    {
                        f"{where}[quantity]": f"'{where}[quantity]' must be an integer from 1 "
                        "to 999999."
                    }
                )
            quantity = int(quantity)
            items.append(CheckoutItem(price=price, quantity=quantity))
        return items

    def to_representation(self, value: Any) -> Any:
        return value


class PaymentMethodTypesField(serializers.Field):
    """1 to 20 of Stripe's payment method types (``card``, ``sepa_debit``, …), each once."""

    default_error_messages = {
        "invalid": "'payment_method_types' must be a JSON array of 1 to "
        f"{MAX_PAYMENT_METHOD_TYPES} different payment method types such as 'card'.",
    }

    def to_internal_value(self, data: Any) -> list[str]:
        if (
            not isinstance(data, list)
            or not 1 <= len(data) <= MAX_PAYMENT_METHOD_TYPES
            or not all(isinstance(k, str) and _PAYMENT_METHOD_TYPE.fullmatch(k) for k in data)
            or len(set(data)) != len(data)
        ):
            self.fail("invalid")
        return list(data)

    def to_representation(self, value: Any) -> Any:
        return value


class RedirectURLField(StrictCharField):
    """An absolute http(s) URL on a host the site allows (``CHECKOUT_REDIRECT_HOSTS``, else
    ``ALLOWED_HOSTS``): Stripe sends the customer there, so any other host would make the
    bridge an open redirect."""

    default_error_messages = {
        "invalid": "'{name}' must be an absolute http(s) URL of at most "
        f"{URL_MAX_LENGTH} characters.",
        "host": "'{name}' must point at a host this site allows (STRIPE_BRIDGE"
        "['CHECKOUT_REDIRECT_HOSTS'], else ALLOWED_HOSTS); '{host}' is not one.",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        from .checkout import redirect_host_problem

        if not isinstance(data, str):
            self.fail("invalid", name=self.field_name)
        value = super().to_internal_value(data)
        problem = redirect_host_problem(value)
        if problem == "invalid":
            self.fail("invalid", name=self.field_name)
        if problem is not None:
            self.fail("host", name=self.field_name, host=problem[:100])
        return value


class CheckoutSessionRequestSerializer(RequestBodySerializer):
    """Body of ``POST checkout-sessions``."""

    amount = AmountField(
        required=False,
        error_messages=_messages("amount"),
        help_text="With `name` (and `currency`), instead of `line_items`: one line of this "
        "amount, in the smallest currency unit.",
    )
    account = _account()
    currency = _currency()
    name = StrictCharField(
        required=False,
        max_length=NAME_MAX_LENGTH,
        error_messages=_messages(
            "name",
            invalid="'name' must be a string: the product shown on the payment page.",
            max_length=f"'name' must be at most {NAME_MAX_LENGTH} characters.",
        ),
        help_text="The product shown on the payment page (with `amount`).",
    )
    line_items = LineItemsField(
        required=False,
        help_text="Instead of `amount`: Stripe Prices and quantities, "
        '`[{"price": "price_…", "quantity": 1}]`.',
    )
    customer_email = StrictEmailField(
        required=False,
        allow_null=True,
        max_length=EMAIL_MAX_LENGTH,
        error_messages=_messages(
            "customer_email",
            invalid="'customer_email' must be an e-mail address.",
            max_length=f"'customer_email' must be at most {EMAIL_MAX_LENGTH} characters.",
        ),
    )
    metadata = _metadata()
    capture_method = _capture_method(
        "'manual' only authorizes the payment (sent as payment_intent_data[capture_method])."
    )
    payment_method_types = PaymentMethodTypesField(
        required=False,
        help_text="Stripe's payment method types, e.g. ['card', 'sepa_debit']; default: "
        "the ones the Dashboard enables.",
    )
    success_url = RedirectURLField(
        help_text="Where Stripe sends the customer after paying; `{CHECKOUT_SESSION_ID}` is "
        "replaced by the session id. Default: STRIPE_BRIDGE['CHECKOUT_SUCCESS_URL']. Only on "
        "a host the site allows.",
    )
    cancel_url = RedirectURLField(
        help_text="Where the customer goes back without paying. Default: "
        "STRIPE_BRIDGE['CHECKOUT_CANCEL_URL']. Only on a host the site allows.",
    )

    def validate_payment_method_types(self, value: list[str]) -> list[str]:
        for kind in value:
            if not _PAYMENT_METHOD_TYPE.fullmatch(kind):
                raise ValidationError(
                    "'payment_method_types' must hold Stripe payment method types such as 'card'."
                )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        priced = attrs.get("line_items")
        if priced and ("amount" in attrs or "name" in attrs):
            raise ValidationError(
                {"line_items": "Send either 'line_items' or 'amount' with 'name', not both."}
            )
        if not priced:
            for name in ("amount", "name"):
                if not attrs.get(name):
                    raise ValidationError(
                        {name: f"Missing required parameter '{name}' (or send 'line_items')."}
                    )
        elif "currency" in attrs:
            raise ValidationError(
                {"currency": "'currency' goes with 'amount': a Price has its own currency."}
            )
        return attrs


# --- responses -------------------------------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    """The ``error`` object of every error response."""

    type = serializers.ChoiceField(
        choices=["invalid_request_error", "card_error", "idempotency_error", "api_error"]
    )
    message = serializers.CharField()
    param = serializers.CharField(
        required=False, allow_null=True, help_text="The refused parameter, or 'body'."
    )
    code = serializers.CharField(required=False)
    decline_code = serializers.CharField(required=False, help_text="Card errors only.")
    charge = serializers.CharField(required=False, help_text="Card errors: the failed charge.")
    payment_intent = serializers.CharField(
        required=False, help_text="Card errors on payment-intents: the PaymentIntent."
    )


class ErrorSerializer(serializers.Serializer):
    """``{"error": {...}}``."""

    error = ErrorDetailSerializer()


class ChargeSerializer(serializers.Serializer):
    """The main fields of the Stripe charge object ``POST charge`` answers with (all of it)."""

    id = serializers.CharField(help_text="The transaction id to subscribe to (ch_…).")
    object = serializers.CharField()
    amount = serializers.IntegerField()
    amount_refunded = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.CharField()
    paid = serializers.BooleanField()
    captured = serializers.BooleanField()
    created = serializers.IntegerField()
    livemode = serializers.BooleanField()
    payment_intent = serializers.CharField(allow_null=True)
    failure_code = serializers.CharField(allow_null=True)
    failure_message = serializers.CharField(allow_null=True)


class PaymentIntentSerializer(serializers.Serializer):
    """What ``POST payment-intents`` answers: a projection of the PaymentIntent."""

    id = serializers.CharField(help_text="The transaction id to subscribe to (pi_…).")
    object = serializers.CharField()
    status = serializers.CharField(help_text="Stripe's PaymentIntent status.")
    client_secret = serializers.CharField(
        allow_null=True,
        help_text="For Stripe.js (3-D Secure); null in an answer given in summary (header "
        "Stripe-Bridge-Replay), to a client that only repeated another's request.",
    )
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    next_action = serializers.JSONField(allow_null=True)

    def to_representation(self, instance: Mapping[str, Any]) -> dict[str, Any]:
        return {name: instance.get(name) for name in self.fields}


class CheckoutSessionSerializer(serializers.Serializer):
    """What ``POST checkout-sessions`` answers: where to send the customer, and the id."""

    id = serializers.CharField(help_text="The transaction id to subscribe to (cs_…).")
    url = serializers.URLField(help_text="Stripe's payment page: send the customer there.")
    status = serializers.CharField(help_text="Stripe's session status: open at first.")
    payment_status = serializers.CharField(help_text="unpaid at first.")
    expires_at = serializers.IntegerField(help_text="When the page stops taking payment.")

    def to_representation(self, instance: Mapping[str, Any]) -> dict[str, Any]:
        return {name: instance.get(name) for name in self.fields}


class TransactionEventSerializer(serializers.ModelSerializer):
    """One event of a transaction."""

    created = serializers.IntegerField(
        source="created_timestamp", help_text="Stripe's time, in seconds."
    )

    class Meta:
        model = StripeEvent
        fields = ["event_id", "type", "created"]


class TransactionSerializer(serializers.ModelSerializer):
    """``GET transactions/<id>``: a transaction's current state and its events, oldest first."""

    events = serializers.SerializerMethodField()

    class Meta:
        model = StripeTransaction
        fields = [
            "id",
            "kind",
            "status",
            "amount",
            "amount_refunded",
            "currency",
            "livemode",
            "created_at",
            "updated_at",
            "events",
        ]

    @extend_schema_field(TransactionEventSerializer(many=True))
    def get_events(self, obj: StripeTransaction) -> list[dict[str, Any]]:
        return TransactionEventSerializer(obj.events(), many=True).data  # type: ignore[return-value]
