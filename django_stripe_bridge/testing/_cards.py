"""Stripe's documented test cards, tokens and test PaymentMethods, as plain data.

This module has no third-party imports: the public package re-exports its tables, and the
stand-in subprocess uses them to decide what each token or card number does.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AUTHENTICATION_REQUIRED",
    "CARDS_BY_NUMBER",
    "DECLINES_BY_NUMBER",
    "GENERIC_DECLINE",
    "TEST_PAYMENT_METHODS",
    "TEST_TOKENS",
    "Decline",
    "TestCard",
    "brand_display_name",
]


@dataclass(frozen=True)
class Decline:
    """How a declined card payment is reported: the ``error`` of the HTTP 402 response.

    ``code`` is the error's ``code`` (and the charge's ``failure_code``), ``decline_code``
    the error's ``decline_code``, ``message`` the customer-facing text, ``param`` the
    parameter Stripe blames (``cvc``, ``exp_month``) or ``None``.
    """

    code: str
    decline_code: str
    message: str
    param: str | None = None
    #: ``charge.outcome.type``: ``issuer_declined`` or ``blocked`` (Radar).
    outcome_type: str = "issuer_declined"

    @property
    def seller_message(self) -> str:
        if self.outcome_type == "blocked":
            return "Stripe blocked this payment as too risky."
        if self.decline_code == "generic_decline":
            return "The bank did not return any further details with this decline."
        return f"The bank returned the decline code `{self.decline_code}`."

    def outcome(self) -> dict[str, object]:
        """The ``outcome`` hash of a charge declined this way."""
        blocked = self.outcome_type == "blocked"
        return {
            "network_status": "not_sent_to_network" if blocked else "declined_by_network",
            "reason": "highest_risk_level" if blocked else self.decline_code,
            "risk_level": "highest" if blocked else "normal",
            "risk_score": 95 if blocked else 40,
            "seller_message": self.seller_message,
            "type": self.outcome_type,
        }


@dataclass(frozen=True)
class TestCard:
    """A test card: its number, brand (as the API spells it, e.g. ``amex``) and behaviour."""

    __test__ = False  # not a pytest test class

    number: str
    brand: str
    funding: str = "credit"
    country: str = "US"
    #: Set when every charge on this card is declined.
    decline: Decline | None = None
    #: Set when a PaymentIntent confirmed on-session needs 3-D Secure first.
    requires_authentication: bool = False
    #: How refunds of its charges go: ``None`` (succeed at once), ``"fail"`` (``succeeded``,
    #: later ``failed``) or ``"pending"`` (``pending``, later ``succeeded``).
    refund: str | None = None
    #: The dispute its charges receive shortly after they are captured: ``None`` or the
    #: dispute ``reason``; with ``inquiry`` set it is an inquiry (``warning_needs_response``).
    dispute: str | None = None
    inquiry: bool = False

    @property
    def last4(self) -> str:
        return self.number[-4:]


_BRAND_DISPLAY = {
    "visa": "Visa",
    "mastercard": "MasterCard",
    "amex": "American Express",
    "discover": "Discover",
    "diners": "Diners Club",
    "jcb": "JCB",
    "unionpay": "UnionPay",
}


def brand_display_name(brand: str) -> str:
    """The brand as legacy Card objects spell it (``Visa``, ``American Express``)."""
    return _BRAND_DISPLAY.get(brand, "Unknown")


_DECLINED = "Your card was declined."

GENERIC_DECLINE = Decline("card_declined", "generic_decline", _DECLINED)
INSUFFICIENT_FUNDS = Decline(
    "card_declined", "insufficient_funds", "Your card has insufficient funds."
)
LOST_CARD = Decline("card_declined", "lost_card", _DECLINED)
STOLEN_CARD = Decline("card_declined", "stolen_card", _DECLINED)
EXPIRED_CARD = Decline("expired_card", "expired_card", "Your card has expired.", "exp_month")
INCORRECT_CVC = Decline(
    "incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.", "cvc"
)
PROCESSING_ERROR = Decline(
    "processing_error",
    "processing_error",
    "An error occurred while processing your card. Try again in a little bit.",
)
FRAUDULENT = Decline("card_declined", "fraudulent", _DECLINED, outcome_type="blocked")
VELOCITY_EXCEEDED = Decline(
    "card_declined",
    "card_velocity_exceeded",
    "Your card was declined for making repeated attempts too frequently or exceeding its "
    "amount limit.",
)
#: An off-session payment on a card that needs 3-D Secure.
AUTHENTICATION_REQUIRED = Decline(
    "authentication_required",
    "authentication_required",
    "Your card was declined. This transaction requires authentication.",
)

# --- the cards -------------------------------------------------------------------------------

_VISA = TestCard("4242424242424242", "visa")
_VISA_DEBIT = TestCard("4000056655665556", "visa", funding="debit")
_MASTERCARD = TestCard("5555555555554444", "mastercard")
_MASTERCARD_DEBIT = TestCard("5200828282828210", "mastercard", funding="debit")
_MASTERCARD_PREPAID = TestCard("5105105105105100", "mastercard", funding="prepaid")
_AMEX = TestCard("378282246310005", "amex")
_DISCOVER = TestCard("6011111111111117", "discover")
_DINERS = TestCard("3056930009020004", "diners")
_JCB = TestCard("3566002020360505", "jcb", country="JP")
_UNIONPAY = TestCard("6200000000000005", "unionpay", country="CN")

_GENERIC = TestCard("4000000000000002", "visa", decline=GENERIC_DECLINE)
_INSUFFICIENT = TestCard("4000000000009995", "visa", decline=INSUFFICIENT_FUNDS)
_LOST = TestCard("4000000000009987", "visa", decline=LOST_CARD)
_STOLEN = TestCard("4000000000009979", "visa", decline=STOLEN_CARD)
_EXPIRED = TestCard("4000000000000069", "visa", decline=EXPIRED_CARD)
_CVC = TestCard("4000000000000127", "visa", decline=INCORRECT_CVC)
_PROCESSING = TestCard("4000000000000119", "visa", decline=PROCESSING_ERROR)
_FRAUD = TestCard("4100000000000019", "visa", decline=FRAUDULENT)
_VELOCITY = TestCard("4000000000006975", "visa", decline=VELOCITY_EXCEEDED)
#: Attaching to a customer succeeds; every charge fails.
_CUSTOMER_FAIL = TestCard("4000000000000341", "visa", decline=GENERIC_DECLINE)

_REFUND_FAIL = TestCard("4000000000005126", "visa", refund="fail")
_PENDING_REFUND = TestCard("4000000000007726", "visa", refund="pending")
_DISPUTE = TestCard("4000000000000259", "visa", dispute="fraudulent")
_DISPUTE_NOT_RECEIVED = TestCard("4000000000002685", "visa", dispute="product_not_received")
_DISPUTE_INQUIRY = TestCard("4000000000001976", "visa", dispute="fraudulent", inquiry=True)

_3DS2_REQUIRED = TestCard("4000000000003220", "visa", requires_authentication=True)
_3DS_REQUIRED = TestCard("4000000000003063", "visa", requires_authentication=True)
_AUTH_REQUIRED = TestCard("4000002760003184", "visa", requires_authentication=True)
_AUTH_ON_SETUP = TestCard("4000002500003155", "visa", requires_authentication=True)
_AUTH_THEN_INSUFFICIENT = TestCard(
    "4000008260003178", "visa", decline=INSUFFICIENT_FUNDS, requires_authentication=True
)

#: Stripe's test tokens usable as a charge ``source`` (or a customer's ``source``):
#: token → the card it stands for. ``card.decline`` is set for tokens whose charges fail.
TEST_TOKENS: dict[str, TestCard] = {
    "tok_visa": _VISA,
    "tok_visa_debit": _VISA_DEBIT,
    "tok_mastercard": _MASTERCARD,
    "tok_mastercard_debit": _MASTERCARD_DEBIT,
    "tok_mastercard_prepaid": _MASTERCARD_PREPAID,
    "tok_amex": _AMEX,
    "tok_discover": _DISCOVER,
    "tok_diners": _DINERS,
    "tok_jcb": _JCB,
    "tok_unionpay": _UNIONPAY,
    "tok_chargeDeclined": _GENERIC,
    "tok_visa_chargeDeclined": _GENERIC,
    "tok_chargeDeclinedInsufficientFunds": _INSUFFICIENT,
    "tok_visa_chargeDeclinedInsufficientFunds": _INSUFFICIENT,
    "tok_chargeDeclinedLostCard": _LOST,
    "tok_visa_chargeDeclinedLostCard": _LOST,
    "tok_chargeDeclinedStolenCard": _STOLEN,
    "tok_visa_chargeDeclinedStolenCard": _STOLEN,
    "tok_chargeDeclinedExpiredCard": _EXPIRED,
    "tok_chargeDeclinedIncorrectCvc": _CVC,
    "tok_chargeDeclinedProcessingError": _PROCESSING,
    "tok_chargeDeclinedFraudulent": _FRAUD,
    "tok_radarBlock": _FRAUD,
    "tok_visa_chargeDeclinedVelocityLimitExceeded": _VELOCITY,
    "tok_chargeCustomerFail": _CUSTOMER_FAIL,
    "tok_refundFail": _REFUND_FAIL,
    "tok_pendingRefund": _PENDING_REFUND,
    "tok_createDispute": _DISPUTE,
    "tok_createDisputeProductNotReceived": _DISPUTE_NOT_RECEIVED,
    "tok_createDisputeInquiry": _DISPUTE_INQUIRY,
}

#: Stripe's test PaymentMethod ids (usable wherever a ``payment_method`` is expected):
#: id → the card it stands for. Each use creates a new ``pm_…`` object, as on Stripe.
TEST_PAYMENT_METHODS: dict[str, TestCard] = {
    "pm_card_visa": _VISA,
    "pm_card_visa_debit": _VISA_DEBIT,
    "pm_card_mastercard": _MASTERCARD,
    "pm_card_mastercard_debit": _MASTERCARD_DEBIT,
    "pm_card_mastercard_prepaid": _MASTERCARD_PREPAID,
    "pm_card_amex": _AMEX,
    "pm_card_discover": _DISCOVER,
    "pm_card_diners": _DINERS,
    "pm_card_jcb": _JCB,
    "pm_card_unionpay": _UNIONPAY,
    "pm_card_chargeDeclined": _GENERIC,
    "pm_card_visa_chargeDeclined": _GENERIC,
    "pm_card_chargeDeclinedInsufficientFunds": _INSUFFICIENT,
    "pm_card_visa_chargeDeclinedInsufficientFunds": _INSUFFICIENT,
    "pm_card_chargeDeclinedLostCard": _LOST,
    "pm_card_visa_chargeDeclinedLostCard": _LOST,
    "pm_card_chargeDeclinedStolenCard": _STOLEN,
    "pm_card_visa_chargeDeclinedStolenCard": _STOLEN,
    "pm_card_chargeDeclinedExpiredCard": _EXPIRED,
    "pm_card_chargeDeclinedIncorrectCvc": _CVC,
    "pm_card_chargeDeclinedProcessingError": _PROCESSING,
    "pm_card_chargeDeclinedFraudulent": _FRAUD,
    "pm_card_radarBlock": _FRAUD,
    "pm_card_visa_chargeDeclinedVelocityLimitExceeded": _VELOCITY,
    "pm_card_chargeCustomerFail": _CUSTOMER_FAIL,
    "pm_card_refundFail": _REFUND_FAIL,
    "pm_card_pendingRefund": _PENDING_REFUND,
    "pm_card_createDispute": _DISPUTE,
    "pm_card_createDisputeProductNotReceived": _DISPUTE_NOT_RECEIVED,
    "pm_card_createDisputeInquiry": _DISPUTE_INQUIRY,
    "pm_card_threeDSecure2Required": _3DS2_REQUIRED,
    "pm_card_threeDSecureRequired": _3DS_REQUIRED,
    "pm_card_authenticationRequired": _AUTH_REQUIRED,
    "pm_card_authenticationRequiredOnSetup": _AUTH_ON_SETUP,
    "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds": _AUTH_THEN_INSUFFICIENT,
}

#: Card number → how charges on it are declined (also for cards made from raw numbers).
DECLINES_BY_NUMBER: dict[str, Decline] = {
    card.number: card.decline
    for card in (*TEST_TOKENS.values(), *TEST_PAYMENT_METHODS.values())
    if card.decline is not None
}
# Cards localstripe itself declines after 3-D Secure, or refuses to attach (Luhn failure).
DECLINES_BY_NUMBER.setdefault("4000008400001629", GENERIC_DECLINE)
DECLINES_BY_NUMBER.setdefault(
    "4242424242424241",
    Decline("incorrect_number", "incorrect_number", "Your card number is incorrect.", "number"),
)

#: Card number → its test card (brand, funding, country) for cards made from raw numbers.
CARDS_BY_NUMBER: dict[str, TestCard] = {
    card.number: card for card in (*TEST_TOKENS.values(), *TEST_PAYMENT_METHODS.values())
}
