"""SetChargingProfile payloads (apps/ocpp/charging_profiles.py, pure): fields, units, rounding, the lease,
the profile ids that replace, and the fallbacks for chargers that refuse."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.ocpp.charging_profiles import (
    CHARGE_POINT_MAX,
    TX,
    TX_DEFAULT,
    Capabilities,
    ProfileRequest,
    Quirks,
    build,
    cabinet_cap_a,
    fallbacks,
    is_change,
    is_decrease,
    profile_id,
    safe_default_a,
)
from apps.simulator.profiles import Profile

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
BOTH = Capabilities(max_stack_level=8)


def tx(limit: str, **kwargs) -> ProfileRequest:
    args = {"transaction_id": 42, "lease_s": 120, "floor_a": Decimal(6), "elapsed_s": 300} | kwargs
    return ProfileRequest(TX, 1, Decimal(limit), **args)


def snake(payload: dict) -> dict:
    """The profile as the ocpp package hands it to a charger (snake_case), for the simulator's parser."""
    import re

    def convert(value):
        if isinstance(value, dict):
            return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    return convert(payload["csChargingProfiles"])


def test_capabilities_from_the_configuration():
    caps = Capabilities.from_configuration({
        "ChargeProfileMaxStackLevel": {"value": "5"}, "ChargingScheduleAllowedChargingRateUnit": {"value": "Current"},
        "ChargingScheduleMaxPeriods": {"value": "24"}, "MaxChargingProfilesInstalled": {"value": "10"}})
    assert caps == Capabilities(5, frozenset({"A"}), 24, 10)
    assert Capabilities.from_configuration({}) == Capabilities(0, frozenset({"A", "W"}), None, None)
    assert Capabilities.from_configuration({"ChargingScheduleAllowedChargingRateUnit": {"value": "Power"},
                                            "ChargeProfileMaxStackLevel": {"value": "x"}}).rate_units == {"W"}


def test_the_tx_profile_is_relative_with_the_lease_as_a_second_period():
    built = build(tx("16.37"), BOTH, Quirks(), now=NOW)
    assert built.payload == {"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": profile_id(TX, 1), "stackLevel": 8, "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative", "transactionId": 42,
        "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 16.3}, {"startPeriod": 420, "limit": 6}]}}}
    assert built.limit_a == Decimal("16.3") and built.floor_a == Decimal(6) and built.unit == "A"
    # No absolute time anywhere: a charger's wrong clock cannot make it ignore or outlive the profile.
    text = str(built.payload)
    assert "validFrom" not in text and "validTo" not in text and "startSchedule" not in text
    # The simulator, which follows OCPP 1.6, reads it and holds 16.3 A, then 6 A after the lease.
    profile = Profile.from_ocpp(snake(built.payload))
    start = datetime(2026, 11, 30, 11, 55, tzinfo=UTC)
    assert profile.period_at(NOW, start).limit == Decimal("16.3")
    assert profile.period_at(datetime(2026, 11, 30, 12, 2, tzinfo=UTC), start).limit == Decimal(6)


def test_no_lease_period_when_the_floor_is_not_lower():
    built = build(tx("6"), BOTH, Quirks(), now=NOW)
    assert len(built.payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]) == 1
    assert built.floor_a is None


def test_static_profiles_have_no_start_and_their_own_ids():
    cap = build(ProfileRequest(CHARGE_POINT_MAX, 0, Decimal("28.9"), phases=3), Capabilities(3), Quirks(), now=NOW)
    default = build(ProfileRequest(TX_DEFAULT, 2, Decimal(6)), Capabilities(3), Quirks(), now=NOW)
    for built, purpose, connector in ((cap, CHARGE_POINT_MAX, 0), (default, TX_DEFAULT, 2)):
        profile = built.payload["csChargingProfiles"]
        assert built.payload["connectorId"] == connector
        assert profile["chargingProfilePurpose"] == purpose and profile["chargingProfileKind"] == "Absolute"
        assert profile["stackLevel"] == 3 and "startSchedule" not in profile["chargingSchedule"]
        assert profile["chargingProfileId"] == profile_id(purpose, connector)
    ids = {profile_id(p, n) for p in (CHARGE_POINT_MAX, TX_DEFAULT, TX) for n in range(0, 1000)}
    assert len(ids) == 3000  # never two purposes or connectors on one id: each new profile replaces its own


def test_units_follow_the_charger_and_round_down():
    power_only = Capabilities(0, frozenset({"W"}))
    built = build(tx("16.37", floor_a=Decimal("6.09")), power_only, Quirks(), now=NOW)
    periods = built.payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]
    assert built.unit == "W" and [p["limit"] for p in periods] == [3749, 1380]  # 16.3 A x 230 V, 6.0 A x 230 V
    three = build(ProfileRequest(TX_DEFAULT, 1, Decimal("10.05"), phases=3), power_only, Quirks(), now=NOW)
    assert three.payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 6900
    integer = build(tx("16.9"), BOTH, Quirks(integer_amps=True), now=NOW)
    assert integer.limit_a == 16 and integer.payload["csChargingProfiles"]["chargingSchedule"][
        "chargingSchedulePeriod"][0]["limit"] == 16
    # DC: power first when the charger takes it.
    dc = build(ProfileRequest(TX_DEFAULT, 1, Decimal(20), phases=3, dc=True), BOTH, Quirks(), now=NOW)
    assert dc.unit == "W"


def test_request_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="TxProfile goes on a connector"):
        ProfileRequest(TX, 0, Decimal(6))
    with pytest.raises(ValueError, match="negative"):
        ProfileRequest(TX_DEFAULT, 1, Decimal(-1))
    with pytest.raises(ValueError, match="ChargePointMaxProfile goes on connector 0"):
        ProfileRequest(CHARGE_POINT_MAX, 1, Decimal(6))


@pytest.mark.parametrize(("request_", "caps", "single"), [
    (tx("16.5"), BOTH, "integer_amps"),
    (tx("16", floor_a=Decimal("6.5")), BOTH, "integer_amps"),
    (tx("16"), Capabilities(0, frozenset({"W"})), "watts_rejected"),
    (tx("16"), BOTH, "amps_rejected"),
    (tx("16"), BOTH, "absolute_only"),
    (tx("16"), BOTH, "stack_level_zero"),
    (tx("16"), BOTH, "single_period"),
    (tx("0"), BOTH, "zero_rejected"),
    (tx("16"), BOTH, "tx_profile_rejected"),
])
def test_each_fallback_is_tried_alone_before_all_together(request_, caps, single):
    steps = fallbacks(request_, caps, Quirks())
    assert Quirks(**{single: True}) in steps[:-1]
    assert all(len(step.to_json()) == 1 for step in steps[:-1])
    assert len(steps[-1].to_json()) == len(steps) - 1


def test_the_fallbacks_change_what_they_say():
    assert build(tx("0"), BOTH, Quirks(zero_rejected=True), now=NOW).limit_a == Decimal(6)
    default = build(tx("10"), BOTH, Quirks(tx_profile_rejected=True), now=NOW).payload
    assert default["csChargingProfiles"]["chargingProfilePurpose"] == "TxDefaultProfile"
    assert default["csChargingProfiles"]["chargingProfileId"] == profile_id(TX_DEFAULT, 1)
    assert "transactionId" not in default["csChargingProfiles"]
    absolute = build(tx("10"), BOTH, Quirks(absolute_only=True), now=NOW).payload["csChargingProfiles"]
    assert absolute["chargingProfileKind"] == "Absolute"
    assert absolute["chargingSchedule"]["startSchedule"] == "2026-11-30T12:00:00Z"
    assert absolute["chargingSchedule"]["chargingSchedulePeriod"][1]["startPeriod"] == 120
    single = build(tx("10"), BOTH, Quirks(single_period=True), now=NOW).payload["csChargingProfiles"]
    assert single["chargingSchedule"]["duration"] == 420
    assert len(single["chargingSchedule"]["chargingSchedulePeriod"]) == 1
    assert build(tx("10"), BOTH, Quirks(stack_level_zero=True), now=NOW).payload[
        "csChargingProfiles"]["stackLevel"] == 0
    assert build(tx("10"), BOTH, Quirks(watts_rejected=True, amps_rejected=True), now=NOW).unit == "A"
    # Nothing left to try once every fallback that applies is taken.
    everything = Quirks(integer_amps=True, absolute_only=True, stack_level_zero=True, single_period=True,
                        tx_profile_rejected=True, amps_rejected=True)
    assert fallbacks(tx("10"), Capabilities(0, frozenset({"A"})), everything) == []


def test_quirks_round_trip_through_json():
    quirks = Quirks(integer_amps=True, zero_rejected=True)
    assert quirks.to_json() == {"integer_amps": True, "zero_rejected": True}
    assert Quirks.from_json(quirks.to_json()) == quirks
    assert Quirks.from_json({"unknown_flag": True, "integer_amps": 1}) == Quirks(integer_amps=True)
    assert Quirks.from_json(None) == Quirks()


def test_changes_decreases_and_the_static_limits():
    assert not is_change(Decimal("16.5"), Decimal("16")) and not is_change(Decimal(16), Decimal(16))
    # A decrease is always sent, however small: skipping 20.4 -> 20.3 A kept a 20 kW cabinet at 20,010 W.
    assert is_change(Decimal("20.3"), Decimal("20.4"))
    assert is_change(Decimal(17), Decimal(16)) and is_change(Decimal(6), None)
    assert is_change(Decimal(0), Decimal("0.5")) and is_change(Decimal("0.5"), Decimal(0))
    assert is_decrease(Decimal(6), None) and is_decrease(Decimal(6), Decimal(7)) and not is_decrease(Decimal(8),
                                                                                                      Decimal(7))
    # A 20 kW cabinet on 3 x 230 V, behind a 32 A breaker: 28.9 A.
    assert cabinet_cap_a(max_current_a=Decimal(32), max_power_w=20000, voltage_v=230, phases=3) == Decimal("28.9")
    assert cabinet_cap_a(max_current_a=Decimal(25), max_power_w=None, voltage_v=230, phases=3) == Decimal(25)
    # Four guns on 28.9 A: each may start at its 6 A minimum; twelve: each gets its share, 2.4 A.
    assert safe_default_a(circuit_cap_a=Decimal("28.9"), connectors_on_circuit=4, min_current_a=Decimal(6),
                          max_current_a=Decimal(32)) == Decimal(6)
    assert safe_default_a(circuit_cap_a=Decimal("28.9"), connectors_on_circuit=12, min_current_a=Decimal(6),
                          max_current_a=Decimal(32)) == Decimal("2.4")
