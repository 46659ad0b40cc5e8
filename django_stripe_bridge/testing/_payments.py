"""Charges, refunds and PaymentIntents made to behave like Stripe's (patches on localstripe).

- Stripe's test tokens (``tok_visa`` …) as a charge or customer ``source``, and its test
  PaymentMethods (``pm_card_visa``, ``pm_card_chargeDeclined`` …) wherever a payment method
  is expected, with the right brand, last4, funding and country.
- Declines reported as Stripe does: HTTP 402 ``card_error`` with ``code``, ``decline_code``,
  ``charge`` (and ``payment_intent``/``payment_method`` for PaymentIntents); the failed
  charge is kept with ``failure_code``, ``failure_message`` and ``outcome``.
- Events ``charge.succeeded|failed``, ``payment_intent.created|canceled|requires_action|
  amount_capturable_updated`` (localstripe already sends ``payment_intent.succeeded|
  payment_failed``); capture, release and refunds are in ``_lifecycle``, disputes in
  ``_disputes``.
- Minimum charge amounts and the list of currencies.
- ``payment_method`` on confirm, off-session confirms on cards that need 3-D Secure,
  ``return_url`` (a ``redirect_to_url`` next action served by the stand-in), lists newest
  first with Stripe's filters, ``latest_charge`` as an id, ``No such …`` 404 errors.

Importing this module changes nothing; ``install()`` applies the patches.
"""

from __future__ import annotations

import datetime
import time
from typing import Any
from urllib.parse import quote

from localstripe import resources
from localstripe.errors import UserError
from localstripe.resources import (
    Card,
    Charge,
    Invoice,
    PaymentIntent,
    PaymentMethod,
    Refund,
    StripeObject,
    Token,
    fingerprint,
    store,
    try_convert_to_bool,
)

from . import _connect, _context, _lifecycle
from ._cards import (
    AUTHENTICATION_REQUIRED,
    CARDS_BY_NUMBER,
    DECLINES_BY_NUMBER,
    GENERIC_DECLINE,
    TEST_PAYMENT_METHODS,
    TEST_TOKENS,
    Decline,
    TestCard,
    brand_display_name,
)
from ._currencies import check_amount
from ._disputes import after_capture
from ._errors import StripeAPIError, invalid, no_such, unexpected_state
from ._events import emit
from ._lists import list_page, unknown_params

SUCCESS_OUTCOME: dict[str, Any] = {
    "network_status": "approved_by_network",
    "reason": None,
    "risk_level": "normal",
    "risk_score": 20,
    "seller_message": "Payment complete.",
    "type": "authorized",
}

_CHARGE_EXTRAS = ("receipt_email", "shipping", "transfer_group", "statement_descriptor_suffix")
_PI_EXTRAS = (
    "description",
    "receipt_email",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "setup_future_usage",
    "automatic_payment_methods",
    "confirmation_method",
    "shipping",
    "transfer_group",
)
#: Accepted and ignored (they only matter to Stripe.js or to features we lack).
_PI_IGNORED = (
    "mandate_data",
    "use_stripe_sdk",
    "error_on_requires_action",
    "payment_method_configuration",
    "radar_options",
    "payment_method_options",
)
_REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
_CANCEL_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
_CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
_CANCELABLE = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
)

# The originals we wrap, taken before anything is patched.
_orig = {
    "card_init": Card.__init__,
    "pm_init": PaymentMethod.__init__,
    "charging_is_declined": PaymentMethod._charging_is_declined,
    "attaching_is_declined": PaymentMethod._attaching_is_declined,
    "requires_authentication": PaymentMethod._requires_authentication,
    "charge_init": Charge.__init__,
    "charge_api_create": Charge.__dict__["_api_create"].__func__,
    "initialize_charge": Charge._initialize_charge,
    "refund_init": Refund.__init__,
    "pi_init": PaymentIntent.__init__,
    "pi_confirm": PaymentIntent._confirm,
    "pi_cancel": PaymentIntent.__dict__["_api_cancel"].__func__,
    "pi_authenticate": PaymentIntent.__dict__["_api_authenticate"].__func__,
}


# --- cards and payment methods ---------------------------------------------------------------


def infer_brand(number: str) -> str:
    """The card brand (API spelling) from a card number's leading digits."""
    known = CARDS_BY_NUMBER.get(number)
    if known is not None:
        return known.brand
    two, four = int(number[:2] or 0), int(number[:4] or 0)
    if number.startswith("4"):
        return "visa"
    if two in (34, 37):
        return "amex"
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if number.startswith(("6011", "65")) or 644 <= int(number[:3] or 0) <= 649:
        return "discover"
    if two in (36, 38, 39) or 300 <= int(number[:3] or 0) <= 305:
        return "diners"
    if 3528 <= four <= 3589:
        return "jcb"
    if two == 62:
        return "unionpay"
    return "unknown"


def _exp_year() -> int:
    return datetime.date.today().year + 3


def _placeholder_card() -> dict[str, Any]:
    # localstripe only takes 16-digit numbers; the real number is set afterwards.
    return {"number": "4242424242424242", "exp_month": 12, "exp_year": _exp_year(), "cvc": "123"}


def _decorate_card(card: Any) -> None:
    number = card._card_number
    known = CARDS_BY_NUMBER.get(number)
    card.brand = brand_display_name(infer_brand(number))
    card.funding = known.funding if known else "credit"
    card.country = known.country if known else "US"
    card.fingerprint = fingerprint(number)


def _decorate_payment_method(pm: Any) -> None:
    if pm.type != "card":
        return
    number = pm._card_number
    known = CARDS_BY_NUMBER.get(number)
    brand = infer_brand(number)
    pm.card.update(
        brand=brand,
        display_brand=brand,
        last4=number[-4:],
        funding=known.funding if known else "credit",
        country=known.country if known else "US",
        fingerprint=fingerprint(number),
        checks={
            "address_line1_check": None,
            "address_postal_code_check": None,
            "cvc_check": "pass",
        },
        networks={"available": [brand], "preferred": None},
        wallet=None,
    )


def _card_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _orig["card_init"](self, *args, **kwargs)
    _decorate_card(self)


def _pm_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _orig["pm_init"](self, *args, **kwargs)
    _decorate_payment_method(self)


def make_card(spec: TestCard) -> Any:
    """A stored legacy Card object for a test card."""
    card = Card(source={"object": "card", **_placeholder_card()})
    card._card_number = spec.number
    _decorate_card(card)
    return card


def make_payment_method(spec: TestCard) -> Any:
    """A stored ``pm_…`` PaymentMethod for a test card."""
    pm = PaymentMethod(type="card", card=_placeholder_card())
    pm._card_number = spec.number
    _decorate_payment_method(pm)
    return pm


def _canonical_test_payment_method(cls: Any, id: str) -> Any:
    spec = TEST_PAYMENT_METHODS.get(id)
    return make_payment_method(spec) if spec is not None else None


def _token_retrieve(cls: Any, id: str) -> Any:
    spec = TEST_TOKENS.get(id)
    if spec is None:
        return _retrieve(cls, id)
    token = Token.__new__(Token)
    StripeObject.__init__(token)
    token.type = "card"
    token.card = make_card(spec)
    token.client_ip = None
    token.used = False
    return token


def resolve_payment_method(payment_method: Any) -> Any:
    """A test PaymentMethod id (``pm_card_visa``) becomes a new stored ``pm_…`` id."""
    if isinstance(payment_method, str) and payment_method in TEST_PAYMENT_METHODS:
        return make_payment_method(TEST_PAYMENT_METHODS[payment_method]).id
    return payment_method


def _resolve_charge_source(source: Any) -> str:
    if isinstance(source, dict):  # a card hash: source[number]=…&source[exp_month]=…
        return Card(source={**source, "object": "card"}).id
    if not isinstance(source, str):
        raise invalid("Invalid source object: must be a dictionary or a non-empty string.")
    if source.startswith("tok_"):
        token = Token._api_retrieve(source)
        if getattr(token, "used", False):
            raise invalid(
                f"You cannot use a Stripe token more than once: {source}.",
                code="token_already_used",
                param="source",
            )
        token.used = True
        return token.card.id
    return resolve_payment_method(source)


def _charging_is_declined(self: Any) -> bool:
    number = getattr(self, "_card_number", None)
    if getattr(self, "type", None) == "card" and number in DECLINES_BY_NUMBER:
        return True
    return bool(_orig["charging_is_declined"](self))


def _requires_authentication(self: Any) -> bool:
    known = CARDS_BY_NUMBER.get(getattr(self, "_card_number", ""))
    if getattr(self, "type", None) == "card" and known and known.requires_authentication:
        return True
    return bool(_orig["requires_authentication"](self))


def _attaching_is_declined(self: Any) -> bool:
    declined = bool(_orig["attaching_is_declined"](self))
    if declined:
        number = str(getattr(self, "_card_number", ""))
        _context.current().attach_decline = DECLINES_BY_NUMBER.get(number, GENERIC_DECLINE)
    return declined


def _source_of(payment_method_id: Any) -> Any:
    if not isinstance(payment_method_id, str):
        return None
    try:
        return PaymentMethod._api_retrieve(payment_method_id)
    except UserError:
        return None


def _export_payment_method(payment_method_id: Any) -> dict[str, Any] | None:
    source = _source_of(payment_method_id)
    return source._export() if source is not None else None


# --- charges ---------------------------------------------------------------------------------


def _retrieve(cls: Any, id: Any) -> Any:
    obj = store.get(f"{cls.object}:{id}") if isinstance(id, str) else None
    if obj is None:
        raise no_such(cls.object, str(id))
    return obj


def _decline_of(charge: Any) -> Decline:
    spec = getattr(charge, "_standin_decline", None)
    if spec is not None:
        return spec
    source = _source_of(charge.payment_method)
    return DECLINES_BY_NUMBER.get(str(getattr(source, "_card_number", "")), GENERIC_DECLINE)


def card_error(charge: Any, payment_intent: Any = None) -> StripeAPIError:
    """The 402 ``card_error`` a declined ``charge`` is reported with."""
    spec = _decline_of(charge)
    fields: dict[str, Any] = {"decline_code": spec.decline_code, "charge": charge.id}
    if payment_intent is not None:
        fields["payment_intent"] = payment_intent._export()
        fields["payment_method"] = _export_payment_method(charge.payment_method)
    return StripeAPIError(
        402, spec.message, type="card_error", code=spec.code, param=spec.param, **fields
    )


def _charge_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _orig["charge_init"](self, *args, **kwargs)
    self.outcome = None
    self.failure_balance_transaction = None
    self.fraud_details = {}
    self.disputed = False
    self.shipping = None
    self.transfer_group = None
    self.statement_descriptor_suffix = None
    self.calculated_statement_descriptor = "STRIPE STANDIN"
    self.receipt_url = None
    self._standin_api_version = _context.api_version()
    self._standin_amount_captured = 0
    self._standin_expired = False
    self._standin_dispute = None
    for key, value in _context.current().extras.pop("charge", {}).items():
        setattr(self, key, value)
    _connect.init_payment(self, _context.current().extras.pop("connect", {}))


def _charge_api_create(cls: Any, **data: Any) -> Any:
    error = check_amount(data.get("amount"), data.get("currency"))
    if error:
        raise invalid(error["message"], code=error.get("code"), param=error.get("param"))
    data["currency"] = str(data["currency"]).lower()
    if data.get("source") is not None:
        data["source"] = _resolve_charge_source(data["source"])
    elif data.get("customer") is None:
        raise invalid("Must provide source or customer.", param="source")
    connect = _connect.take_connect_params(data)
    _context.current().extras["charge"] = {
        key: data.pop(key) for key in _CHARGE_EXTRAS if key in data
    }
    _context.current().extras["connect"] = connect
    return _orig["charge_api_create"](cls, **data)


def _set_auth_failure(self: Any) -> None:
    spec = _decline_of(self)
    self._standin_decline = spec
    self.status = "failed"
    self.captured = False  # as on Stripe: a declined charge took nothing
    self.failure_code = spec.code
    self.failure_message = spec.message
    self.outcome = spec.outcome()
    emit("charge.failed", self)


def _raise_failure(self: Any) -> None:
    raise card_error(self)


def _initialize_charge(
    self: Any, on_success: Any = None, on_failure_now: Any = None, on_failure_later: Any = None
) -> None:
    _connect.inherit_from_intent(self)
    intent: Any = store.get(f"payment_intent:{self.payment_intent}", None)
    forced = getattr(intent, "_standin_force_decline", None)
    if intent is not None and forced is not None:
        intent._standin_force_decline = None
        self._authorized = False
        self._standin_decline = forced

    def succeeded() -> None:
        self.outcome = dict(SUCCESS_OUTCOME)
        self._standin_amount_captured = self.amount
        emit("charge.succeeded", self)
        if on_success:
            on_success()
        after_capture(self)
        _connect.on_captured(self)

    _orig["initialize_charge"](self, succeeded, on_failure_now, on_failure_later)
    if self.status == "succeeded" and not self.captured:  # authorized, capture later
        self.outcome = dict(SUCCESS_OUTCOME)
        emit("charge.succeeded", self)


def _payment_method_details(self: Any) -> dict[str, Any] | None:
    source = _source_of(self.payment_method)
    if source is None:
        return None
    if getattr(source, "type", None) == "sepa_debit":
        return {"type": "sepa_debit", "sepa_debit": dict(source.sepa_debit)}
    if isinstance(source, Card):
        brand = infer_brand(source._card_number)
        card = {
            "brand": brand,
            "last4": source.last4,
            "exp_month": source.exp_month,
            "exp_year": source.exp_year,
            "funding": source.funding,
            "country": source.country,
            "fingerprint": source.fingerprint,
        }
    elif getattr(source, "type", None) == "card":
        brand = source.card["brand"]
        card = {
            key: source.card.get(key)
            for key in ("brand", "last4", "exp_month", "exp_year", "funding", "country")
        }
        card["fingerprint"] = source.card.get("fingerprint")
    else:
        return None
    card.update(
        network=brand,
        checks={
            "address_line1_check": None,
            "address_postal_code_check": None,
            "cvc_check": "pass",
        },
        three_d_secure=None,
        wallet=None,
    )
    return {"type": "card", "card": card}


def _charge_source(self: Any) -> Any:
    source = _source_of(self.payment_method)
    return source if isinstance(source, Card) else None


def _billing_details(self: Any) -> dict[str, Any]:
    source = _source_of(self.payment_method)
    details = getattr(source, "billing_details", None) or {}
    return {
        "address": details.get("address"),
        "email": details.get("email"),
        "name": details.get("name") or getattr(source, "name", None),
        "phone": details.get("phone"),
    }


def _list_charges(cls: Any, url: str, **params: Any) -> Any:
    return list_page("charge", url, params, filters=("customer", "payment_intent"))


# --- refunds ---------------------------------------------------------------------------------


def _refund_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _orig["refund_init"](self, *args, **kwargs)
    _lifecycle.init_refund(self)


# --- payment intents -------------------------------------------------------------------------


def _pi_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _orig["pi_init"](self, *args, **kwargs)
    self.payment_method_types = kwargs.get("payment_method_types") or ["card"]
    self.description = None
    self.receipt_email = None
    self.canceled_at = None
    self.cancellation_reason = None
    self.setup_future_usage = None
    self.statement_descriptor = None
    self.statement_descriptor_suffix = None
    self.automatic_payment_methods = None
    self.confirmation_method = "automatic"
    self.shipping = None
    self.transfer_group = None
    self._standin_off_session = False
    self._standin_return_url = None
    self._standin_force_decline = None
    self._standin_failed_payment_method = None
    for key, value in _context.current().extras.pop("payment_intent", {}).items():
        setattr(self, key, value)
    _connect.init_payment(self, _context.current().extras.pop("pi_connect", {}))
    emit("payment_intent.created", self)


def _as_bool(value: Any, param: str) -> bool | None:
    value = try_convert_to_bool(value)
    if value is not None and not isinstance(value, bool):
        raise invalid(f"Invalid boolean: {value}", param=param)
    return value


def _confirm_now(intent: Any, *, off_session: bool, return_url: Any) -> None:
    intent._standin_off_session = off_session
    intent._standin_return_url = return_url
    intent._confirm(on_failure_now=intent._report_failure)


def _missing_payment_method() -> StripeAPIError:
    return unexpected_state(
        "You cannot confirm this PaymentIntent because it's missing a payment method. "
        "Update the PaymentIntent with a payment method and then confirm it again."
    )


def _pi_api_create(
    cls: Any, confirm: Any = None, off_session: Any = None, return_url: Any = None, **data: Any
) -> Any:
    confirm = _as_bool(confirm, "confirm")
    off_session = _as_bool(off_session, "off_session")
    if off_session is not None and not confirm:
        raise invalid("off_session may only be used with confirm=true.", param="off_session")
    error = check_amount(data.get("amount"), data.get("currency"))
    if error:
        raise invalid(error["message"], code=error.get("code"), param=error.get("param"))
    data["currency"] = str(data["currency"]).lower()
    if confirm and not data.get("payment_method"):
        raise _missing_payment_method()
    if data.get("payment_method") is not None:
        data["payment_method"] = resolve_payment_method(data["payment_method"])
    for key in _PI_IGNORED:
        data.pop(key, None)
    connect = _connect.take_connect_params(data)
    _context.current().extras["payment_intent"] = {
        key: data.pop(key) for key in _PI_EXTRAS if key in data
    }
    _context.current().extras["pi_connect"] = connect
    intent = cls(**data)
    if confirm:
        _confirm_now(intent, off_session=bool(off_session), return_url=return_url)
    return intent


def _pi_api_confirm(
    cls: Any,
    id: str,
    payment_method: Any = None,
    off_session: Any = None,
    return_url: Any = None,
    client_secret: Any = None,
    **kwargs: Any,
) -> Any:
    for key in (*_PI_IGNORED, "payment_method_types", "capture_method"):
        kwargs.pop(key, None)
    extras = {
        key: kwargs.pop(key)
        for key in ("receipt_email", "setup_future_usage", "shipping")
        if key in kwargs
    }
    unknown_params(kwargs)
    off_session = _as_bool(off_session, "off_session")
    intent = cls._api_retrieve(id)
    if client_secret is not None and client_secret != intent.client_secret:
        raise invalid(
            "The client_secret provided does not match the client_secret associated with the "
            "PaymentIntent.",
            param="client_secret",
        )
    status = intent.status
    if status not in _CONFIRMABLE:
        raise unexpected_state(
            f"You cannot confirm this PaymentIntent because it has a status of {status}. Only "
            "a PaymentIntent with one of the following statuses may be confirmed: "
            "requires_payment_method, requires_confirmation, requires_action."
        )
    if payment_method:
        PaymentMethod._api_retrieve(resolve_payment_method(payment_method))  # 404 if unknown
        intent.payment_method = resolve_payment_method(payment_method)
        intent.latest_charge = None
        intent.next_action = None
        intent._authentication_failed = False
    elif status == "requires_action":
        intent.next_action = None
    elif intent.status != "requires_confirmation":
        raise _missing_payment_method()
    for key, value in extras.items():
        setattr(intent, key, value)
    _confirm_now(intent, off_session=bool(off_session), return_url=return_url)
    return intent


def _pi_confirm(self: Any, on_failure_now: Any) -> None:
    payment_method = PaymentMethod._api_retrieve(self.payment_method)
    if self._standin_off_session and payment_method._requires_authentication():
        # Off-session, nobody can authenticate: Stripe declines with authentication_required.
        self._authentication_failed = False
        self._standin_force_decline = AUTHENTICATION_REQUIRED
        self._create_charge(on_failure_now=on_failure_now)
        return
    _orig["pi_confirm"](self, on_failure_now)
    if self.next_action is not None:
        if self._standin_return_url:
            origin = _context.current().origin or ""
            self.next_action = {
                "type": "redirect_to_url",
                "redirect_to_url": {
                    "return_url": self._standin_return_url,
                    "url": (
                        f"{origin}/_standin/3ds/{self.id}?client_secret={quote(self.client_secret)}"
                    ),
                },
            }
        emit("payment_intent.requires_action", self)
    elif self.status == "requires_capture":
        emit("payment_intent.amount_capturable_updated", self)


def _pi_report_failure(self: Any) -> None:
    charge = self.latest_charge
    if not self.invoice:
        self.payment_method = None  # as on Stripe: the failed method is in last_payment_error
    emit("payment_intent.payment_failed", self)
    if self.invoice:
        Invoice._api_retrieve(self.invoice)._on_payment_failure_now()
    raise card_error(charge, payment_intent=self)


def _pi_last_payment_error(self: Any) -> dict[str, Any] | None:
    if self._authentication_failed:
        error = StripeAPIError(
            400,
            "The provided PaymentMethod has failed authentication. You can provide "
            "payment_method_data or a new PaymentMethod to attempt to fulfill this "
            "PaymentIntent again.",
            code="payment_intent_authentication_failure",
        ).body["error"]
        error["payment_method"] = _export_payment_method(self._standin_failed_payment_method)
        return error
    charge = self.latest_charge
    if charge is not None and charge.status == "failed":
        error = card_error(charge).body["error"]
        error["payment_method"] = _export_payment_method(charge.payment_method)
        return error
    return None


def _pi_amount_received(self: Any) -> int:
    charge = self.latest_charge
    return _lifecycle.amount_captured(charge) if charge is not None else 0


def _pi_amount_capturable(self: Any) -> int:
    return self.amount if self.status == "requires_capture" else 0


def _pi_export(self: Any, expand: Any = None) -> dict[str, Any]:
    data = StripeObject._export(self, expand=expand)
    paths = expand if isinstance(expand, list) else []
    expanded = any(p == "latest_charge" or p.startswith("latest_charge.") for p in paths)
    if isinstance(data.get("latest_charge"), dict) and not expanded:
        data["latest_charge"] = data["latest_charge"]["id"]
    return data


def _pi_api_cancel(
    cls: Any,
    id: str,
    cancellation_reason: Any = None,
    **kwargs: Any,
) -> Any:
    unknown_params(kwargs)
    if cancellation_reason is not None and cancellation_reason not in _CANCEL_REASONS:
        raise invalid(
            f"Invalid cancellation_reason: must be one of {', '.join(_CANCEL_REASONS)}",
            param="cancellation_reason",
        )
    intent = cls._api_retrieve(id)
    if intent.status not in _CANCELABLE:
        raise unexpected_state(
            f"You cannot cancel this PaymentIntent because it has a status of {intent.status}. "
            "Only a PaymentIntent with one of the following statuses may be canceled: "
            f"{', '.join(_CANCELABLE)}."
        )
    uncaptured = intent.status == "requires_capture"
    _orig["pi_cancel"](cls, id)
    if uncaptured:
        _lifecycle.cancel_uncaptured(intent)
    intent.cancellation_reason = cancellation_reason
    intent.canceled_at = int(time.time())
    emit("payment_intent.canceled", intent)
    return intent


def _pi_api_authenticate(cls: Any, id: str, **kwargs: Any) -> Any:
    payment_method = cls._api_retrieve(id).payment_method
    intent = _orig["pi_authenticate"](cls, id, **kwargs)
    if intent._authentication_failed:
        intent._standin_failed_payment_method = payment_method
        emit("payment_intent.payment_failed", intent)
    return intent


def _list_payment_intents(cls: Any, url: str, **params: Any) -> Any:
    return list_page("payment_intent", url, params, filters=("customer",))


# --- installation ----------------------------------------------------------------------------


def _replace_route(method: str, url: str, func: Any) -> None:
    """Swap a handler in localstripe's ``extra_apis`` (read once, when its server loads)."""
    for index, (m, u, _f) in enumerate(resources.extra_apis):
        if (m, u) == (method, url):
            resources.extra_apis[index] = (m, u, func)
            return
    raise LookupError(f"localstripe has no route {method} {url}")


def install() -> None:
    """Apply every patch. Must run before ``localstripe.server`` is imported."""
    StripeObject._api_retrieve = classmethod(_retrieve)  # type: ignore[assignment]

    Card.__init__ = _card_init  # type: ignore[method-assign]
    PaymentMethod.__init__ = _pm_init  # type: ignore[method-assign]
    PaymentMethod._try_get_canonical_test_article = classmethod(  # type: ignore[assignment]
        _canonical_test_payment_method
    )
    PaymentMethod._charging_is_declined = _charging_is_declined  # type: ignore[method-assign]
    PaymentMethod._attaching_is_declined = _attaching_is_declined  # type: ignore[method-assign]
    PaymentMethod._requires_authentication = _requires_authentication  # type: ignore[method-assign]
    Token._api_retrieve = classmethod(_token_retrieve)  # type: ignore[assignment]

    Charge.__init__ = _charge_init  # type: ignore[method-assign]
    Charge._api_create = classmethod(_charge_api_create)  # type: ignore[assignment]
    Charge._api_list_all = classmethod(_list_charges)  # type: ignore[assignment]
    Charge._set_auth_failure = _set_auth_failure  # type: ignore[method-assign]
    Charge._raise_failure = _raise_failure  # type: ignore[method-assign]
    Charge._initialize_charge = _initialize_charge  # type: ignore[method-assign]
    Charge._api_capture = classmethod(_lifecycle.capture_charge)  # type: ignore[assignment]
    Charge.payment_method_details = property(_payment_method_details)  # type: ignore[attr-defined]
    Charge.source = property(_charge_source)  # type: ignore[attr-defined]
    Charge.amount_captured = property(_lifecycle.amount_captured)  # type: ignore[attr-defined]
    Charge.amount_refunded = property(_lifecycle.amount_refunded)  # type: ignore[method-assign,assignment]
    Charge.refunded = property(_lifecycle.refunded)  # type: ignore[method-assign,assignment]
    Charge.billing_details = property(_billing_details)  # type: ignore[attr-defined]

    Refund.__init__ = _refund_init  # type: ignore[method-assign]
    Refund._api_create = classmethod(_lifecycle.create_refund)  # type: ignore[assignment]

    PaymentIntent.__init__ = _pi_init  # type: ignore[method-assign]
    PaymentIntent._api_create = classmethod(_pi_api_create)  # type: ignore[assignment]
    PaymentIntent._api_list_all = classmethod(_list_payment_intents)  # type: ignore[assignment]
    PaymentIntent._confirm = _pi_confirm  # type: ignore[method-assign]
    PaymentIntent._report_failure = _pi_report_failure  # type: ignore[method-assign]
    PaymentIntent._export = _pi_export  # type: ignore[method-assign]
    PaymentIntent.last_payment_error = property(_pi_last_payment_error)  # type: ignore[method-assign,assignment]
    PaymentIntent.amount_received = property(_pi_amount_received)  # type: ignore[attr-defined]
    PaymentIntent.amount_capturable = property(_pi_amount_capturable)  # type: ignore[attr-defined]
    PaymentIntent._api_confirm = classmethod(_pi_api_confirm)  # type: ignore[assignment]
    PaymentIntent._api_cancel = classmethod(_pi_api_cancel)  # type: ignore[assignment]
    PaymentIntent._api_authenticate = classmethod(_pi_api_authenticate)  # type: ignore[assignment]

    _replace_route("POST", "/v1/payment_intents/{id}/confirm", PaymentIntent._api_confirm)
    _replace_route("POST", "/v1/payment_intents/{id}/cancel", PaymentIntent._api_cancel)
    PaymentIntent._api_capture = classmethod(_lifecycle.capture_payment_intent)  # type: ignore[assignment]
    _replace_route("POST", "/v1/payment_intents/{id}/capture", PaymentIntent._api_capture)
    _replace_route("POST", "/v1/charges/{id}/capture", Charge._api_capture)
    _replace_route(
        "POST", "/v1/payment_intents/{id}/_authenticate", PaymentIntent._api_authenticate
    )
