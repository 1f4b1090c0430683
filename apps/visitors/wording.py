"""A tariff version in words, for the visitor's page and the label sheet. Pure: no Django, no I/O.

    describe(tariff)  ->  ("$2.40 per hour, in steps of 15 min (sessions of 10 min or more)", ...)

The sentences' shapes come from ``words`` (format strings), so that the caller can pass them translated;
the defaults are English. Prices are the tariff's own Decimals, written with the currency's minor unit.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from apps.billing.pricing import Kind, PriceComponent, TariffElement, TariffVersion
from apps.payments.money import SYMBOLS
from apps.payments.money import quantum as quantum_of

WORDS: dict[str, str] = {
    "ENERGY": "{price} per kWh",
    "TIME": "{price} per hour",
    "PARKING_TIME": "{price} per minute parked after charging",
    "FLAT": "{price} per session",
    "step": "in steps of {step}",
    "grace": "the first {minutes} min free",
    "cap": "at most {cap}",
    "when": "{text} ({window})",
    "free": "free",
    "any time": "at any time",
}


def money(amount: Decimal, currency: str) -> str:
    """``$2.40``, ``¥300``, ``12.50 SEK``: the amount with the currency's minor unit (never rounded away)."""
    quantum = quantum_of(currency)
    text = str(amount.quantize(quantum)) if amount == amount.quantize(quantum) else str(amount.normalize())
    symbol = SYMBOLS.get(currency.upper())
    return f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"


def _step(component: PriceComponent) -> str:
    if component.kind == Kind.ENERGY:
        return f"{Decimal(component.step_size) / 1000} kWh"
    seconds = component.step_size
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def component_text(component: PriceComponent, currency: str, words: Mapping[str, str] = WORDS) -> str:
    text = words[component.kind.value].format(price=money(component.price, currency))
    extras: list[str] = []
    if component.step_size > 1:
        extras.append(words["step"].format(step=_step(component)))
    if component.grace_minutes:
        extras.append(words["grace"].format(minutes=component.grace_minutes))
    if component.cap is not None:
        extras.append(words["cap"].format(cap=money(component.cap, currency)))
    return ", ".join([text, *extras])


def element_text(element: TariffElement, currency: str, words: Mapping[str, str] = WORDS) -> str:
    parts = "; ".join(component_text(c, currency, words) for c in element.components) or words["free"]
    window = element.window()
    if window == "at any time":
        return parts
    return words["when"].format(text=parts, window=window)


def describe(tariff: TariffVersion, words: Mapping[str, str] = WORDS) -> tuple[str, ...]:
    """One sentence per element, in the tariff's order (the first element that applies wins)."""
    return tuple(element_text(element, tariff.currency, words) for element in tariff.elements)
