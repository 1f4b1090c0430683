"""Months in the building's time zone, and how amounts show."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from apps.statements import periods
from apps.statements.money import display, kwh_text, rounded


def test_a_month_runs_from_local_midnight_to_local_midnight():
    november = periods.month_in(date(2026, 11, 1), "America/Los_Angeles")
    assert november.starts_at == datetime(2026, 11, 1, 7, tzinfo=UTC)  # PDT, UTC-7
    assert november.ends_at == datetime(2026, 12, 1, 8, tzinfo=UTC)  # PST, UTC-8
    # The month in which DST ends is an hour longer as elapsed time, and March an hour shorter.
    assert november.ends_at - november.starts_at == timedelta(days=30, hours=1)
    march = periods.month_in(date(2027, 3, 1), "America/Los_Angeles")
    assert march.ends_at - march.starts_at == timedelta(days=31, hours=-1)
    assert periods.month_in(date(2026, 12, 1), "Asia/Tokyo").ends_at == datetime(2026, 12, 31, 15, tzinfo=UTC)


def test_the_month_of_an_instant_and_the_last_month_that_can_close_are_local():
    # 02:00 UTC on Feb 1st is still January 31st in Los Angeles.
    instant = datetime(2027, 2, 1, 2, tzinfo=UTC)
    assert periods.month_of(instant, "America/Los_Angeles") == date(2027, 1, 1)
    assert periods.month_of(instant, "Europe/Paris") == date(2027, 2, 1)
    assert periods.last_closable_month(instant, "America/Los_Angeles") == date(2026, 12, 1)
    assert periods.last_closable_month(instant, "Europe/Paris") == date(2027, 1, 1)
    assert periods.previous_month(date(2027, 1, 1)) == date(2026, 12, 1)
    assert periods.next_month(date(2026, 12, 1)) == date(2027, 1, 1)
    assert periods.days_in(date(2028, 2, 1)) == 29


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-11", "november", "2026-11-01", ""])
def test_a_month_that_is_not_yyyy_mm_is_refused_saying_how_to_write_it(text):
    with pytest.raises(ValueError, match="YYYY-MM"):
        periods.parse_month(text)


def test_amounts_round_half_up_to_the_minor_unit_of_their_currency():
    assert rounded(Decimal("0.125"), "USD") == Decimal("0.13")
    assert rounded(Decimal("370.35"), "JPY") == Decimal("370")
    assert rounded(Decimal("1.0005"), "KWD") == Decimal("1.001")
    assert display(Decimal("-1234.5"), "USD") == "-$1,234.50"
    assert display(Decimal("370"), "JPY") == "¥370"
    assert display(Decimal("12"), "CHF") == "CHF12.00"  # CLDR's English
    # In the reader's language, with the same digits:
    assert display(Decimal("-1234.5"), "USD", "es") == "-1.234,50\xa0US$"
    assert display(Decimal("-1234.5"), "EUR", "fr") == "-1\u202f234,50\xa0€"
    assert display(Decimal("0.125"), "USD", "xx") == "$0.13"  # a language CLDR does not know: English


def test_energy_is_written_in_kwh_with_every_wh_in_the_readers_way():
    assert kwh_text(1_234_501) == "1,234.501" and kwh_text(7300) == "7.300" and kwh_text(0) == "0.000"
    assert kwh_text(1_234_501, "es") == "1.234,501"
    assert kwh_text(1_234_501, "fr") == "1\u202f234,501" and kwh_text(-5, "en") == "-0.005"
