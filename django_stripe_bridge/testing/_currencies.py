"""Currencies Stripe accepts for payments, and its minimum charge amounts (plain data).

``check_amount`` returns the ``error`` fields real Stripe answers with (or ``None``), so the
stand-in can refuse what Stripe refuses. No third-party imports.
"""

from __future__ import annotations

__all__ = [
    "MAXIMUM_AMOUNT",
    "MINIMUM_AMOUNTS",
    "SUPPORTED_CURRENCIES",
    "ZERO_DECIMAL_CURRENCIES",
    "check_amount",
    "format_amount",
]


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Presentment currencies Stripe accepts (lower case, as the API wants them).
SUPPORTED_CURRENCIES: frozenset[str] = _codes(
    """
    usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd
    bwp byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp
    gel gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw
    kwd kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad
    ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek
    sgd shp sle sos srd std szl thb tjs tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv wst
    xaf xcd xcg xof xpf yer zar zmw
    """
)

#: Currencies whose amounts are whole units (``amount=50`` in ``jpy`` is ¥50).
ZERO_DECIMAL_CURRENCIES: frozenset[str] = _codes(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf"
)
#: Currencies with three decimals (amounts are in thousandths).
THREE_DECIMAL_CURRENCIES: frozenset[str] = _codes("bhd jod kwd omr tnd")

#: Stripe's documented minimum charge amounts, in the currency's smallest unit. Currencies
#: not listed here only need a positive amount (Stripe converts them to 50 US cents, which
#: an offline stand-in cannot do).
MINIMUM_AMOUNTS: dict[str, int] = {
    "usd": 50,
    "aed": 200,
    "aud": 50,
    "bgn": 100,
    "brl": 50,
    "cad": 50,
    "chf": 50,
    "czk": 1500,
    "dkk": 250,
    "eur": 50,
    "gbp": 30,
    "hkd": 400,
    "huf": 17500,
    "inr": 50,
    "jpy": 50,
    "mxn": 1000,
    "myr": 200,
    "nok": 300,
    "nzd": 50,
    "pln": 200,
    "ron": 200,
    "sek": 300,
    "sgd": 50,
    "thb": 1000,
}

#: The largest amount the API accepts (eight digits).
MAXIMUM_AMOUNT = 99_999_999

_SYMBOLS = {
    "usd": "$",
    "aud": "$",
    "cad": "$",
    "nzd": "$",
    "sgd": "$",
    "hkd": "$",
    "mxn": "$",
    "brl": "R$",
    "eur": "€",
    "gbp": "£",
    "jpy": "¥",
    "inr": "₹",
    "thb": "฿",
}


def format_amount(amount: int, currency: str) -> str:
    """``50, "usd"`` → ``"$0.50"``; ``50, "jpy"`` → ``"¥50"``; unknown symbols use the code."""
    currency = currency.lower()
    if currency in ZERO_DECIMAL_CURRENCIES:
        number = f"{amount:,}"
    elif currency in THREE_DECIMAL_CURRENCIES:
        number = f"{amount / 1000:,.3f}"
    else:
        number = f"{amount / 100:,.2f}"
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol else f"{number} {currency.upper()}"


def _parse_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def check_amount(
    amount: object, currency: object, *, minimum: bool = True
) -> dict[str, str] | None:
    """The ``error`` fields (``message``, ``code``, ``param``) Stripe refuses these with.

    ``None`` when both are acceptable. ``minimum=False`` skips the minimum charge amount
    (used for amounts that are not new payments).
    """
    if currency is None or currency == "":
        return {
            "message": "Missing required param: currency.",
            "code": "parameter_missing",
            "param": "currency",
        }
    if amount is None or amount == "":
        return {
            "message": "Missing required param: amount.",
            "code": "parameter_missing",
            "param": "amount",
        }
    if not isinstance(currency, str) or currency.lower() not in SUPPORTED_CURRENCIES:
        listed = ", ".join(["usd", *sorted(SUPPORTED_CURRENCIES - {"usd"})])
        return {
            "message": (
                f"Invalid currency: {str(currency).lower()}. "
                f"Stripe currently supports these currencies: {listed}"
            ),
            "param": "currency",
        }
    currency = currency.lower()
    value = _parse_int(amount)
    if value is None:
        return {
            "message": f"Invalid integer: {amount}",
            "code": "parameter_invalid_integer",
            "param": "amount",
        }
    if value > MAXIMUM_AMOUNT:
        return {
            "message": (
                f"Amount must be no more than {format_amount(MAXIMUM_AMOUNT, currency)} {currency}"
            ),
            "code": "amount_too_large",
            "param": "amount",
        }
    floor = MINIMUM_AMOUNTS.get(currency, 1) if minimum else 1
    if value < floor:
        return {
            "message": f"Amount must be at least {format_amount(floor, currency)} {currency}",
            "code": "amount_too_small",
            "param": "amount",
        }
    return None
