"""The pure parsing and checking of site-meter readings: every problem named with its place."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.electrical import readings
from apps.electrical.readings import BodyRefused, Limits, Supply, check_body

NOW = datetime(2026, 11, 30, 1, 15, tzinfo=UTC)
THREE = Supply(phases=3, voltage_v=230, max_current_a=(Decimal(200), Decimal(200), Decimal(160)))
SINGLE = Supply(phases=1, voltage_v=230, max_current_a=(Decimal(100), Decimal(100), Decimal(100)))


def body(data) -> bytes:
    return json.dumps(data).encode()


def problems(raw: bytes, supply: Supply = THREE) -> list[str]:
    with pytest.raises(BodyRefused) as refused:
        check_body(raw, supply, now=NOW)
    return [f"{p.where()}: {p.message}" for p in refused.value.problems]


def test_one_reading_in_amperes():
    checked = check_body(body({"timestamp": "2026-11-30T01:14:59Z", "current_a": [41.2, 38, 44.95]}), THREE, now=NOW)
    assert checked.single and not checked.refused
    (reading,) = checked.readings
    assert reading.sampled_at == datetime(2026, 11, 30, 1, 14, 59, tzinfo=UTC)
    # One decimal, rounded up: the load is never under-stated.
    assert reading.currents_a == (Decimal("41.2"), Decimal("38.0"), Decimal("45.0"))
    assert reading.powers_w is None


def test_power_is_converted_with_the_supply_voltage_exactly_and_kept():
    checked = check_body(body({"timestamp": "2026-11-30T02:15:00+01:00", "power_w": [9476, 8740, 230]}), THREE,
                         now=NOW)
    (reading,) = checked.readings
    assert reading.sampled_at == datetime(2026, 11, 30, 1, 15, tzinfo=UTC)
    # 9476 / 230 = 41.2 exactly; 8740 / 230 = 38.0; 230 / 230 = 1.0
    assert reading.currents_a == (Decimal("41.2"), Decimal("38.0"), Decimal("1.0"))
    assert reading.powers_w == (9476, 8740, 230)
    (odd,) = check_body(body({"timestamp": "2026-11-30T01:15:00Z", "power_w": [1000, 0, 0]}), THREE,
                        now=NOW).readings
    assert odd.currents_a[0] == Decimal("4.4")  # 4.3478... rounded up


def test_a_batch_in_time_order_with_each_timestamp_once():
    raw = body({"readings": [
        {"timestamp": "2026-11-30T01:14:30Z", "current_a": [2, 2, 2]},
        {"timestamp": "2026-11-30T01:14:00Z", "current_a": [1, 1, 1]},
        {"timestamp": "2026-11-30T01:14:30.000Z", "current_a": [9, 9, 9]},
    ]})
    checked = check_body(raw, THREE, now=NOW)
    assert not checked.single
    assert [r.currents_a[0] for r in checked.readings] == [Decimal(1), Decimal(2)]
    assert checked.duplicates == 1


def test_a_single_phase_supply_sends_one_value():
    (reading,) = check_body(body({"timestamp": "2026-11-30T01:15:00Z", "current_a": [12.3]}), SINGLE,
                            now=NOW).readings
    assert reading.currents_a == (Decimal("12.3"),)
    assert problems(body({"timestamp": "2026-11-30T01:15:00Z", "current_a": [1, 2, 3]}), SINGLE) == [
        "current_a: must be a list of one value (a single-phase supply)"]


@pytest.mark.parametrize(("raw", "expected"), [
    (b"not json", "(top level): the body is not JSON"),
    (b"\xff\xfe", "(top level): the body is not UTF-8 text"),
    (b"[1, 2]", "(top level): must be an object"),
    (body({"readings": "x"}), "readings: must be a list of readings"),
    (body({"readings": []}), "readings: is empty"),
    (body({"readings": [{"timestamp": "2026-11-30T01:15:00Z", "current_a": [1, 1, 1]}] * 101}),
     "readings: has 101 readings; the limit is 100"),
    (body({"readings": [], "extra": 1}), "extra: unknown field"),
    (body({"current_a": [1, 1, 1]}), "timestamp: is missing"),
    (body({"timestamp": "2026-11-30 01:15:00", "current_a": [1, 1, 1]}), "timestamp: must be an RFC 3339 time"),
    (body({"timestamp": "yesterday", "current_a": [1, 1, 1]}), "timestamp: must be an RFC 3339 time"),
    (body({"timestamp": 1700000000, "current_a": [1, 1, 1]}), "timestamp: must be an RFC 3339 time"),
    (body({"timestamp": "2026-11-30T01:15:00Z"}), "(top level): has neither current_a nor power_w"),
    (body({"timestamp": "2026-11-30T01:15:00Z", "current_a": [1, 1, 1], "power_w": [1, 1, 1]}),
     "(top level): give current_a or power_w"),
    (body({"timestamp": "2026-11-30T01:15:00Z", "current_a": [1, 1]}),
     "current_a: must be a list of three values (L1, L2, L3)"),
    (body({"timestamp": "2026-11-30T01:15:00Z", "current_a": 5}), "current_a: must be a list of three values"),
    (body({"timestamp": "2026-11-30T01:15:00Z", "current_a": [1, "2", 3]}), "current_a[1]: must be a number"),
    (body({"timestamp": "2026-11-30T01:15:00Z", "current_a": [1, True, 3]}), "current_a[1]: must be a number"),
    (body({"timestamp": "2026-11-30T01:15:00Z", "current_a": [1, None, 3]}), "current_a[1]: must be a number"),
    (b'{"timestamp": "2026-11-30T01:15:00Z", "current_a": [1, NaN, 3]}', "(top level): the body is not JSON (NaN is not a number)"),
    (body({"timestamp": "2026-11-30T01:15:00Z", "current_a": [1, 1, 1], "volts": 230}), "volts: unknown field"),
    (body({"readings": [{"timestamp": "2026-11-30T01:15:00Z", "current_a": [1, 1, 1]}] * 3
                       + [{"timestamp": "2026-11-30T01:15:00Z", "current_a": [1, "x", 1]}]}),
     "readings[3].current_a[1]: must be a number"),
    (body({"readings": [7]}), "readings[0]: must be an object"),
])
def test_every_bad_body_names_what_and_where(raw, expected):
    found = problems(raw)
    assert any(p.startswith(expected) for p in found), found


def test_every_problem_of_a_body_is_listed_at_once():
    raw = body({"readings": [
        {"timestamp": "bad", "current_a": [1, 1, 1]},
        {"timestamp": "2026-11-30T01:15:00Z", "power_w": [1, 1, "x"]},
    ]})
    assert problems(raw) == [
        "readings[0].timestamp: must be an RFC 3339 time with its offset, e.g. 2026-11-30T01:15:00Z",
        "readings[1].power_w[2]: must be a number",
    ]


def test_future_too_old_and_implausible_readings_are_refused_alone_with_their_place():
    raw = body({"readings": [
        {"timestamp": "2026-11-30T01:15:09Z", "current_a": [1, 1, 1]},  # 9 s ahead: within tolerance
        {"timestamp": "2026-11-30T01:15:11Z", "current_a": [1, 1, 1]},  # 11 s ahead
        {"timestamp": "2026-11-10T01:15:00Z", "current_a": [1, 1, 1]},  # 20 days old
        {"timestamp": "2026-11-30T01:14:00Z", "current_a": [999, 0, 0]},  # a spike on a 200 A supply
        {"timestamp": "2026-11-30T01:14:01Z", "current_a": [0, -0.5, 0]},
        {"timestamp": "2026-11-30T01:14:02Z", "current_a": [400, 0, 320]},  # 2 x the rating: the edge, kept
        {"timestamp": "2026-11-30T01:14:03Z", "current_a": [0, 0, 320.1]},  # L3 is rated 160 A
        {"timestamp": "2026-11-30T01:14:04Z", "power_w": [92001, 0, 0]},  # 400.004 A at 230 V
    ]})
    checked = check_body(raw, THREE, now=NOW, limits=Limits(future_tolerance=timedelta(seconds=10)))
    assert [r.sampled_at.second for r in checked.readings] == [2, 9]
    refused = [(r.where(), r.reason) for r in checked.refused]
    assert refused == [
        ("readings[1].timestamp", readings.FUTURE),
        ("readings[2].timestamp", readings.TOO_OLD),
        ("readings[3].current_a[0]", readings.IMPLAUSIBLE),
        ("readings[4].current_a[1]", readings.IMPLAUSIBLE),
        ("readings[6].current_a[2]", readings.IMPLAUSIBLE),
        ("readings[7].power_w[0]", readings.IMPLAUSIBLE),
    ]
    messages = {r.where(): r.message for r in checked.refused}
    assert messages["readings[3].current_a[0]"] == (
        "must be a number between 0 and 400.0 A (2 x the supply's 200 A); got 999")
    assert messages["readings[6].current_a[2]"].startswith("must be a number between 0 and 320.0 A")
    assert messages["readings[7].power_w[0]"].startswith("must be a number between 0 and 92000 W")
    assert messages["readings[1].timestamp"].startswith("is 11 s in the future")


def test_decimal_fractions_of_seconds_and_offsets():
    assert readings.parse_timestamp("2026-11-30T01:15:00.123456789+02:00") == datetime(
        2026, 11, 29, 23, 15, 0, 123456, tzinfo=UTC)
    assert readings.parse_timestamp("2026-11-30t01:15:00z") == datetime(2026, 11, 30, 1, 15, tzinfo=UTC)
    assert readings.parse_timestamp("2026-02-30T01:15:00Z") is None
    assert readings.parse_timestamp("2026-11-30T01:15:00") is None


def test_a_body_above_64_kib_is_refused_before_parsing():
    raw = b'{"readings": [' + b" " * (64 * 1024) + b"]}"
    assert problems(raw) == ["(top level): the body is 65,552 bytes; the limit is 65,536"]
