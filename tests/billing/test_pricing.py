"""The pricing engine (pure, no database): every worked example of the billing spec, DST, windows that
cross midnight, the tariff as written, and invariants checked with hypothesis."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.billing.pricing import (
    HELD,
    PRICED,
    Kind,
    PriceComponent,
    Reading,
    Restrictions,
    SessionInput,
    TariffElement,
    TariffInvalid,
    TariffVersion,
    lines_document,
    monthly_fee_line,
    parse_tariff,
    price_session,
    prorate_monthly_fee,
    quote,
    split_amount,
    split_evenly,
    statement_month,
    tariff_document,
)
from apps.payments.money import to_minor_units

LA = ZoneInfo("America/Los_Angeles")
D = Decimal

# The spec's tariffs, as a building writes them (docs/tariffs.md).
T_RES = {
    "elements": [
        {"label": "night", "restrictions": {"start_time": "22:00", "end_time": "07:00"},
         "price_components": [{"type": "ENERGY", "price": "0.18"}]},
        {"label": "day", "price_components": [{"type": "ENERGY", "price": "0.32"}]},
        {"label": "idle", "price_components": [
            {"type": "PARKING_TIME", "price": "0.10", "grace_minutes": 30, "cap": "20.00"}]},
    ],
}
T_VIS = {
    "elements": [
        {"label": "visitors, longer than 10 minutes", "restrictions": {"min_duration": 601},
         "price_components": [{"type": "TIME", "price": "2.40", "step_size": 900}]},
    ],
}


def la(y, mo, d, h=0, mi=0):
    return datetime(y, mo, d, h, mi, tzinfo=LA)


def res(currency="USD"):
    return parse_tariff(T_RES, currency=currency, name="T-RES")


def session(start, stop, meter_start, meter_stop, **kw):
    return SessionInput(started_at=start, stopped_at=stop, meter_start_wh=meter_start, meter_stop_wh=meter_stop, **kw)


def priced(tariff, s, **kw):
    result = price_session(tariff, s, tz=LA, **kw)
    assert result.total == sum((line.total for line in result.lines), D(0))
    return result


# --- the worked examples of the spec, one test each -------------------------------------------------


def test_day_session_12_345_kwh_costs_3_95():
    result = priced(res(), session(la(2026, 3, 10, 9), la(2026, 3, 10, 12), 1_000_000, 1_012_345))
    assert result.status == PRICED and result.energy_wh == 12_345
    assert [(line.kind, line.quantity, line.unit_price, line.amount) for line in result.lines] == [
        (Kind.ENERGY, D("12.345"), D("0.32"), D("3.95"))]
    assert result.total == D("3.95")
    assert not result.lines[0].interpolated


def test_session_across_the_night_boundary_without_readings_is_split_linearly_and_says_so():
    result = priced(res(), session(la(2026, 3, 10, 21), la(2026, 3, 10, 23), 0, 10_000))
    assert [(line.window, line.quantity, line.amount, line.interpolated) for line in result.lines] == [
        ("day", D("5"), D("1.60"), True), ("night", D("5"), D("0.90"), True)]
    assert result.total == D("2.50")
    assert "interpolated" in result.lines[0].explain()


def test_session_over_midnight_at_month_end_is_night_rate_and_on_the_february_statement():
    start, stop = la(2026, 1, 31, 23), la(2026, 2, 1, 5)
    result = priced(res(), session(start, stop, 50_000, 62_000))
    assert [(line.window, line.quantity) for line in result.lines] == [("night", D("12"))]
    assert result.total == D("2.16")
    assert statement_month(stop.astimezone(UTC), LA) == (2026, 2)
    assert statement_month(start, LA) == (2026, 1)


def test_missing_meter_stop_uses_the_last_reading():
    start = la(2026, 3, 10, 10)
    result = priced(res(), session(start, start + timedelta(hours=2), 200_000, None,
                                   readings=(Reading(start + timedelta(minutes=90), 206_500),)))
    assert result.energy_wh == 6500 and result.energy_source == "last meter value"
    assert result.total == D("2.08")


def test_implausible_energy_is_held_for_review_and_not_billed():
    start = la(2026, 3, 10, 10)
    result = priced(res(), session(start, start + timedelta(hours=2), 0, 910_031, max_power_w=7400))
    assert result.status == HELD and result.total == D("0.00") and result.lines == ()
    assert "implausible energy" in result.hold_reason and not result.billable
    # Within 5 % of what the connector could deliver: billed.
    fine = priced(res(), session(start, start + timedelta(hours=2), 0, 15_540, max_power_w=7400))
    assert fine.status == PRICED and fine.billable


def test_three_lines_of_half_a_kwh_at_0_25_are_rounded_each_and_added():
    windows = [("08:00", "09:00"), ("09:00", "10:00"), ("10:00", "11:00")]
    tariff = TariffVersion("USD", tuple(
        TariffElement((PriceComponent(Kind.ENERGY, D("0.25")),), Restrictions(time.fromisoformat(a), time.fromisoformat(b)),
                      label=f"{a}-{b}") for a, b in windows))
    start = la(2026, 3, 10, 8)
    readings = tuple(Reading(start + timedelta(hours=h), 500 * h) for h in (1, 2))
    result = priced(tariff, session(start, start + timedelta(hours=3), 0, 1500, readings=readings))
    assert [line.amount for line in result.lines] == [D("0.13")] * 3
    assert result.total == D("0.39")
    assert not any(line.interpolated for line in result.lines)  # every boundary has a reading


def test_jpy_has_no_minor_unit():
    tariff = parse_tariff({"elements": [{"price_components": [{"type": "ENERGY", "price": 30}]}]}, currency="JPY")
    result = priced(tariff, session(la(2026, 3, 10, 9), la(2026, 3, 10, 12), 0, 12_345))
    assert result.total == D("370") and str(result.total) == "370"
    assert to_minor_units(result.total, "JPY") == 370
    assert to_minor_units(D("3.95"), "USD") == 395


def test_zero_energy_costs_nothing_not_even_the_session_fee():
    tariff = parse_tariff({"elements": [{"price_components": [
        {"type": "FLAT", "price": "0.50"}, {"type": "ENERGY", "price": "0.32"},
        {"type": "PARKING_TIME", "price": "0.10"}]}]}, currency="USD")
    start = la(2026, 3, 10, 9)
    result = priced(tariff, session(start, start + timedelta(minutes=10), 1000, 1000,
                                    unplugged_at=start + timedelta(hours=3)))
    assert result.status == PRICED and result.total == D("0.00") and result.lines == ()
    assert not result.billable  # nothing is sent to the payment processor
    with_energy = priced(tariff, session(start, start + timedelta(minutes=10), 1000, 1100))
    assert [line.kind for line in with_energy.lines] == [Kind.ENERGY, Kind.FLAT]
    assert with_energy.total == D("0.53")  # 0.032 -> 0.03, + 0.50


@pytest.mark.parametrize(("minutes", "expected"), [(8, "0.00"), (10, "0.00"), (11, "0.60"), (61, "3.00")])
def test_visitors_pay_by_the_quarter_hour_and_short_sessions_are_free(minutes, expected):
    tariff = parse_tariff(T_VIS, currency="USD")
    start = la(2026, 3, 10, 14)
    result = priced(tariff, session(start, start + timedelta(minutes=minutes), 0, 100 * minutes))
    assert result.total == D(expected)


def test_idle_after_charging_completes_is_charged_per_minute_after_the_grace():
    start = la(2026, 3, 11, 0)
    result = priced(res(), session(start, la(2026, 3, 11, 2, 15), 0, 7_000,
                                   readings=(Reading(la(2026, 3, 11, 1), 7_000),),
                                   charging_complete_at=la(2026, 3, 11, 1)))
    idle = [line for line in result.lines if line.kind == Kind.PARKING_TIME]
    assert [(line.quantity, line.unit, line.amount) for line in idle] == [(D("45"), "min", D("4.50"))]
    assert result.total == D("1.26") + D("4.50")  # 7 kWh at night


# --- idle fee: cap, window -------------------------------------------------------------------------


def test_idle_fee_is_capped_per_session():
    start = la(2026, 3, 11, 0)
    result = priced(res(), session(start, la(2026, 3, 12, 0), 0, 7_000, charging_complete_at=la(2026, 3, 11, 1)))
    idle = [line for line in result.lines if line.kind == Kind.PARKING_TIME]
    assert sum(line.amount for line in idle) == D("20.00")
    assert "capped" in idle[-1].note


def test_idle_fee_only_inside_its_hours_window():
    tariff = parse_tariff({"elements": [
        {"price_components": [{"type": "ENERGY", "price": "0.30"}]},
        {"restrictions": {"start_time": "08:00", "end_time": "20:00"},
         "price_components": [{"type": "PARKING_TIME", "price": "0.10"}]},
    ]}, currency="USD")
    # Charged 18:00-19:00, then plugged in until 21:00: idle 19:00-21:00, of which 60 minutes before 20:00.
    result = priced(tariff, session(la(2026, 3, 11, 18), la(2026, 3, 11, 21), 0, 5000,
                                    charging_complete_at=la(2026, 3, 11, 19)))
    idle = [line for line in result.lines if line.kind == Kind.PARKING_TIME]
    assert [(line.quantity, line.amount) for line in idle] == [(D("60"), D("6.00"))]


# --- DST and windows crossing midnight ------------------------------------------------------------


def hourly_tariff():
    return parse_tariff({"elements": [
        {"label": "night", "restrictions": {"start_time": "22:00", "end_time": "07:00"},
         "price_components": [{"type": "TIME", "price": "1.00"}]},
        {"label": "day", "price_components": [{"type": "TIME", "price": "2.00"}]},
    ]}, currency="USD")


def test_spring_forward_night_has_one_real_hour_less():
    # 2026-03-08 02:00 PST -> 03:00 PDT. 22:00 -> 07:00 local is 8 real hours, all at night.
    result = priced(hourly_tariff(), session(la(2026, 3, 7, 22), la(2026, 3, 8, 7), 0, 8000))
    assert [(line.window, line.quantity) for line in result.lines] == [("night", D("8"))]
    assert result.total == D("8.00")


def test_fall_back_night_has_one_real_hour_more():
    # 2026-11-01 02:00 PDT -> 01:00 PST: 22:00 -> 07:00 local is 10 real hours.
    result = priced(hourly_tariff(), session(la(2026, 10, 31, 22), la(2026, 11, 1, 7), 0, 9000))
    assert [(line.window, line.quantity) for line in result.lines] == [("night", D("10"))]


def test_fall_back_day_boundary_after_the_repeated_hour():
    # 00:00 -> 09:00 local on the fall-back day: 10 real hours; 07:00-09:00 is day.
    result = priced(hourly_tariff(), session(la(2026, 11, 1, 0), la(2026, 11, 1, 9), 0, 9000))
    assert [(line.window, line.quantity) for line in result.lines] == [("night", D("8")), ("day", D("2"))]


def test_window_crossing_midnight_prices_both_sides_and_the_day_between():
    # Two nights and the day between: three lines, energy split at 07:00 and 22:00.
    readings = (Reading(la(2026, 3, 11, 7), 9000), Reading(la(2026, 3, 11, 22), 24_000))
    result = priced(res(), session(la(2026, 3, 10, 22), la(2026, 3, 12, 7), 0, 33_000, readings=readings))
    assert [(line.window, line.quantity) for line in result.lines] == [
        ("night", D("9")), ("day", D("15")), ("night", D("9"))]
    assert not any(line.interpolated for line in result.lines)
    assert result.total == D("1.62") + D("4.80") + D("1.62")


def test_days_of_week_and_dates_use_local_dates():
    tariff = parse_tariff({"elements": [
        {"label": "weekend", "restrictions": {"day_of_week": ["SATURDAY", "SUNDAY"]},
         "price_components": [{"type": "ENERGY", "price": "0.10"}]},
        {"label": "holiday", "restrictions": {"start_date": "2026-07-04", "end_date": "2026-07-05"},
         "price_components": [{"type": "ENERGY", "price": "0.05"}]},
        {"label": "weekday", "price_components": [{"type": "ENERGY", "price": "0.40"}]},
    ]}, currency="USD")
    # Friday 23:00 local -> Saturday 01:00 local (in UTC both are Saturday).
    result = priced(tariff, session(la(2026, 3, 13, 23), la(2026, 3, 14, 1), 0, 2000))
    assert [(line.window, line.quantity) for line in result.lines] == [("weekday", D("1")), ("weekend", D("1"))]
    holiday = priced(tariff, session(la(2026, 7, 4, 12), la(2026, 7, 4, 13), 0, 1000))  # a Saturday: first wins
    assert holiday.lines[0].window == "weekend"
    friday_holiday = priced(tariff, session(la(2027, 7, 4, 9), la(2027, 7, 4, 10), 0, 1000))  # a Sunday again
    assert friday_holiday.lines[0].window == "weekend"


def test_energy_restrictions_apply_to_the_whole_session():
    tariff = parse_tariff({"elements": [
        {"label": "big sessions", "restrictions": {"min_kwh": 20},
         "price_components": [{"type": "ENERGY", "price": "0.20"}]},
        {"label": "standard", "price_components": [{"type": "ENERGY", "price": "0.30"}]},
    ]}, currency="USD")
    small = priced(tariff, session(la(2026, 3, 10, 9), la(2026, 3, 10, 12), 0, 19_999))
    big = priced(tariff, session(la(2026, 3, 10, 9), la(2026, 3, 10, 12), 0, 20_000))
    assert small.lines[0].window == "standard" and big.lines[0].window == "big sessions"


def test_held_for_review_reasons_bill_nothing():
    result = priced(res(), session(la(2026, 3, 10, 9), la(2026, 3, 10, 12), 0, 5000,
                                   review_reasons=("implausible jump of 99000000 Wh ignored",)))
    assert result.status == HELD and result.total == D("0.00") and "implausible jump" in result.hold_reason


def test_register_reset_mid_session_counts_what_the_meter_counted_after_it():
    start = la(2026, 3, 10, 9)
    readings = (Reading(start + timedelta(hours=1), 103_000), Reading(start + timedelta(hours=2), 1_000))
    result = priced(res(), session(start, start + timedelta(hours=3), 100_000, 4_000, readings=readings))
    assert result.energy_wh == 3000 + 1000 + 3000


def test_energy_step_size_rounds_the_session_total_up():
    tariff = parse_tariff({"elements": [{"price_components": [
        {"type": "ENERGY", "price": "0.30", "step_size": 1000}]}]}, currency="USD")
    result = priced(tariff, session(la(2026, 3, 10, 9), la(2026, 3, 10, 10), 0, 4001))
    assert result.lines[0].quantity == D("5") and result.total == D("1.50")


def test_taxes_exclusive_and_inclusive():
    tariff = parse_tariff({"elements": [{"price_components": [
        {"type": "ENERGY", "price": "0.30", "tax_rate": "0.08"}]}]}, currency="USD")
    s = session(la(2026, 3, 10, 9), la(2026, 3, 10, 10), 0, 10_000)
    exclusive = priced(tariff, s)
    assert (exclusive.subtotal, exclusive.tax, exclusive.total) == (D("3.00"), D("0.24"), D("3.24"))
    inclusive = priced(tariff, s, prices_include_tax=True)
    assert (inclusive.subtotal, inclusive.tax, inclusive.total) == (D("2.78"), D("0.22"), D("3.00"))


def test_lines_are_stored_with_their_explanations():
    result = priced(res(), session(la(2026, 3, 10, 21), la(2026, 3, 10, 23), 0, 10_000))
    stored = lines_document(result)
    assert stored[1]["window"] == "night" and stored[1]["amount"] == "0.90" and stored[1]["interpolated"] is True
    assert stored[1]["start"] == "2026-03-10T22:00:00-07:00"


# --- quotes ---------------------------------------------------------------------------------------


def test_quote_before_plugging_in():
    result = quote(res(), start=la(2026, 3, 10, 21), duration=timedelta(hours=2), energy_wh=10_000, tz=LA)
    assert result.total == D("2.50")
    with_idle = quote(res(), start=la(2026, 3, 10, 21), duration=timedelta(hours=2), energy_wh=10_000, tz=LA,
                      idle=timedelta(minutes=75))
    assert with_idle.total == D("2.50") + D("4.50")
    visitor = quote(parse_tariff(T_VIS, currency="USD"), start=la(2026, 3, 10, 14),
                    duration=timedelta(minutes=61), energy_wh=5000, tz=LA)
    assert visitor.total == D("3.00")


# --- proration and splits ---------------------------------------------------------------------------


def test_monthly_fee_prorated_by_days_of_access():
    assert prorate_monthly_fee(D("15.00"), days_of_access=10, year=2026, month=2, currency="USD") == D("5.36")
    assert prorate_monthly_fee(D("15.00"), days_of_access=31, year=2026, month=3, currency="USD") == D("15.00")
    assert prorate_monthly_fee(D("15.00"), days_of_access=0, year=2026, month=3, currency="USD") == D("0.00")
    with pytest.raises(ValueError, match="30 days"):
        prorate_monthly_fee(D("15.00"), days_of_access=31, year=2026, month=4, currency="USD")


def test_split_a_fixed_amount_cent_by_cent():
    assert split_evenly(D("100.00"), 3, "USD") == [D("33.34"), D("33.33"), D("33.33")]
    assert split_evenly(D("0.02"), 3, "USD") == [D("0.01"), D("0.01"), D("0.00")]
    assert split_amount(D("100.00"), [1, 2], "USD") == [D("33.33"), D("66.67")]
    assert split_evenly(D("100"), 3, "JPY") == [D("34"), D("33"), D("33")]


@given(st.integers(min_value=0, max_value=10**9), st.lists(st.integers(min_value=0, max_value=10**6), min_size=1,
                                                          max_size=20).filter(any))
def test_splits_always_add_up_exactly(cents, weights):
    amount = D(cents) / 100
    parts = split_amount(amount, weights, "USD")
    assert sum(parts) == amount
    assert all(abs(p - amount * w / sum(weights)) < D("0.01") for p, w in zip(parts, weights, strict=True))


# --- the tariff as written ------------------------------------------------------------------------


def test_parse_round_trip():
    for doc in (T_RES, T_VIS):
        tariff = parse_tariff(doc, currency="USD")
        assert parse_tariff(tariff_document(tariff), currency="USD") == tariff
    assert res().elements[0].restrictions.start_time == time(22, 0)


def test_bad_tariffs_name_every_problem_and_its_place():
    bad = {"elements": [
        {"restrictions": {"start_time": 1320, "end_time": "7am", "day_of_week": ["FUNDAY"]},
         "price_components": [{"type": "ENERGY", "price": 0.32}, {"type": "ENERGY", "price": "-1"}]},
        {"price_components": [{"type": "KWH", "price": "1", "grace_minutes": 5, "tax_rate": "8"}]},
        {"price_components": [{"type": "TIME", "price": "1", "cap": "3"}], "colour": "red"},
    ], "monthly_fee": {"price": "10.001"}}
    with pytest.raises(TariffInvalid) as refused:
        parse_tariff(bad, currency="USD")
    where = {"/".join(map(str, p.path)): p.message for p in refused.value.problems}
    assert "quotes" in where["elements/0/restrictions/start_time"]
    assert "HH:MM" in where["elements/0/restrictions/end_time"]
    assert "FUNDAY" in where["elements/0/restrictions/day_of_week/0"]
    assert "exact decimal" in where["elements/0/price_components/0/price"]
    assert "negative" in where["elements/0/price_components/1/price"]
    assert "ENERGY, TIME" in where["elements/1/price_components/0/type"]
    assert "0.08" in where["elements/1/price_components/0/tax_rate"]
    assert "PARKING_TIME" in where["elements/2/price_components/0/cap"]
    assert "not a known key" in where["elements/2/colour"]
    assert "decimals" in where["monthly_fee/price"]
    with pytest.raises(TariffInvalid, match="XXX"):
        parse_tariff(T_RES, currency="XXX")
    with pytest.raises(TariffInvalid, match="at least one element"):
        parse_tariff({"elements": []}, currency="USD")


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        price_session(res(), SessionInput(datetime(2026, 3, 10, 9), datetime(2026, 3, 10, 10), 0, 10), tz=LA)


# --- invariants -----------------------------------------------------------------------------------

moments = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                       timezones=st.just(UTC))


@st.composite
def sessions(draw):
    start = draw(moments)
    minutes = draw(st.integers(min_value=1, max_value=3 * 24 * 60))
    stop = start + timedelta(minutes=minutes, seconds=draw(st.integers(0, 59)))
    meter_start = draw(st.integers(min_value=0, max_value=10**8))
    cuts = sorted(draw(st.lists(st.integers(min_value=1, max_value=minutes * 60 - 1), max_size=6, unique=True)))
    energy = 0
    readings = []
    for cut in cuts:
        energy += draw(st.integers(min_value=0, max_value=20_000))
        readings.append(Reading(start + timedelta(seconds=cut), meter_start + energy))
    energy += draw(st.integers(min_value=0, max_value=20_000))
    complete = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=minutes * 60)))
    extra = draw(st.integers(min_value=0, max_value=600))
    return SessionInput(
        started_at=start, stopped_at=stop + timedelta(minutes=extra), meter_start_wh=meter_start,
        meter_stop_wh=meter_start + energy, readings=tuple(readings),
        charging_complete_at=None if complete is None else start + timedelta(seconds=complete),
    )


prices = st.decimals(min_value=0, max_value=5, places=3)


@st.composite
def tariffs(draw):
    hour = st.integers(min_value=0, max_value=23)
    a, b = draw(hour), draw(hour)
    window = Restrictions(time(a), time(b)) if a != b else Restrictions()
    return TariffVersion("USD", (
        TariffElement((PriceComponent(Kind.ENERGY, draw(prices)), PriceComponent(Kind.TIME, draw(prices),
                                                                                  step_size=draw(st.sampled_from([1, 60, 900])))),
                      window, label="window"),
        TariffElement((PriceComponent(Kind.ENERGY, draw(prices)), PriceComponent(Kind.FLAT, draw(prices)),
                       PriceComponent(Kind.PARKING_TIME, draw(prices), grace_minutes=draw(st.integers(0, 60)),
                                      cap=draw(st.one_of(st.none(), prices))),
                       PriceComponent(Kind.TIME, draw(prices))),
                      label="otherwise"),
    ))


@settings(max_examples=150, deadline=None)
@given(sessions(), tariffs())
def test_total_is_the_sum_of_rounded_lines_and_energy_is_all_accounted_for(s, tariff):
    result = price_session(tariff, s, tz=LA)
    assert result.total == sum((line.total for line in result.lines), D(0))
    assert all(line.amount == line.amount.quantize(D("0.01")) for line in result.lines)
    assert result.energy_wh == s.meter_stop_wh - s.meter_start_wh
    energy_lines = sum((line.quantity for line in result.lines if line.kind == Kind.ENERGY), D(0))
    assert energy_lines * 1000 == result.energy_wh


@settings(max_examples=100, deadline=None)
@given(sessions(), st.data())
def test_splitting_a_session_at_a_reading_never_changes_the_energy(s, data):
    if not s.readings:
        return
    cut = data.draw(st.sampled_from(s.readings))
    first = SessionInput(started_at=s.started_at, stopped_at=cut.at, meter_start_wh=s.meter_start_wh,
                         meter_stop_wh=cut.wh, readings=tuple(r for r in s.readings if r.at < cut.at))
    second = SessionInput(started_at=cut.at, stopped_at=s.stopped_at, meter_start_wh=cut.wh,
                          meter_stop_wh=s.meter_stop_wh, readings=tuple(r for r in s.readings if r.at > cut.at))
    tariff = res()
    whole = price_session(tariff, s, tz=LA)
    parts = [price_session(tariff, part, tz=LA) for part in (first, second)]
    assert sum(p.energy_wh for p in parts) == whole.energy_wh

    def by_window(results):
        found: dict[str, Decimal] = {}
        for r in results:
            for line in r.lines:
                if line.kind == Kind.ENERGY:
                    found[line.window] = found.get(line.window, D(0)) + line.quantity
        return found

    assert by_window(parts) == by_window([whole])


def cheaper(tariff: TariffVersion, factor: Decimal) -> TariffVersion:
    def lower(c: PriceComponent) -> PriceComponent:
        cap = None if c.cap is None else (c.cap * factor).quantize(D("0.01"))
        return PriceComponent(c.kind, (c.price * factor).quantize(D("0.001")), c.tax_rate, c.step_size,
                              c.grace_minutes, cap)

    return TariffVersion(tariff.currency, tuple(
        TariffElement(tuple(lower(c) for c in e.components), e.restrictions, e.label) for e in tariff.elements))


@settings(max_examples=150, deadline=None)
@given(sessions(), tariffs(), st.decimals(min_value=0, max_value=1, places=2))
def test_a_cheaper_tariff_never_costs_more(s, tariff, factor):
    assert price_session(cheaper(tariff, factor), s, tz=LA).total <= price_session(tariff, s, tz=LA).total


def test_dates_restrictions_parse_yaml_dates():
    tariff = parse_tariff({"elements": [{"restrictions": {"start_date": date(2026, 1, 1)},
                                         "price_components": [{"type": "ENERGY", "price": "0.1"}]}]}, currency="USD")
    assert tariff.elements[0].restrictions.start_date == date(2026, 1, 1)


def test_idle_window_crossing_midnight_and_a_flat_fee_from_the_element_at_the_start():
    tariff = parse_tariff({"elements": [
        {"label": "evening fee", "restrictions": {"start_time": "18:00", "end_time": "23:00"},
         "price_components": [{"type": "FLAT", "price": "1.00"}]},
        {"label": "overnight idle", "restrictions": {"start_time": "23:00", "end_time": "06:00"},
         "price_components": [{"type": "PARKING_TIME", "price": "0.05", "grace_minutes": 60}]},
        {"label": "energy", "price_components": [{"type": "ENERGY", "price": "0.25"}]},
    ]}, currency="USD")
    # Charged 20:00-22:00, plugged in until 07:00: idle from 22:00, grace until 23:00, billed 23:00-06:00.
    result = priced(tariff, session(la(2026, 3, 10, 20), la(2026, 3, 11, 7), 0, 10_000,
                                    readings=(Reading(la(2026, 3, 10, 22), 10_000),),
                                    charging_complete_at=la(2026, 3, 10, 22)))
    assert [(line.kind, line.window, line.quantity, line.amount) for line in result.lines] == [
        (Kind.ENERGY, "energy", D("10"), D("2.50")),
        (Kind.PARKING_TIME, "overnight idle", D("420"), D("21.00")),
        (Kind.FLAT, "evening fee", D("1"), D("1.00")),
    ]
    morning = priced(tariff, session(la(2026, 3, 11, 8), la(2026, 3, 11, 9), 0, 1000))
    assert [line.kind for line in morning.lines] == [Kind.ENERGY]  # no fee outside the evening


def test_readings_that_disagree_with_the_stored_energy_shape_it_but_do_not_change_it():
    start = la(2026, 3, 10, 21)
    result = priced(res(), session(start, start + timedelta(hours=2), 0, 20_000, energy_wh=10_000,
                                   readings=(Reading(start + timedelta(hours=1), 10_000),)))
    assert result.energy_wh == 10_000
    assert [(line.window, line.quantity) for line in result.lines] == [("day", D("5")), ("night", D("5"))]
    assert any("spread" in note for note in result.notes)


def test_quote_across_the_spring_forward_night_counts_real_hours():
    tariff = hourly_tariff()
    result = quote(tariff, start=la(2026, 3, 7, 22), duration=timedelta(hours=8), energy_wh=8000, tz=LA)
    # 8 real hours from 22:00 PST end at 07:00 PDT: all night.
    assert [(line.window, line.quantity) for line in result.lines] == [("night", D("8"))]
    assert result.lines[0].end.hour == 7


def test_tax_included_prices_in_a_zero_decimal_currency():
    tariff = parse_tariff({"elements": [{"price_components": [
        {"type": "ENERGY", "price": "30", "tax_rate": "0.10"}]}]}, currency="JPY")
    result = priced(tariff, session(la(2026, 3, 10, 9), la(2026, 3, 10, 12), 0, 12_345), prices_include_tax=True)
    assert (result.total, result.tax, result.subtotal) == (D("370"), D("34"), D("336"))


@st.composite
def around_dst(draw):
    """Sessions that start within a day of a DST change in Los Angeles, of up to 30 hours."""
    change = draw(st.sampled_from([datetime(2026, 3, 8, 10, tzinfo=UTC), datetime(2026, 11, 1, 9, tzinfo=UTC)]))
    start = change + timedelta(minutes=draw(st.integers(min_value=-24 * 60, max_value=24 * 60)))
    stop = start + timedelta(minutes=draw(st.integers(min_value=1, max_value=30 * 60)))
    return start, stop


@settings(max_examples=150, deadline=None)
@given(around_dst())
def test_charging_time_is_real_elapsed_time_across_dst(times):
    start, stop = times
    result = price_session(hourly_tariff(), SessionInput(start, stop, 0, 1000), tz=LA)
    hours = sum((line.quantity for line in result.lines), D(0))
    elapsed = D(int((stop - start).total_seconds())) / 3600
    assert abs(hours - elapsed) < D("0.0001") * len(result.lines)
    for line in result.lines:  # each line is inside its window, in local time
        if line.window == "night":
            assert line.start.time() >= time(22) or line.start.time() < time(7)
        else:
            assert time(7) <= line.start.time() < time(22)


def test_monthly_fee_as_a_statement_line_with_its_tax():
    fee = parse_tariff({"elements": T_RES["elements"], "monthly_fee": {"price": "15.00", "tax_rate": "0.10"}},
                       currency="USD").monthly_fee
    line = monthly_fee_line(fee, days_of_access=10, year=2026, month=2, currency="USD", tz=LA)
    assert (line.kind, line.quantity, line.unit, line.amount, line.tax, line.total) == (
        Kind.MONTHLY_FEE, D("10"), "day", D("5.36"), D("0.54"), D("5.90"))
    assert line.window == "10 of 28 days" and line.start == la(2026, 2, 1) and line.end == la(2026, 3, 1)
    with pytest.raises(TariffInvalid, match="ENERGY, TIME"):  # not a component a session is priced with
        parse_tariff({"elements": [{"price_components": [{"type": "MONTHLY_FEE", "price": "1"}]}]}, currency="USD")
