"""Amounts as a statement shows them, in the reader's language (Babel's CLDR data: "$1,234.50" in English,
"1.234,50 US$" in Spanish, "1 234,50 $US" in French). Pure: no Django."""

from __future__ import annotations

from decimal import Decimal

from babel.core import UnknownLocaleError
from babel.numbers import format_currency, format_decimal

from apps.billing.pricing import minor_unit, round_money

__all__ = ["display", "kwh_text", "minor_unit", "rounded"]


def rounded(amount: Decimal, currency: str) -> Decimal:
    return round_money(amount, currency.upper())


def display(amount: Decimal, currency: str, locale: str = "en") -> str:
    """``-1234.5`` USD -> ``-$1,234.50`` (``locale`` "en"); rounded once to the currency's minor unit, then only
    written: the digits are the exact amount's."""
    value = rounded(amount, currency)
    try:
        return format_currency(value, currency.upper(), locale=(locale or "en").replace("-", "_"))
    except UnknownLocaleError:
        return format_currency(value, currency.upper(), locale="en")


def kwh_text(energy_wh: int, locale: str = "en") -> str:
    """``1234500`` Wh -> ``1,234.500`` ("en"), ``1.234,500`` ("es"): three decimals, so every Wh shows."""
    value = Decimal(energy_wh).scaleb(-3)
    try:
        return format_decimal(value, format="#,##0.000", locale=(locale or "en").replace("-", "_"))
    except UnknownLocaleError:
        return format_decimal(value, format="#,##0.000", locale="en")
