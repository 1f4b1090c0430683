"""Amounts as a statement shows them. Pure: no Django."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 currencies whose minor unit is not the cent.
EXPONENTS = {"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0, "XOF": 0, "XAF": 0, "XPF": 0, "HUF": 2,
             "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3}
SYMBOLS = {"USD": "$", "CAD": "$", "AUD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "MXN": "$"}


def minor_unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-EXPONENTS.get(currency.upper(), 2))


def rounded(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(minor_unit(currency), ROUND_HALF_UP)


def display(amount: Decimal, currency: str) -> str:
    """``-1234.5`` USD -> ``-$1,234.50``; currencies without a symbol here show their code."""
    value = rounded(amount, currency)
    sign = "-" if value < 0 else ""
    digits = f"{abs(value):,}"
    symbol = SYMBOLS.get(currency.upper())
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{digits} {currency.upper()}"
