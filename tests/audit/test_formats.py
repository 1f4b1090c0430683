"""How the audit files write values: exact amounts, UTC times, a manifest sha256sum reads. No database."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.audit import formats


def test_amounts_are_plain_with_the_currencys_decimals_and_never_rounded():
    assert formats.plain(Decimal("3.950"), "USD") == "3.95"
    assert formats.plain(Decimal("-0.600"), "USD") == "-0.60"
    assert formats.plain(Decimal("370.000"), "JPY") == "370"
    assert formats.plain(Decimal("0.125"), "USD") == "0.125"  # more than cents is kept, not rounded away
    assert formats.plain(Decimal("1E+3"), "USD") == "1000.00"  # never an exponent
    assert formats.plain(None, "USD") == ""


@given(st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=3, allow_nan=False,
                   allow_infinity=False), st.sampled_from(["USD", "EUR", "JPY", "KWD"]))
def test_a_written_amount_reads_back_as_the_same_number(amount, currency):
    text = formats.plain(amount, currency)
    assert Decimal(text) == amount and "E" not in text and "," not in text


def test_times_are_utc_with_a_z_and_a_naive_time_is_refused():
    assert formats.utc(datetime(2026, 2, 3, 12, tzinfo=ZoneInfo("America/Los_Angeles"))) == "2026-02-03T20:00:00Z"
    assert formats.utc(None) == ""
    with pytest.raises(ValueError, match="no time zone"):
        formats.utc(datetime(2026, 2, 3, 12))


def test_the_manifest_is_what_sha256sum_writes():
    text = formats.manifest_text({"b.csv": "2" * 64, "a.csv": "1" * 64})
    assert text == f"{'1' * 64}  a.csv\n{'2' * 64}  b.csv\n"
    with pytest.raises(ValueError, match="cannot be written"):
        formats.manifest_text({"x\ny": "0" * 64})


def test_card_ids_masked_on_request_and_formulas_defused():
    assert formats.id_tag("04A1B2C3D4", masked=True) == "****C3D4"
    assert formats.id_tag("04A1B2C3D4", masked=False) == "04A1B2C3D4"
    assert formats.cell("=HYPERLINK(1)") == "'=HYPERLINK(1)" and formats.cell("S-000001") == "S-000001"
