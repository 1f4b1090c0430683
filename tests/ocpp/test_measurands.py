"""The metering the platform asks for after boot: a pure decision, no charger and no database."""

from __future__ import annotations

from apps.ocpp.measurands import (
    FALLBACK_MEASURANDS,
    WANTED_MEASURANDS,
    ConfigurationChange,
    configuration_after,
    metering_changes,
    sample_interval_s,
)

WANTED = ",".join(WANTED_MEASURANDS)
FALLBACK = ",".join(FALLBACK_MEASURANDS)


def test_a_charger_that_reports_nothing_is_asked_for_everything_with_a_fallback():
    assert metering_changes({}, sample_interval_s=15) == [
        ConfigurationChange("MeterValuesSampledData", (WANTED, FALLBACK)),
        ConfigurationChange("MeterValueSampleInterval", ("15",)),
    ]


def test_a_charger_already_set_up_is_left_alone_whatever_the_order_and_spaces():
    configuration = {
        "MeterValuesSampledData": {"value": "Power.Active.Import, Current.Import,Energy.Active.Import.Register,SoC",
                                   "readonly": False},
        "MeterValueSampleInterval": {"value": "15", "readonly": False},
    }
    assert metering_changes(configuration, sample_interval_s=15) == []


def test_only_what_differs_is_changed():
    configuration = {"MeterValuesSampledData": {"value": FALLBACK}, "MeterValueSampleInterval": {"value": "60"}}
    assert metering_changes(configuration, sample_interval_s=15) == [
        ConfigurationChange("MeterValuesSampledData", (WANTED, FALLBACK)),
        ConfigurationChange("MeterValueSampleInterval", ("15",)),
    ]
    assert metering_changes({"MeterValuesSampledData": {"value": WANTED}, "MeterValueSampleInterval": {"value": None}},
                            sample_interval_s=10) == [ConfigurationChange("MeterValueSampleInterval", ("10",))]


def test_the_accepted_values_are_kept_and_nothing_else_changes():
    configuration = {"MeterValuesSampledData": {"value": "Energy.Active.Import.Register", "readonly": False},
                     "HeartbeatInterval": {"value": "300", "readonly": True}}
    after = configuration_after(configuration, {"MeterValuesSampledData": FALLBACK, "MeterValueSampleInterval": "15"})
    assert after == {
        "MeterValuesSampledData": {"value": FALLBACK, "readonly": False},
        "HeartbeatInterval": {"value": "300", "readonly": True},
        "MeterValueSampleInterval": {"value": "15", "readonly": False},  # not reported before
    }
    assert configuration["MeterValuesSampledData"]["value"] == "Energy.Active.Import.Register"  # not modified
    assert configuration_after(configuration, {}) == configuration


def test_a_boot_reads_the_configuration_again_only_when_old_or_not_as_wanted():
    from datetime import UTC, datetime, timedelta

    from apps.ocpp.measurands import needs_reading

    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    good = {"MeterValuesSampledData": {"value": WANTED}, "MeterValueSampleInterval": {"value": "15"}}
    day = timedelta(hours=24)
    assert needs_reading(good, read_at=None, now=now, sample_interval_s=15, max_age=day)
    assert not needs_reading(good, read_at=now - timedelta(hours=23), now=now, sample_interval_s=15, max_age=day)
    assert needs_reading(good, read_at=now - timedelta(hours=25), now=now, sample_interval_s=15, max_age=day)
    # Read lately, but the interval wanted changed since (a new setting): read again.
    assert needs_reading(good, read_at=now - timedelta(minutes=5), now=now, sample_interval_s=30, max_age=day)


def test_the_sample_interval_is_read_as_reported_and_nothing_doubtful_is_taken_for_one():
    assert sample_interval_s({"MeterValueSampleInterval": {"value": "15"}}) == 15
    assert sample_interval_s({"MeterValueSampleInterval": {"value": " 60 "}}) == 60
    for value in ("0", "-5", "fifteen", "", None, "1.5"):
        assert sample_interval_s({"MeterValueSampleInterval": {"value": value}}) is None, value
    assert sample_interval_s({}) is None
