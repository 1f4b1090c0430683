"""The pure energy arithmetic (no database)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from apps.charging.metering import (
    RegisterReading,
    charger_time_is_plausible,
    connector_max_power_w,
    normalize,
    reconstruct_energy,
)

T0 = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)


def at(minutes):
    return T0 + timedelta(minutes=minutes)


def test_clean_session_uses_the_registers():
    result = reconstruct_energy(meter_start=1000, meter_stop=8000, started_at=T0, stopped_at=at(60))
    assert (result.energy_wh, result.source, result.needs_review) == (7000, "register", False)


def test_energy_is_never_negative_nor_absurd():
    result = reconstruct_energy(meter_start=9000, meter_stop=-1, started_at=T0, stopped_at=at(60))
    assert result.energy_wh == 0 and result.needs_review
    jump = reconstruct_energy(meter_start=0, meter_stop=99_000_000, started_at=T0, stopped_at=at(10))
    assert jump.energy_wh == 0 and any("implausible" in r for r in jump.review_reasons)


def test_placeholder_zero_meter_start_is_ignored_when_samples_show_the_real_register():
    result = reconstruct_energy(
        meter_start=0, meter_stop=502_000, started_at=T0, stopped_at=at(60),
        readings=[RegisterReading(at(1), Decimal(500_000))],
    )
    assert result.energy_wh == 2000 and "meterStart 0 is a placeholder" in result.review_reasons


def test_kwh_samples_between_wh_registers():
    result = reconstruct_energy(
        meter_start=1_234_000, meter_stop=1_236_000, started_at=T0, stopped_at=at(60),
        readings=[RegisterReading(at(20), Decimal("1234.5")), RegisterReading(at(40), Decimal("1235.1"))],
    )
    assert result.energy_wh == 2000 and result.source == "mixed"
    assert "energy in kWh labelled as Wh" in result.review_reasons


def test_normalize_to_integer_base_units():
    assert normalize(Decimal("16.05"), "A") == 16050
    assert normalize(Decimal("7.4"), "kW") == 7400
    assert normalize(Decimal("1.2345"), "kWh") == 1234  # half-even
    assert normalize(Decimal("50"), "Celsius") is None


def test_power_limits_and_clock_sanity():
    assert connector_max_power_w(Decimal("16"), 3) == 11040
    assert connector_max_power_w(None, 1) == 22080
    assert charger_time_is_plausible(T0 - timedelta(days=3), T0)
    assert not charger_time_is_plausible(T0 + timedelta(hours=1), T0)
    assert not charger_time_is_plausible(datetime(1970, 1, 1, tzinfo=UTC), T0)
