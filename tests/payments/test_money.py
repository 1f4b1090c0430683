"""Money crosses into Stripe as integer minor units, exactly, or not at all (apps/payments/money.py, pure)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.payments.money import (
    MAX_MINOR_UNITS,
    MoneyError,
    currency_exponent,
    from_minor_units,
    quantum,
    to_minor_units,
    to_payable_minor_units,
)


@pytest.mark.parametrize(("amount", "currency", "minor"), [
    ("12.34", "USD", 1234),
    ("3.95", "usd", 395),
    ("0.01", "EUR", 1),
    ("370", "JPY", 370),  # the billing spec's worked example: JPY 370 -> Stripe amount 370
    ("370.000", "JPY", 370),  # trailing zeros are still exact
    ("1.500", "KWD", 1500),
    ("-2.50", "USD", -250),  # ledger amounts may be negative; payable ones may not (below)
])
def test_exact_amounts_become_integers(amount, currency, minor):
    result = to_minor_units(Decimal(amount), currency)
    assert result == minor and type(result) is int


@pytest.mark.parametrize(("amount", "currency", "why"), [
    ("1.005", "USD", "not exact in the currency (2 decimals)"),
    ("1.5", "JPY", "not exact in the currency (0 decimals)"),
    ("0.0001", "KWD", "not exact in the currency (3 decimals)"),
    ("NaN", "USD", "not a finite number"),
    ("Infinity", "USD", "not a finite number"),
    ("1000000", "USD", "above Stripe's limit"),
])
def test_amounts_that_are_not_exact_are_refused_not_rounded(amount, currency, why):
    with pytest.raises(MoneyError, match=why.replace("(", r"\(").replace(")", r"\)")):
        to_minor_units(Decimal(amount), currency)


@pytest.mark.parametrize("amount", [1.5, 2, "3.00", True])
def test_only_decimals_are_money(amount):
    with pytest.raises(MoneyError, match="must be a Decimal"):
        to_minor_units(amount, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize(("currency", "why"), [("US", "three-letter"), ("US1", "three-letter"), ("ISK", "not supported"),
                                               ("", "three-letter")])
def test_bad_currencies_are_named(currency, why):
    with pytest.raises(MoneyError, match=why):
        to_minor_units(Decimal(1), currency)


def test_payable_amounts_are_positive():
    assert to_payable_minor_units(Decimal("0.01"), "USD") == 1
    for amount in ("0", "-1.00", "0.00"):
        with pytest.raises(MoneyError, match="more than zero"):
            to_payable_minor_units(Decimal(amount), "USD")


def test_back_from_stripe_with_the_currency_s_decimals():
    assert str(from_minor_units(370, "JPY")) == "370"
    assert str(from_minor_units(5, "USD")) == "0.05"
    assert str(from_minor_units(1500, "KWD")) == "1.500"
    with pytest.raises(MoneyError, match="must be an integer"):
        from_minor_units(3.0, "USD")  # type: ignore[arg-type]
    assert (currency_exponent("jpy"), currency_exponent("usd"), currency_exponent("bhd")) == (0, 2, 3)
    assert (quantum("JPY"), quantum("USD")) == (Decimal(1), Decimal("0.01"))


@given(st.integers(min_value=-MAX_MINOR_UNITS, max_value=MAX_MINOR_UNITS),
       st.sampled_from(["USD", "EUR", "JPY", "KRW", "KWD", "GBP"]))
def test_round_trip_is_exact(minor, currency):
    amount = from_minor_units(minor, currency)
    assert to_minor_units(amount, currency) == minor
    assert amount == Decimal(minor) * quantum(currency)
