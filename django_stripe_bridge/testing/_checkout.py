"""Checkout Sessions in payment mode, and the small hosted page a test customer pays on.

``POST /v1/checkout/sessions`` makes an ``open`` session whose ``url`` is the stand-in's own
page (``/_standin/checkout/{id}``). There the customer pays with a test card (success,
decline, 3-D Secure) or a SEPA debit, the stand-in's delayed method, that settles later
(``settle()``, or after the async delay; the failing IBAN fails then), or cancels (back to
``cancel_url``). As on Stripe:

- the PaymentIntent is created when the customer pays (before API 2022-08-01: with the
  session), and a decline leaves the session open for another attempt with the same one;
- a card paid completes the session ``paid`` (``checkout.session.completed``); an
  authorization only (``capture_method=manual``) or a debit completes it ``unpaid``, and the
  debit later sends ``checkout.session.async_payment_succeeded`` or ``…_failed``;
- ``POST /v1/checkout/sessions/{id}/expire`` expires an open session
  (``checkout.session.expired``) and cancels its PaymentIntent, if one was made;
- the customer then goes to ``success_url``, ``{CHECKOUT_SESSION_ID}`` replaced by the id;
- a session created with ``Stripe-Account`` is the connected account's (and so are its
  PaymentIntent, charge and events); ``payment_intent_data``'s ``transfer_data``,
  ``application_fee_amount`` and ``on_behalf_of`` go to the PaymentIntent it makes (``_connect``).

Prices (``line_items[][price]``) are looked up among localstripe's plans (a Price's id works
as a Plan's on Stripe too); ``price_data`` makes them inline.
"""

from __future__ import annotations

import html
import time
from typing import Any

from aiohttp import web
from localstripe.errors import UserError
from localstripe.resources import Charge, PaymentIntent, PaymentMethod, Plan, StripeObject

from . import _connect, _context, _later
from ._cards import Decline, TestCard
from ._currencies import check_amount, format_amount
from ._errors import invalid, no_such
from ._events import emit
from ._lists import list_page, unknown_params
from ._payments import make_payment_method

#: Since this API version the PaymentIntent is made when the customer pays, not with the
#: session (Stripe changelog, 2022-08-01).
PAYMENT_INTENT_AT_CONFIRMATION = "2022-08-01"
#: How long a session stays open unless ``expires_at`` says otherwise (Stripe: 24 hours).
DEFAULT_LIFETIME = 24 * 3600
MIN_LIFETIME = 30 * 60
#: SEPA test IBANs: one that settles, one whose debit fails later (Stripe's test numbers).
IBAN_SUCCEEDS = "DE89370400440532013000"
IBAN_FAILS = "DE62370400440532013001"
#: What the hosted page offers: button value → (label, test card or IBAN).
CHOICES: dict[str, tuple[str, str]] = {
    "card_success": ("Pay with card 4242 4242 4242 4242", "4242424242424242"),
    "card_decline": ("Pay with declined card 4000 0000 0000 0002", "4000000000000002"),
    "card_3ds": ("Pay with 3-D Secure card 4000 0027 6000 3184", "4000002760003184"),
    "delayed": ("Pay by bank debit (settles later)", IBAN_SUCCEEDS),
    "delayed_fail": ("Pay by bank debit (fails later)", IBAN_FAILS),
}
_DELAYED_TYPES = ("sepa_debit",)
_ALLOWED_TYPES = ("card", *_DELAYED_TYPES)


class CheckoutSession(StripeObject):
    """A Checkout Session (``cs_test_…``) in ``payment`` mode."""

    object = "checkout.session"
    _id_prefix = "cs_test_"

    def __init__(self, **fields: Any) -> None:
        super().__init__()
        origin = _context.current().origin or ""
        for name in _NULL_FIELDS:
            setattr(self, name, None)
        self.after_expiration = None
        self.automatic_tax = {"enabled": False, "liability": None, "status": None}
        self.custom_fields: list[Any] = []
        self.custom_text = {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        }
        self.invoice_creation = {"enabled": False, "invoice_data": {}}
        self.mode = "payment"
        self.payment_intent: str | None = None
        self.payment_method_options: dict[str, Any] = {}
        self.payment_status = "unpaid"
        self.phone_number_collection = {"enabled": False}
        self.shipping_options: list[Any] = []
        self.status = "open"
        self.total_details = {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}
        self.ui_mode = "hosted"
        self.url = f"{origin}/_standin/checkout/{self.id}"
        self.__dict__.update(fields)
        self._standin_intent: str | None = None
        self._standin_error: str | None = None
        self._standin_api_version = _context.api_version()


#: Fields of Stripe's ``checkout.session`` with nothing to say in this flow.
_NULL_FIELDS = (
    "allow_promotion_codes",
    "billing_address_collection",
    "client_reference_id",
    "client_secret",
    "consent",
    "consent_collection",
    "currency_conversion",
    "customer",
    "customer_creation",
    "customer_details",
    "invoice",
    "locale",
    "payment_link",
    "payment_method_collection",
    "payment_method_configuration_details",
    "recovered_from",
    "setup_intent",
    "shipping_address_collection",
    "shipping_cost",
    "shipping_details",
    "submit_type",
    "subscription",
)


# --- the API ---------------------------------------------------------------------------------


def create_session(
    mode: Any = None,
    line_items: Any = None,
    success_url: Any = None,
    cancel_url: Any = None,
    customer_email: Any = None,
    client_reference_id: Any = None,
    metadata: Any = None,
    payment_intent_data: Any = None,
    payment_method_types: Any = None,
    expires_at: Any = None,
    **kwargs: Any,
) -> CheckoutSession:
    """``POST /v1/checkout/sessions`` (payment mode)."""
    unknown_params(kwargs)
    if mode != "payment":
        raise invalid(
            "The stand-in makes Checkout Sessions in payment mode only: pass mode=payment.",
            param="mode",
        )
    if not success_url or not isinstance(success_url, str):
        raise invalid("Missing required param: success_url.", param="success_url")
    items, currency, total = _line_items(line_items)
    error = check_amount(total, currency)
    if error:
        raise invalid(error["message"], code=error.get("code"), param="line_items")
    now = int(time.time())
    expiry = _expires_at(expires_at, now)
    types = _payment_method_types(payment_method_types)
    intent_data = payment_intent_data if isinstance(payment_intent_data, dict) else {}
    connect = _connect.take_connect_params(
        {key: intent_data[key] for key in _connect.CONNECT_PARAMS if key in intent_data}
        | {"amount": total},
        within="payment_intent_data",
    )
    capture_method = intent_data.get("capture_method") or "automatic"
    if capture_method not in ("automatic", "automatic_async", "manual"):
        raise invalid(
            "Invalid payment_intent_data[capture_method]: must be one of automatic, "
            "automatic_async or manual.",
            param="payment_intent_data[capture_method]",
        )
    session = CheckoutSession(
        amount_subtotal=total,
        amount_total=total,
        cancel_url=cancel_url if isinstance(cancel_url, str) else None,
        client_reference_id=client_reference_id,
        currency=currency,
        customer_email=customer_email if isinstance(customer_email, str) else None,
        expires_at=expiry,
        metadata=dict(metadata) if isinstance(metadata, dict) else {},
        payment_method_types=types,
        success_url=success_url,
    )
    session._standin_items = items
    session._standin_capture_method = capture_method
    session._standin_connect = connect
    session._standin_intent_metadata = (
        dict(intent_data["metadata"]) if isinstance(intent_data.get("metadata"), dict) else {}
    )
    if not _context.at_least(PAYMENT_INTENT_AT_CONFIRMATION):
        _intent_of(session)
    return session


def retrieve_session(id: str, **kwargs: Any) -> CheckoutSession:
    """``GET /v1/checkout/sessions/{id}``."""
    unknown_params(kwargs)
    return _retrieve(id)


def list_sessions(**params: Any) -> Any:
    """``GET /v1/checkout/sessions``, newest first, filtered by ``payment_intent``."""
    return list_page(
        "checkout.session", "/v1/checkout/sessions", params, filters=("payment_intent",)
    )


def expire_session(id: str, **kwargs: Any) -> CheckoutSession:
    """``POST /v1/checkout/sessions/{id}/expire``: an open session expires now."""
    unknown_params(kwargs)
    session = _retrieve(id)
    if session.status != "open":
        raise invalid(
            f"Only Checkout Sessions with a status of open can be expired; this one is "
            f"{session.status}.",
            code="checkout_session_unexpected_state",
        )
    _expire(session)
    return session


def routes() -> list[tuple[str, str, Any]]:
    """Routes to add to localstripe's ``extra_apis`` (before its server module loads)."""
    return [
        ("POST", "/v1/checkout/sessions", create_session),
        ("GET", "/v1/checkout/sessions", list_sessions),
        ("GET", "/v1/checkout/sessions/{id}", retrieve_session),
        ("POST", "/v1/checkout/sessions/{id}/expire", expire_session),
    ]


def _retrieve(id: str) -> CheckoutSession:
    session = CheckoutSession._api_retrieve(id)
    if session.status == "open" and session.expires_at <= time.time():
        _expire(session)  # Stripe expires it within the hour; here on the next look
    return session


def _line_items(value: Any) -> tuple[list[dict[str, Any]], str, int]:
    """The session's items, its currency and total, from ``line_items``."""
    if not isinstance(value, list) or not value:
        raise invalid("line_items is required in payment mode.", param="line_items")
    items, currencies, total = [], set(), 0
    for index, item in enumerate(value):
        param = f"line_items[{index}]"
        if not isinstance(item, dict):
            raise invalid(f"Invalid {param}: must be a hash.", param=param)
        quantity = _positive_int(item.get("quantity", 1), f"{param}[quantity]")
        if item.get("price"):
            try:
                plan = Plan._api_retrieve(str(item["price"]))
            except UserError:
                raise no_such("price", str(item["price"]), f"{param}[price]") from None
            unit, currency, name = plan.amount, plan.currency, plan.nickname or plan.id
        elif isinstance(item.get("price_data"), dict):
            data = item["price_data"]
            unit = _positive_int(data.get("unit_amount"), f"{param}[price_data][unit_amount]")
            currency = str(data.get("currency") or "").lower()
            product = data.get("product_data")
            name = product.get("name") if isinstance(product, dict) else None
            if not name:
                raise invalid(
                    f"Missing required param: {param}[price_data][product_data][name].",
                    param=f"{param}[price_data][product_data][name]",
                )
        else:
            raise invalid(f"{param} needs either price or price_data.", param=f"{param}[price]")
        currencies.add(currency)
        total += unit * quantity
        items.append({"name": name, "quantity": quantity, "unit_amount": unit})
    if len(currencies) != 1:
        raise invalid("All line_items must share one currency.", param="line_items")
    return items, currencies.pop(), total


def _positive_int(value: Any, param: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 1 or str(value).strip() != str(number):
        raise invalid(f"Invalid integer: {value}", code="parameter_invalid_integer", param=param)
    return number


def _expires_at(value: Any, now: int) -> int:
    if value is None:
        return now + DEFAULT_LIFETIME
    try:
        at = int(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid integer: {value}", param="expires_at") from None
    if not now + MIN_LIFETIME <= at <= now + DEFAULT_LIFETIME:
        raise invalid(
            "The Checkout Session's expires_at must be between 30 minutes and 24 hours from now.",
            param="expires_at",
        )
    return at


def _payment_method_types(value: Any) -> list[str]:
    if value is None:
        # Stripe offers what the Dashboard enables; the stand-in enables both it has (a
        # debit in any currency: an offline simplification).
        return list(_ALLOWED_TYPES)
    types = value if isinstance(value, list) else [value]
    for kind in types:
        if kind not in _ALLOWED_TYPES:
            raise invalid(
                f"The payment method type {kind!r} is not offered by the stand-in; use one of "
                f"{', '.join(_ALLOWED_TYPES)}.",
                param="payment_method_types",
            )
    return [str(kind) for kind in types]


# --- paying ----------------------------------------------------------------------------------


def _intent_of(session: CheckoutSession) -> Any:
    """The session's PaymentIntent, made now if it has none yet."""
    if session._standin_intent is not None:
        return PaymentIntent._api_retrieve(session._standin_intent)
    _context.current().extras["payment_intent"] = {}
    _context.current().extras["pi_connect"] = dict(getattr(session, "_standin_connect", {}))
    intent = PaymentIntent(
        amount=session.amount_total,
        currency=session.currency,
        metadata=dict(session._standin_intent_metadata),
        payment_method_types=list(session.payment_method_types),
        capture_method=session._standin_capture_method,
    )
    session._standin_intent = intent.id
    session.payment_intent = intent.id
    return intent


def pay(session: CheckoutSession, choice: str, return_url: str) -> str | None:
    """The customer pays with ``choice``; where the page sends them next (``None``: the page
    again, with the error)."""
    _label, number = CHOICES[choice]
    session._standin_error = None
    if choice.startswith("delayed"):
        if "sepa_debit" not in session.payment_method_types:
            session._standin_error = "This session does not take SEPA debits."
            return None
        return _pay_later(session, number)
    if "card" not in session.payment_method_types:
        session._standin_error = "This session does not take cards."
        return None
    intent = _intent_of(session)
    payment_method = make_payment_method(TestCard(number, "visa"))
    try:
        PaymentIntent._api_confirm(
            intent.id, payment_method=payment_method.id, return_url=return_url
        )
    except UserError as exc:
        session._standin_error = str(exc.body.get("error", {}).get("message", "Declined."))
        return None
    return finish(session)


def finish(session: CheckoutSession) -> str | None:
    """After a card attempt (also after 3-D Secure): complete the session if it went through;
    where the customer goes next (``None``: back to the page)."""
    intent = _intent_of(session)
    if intent.status == "requires_action":
        return str(intent.next_action["redirect_to_url"]["url"])
    if intent.status not in ("succeeded", "requires_capture"):
        error = intent.last_payment_error or {}
        session._standin_error = str(error.get("message") or "The payment failed.")
        return None
    _complete(session, paid=intent.status == "succeeded")
    return success_url_of(session)


def _pay_later(session: CheckoutSession, iban: str) -> str:
    intent = _intent_of(session)
    payment_method = PaymentMethod(
        type="sepa_debit",
        sepa_debit={"iban": iban},
        billing_details={"email": session.customer_email, "name": "Test customer"},
    )
    intent.payment_method = payment_method.id
    _context.current().extras["charge"] = {}
    charge = Charge(
        amount=intent.amount, currency=intent.currency, source=payment_method.id, capture=True
    )
    charge.payment_intent = intent.id
    _connect.inherit_from_intent(charge)
    intent.latest_charge = charge  # status "pending": the PaymentIntent is "processing"
    emit("charge.pending", charge)
    emit("payment_intent.processing", intent)
    _complete(session, paid=False)
    _later.later(lambda: _settle_debit(session, intent, charge, succeeds=iban != IBAN_FAILS))
    return success_url_of(session)


def _settle_debit(session: CheckoutSession, intent: Any, charge: Any, *, succeeds: bool) -> None:
    if succeeds:
        charge.status = "succeeded"
        charge._standin_amount_captured = charge.amount
        charge.outcome = {"network_status": "approved_by_network", "type": "authorized"}
        emit("charge.succeeded", charge)
        _connect.on_captured(charge)
        emit("payment_intent.succeeded", intent)
        session.payment_status = "paid"
        emit("checkout.session.async_payment_succeeded", session)
        return
    charge.status = "failed"
    charge.captured = False
    charge.failure_code = "insufficient_funds"
    charge.failure_message = "The customer's account has insufficient funds to cover this payment."
    charge._standin_decline = Decline(
        "insufficient_funds", "insufficient_funds", charge.failure_message
    )
    emit("charge.failed", charge)
    intent.payment_method = None
    emit("payment_intent.payment_failed", intent)
    emit("checkout.session.async_payment_failed", session)


def _complete(session: CheckoutSession, *, paid: bool) -> None:
    session.status = "complete"
    session.payment_status = "paid" if paid else "unpaid"
    session.customer_details = {
        "address": None,
        "email": session.customer_email or "customer@example.com",
        "name": "Test customer",
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }
    emit("checkout.session.completed", session)


def _expire(session: CheckoutSession) -> None:
    session.status = "expired"
    intent_id = session._standin_intent
    if intent_id is not None:
        intent = PaymentIntent._api_retrieve(intent_id)
        if intent.status in ("requires_payment_method", "requires_confirmation", "requires_action"):
            PaymentIntent._api_cancel(intent_id)
    emit("checkout.session.expired", session)


def success_url_of(session: CheckoutSession) -> str:
    return str(session.success_url).replace("{CHECKOUT_SESSION_ID}", session.id)


# --- the hosted page --------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Checkout test page</title>
<style>body{{font-family:sans-serif;max-width:34rem;margin:3rem auto}}
button{{display:block;font-size:1rem;margin:.5rem 0;padding:.5rem 1rem}}
.error{{color:#b00}}</style></head>
<body><h1>Checkout (offline Stripe stand-in)</h1>
<p>Pay <strong id="amount">{amount}</strong> for {items}.</p>
<p id="status">Session <code>{id}</code>: {status}.</p>
{error}{form}</body></html>
"""


async def page(request: web.Request) -> web.Response:
    """``GET /_standin/checkout/{id}``: the page ``session.url`` points at."""
    session = _session_or_404(request)
    return _render(session)


async def answer(request: web.Request) -> web.StreamResponse:
    """``POST /_standin/checkout/{id}``: the customer chose how to pay."""
    session = _session_or_404(request)
    form = await request.post()
    choice = str(form.get("method", ""))
    if session.status != "open" or choice not in CHOICES:
        return _render(session)
    _context.begin(
        api_version=session._standin_api_version,
        origin=f"{request.scheme}://{request.host}",
        account=_connect.owner(session),  # the payment is made where the session is
    )
    return_url = f"{request.scheme}://{request.host}/_standin/checkout/{session.id}/return"
    target = pay(session, choice, return_url)
    return _render(session) if target is None else web.HTTPSeeOther(target)


async def returned(request: web.Request) -> web.StreamResponse:
    """``GET /_standin/checkout/{id}/return``: back from the 3-D Secure page."""
    session = _session_or_404(request)
    if session.status != "open":
        return _render(session)
    _context.begin(api_version=session._standin_api_version, account=_connect.owner(session))
    target = finish(session)
    return _render(session) if target is None else web.HTTPSeeOther(target)


def page_routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/_standin/checkout/{id}", page),
        ("POST", "/_standin/checkout/{id}", answer),
        ("GET", "/_standin/checkout/{id}/return", returned),
    ]


def _session_or_404(request: web.Request) -> CheckoutSession:
    try:
        return _retrieve(request.match_info["id"])
    except UserError:
        raise web.HTTPNotFound(text="Unknown Checkout Session.") from None


def _render(session: CheckoutSession) -> web.Response:
    items = ", ".join(
        f"{item['quantity']} x {html.escape(str(item['name']))}" for item in session._standin_items
    )
    error = (
        f'<p class="error" id="error">{html.escape(session._standin_error)}</p>'
        if session._standin_error
        else ""
    )
    if session.status == "open":
        buttons = "".join(
            f'<button name="method" value="{value}" type="submit">{html.escape(label)}</button>'
            for value, (label, _) in CHOICES.items()
            if not value.startswith("delayed") or "sepa_debit" in session.payment_method_types
        )
        cancel = (
            f'<p><a id="cancel" href="{html.escape(session.cancel_url)}">Cancel and go back</a></p>'
            if session.cancel_url
            else ""
        )
        form = f'<form method="post">{buttons}</form>{cancel}'
    else:
        form = ""
    body = _PAGE.format(
        amount=html.escape(format_amount(session.amount_total, session.currency)),
        items=items,
        id=html.escape(session.id),
        status=html.escape(session.status),
        error=error,
        form=form,
    )
    return web.Response(text=body, content_type="text/html")
