"""Stripe Connect in the stand-in: connected accounts, ``Stripe-Account``, objects kept apart
per account, Connect webhooks, and destination charges with transfers and application fees.

Shapes follow Stripe's OpenAPI fixtures (``account``, ``transfer``, ``application_fee``):

- ``POST /v1/accounts`` creates a connected account of the platform (``GET /v1/accounts``,
  ``GET /v1/accounts/{id}``); an account is the platform's object.
- A request with ``Stripe-Account: acct_…`` (or ``Stripe-Context``) acts on that account:
  what it creates belongs to it, and it sees only its own objects and events (another
  account's, or the platform's, are "No such …", as on Stripe).
- An event about an account's object carries ``"account": "acct_…"`` and is delivered only
  to Connect webhooks (``connect: true``); the platform's own events only to the others.
- ``transfer_data[destination]`` makes a destination charge: once captured, a ``transfer``
  (``tr_…``) moves the amount less the fee to the account; ``application_fee_amount`` makes
  an ``application_fee`` (``fee_…``) for the platform, on direct charges too.
- A Checkout Session takes these in ``payment_intent_data``, for the PaymentIntent it makes;
  one created with ``Stripe-Account`` is the account's, and so is what its page pays.
"""

from __future__ import annotations

from typing import Any

from localstripe import resources
from localstripe.resources import StripeObject, store, try_convert_to_int

from . import _context
from ._errors import StripeAPIError, invalid, no_such
from ._events import emit
from ._lists import list_page, unknown_params

#: What a charge or PaymentIntent create call (or a Checkout Session's
#: ``payment_intent_data``) may carry to pay a connected account.
CONNECT_PARAMS = ("transfer_data", "application_fee_amount", "on_behalf_of")
#: Parameters of ``POST /v1/accounts`` kept on the account, and those accepted and ignored.
_ACCOUNT_FIELDS = ("type", "country", "email", "business_type", "metadata", "capabilities")
_ACCOUNT_IGNORED = (
    "business_profile",
    "company",
    "controller",
    "default_currency",
    "external_account",
    "individual",
    "settings",
    "tos_acceptance",
)


def owner(obj: Any) -> str | None:
    """The connected account ``obj`` belongs to (``None``: the platform's)."""
    return getattr(obj, "_standin_account", None)


def visible(obj: Any) -> bool:
    """Whether the current request may see ``obj`` (its own account's objects only)."""
    ctx = _context.current()
    if not ctx.scoped:
        return True
    if isinstance(obj, Account):
        return ctx.account in (None, obj.id)
    return owner(obj) == ctx.account


# --- accounts ----------------------------------------------------------------------------


class Account(StripeObject):
    """A connected account of the platform."""

    object = "account"
    _id_prefix = "acct_"

    def __init__(self, **data: Any) -> None:
        for key in _ACCOUNT_IGNORED:
            data.pop(key, None)
        fields = {key: data.pop(key) for key in _ACCOUNT_FIELDS if key in data}
        unknown_params(data)
        account_type = fields.get("type") or "custom"
        if account_type not in ("custom", "express", "standard", "none"):
            raise invalid("Invalid type: must be one of custom, express, standard", param="type")
        super().__init__()
        del self.livemode  # Stripe's account has none
        self._standin_account = None  # the platform's object
        self.type = account_type
        self.country = fields.get("country") or "US"
        self.email = fields.get("email")
        self.business_type = fields.get("business_type")
        self.metadata = fields.get("metadata") or {}
        self.capabilities = {name: "active" for name in (fields.get("capabilities") or {})} or {
            "card_payments": "active",
            "transfers": "active",
        }
        self.charges_enabled = True
        self.payouts_enabled = True
        self.details_submitted = True
        self.default_currency = "usd"
        self.controller = {"type": "application"}
        self.business_profile = {"mcc": None, "name": None, "url": None}
        self.external_accounts = {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/accounts/{self.id}/external_accounts",
        }
        self.requirements: dict[str, Any] = {
            "alternatives": [],
            "current_deadline": None,
            "currently_due": [],
            "disabled_reason": None,
            "errors": [],
            "eventually_due": [],
            "past_due": [],
            "pending_verification": [],
        }
        self.future_requirements = dict(self.requirements)
        self.settings = {
            "branding": dict.fromkeys(("icon", "logo", "primary_color", "secondary_color")),
            "card_payments": {
                "decline_on": {"avs_failure": False, "cvc_failure": False},
                **dict.fromkeys(
                    (
                        "statement_descriptor_prefix",
                        "statement_descriptor_prefix_kana",
                        "statement_descriptor_prefix_kanji",
                    )
                ),
            },
            "dashboard": {"display_name": None, "timezone": "Etc/UTC"},
            "payments": dict.fromkeys(
                (
                    "statement_descriptor",
                    "statement_descriptor_kana",
                    "statement_descriptor_kanji",
                    "statement_descriptor_prefix_kana",
                    "statement_descriptor_prefix_kanji",
                )
            ),
            "payouts": {
                "debit_negative_balances": True,
                "schedule": {"interval": "daily", "delay_days": 2},
                "statement_descriptor": None,
            },
        }
        self.tos_acceptance = {"date": None, "ip": None}


def exists(account_id: Any) -> bool:
    return isinstance(account_id, str) and f"account:{account_id}" in store


def _create_account(**data: Any) -> Account:
    if _context.current().account is not None:
        raise StripeAPIError(
            400,
            "A connected account cannot create accounts: make this request as the platform "
            "(without Stripe-Account).",
        )
    return Account(**data)


def _retrieve_account(id: str, **data: Any) -> Account:
    account = store.get(f"account:{id}")
    if account is None or not visible(account):
        raise no_such("account", id)
    return account


def _list_accounts(**params: Any) -> Any:
    # The platform's connected accounts: a connected account lists none.
    return list_page(
        "account", "/v1/accounts", params, keep=lambda _: _context.current().account is None
    )


# --- transfers and application fees ------------------------------------------------------


class Transfer(StripeObject):
    """Funds moved from the platform to a connected account (a destination charge's)."""

    object = "transfer"
    _id_prefix = "tr_"

    def __init__(self, charge: Any, destination: str, amount: int) -> None:
        super().__init__()
        self._standin_account = None
        self.amount = amount
        self.amount_reversed = 0
        self.balance_transaction = None
        self.currency = charge.currency
        self.description = None
        self.destination = destination
        self.destination_payment = "py_" + resources.random_id(24)
        self.metadata: dict[str, str] = {}
        self.reversals = {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/transfers/{self.id}/reversals",
        }
        self.reversed = False
        self.source_transaction = charge.id
        self.source_type = "card"
        self.transfer_group = getattr(charge, "transfer_group", None)


class ApplicationFee(StripeObject):
    """The platform's fee on a payment made for a connected account."""

    object = "application_fee"
    _id_prefix = "fee_"

    def __init__(self, charge: Any, account: str, amount: int) -> None:
        super().__init__()
        self._standin_account = None
        self.account = account
        self.amount = amount
        self.amount_refunded = 0
        self.application = "ca_standin"
        self.balance_transaction = None
        self.charge = charge.id
        self.currency = charge.currency
        self.fee_source = {"charge": charge.id, "type": "charge"}
        self.originating_transaction = None
        self.refunded = False
        self.refunds = {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/application_fees/{self.id}/refunds",
        }


def _retriever(cls: Any) -> Any:
    def retrieve(id: str, **data: Any) -> Any:
        obj = store.get(f"{cls.object}:{id}")
        if obj is None or not visible(obj):
            raise no_such(cls.object, id)
        return obj

    return retrieve


def _lister(cls: Any, *filters: str) -> Any:
    def list_all(**params: Any) -> Any:
        return list_page(cls.object, f"/v1/{cls.object}s", params, filters=filters)

    return list_all


# --- payments for connected accounts -------------------------------------------------------


def take_connect_params(data: dict[str, Any], *, within: str = "") -> dict[str, Any]:
    """Pop and check a create call's Connect parameters; what to set on the object.

    ``within`` names the hash they came in, for errors (a Checkout Session's
    ``payment_intent_data``); ``data["amount"]`` is the payment's amount.
    """

    def name(param: str) -> str:
        head, bracket, rest = param.partition("[")
        return f"{within}[{head}]{bracket}{rest}" if within else param

    taken = {key: data.pop(key) for key in CONNECT_PARAMS if key in data}
    ctx = _context.current()
    transfer = taken.get("transfer_data")
    if transfer is not None:
        if not isinstance(transfer, dict) or not transfer.get("destination"):
            raise invalid(
                f"Missing required param: {name('transfer_data[destination]')}.",
                param=name("transfer_data[destination]"),
            )
        if ctx.account is not None:
            raise invalid(
                f"{name('transfer_data')} cannot be used with Stripe-Account: a destination "
                "charge is made on the platform.",
                param=name("transfer_data"),
            )
        destination = transfer["destination"]
        if not exists(destination):
            raise no_such("destination", str(destination), name("transfer_data[destination]"))
        amount = transfer.get("amount")
        taken["transfer_data"] = {
            "amount": None if amount is None else try_convert_to_int(amount),
            "destination": destination,
        }
    behalf = taken.get("on_behalf_of")
    if behalf is not None and not exists(behalf):
        raise no_such("account", str(behalf), name("on_behalf_of"))
    fee = taken.get("application_fee_amount")
    if fee is not None:
        fee = try_convert_to_int(fee)
        amount = try_convert_to_int(data.get("amount"))
        if not isinstance(fee, int) or isinstance(fee, bool) or fee < 0:
            raise invalid(
                f"Invalid non-negative integer: {fee}", param=name("application_fee_amount")
            )
        if isinstance(amount, int) and fee > amount:
            raise invalid(
                "The application fee amount cannot be greater than the charge amount.",
                param=name("application_fee_amount"),
            )
        if ctx.account is None and transfer is None:
            raise invalid(
                "Can only apply an application_fee_amount when the request is made on behalf "
                "of another account (using the Stripe-Account header or transfer_data).",
                param=name("application_fee_amount"),
            )
        taken["application_fee_amount"] = fee
    return taken


def init_payment(obj: Any, params: dict[str, Any]) -> None:
    """Give a new charge or PaymentIntent its Connect fields (``None`` when unused)."""
    obj.transfer_data = params.get("transfer_data")
    obj.application_fee_amount = params.get("application_fee_amount")
    obj.on_behalf_of = params.get("on_behalf_of")
    if obj.object == "charge":
        obj.transfer = None
        obj.application_fee = None


def inherit_from_intent(charge: Any) -> None:
    """A PaymentIntent's charge is made for the account the PaymentIntent names."""
    intent = store.get(f"payment_intent:{getattr(charge, 'payment_intent', None)}")
    if intent is not None and getattr(charge, "transfer_data", None) is None:
        for key in CONNECT_PARAMS:
            setattr(charge, key, getattr(intent, key, None))


def on_captured(charge: Any) -> None:
    """Once a charge is captured: its transfer to the destination and the platform's fee."""
    inherit_from_intent(charge)
    fee_amount = getattr(charge, "application_fee_amount", None)
    transfer_data = getattr(charge, "transfer_data", None) or {}
    destination = transfer_data.get("destination")
    captured = getattr(charge, "_standin_amount_captured", 0) or charge.amount
    # Both are the platform's objects (and events), whoever the charge belongs to.
    if destination and getattr(charge, "transfer", None) is None:
        amount = transfer_data.get("amount")
        if amount is None:
            amount = captured - (fee_amount or 0)
        transfer = Transfer(charge, destination, max(0, min(amount, captured)))
        charge.transfer = transfer.id
        emit("transfer.created", transfer)
    account = destination or owner(charge)
    if fee_amount and account and getattr(charge, "application_fee", None) is None:
        fee = ApplicationFee(charge, account, fee_amount)
        charge.application_fee = fee.id
        emit("application_fee.created", fee)


# --- keeping accounts apart ------------------------------------------------------------------

_orig: dict[str, Any] = {}


def _object_init(self: Any, id: Any = None) -> None:
    _orig["init"](self, id)
    self._standin_account = _context.current().account


def _retrieve(cls: Any, id: Any) -> Any:
    obj = _orig["retrieve"].__func__(cls, id)
    if not visible(obj):
        raise no_such(cls.object, str(id))
    return obj


def event_account(event: Any, data: Any) -> None:
    """An event belongs to its object's account, and names it (``account``) if connected."""
    account = owner(data)
    if account is None and isinstance(data, Account):
        account = data.id
    event._standin_account = account
    if account is not None:
        event.account = account


def wants(hook: Any, event: Any) -> bool:
    """Connect webhooks get the connected accounts' events; the others, the platform's."""
    return bool(getattr(hook, "_standin_connect", False)) == (owner(event) is not None)


def check_account_header(account: str | None) -> None:
    """Refuse a ``Stripe-Account`` that is not one of the platform's connected accounts."""
    if account is not None and not exists(account):
        raise StripeAPIError(
            403,
            f"The provided key does not have access to account '{account[:60]}' (or that "
            "account does not exist). Application access may have been revoked.",
            type="invalid_request_error",
            code="account_invalid",
        )


def install() -> None:
    """Apply the patches and add the routes (before ``localstripe.server`` is imported)."""
    _orig["init"] = StripeObject.__init__
    _orig["retrieve"] = StripeObject.__dict__["_api_retrieve"]
    StripeObject.__init__ = _object_init  # type: ignore[method-assign]
    StripeObject._api_retrieve = classmethod(_retrieve)  # type: ignore[assignment]
    resources.extra_apis.extend(
        [
            ("POST", "/v1/accounts", _create_account),
            ("GET", "/v1/accounts", _list_accounts),
            ("GET", "/v1/accounts/{id}", _retrieve_account),
            ("GET", "/v1/transfers", _lister(Transfer, "destination")),
            ("GET", "/v1/transfers/{id}", _retriever(Transfer)),
            ("GET", "/v1/application_fees", _lister(ApplicationFee, "charge")),
            ("GET", "/v1/application_fees/{id}", _retriever(ApplicationFee)),
        ]
    )
