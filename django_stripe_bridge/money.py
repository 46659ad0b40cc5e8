"""Amounts in the smallest currency unit, shown as people read them."""

from __future__ import annotations

from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, InvalidOperation

#: Currencies Stripe charges in whole units (no cents): 1000 JPY is ¥1000, not ¥10.00.
#: Digits an amount in the smallest unit may have (a signed 64-bit integer holds them all;
#: Stripe's own limit is eight).
MAX_AMOUNT_DIGITS = 18
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga"}
    | {"pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
#: Currencies with three decimals (the last digit must be 0 at Stripe).
THREE_DECIMAL_CURRENCIES = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def decimals(currency: str) -> int:
    """How many decimals a currency's smallest unit has."""
    code = currency.lower()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def format_amount(amount: int | None, currency: str) -> str:
    """``1050, "usd"`` → ``"10.50 USD"``; ``1000, "jpy"`` → ``"1000 JPY"``."""
    if amount is None:
        return "—"
    places = decimals(currency or "usd")
    value = Decimal(amount).scaleb(-places)
    return f"{value:.{places}f} {currency.upper()}".strip()


def parse_amount(text: str, currency: str) -> int:
    """``"10.50", "usd"`` → ``1050``: an amount as people write it, in the smallest unit.

    Raises ``ValueError`` with a message for anything that is not a positive amount with at
    most the currency's decimals.
    """
    places = decimals(currency or "usd")
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount.") from None
    if not value.is_finite() or value <= 0:
        raise ValueError("The amount must be greater than zero.")
    # Checked before scaling: 1E999999999 would overflow the decimal context.
    if value.adjusted() + places >= MAX_AMOUNT_DIGITS:
        raise ValueError(f"{str(text).strip()[:40]!r} is too large an amount.")
    # Exact, whatever the exponent: as many digits as the value has, no exponent limits.
    exact = Context(prec=len(value.as_tuple().digits), Emin=MIN_EMIN, Emax=MAX_EMAX)
    minor = value.scaleb(places, exact)
    if minor != minor.to_integral_value():
        raise ValueError(
            f"{(currency or 'usd').upper()} amounts have at most {places} decimal places."
        )
    return int(minor)
