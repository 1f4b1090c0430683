"""Money at the Stripe boundary: Decimal amounts <-> integer minor units (pure: no Django, no I/O).

Inside the platform money is Decimal in the currency's major unit (USD 12.34, JPY 370). Stripe takes
and returns integers in the currency's smallest unit: cents for USD (1234), yen for JPY (370, a
zero-decimal currency), fils for KWD (three decimals). The exponent comes from ISO 4217, with Stripe's
own exceptions noted below. An amount that is not exact in its currency (USD 1.005, JPY 1.5) is
refused, never rounded: rounding is the pricing engine's job, done once, before money gets here.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# ISO 4217 minor-unit exponents that are not 2. Stripe treats these currencies the same way
# (https://docs.stripe.com/currencies#zero-decimal, #three-decimal).
_ZERO_DECIMAL = frozenset({
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF",
    "XOF", "XPF",
})
_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# Currencies we refuse outright: Stripe takes ISK and UGX as two-decimal amounts that must be a
# multiple of 100, HUF and TWD payouts as whole units; one of those needs care we have not built.
_UNSUPPORTED = frozenset({"ISK", "HUF", "TWD"})

# How amounts are written for people: the symbol where the currency has a well-known one (a building
# bills in one currency, so "$" is read as its dollar), else the code after the amount.
SYMBOLS = {"USD": "$", "CAD": "$", "AUD": "$", "MXN": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}

# Stripe's ceiling for one amount: eight digits in the minor unit (99,999,999).
MAX_MINOR_UNITS = 99_999_999


class MoneyError(ValueError):
    """An amount or a currency that cannot cross the boundary; the message says which and why."""


def currency_code(currency: str) -> str:
    """The ISO 4217 code, upper-case; refuses anything that is not three letters or that we do not support."""
    code = currency.strip().upper() if isinstance(currency, str) else ""
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise MoneyError(f"currency {currency!r} is not a three-letter ISO 4217 code")
    if code in _UNSUPPORTED:
        raise MoneyError(f"currency {code} is not supported for card payments here")
    return code


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point in the currency's minor unit: 0 (JPY), 2 (USD) or 3 (KWD)."""
    code = currency_code(currency)
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return 2


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Decimal major units -> Stripe's integer amount. Exact or refused (never rounded, never float)."""
    if isinstance(amount, bool) or not isinstance(amount, Decimal):
        raise MoneyError(f"amount must be a Decimal, not {type(amount).__name__} ({amount!r})")
    if not amount.is_finite():
        raise MoneyError(f"amount {amount} is not a finite number")
    exponent = currency_exponent(currency)
    try:
        scaled = amount.scaleb(exponent)
        minor = scaled.to_integral_value()
    except InvalidOperation:
        raise MoneyError(f"amount {amount} cannot be converted") from None
    if minor != scaled:
        raise MoneyError(
            f"amount {amount} {currency_code(currency)} is not exact in the currency "
            f"({exponent} decimal{'s' if exponent != 1 else ''})"
        )
    result = int(minor)
    if abs(result) > MAX_MINOR_UNITS:
        raise MoneyError(f"amount {amount} {currency_code(currency)} is above Stripe's limit")
    return result


def to_payable_minor_units(amount: Decimal, currency: str) -> int:
    """As ``to_minor_units``, for an amount Stripe is asked to move: it must be positive."""
    minor = to_minor_units(amount, currency)
    if minor <= 0:
        raise MoneyError(f"amount {amount} {currency_code(currency)} must be more than zero")
    return minor


def from_minor_units(minor: int, currency: str) -> Decimal:
    """Stripe's integer amount -> Decimal major units, with exactly the currency's decimals."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise MoneyError(f"a minor-unit amount must be an integer, not {type(minor).__name__} ({minor!r})")
    exponent = currency_exponent(currency)
    return Decimal(minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


def quantum(currency: str) -> Decimal:
    """The smallest amount of the currency as a Decimal: 0.01 (USD), 1 (JPY), 0.001 (KWD)."""
    return Decimal(1).scaleb(-currency_exponent(currency))
