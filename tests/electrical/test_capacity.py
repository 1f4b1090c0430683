"""The capacity arithmetic (no database): hand-computed cases, DST nights, gaps, stale quarters, phase
imbalance, the EV share of a quarter, and the invariants (more capacity never serves fewer EVs, more load
never serves more)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.electrical import capacity
from apps.electrical.capacity import (
    EvProfile,
    History,
    InsufficientHistory,
    Parameters,
    PhaseLimits,
    QuarterLoad,
    SessionDraw,
    ThrottleSample,
)

LA = ZoneInfo("America/Los_Angeles")
D = Decimal
SUPPLY_100 = PhaseLimits((D(100), D(100), D(100)))
# 7.4 kW single-phase: 32 A at 230 V.
EV_20 = EvProfile(energy_wh=20_000, phases=1, min_a=D(6), max_a=D(32))


def flat_history(start_local: datetime, days: int, load=("40", "40", "40"), *, skip=(), samples=60,
                 ev=None) -> History:
    """``days`` days of quarters with the same peak and mean, from ``start_local`` (a local midnight)."""
    start, end = start_local.astimezone(UTC), (start_local + timedelta(days=days)).astimezone(UTC)
    # Real time: a DST day has 92 or 100 quarters.
    end = datetime.combine(start_local.date() + timedelta(days=days), time(0), tzinfo=LA).astimezone(UTC)
    quarters = []
    at = start
    while at < end:
        if at not in skip:
            values = tuple(D(v) for v in (load(at) if callable(load) else load))
            quarters.append(QuarterLoad(at, samples, values, values, ev(at) if ev else None))
        at += capacity.QUARTER
    return History(LA, start, end, quarters)


def report(history, supply=SUPPLY_100, ev=EV_20, **params):
    return capacity.build_report(supply=supply, voltage_v=230, history=history,
                                 params=Parameters(ev=ev, **params))


JANUARY = datetime(2026, 1, 5, tzinfo=LA)  # a Monday, no DST change for weeks


def test_a_100_a_supply_with_40_a_of_other_load_serves_24_evs_of_20_kwh_a_night():
    # Per phase: 60 A of headroom for 13 h (18:00-07:00) at 230 V = 179,400 Wh. 8 EVs need 160,000 Wh, 9 need
    # 180,000: 8 per phase, 24 on three phases. Each of the 8 gets 7.5 A on average: above the 6 A minimum.
    result = report(flat_history(JANUARY, 14))
    assert result.coverage.days == D(14) and result.coverage.missing == 0
    assert {n.evs for n in result.nights} == {24}
    assert result.nights[0].evs_per_phase == (8, 8, 8) and result.nights[0].quarters == 52
    assert result.nights[0].headroom_wh == 3 * 179_400 and result.nights[0].limiting_phase is None  # level
    assert (result.worst_evs, result.median_evs) == (24, 24)
    # The evening before the first day and the morning after the last are not whole nights: 13 of them.
    assert len(result.nights) == 13 and result.nights[0].date == date(2026, 1, 5)
    cell = result.cells[0]  # Monday 00:00
    assert (cell.weekday, cell.hour, cell.quarters) == (0, 0, 8)  # 4 quarters on each of two Mondays
    assert cell.non_ev_p95_a == (D(40),) * 3 and cell.spare_a == (D(60),) * 3


def test_derate_and_margin_make_the_usable_limit_and_the_upgrade_names_the_rating():
    supply = PhaseLimits((D(125), D(125), D(125)), derate=D("0.8"), margin_a=D(0))
    assert supply.usable_a == (D(100),) * 3
    # 30 EVs: 10 per phase need 200,000 Wh; 230 x (60 + x) x 13 >= 200,000 gives x >= 6.89: 7 A more.
    result = report(flat_history(JANUARY, 8), supply=supply, target_evs=30)
    up = result.upgrade
    assert (up.needed, up.served_now, up.needed_from_evs, up.extra_a) == (True, 24, 25, 7)
    assert up.rating_a == (134, 134, 134)  # 107 A usable / 0.8 = 133.75
    enough = report(flat_history(JANUARY, 8), supply=supply, target_evs=20).upgrade
    assert (enough.needed, enough.extra_a) == (False, 0)


def test_no_upgrade_helps_when_the_connector_is_the_limit():
    # 6-10 A connectors: 10 A x 230 V x 13 h = 29.9 kWh at most per EV; 30 kWh never fits.
    ev = EvProfile(energy_wh=30_000, phases=1, min_a=D(6), max_a=D(10))
    result = report(flat_history(JANUARY, 8), ev=ev, target_evs=3)
    assert result.worst_evs == 0
    assert result.upgrade.extra_a is None and "whatever the supply" in result.upgrade.reason


def test_dst_nights_are_an_hour_shorter_or_longer():
    # 21 kWh an EV: 13 h of 60 A give 179,400 Wh (8 EVs), 12 h 165,600 (7), 14 h 193,200 (9).
    ev = EvProfile(energy_wh=21_000, phases=1, min_a=D(6), max_a=D(32))
    spring = report(flat_history(datetime(2026, 3, 2, tzinfo=LA), 14), ev=ev)  # clocks go forward on Mar 8
    by_date = {n.date: n for n in spring.nights}
    assert by_date[date(2026, 3, 7)].quarters == 48 and by_date[date(2026, 3, 7)].evs == 21
    assert by_date[date(2026, 3, 6)].quarters == 52 and by_date[date(2026, 3, 6)].evs == 24
    assert by_date[date(2026, 3, 7)].start.hour == 18 and by_date[date(2026, 3, 7)].end.hour == 7
    assert spring.worst_evs == 21 and spring.lowest_nights[0].date == date(2026, 3, 7)
    autumn = report(flat_history(datetime(2026, 10, 26, tzinfo=LA), 14), ev=ev)  # back on Nov 1
    by_date = {n.date: n for n in autumn.nights}
    assert by_date[date(2026, 10, 31)].quarters == 56 and by_date[date(2026, 10, 31)].evs == 27
    # The table is in local time: the hour that happens twice has twice the quarters.
    sunday_one = next(c for c in autumn.cells if (c.weekday, c.hour) == (6, 1))
    assert sunday_one.quarters == 4 + 8


def test_gaps_fill_with_the_worst_seen_and_too_many_leave_the_night_out():
    base = flat_history(JANUARY, 10)
    night_start = datetime(2026, 1, 8, 18, 0, tzinfo=LA).astimezone(UTC)
    one_missing = {night_start + timedelta(hours=2)}
    result = report(flat_history(JANUARY, 10, skip=one_missing))
    night = next(n for n in result.nights if n.date == date(2026, 1, 8))
    # The missing quarter is filled with the worst load seen on Thursdays at 20:00 (40 A, the hour's other three
    # quarters): still 8 a phase.
    assert (night.quarters, night.known, night.evs) == (52, 51, 24)
    assert result.coverage.missing == 1 and result.coverage.trusted == len(base.quarters) - 1
    # Six missing quarters of 52 (more than 10 %): that night is left out, and said so.
    six = {night_start + timedelta(minutes=15 * n) for n in range(6)}
    result = report(flat_history(JANUARY, 10, skip=six))
    assert date(2026, 1, 8) not in {n.date for n in result.nights}
    assert result.coverage.nights_skipped == 1 and any("1 nights" in n for n in result.notes)


def test_stale_quarters_are_not_trusted_and_too_little_history_is_refused():
    history = flat_history(JANUARY, 8, samples=2)
    with pytest.raises(InsufficientHistory, match=r"0 usable quarter hours .* 768 stale.* at least 7 days"):
        report(history, min_samples=3)
    with pytest.raises(InsufficientHistory, match=r"6\.0 days"):
        report(flat_history(JANUARY, 6))
    # A 30-day window holding 8 days of readings: based on those, and it says so.
    history = flat_history(JANUARY, 8)
    wide = History(LA, history.start - timedelta(days=22), history.end, history.quarters)
    result = report(wide)
    assert (result.coverage.requested_days, result.coverage.days, result.coverage.missing) == (30, D(8), 22 * 96)


def test_phase_imbalance_counts_each_phase_on_its_own():
    # Headroom 30, 60 and 90 A for 13 h: 89,700 Wh (4 EVs), 179,400 (8), 269,100 (13).
    result = report(flat_history(JANUARY, 8, load=("70", "40", "10")))
    assert result.nights[0].evs_per_phase == (4, 8, 13) and result.worst_evs == 25
    assert result.nights[0].limiting_phase == "L1"
    # Three-phase 11 kW EVs (16 A) see the least phase: 30 A x 3 x 230 V x 13 h = 269,100 Wh: 13 EVs.
    three = report(flat_history(JANUARY, 8, load=("70", "40", "10")),
                   ev=EvProfile(energy_wh=20_000, phases=3, min_a=D(6), max_a=D(16)))
    assert three.worst_evs == 13 and three.nights[0].evs_per_phase == (13,)


def test_the_minimum_current_limits_how_many_charge_at_once():
    # 10 A of headroom: one EV at a time (6 A minimum, 10 A < 2 x 6), drawing 10 A: 29,900 Wh in 13 h.
    assert capacity.evs_on_phase([D(10)] * 52, 230, EvProfile(14_000)) == 2
    assert capacity.usable_current(D(10), 2, EvProfile(14_000)) == D(10)
    assert capacity.usable_current(D("5.9"), 3, EvProfile(14_000)) == 0
    # Plenty of headroom but 6 A connectors: 6 A x 230 V x 13 h = 17,940 Wh each, below 20 kWh.
    assert capacity.evs_on_phase([D(200)] * 52, 230, EvProfile(20_000, max_a=D(6))) == 0


def test_the_ev_share_is_taken_out_of_the_measured_load():
    # EVs drew 30 A on L1 every night from 18:00 to 07:00; the meter saw 70 A then, 40 A otherwise.
    def night(at):
        local = at.astimezone(LA)
        return local.hour >= 18 or local.hour < 7

    history = flat_history(JANUARY, 8, load=lambda at: ("70", "40", "40") if night(at) else ("40", "40", "40"),
                           ev=lambda at: (D(30), D(0), D(0)) if night(at) else None)
    result = report(history)
    assert result.worst_evs == 24  # as without EVs: their draw is not the building's
    evening = next(c for c in result.cells if (c.weekday, c.hour) == (0, 20))
    assert evening.non_ev_p95_a == (D(40),) * 3 and evening.total_p95_a == (D(70), D(40), D(40))
    assert result.coverage.ev_quarters == sum(1 for q in history.quarters if night(q.start))


def test_ev_draw_per_quarter_from_registers_and_currents():
    q0 = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    # 1840 Wh in a quarter hour on one phase at 230 V is 32 A. The register steps over two quarters evenly.
    single = SessionDraw(grid_phases=(1,), registers=[(q0, D(1000)), (q0 + timedelta(minutes=30), D(4680))])
    draw = capacity.ev_draw_per_quarter([single], voltage_v=230, supply_phases=3)
    assert draw == {q0: (D(0), D(32), D(0)), q0 + capacity.QUARTER: (D(0), D(32), D(0))}
    # A three-phase session: its register split as its Current.Import splits; another adds on L2.
    three = SessionDraw(grid_phases=(2, 0, 1), registers=[(q0, D(0)), (q0 + capacity.QUARTER, D(2760))],
                        currents={(q0, 0): D(8), (q0, 1): D(4), (q0, 2): D(4)})
    draw = capacity.ev_draw_per_quarter([single, three], voltage_v=230, supply_phases=3)
    # 2760 Wh is 48 A over the three phases: 24 on its L1 (grid L3), 12 and 12.
    assert draw[q0] == (D(12), D(32) + D(12), D(24))
    # Current.Import alone (no register step in the quarter); a reset register step is skipped.
    only_current = SessionDraw(grid_phases=(0,), registers=[(q0, D(5000)), (q0 + capacity.QUARTER, D(10))],
                               currents={(q0, 0): D("16.25")})
    assert capacity.ev_draw_per_quarter([only_current], voltage_v=230, supply_phases=3) == {
        q0: (D("16.2"), D(0), D(0))}  # down: the EV's share is never over-stated
    # On a single-phase supply, whatever the rotation says.
    assert capacity.ev_draw_per_quarter([single], voltage_v=230, supply_phases=1)[q0] == (D(32),)


def test_throttling_summary_and_its_absence():
    none = report(flat_history(JANUARY, 8))
    assert none.throttling.samples == 0 and none.throttling.note == capacity.NO_BALANCER_HISTORY
    assert "no balancer history yet" in capacity.render_text(none)
    at = datetime(2026, 1, 6, 4, 0, tzinfo=UTC)  # 20:00 in Los Angeles
    samples = [ThrottleSample(at, 3, D(96), D(96)), ThrottleSample(at + timedelta(minutes=15), 3, D(96), D(60)),
               ThrottleSample(at + timedelta(hours=1), 4, D(128), D(110))]
    result = capacity.build_report(supply=SUPPLY_100, voltage_v=230, history=flat_history(JANUARY, 8),
                                   params=Parameters(ev=EV_20), throttling=samples)
    t = result.throttling
    assert (t.samples, t.throttled, t.deepest_a, t.worst_hours) == (3, 2, D(36), (20, 21))
    assert t.deepest_at.hour == 20 and t.lowest_share_pct == D("62.5")


def test_the_text_and_the_json_say_the_same():
    result = report(flat_history(JANUARY, 8, load=("70", "40", "10")), target_evs=30)
    text = capacity.render_text(result, title="Test Court")
    assert "worst night 25, median night 25" in text
    assert "usable 100.0 / 100.0 / 100.0 A" in text and "Based on 768 quarter hours (8.0 days)" in text
    data = capacity.report_as_dict(result)
    assert data["evs"]["worst_night"] == 25 and data["spare_by_hour"][20]["spare_a"] == {
        "L1": "30.0", "L2": "60.0", "L3": "90.0"}
    assert data["upgrade"]["needed"] and data["throttling"]["note"] == "no balancer history yet"
    assert len(data["peak_load"]) == 7 * 24
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("hour  load L1"))
    assert len({len(line) for line in lines[header:header + 26]}) == 1  # aligned columns


LOADS = st.lists(st.integers(min_value=0, max_value=120), min_size=52, max_size=52)


@settings(max_examples=60, deadline=None)
@given(loads=LOADS, extra=st.integers(min_value=0, max_value=50), more=st.integers(min_value=0, max_value=40),
       energy=st.integers(min_value=1_000, max_value=60_000), min_a=st.integers(6, 10),
       max_a=st.integers(10, 40))
def test_more_capacity_never_serves_fewer_evs_and_more_load_never_serves_more(loads, extra, more, energy, min_a,
                                                                              max_a):
    ev = EvProfile(energy_wh=energy, min_a=D(min_a), max_a=D(max_a))
    headroom = [max(D(0), D(100) - D(load)) for load in loads]
    served = capacity.evs_on_phase(headroom, 230, ev)
    assert capacity.evs_on_phase([h + extra for h in headroom], 230, ev) >= served
    assert capacity.evs_on_phase([max(D(0), h - more) for h in headroom], 230, ev) <= served
    # And the count is right: k fit, k + 1 do not.
    def fits(k):
        return sum(capacity.quarter_wh(capacity.usable_current(h, k, ev), 230) for h in headroom) >= k * energy
    assert fits(served) and not fits(served + 1)


def test_the_charts_are_svg_with_every_figure_in_place():
    from xml.etree import ElementTree

    from apps.electrical import capacity_chart

    result = report(flat_history(JANUARY, 8, load=("70", "40", "10")), target_evs=30)
    hourly = ElementTree.fromstring(capacity_chart.hourly_load_svg(result))
    ns = {"svg": "http://www.w3.org/2000/svg"}
    lines = hourly.findall("svg:polyline", ns)
    assert [line.get("stroke") for line in lines] == list(capacity_chart.PHASE_COLOURS)
    assert all(len(line.get("points").split()) == 24 for line in lines)
    # 110 A on the axis (100 A usable + 10 %, up to a multiple of 25: 125); L1's 70 A is 70/125 of the plot.
    l1_y = {point.split(",")[1] for point in lines[0].get("points").split()}
    plot_h = capacity_chart.HEIGHT - capacity_chart.TOP - capacity_chart.BOTTOM
    assert l1_y == {str((D(capacity_chart.HEIGHT - capacity_chart.BOTTOM) - D(plot_h) * 70 / 125).quantize(D("0.1")))}
    assert len(hourly.findall("svg:line[@class='limit']", ns)) == 3
    nights = ElementTree.fromstring(capacity_chart.nights_svg(result))
    bars = nights.findall("svg:rect[@class='night']", ns)
    assert len(bars) == len(result.nights) == 7
    assert bars[0].find("svg:title", ns).text == "2026-01-05: 25 EVs"
    assert nights.find("svg:line[@class='target']/svg:title", ns).text == "target: 30 EVs"


def test_a_cabinet_alone_is_held_by_its_current_and_its_power_limit():
    cabinet = capacity.CircuitLimits("cabinet-a", PhaseLimits((D(32),) * 3), max_power_w=20_000, connectors=6,
                                     parent="garage")
    empty = capacity.CircuitLimits("spare-panel", PhaseLimits((D(63),) * 3), parent="supply")
    # 32 A for 13 h: 95,680 Wh a phase, 4 EVs each: 12; 20 kW x 13 h = 260 kWh: 13. The current holds it.
    (alone,) = capacity.circuit_capacity([cabinet, empty], 230, Parameters(ev=EV_20), 52)
    assert (alone.key, alone.connectors, alone.evs_alone) == ("cabinet-a", 6, 12)
    # 15 kW x 13 h = 195 kWh: 9 EVs. The power holds it.
    (alone,) = capacity.circuit_capacity([replace(cabinet, max_power_w=15_000)], 230, Parameters(ev=EV_20), 52)
    assert alone.evs_alone == 9
    result = capacity.build_report(supply=SUPPLY_100, voltage_v=230, history=flat_history(JANUARY, 8),
                                   params=Parameters(ev=EV_20), circuits=[cabinet])
    assert result.circuit_capacity[0].evs_alone == 12
    assert "circuit cabinet-a: usable 32.0 / 32.0 / 32.0 A, 20000 W; 6 connectors, alone it could serve 12 EVs" in (
        capacity.render_text(result))


PHASE_LOADS = st.lists(st.tuples(*[st.integers(min_value=0, max_value=120)] * 3), min_size=48, max_size=56)


@settings(max_examples=40, deadline=None)
@given(loads=PHASE_LOADS, extra=st.integers(min_value=0, max_value=40), more=st.integers(min_value=0, max_value=40),
       phase=st.integers(0, 2), three=st.booleans(), energy=st.integers(min_value=2_000, max_value=40_000))
def test_on_three_phases_too_capacity_never_serves_fewer_and_load_never_more(loads, extra, more, phase, three,
                                                                            energy):
    ev = EvProfile(energy_wh=energy, phases=3 if three else 1, min_a=D(6), max_a=D(16 if three else 32))
    headroom = [tuple(max(D(0), D(100) - D(v)) for v in row) for row in loads]
    served, _ = capacity.night_evs(headroom, 230, ev, 3)
    roomier = [tuple(h + extra for h in row) for row in headroom]
    # More load on one phase only.
    heavier = [tuple(max(D(0), h - more) if p == phase else h for p, h in enumerate(row)) for row in headroom]
    assert capacity.night_evs(roomier, 230, ev, 3)[0] >= served
    assert capacity.night_evs(heavier, 230, ev, 3)[0] <= served


def test_growth_plans_the_other_load_higher():
    # 40 A planned 50 % higher is 60 A: 40 A of headroom for 13 h is 119,600 Wh a phase, 5 EVs each.
    result = report(flat_history(JANUARY, 8), growth=D("0.5"))
    assert result.worst_evs == 15 and result.hours[0].non_ev_p95_a == (D(60),) * 3
    assert any("50.0 % above" in note for note in result.notes)
