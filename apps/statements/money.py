"""Amounts as a statement shows them. Pure: no Django."""

from __future__ import annotations

from decimal import Decimal

from apps.billing.pricing import minor_unit, round_money
from apps.payments.money import SYMBOLS

__all__ = ["display", "minor_unit", "rounded"]


def rounded(amount: Decimal, currency: str) -> Decimal:
    return round_money(amount, currency.upper())


def display(amount: Decimal, currency: str) -> str:
    """``-1234.5`` USD -> ``-$1,234.50``; currencies without a symbol here show their code."""
    value = rounded(amount, currency)
    sign = "-" if value < 0 else ""
    digits = f"{abs(value):,}"
    symbol = SYMBOLS.get(currency.upper())
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{digits} {currency.upper()}"
