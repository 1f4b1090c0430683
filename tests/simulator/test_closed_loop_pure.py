"""The closed loop's pure parts: the non-EV load curve and the recorder that scores a run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.simulator.building_load import DEFAULT_CURVE, LoadCurve, Peak, Step, schedule
from apps.simulator.closedloop import NodeLimits, Recorder, percentile

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
D = Decimal


def test_the_curve_is_deterministic_from_its_seed_and_steps_fall_on_their_phase():
    a = schedule(DEFAULT_CURVE, T0, 24 * 3600, seed=7)
    b = schedule(DEFAULT_CURVE, T0, 24 * 3600, seed=7)
    c = schedule(DEFAULT_CURVE, T0, 24 * 3600, seed=8)
    assert a == b
    assert a.steps_starting() != c.steps_starting()
    starts = a.steps_starting()
    assert starts, "a day of the default curve has switch-ons"
    at, _name, phase, amps = next(s for s in starts if s[1] == "A/C compressor")
    before = a.load_at(T0 + timedelta(seconds=at - 1))
    during = a.load_at(T0 + timedelta(seconds=at))
    assert during[phase - 1] - before[phase - 1] >= amps - D("0.2")  # the curve itself moves little in 1 s
    others = [p for p in range(3) if p != phase - 1]
    assert all(abs(during[p] - before[p]) <= D("0.1") for p in others)
    # The A/C runs only between 10:00 and 23:00.
    assert all(10 * 3600 <= s[0] < 24 * 3600 for s in starts if s[1] == "A/C compressor")


def test_the_daily_peaks_are_triangles_around_their_hour():
    curve = LoadCurve(base_a=(D(5), D(5), D(5)), peaks=(Peak(D(19), D(2), (D(10), D(0), D(4))),))
    s = schedule(curve, T0, 24 * 3600, seed=1)
    assert s.load_at(T0 + timedelta(hours=19)) == (D(15), D(5), D(9))
    assert s.load_at(T0 + timedelta(hours=18)) == (D(10), D(5), D(7))
    assert s.load_at(T0 + timedelta(hours=3)) == (D(5), D(5), D(5))
    assert s.load_at(T0 + timedelta(days=3)) == s.load_at(T0 + timedelta(hours=24))  # held after the horizon


def test_bad_curves_are_refused_with_what_is_wrong():
    with pytest.raises(ValueError, match="phase must be 1, 2 or 3"):
        Step("lift", 4, D(10), D(1), D(1))
    with pytest.raises(ValueError, match="hour must be in"):
        Peak(D(24), D(1), (D(1), D(1), D(1)))
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule(DEFAULT_CURVE, datetime(2026, 1, 1), 60, seed=1)


CAB = NodeLimits("cab", rating_a=(D(32), D(32), D(32)), limit_a=(D(30), D(30), D(30)))


def test_overload_is_scored_against_the_limit_and_the_rating():
    r = Recorder([CAB])
    r.load(T0, "cab", (D(20), D(20), D(20)))
    r.load(T0 + timedelta(seconds=10), "cab", (D(31), D(20), D(20)))  # above the limit, not the rating
    r.load(T0 + timedelta(seconds=20), "cab", (D(35), D(20), D(20)))  # above both; 35/30 > 113 %
    r.load(T0 + timedelta(seconds=25), "cab", (D(29), D(20), D(20)))
    rep = r.report(T0 + timedelta(seconds=60), T0, connectors=4, minutes=D(1))
    assert rep.vs_limit.seconds_above_100 == D(15)
    assert rep.vs_limit.seconds_above_113 == D(5)
    assert rep.vs_rating.seconds_above_100 == D(5)
    assert rep.vs_rating.seconds_above_113 == 0
    assert rep.worst(rep.vs_limit) == (D("1.1667"), D(15))
    assert rep.targets()["never above 113 % of any limit"] is False
    assert rep.targets()["every excursion above 100 % cleared within 30 s"] is False
    with pytest.raises(ValueError, match="time order"):
        r.load(T0, "cab", (D(1), D(1), D(1)))
    with pytest.raises(ValueError, match="no node 'x'"):
        r.load(T0 + timedelta(hours=1), "x", (D(1), D(1), D(1)))


def test_reaction_is_from_the_reading_that_shows_the_rise_to_the_first_reduced_profile():
    r = Recorder([CAB])
    limit = (D(30), D(30), D(30))
    r.profile(T0, "c1", D(16))  # the first profile sets the connector's level
    assert r.reading(T0, (D(25), D(10), D(10)), limit) is False  # the first reading has nothing to rise from
    assert r.reading(T0 + timedelta(seconds=1), (D(26), D(10), D(10)), limit) is False  # 1 A: no rise
    assert r.reading(T0 + timedelta(seconds=2), (D(40), D(10), D(10)), limit) is True
    assert r.profile(T0 + timedelta(seconds=2, milliseconds=300), "c1", D(20)) is False  # raised: not a reaction
    assert r.profile(T0 + timedelta(seconds=2, milliseconds=700), "c1", D(8)) is True
    assert r.reading(T0 + timedelta(seconds=3), (D(45), D(10), D(10)), limit) is True
    # A rise that nothing answers within 30 s counts as unanswered.
    rep = r.report(T0 + timedelta(seconds=5), T0 + timedelta(seconds=40), connectors=1, minutes=D(1))
    assert rep.reactions_s == (D("0.700"),)
    assert rep.unanswered_rises == 1
    assert rep.targets()["reaction p95 <= 1 s"] is False
    assert rep.profiles_per_connector_minute == D(3)
    # A rise below the limit needs no reduction and waits for none.
    r2 = Recorder([CAB])
    r2.reading(T0, (D(5), D(5), D(5)), limit)
    assert r2.reading(T0 + timedelta(seconds=1), (D(15), D(5), D(5)), limit) is False


def test_energy_fairness_pauses_and_utilization():
    r = Recorder([CAB])
    r.session("s1", demand_wh=10_000, delivered_wh=9_000)
    r.session("s2", demand_wh=20_000, delivered_wh=18_000)
    r.session("s3", demand_wh=0, delivered_wh=0)  # nothing asked: not in the fairness
    r.energy(D(3600), spare_w=D(30_000), ev_w=D(27_000))
    for t, amps in ((0, D(16)), (60, D(0)), (120, D(10)), (180, D(0))):
        r.limit(T0 + timedelta(seconds=t), "s1", amps)
    r.limit(T0, "s2", D(16))
    rep = r.report(T0, T0, connectors=3, minutes=D(60))
    assert rep.jain == D(1)
    assert rep.served_spread == 0
    assert rep.utilization == D("0.9")  # 27 kWh of min(30 kWh spare, 30 kWh demand)
    assert rep.pauses_per_session == D(1) and rep.max_pauses == 2
    assert rep.targets()["utilization >= 95 %"] is False
    assert "Jain (energy/demand)" in rep.table()
    assert rep.as_json()["jain"] == "1.0000"
    assert rep.as_json()["session_energy"][1] == {"session": "s2", "demand_wh": 20_000, "delivered_wh": 18_000}


def test_the_report_counts_the_needs_residents_stated_and_the_calls_that_failed():
    from apps.simulator.closedloop import NeedsStated

    r = Recorder([CAB])
    ready = T0 + timedelta(hours=9)
    r.needs_stated(NeedsStated("A#1@t0", 17, 24_000, ready))
    r.needs_stated(NeedsStated("A#2@t0", 18, 31_250, ready))
    r.needs_failed("HTTP 404")
    r.needs_failed("ConnectionRefusedError")
    r.needs_failed("HTTP 404")
    with pytest.raises(ValueError, match="> 0"):
        r.needs_stated(NeedsStated("A#3@t0", 19, 0, ready))
    rep = r.report(T0, T0, connectors=2, minutes=D(1))
    assert rep.needs_failed == 3
    needs = rep.as_json()["needs"]
    assert needs == {
        "stated": 2, "failed": 3, "problems": {"ConnectionRefusedError": 1, "HTTP 404": 2},
        "sessions": [
            {"session": "A#1@t0", "platform_session": 17, "energy_wh": 24_000, "ready_by": ready.isoformat()},
            {"session": "A#2@t0", "platform_session": 18, "energy_wh": 31_250, "ready_by": ready.isoformat()},
        ],
    }
    row = next(line for line in rep.table().splitlines() if line.startswith("residents' needs"))
    assert row.endswith("2 / 3 (ConnectionRefusedError: 1, HTTP 404: 2)")
    quiet = Recorder([CAB]).report(T0, T0, connectors=2, minutes=D(1))
    assert quiet.as_json()["needs"] == {"stated": 0, "failed": 0, "problems": {}, "sessions": []}
    assert next(line for line in quiet.table().splitlines() if line.startswith("residents' needs")).endswith("0 / 0")


def test_percentile_is_nearest_rank():
    values = [D(n) for n in range(1, 101)]
    assert percentile(values, 50) == D(50)
    assert percentile(values, 95) == D(95)
    assert percentile([D(3)], 99) == D(3)
    assert percentile([], 50) is None


def test_node_loads_follow_the_wiring_up_the_tree_and_power_is_scored():
    from apps.simulator.closedloop import Wiring, node_loads

    supply = NodeLimits("supply", (D(200),) * 3, (D(155),) * 3)
    cab = NodeLimits("cab", (D(32),) * 3, (D(32),) * 3, max_power_w=20_000, parent="supply")
    guns = [(Wiring("A#1", "cab", 1, "L2"), D(16), 1), (Wiring("A#2", "cab", 3, "RST"), D(10), 3),
            (Wiring("A#3", "cab", 3, "TRS"), D(8), 1)]  # a single-phase car on a three-phase gun: its L1 only
    loads = node_loads([supply, cab], guns, {"supply": (D(40), D(0), D(0))})
    assert loads["cab"] == (D(10), D(26), D(18))
    assert loads["supply"] == (D(50), D(26), D(18))
    with pytest.raises(ValueError, match="no node 'x'"):
        node_loads([supply, cab], guns[:1], {"x": (D(1), D(1), D(1))})
    r = Recorder([cab])
    r.load(T0, "cab", (D(30), D(30), D(30)))  # 20.7 kW: above the 20 kW input, within 32 A a phase
    rep = r.report(T0 + timedelta(seconds=10), T0, connectors=6, minutes=D(1))
    assert rep.vs_limit.seconds_above_100 == D(10)
    assert rep.worst(rep.vs_limit)[0] == D("1.035")


def test_a_scenario_names_its_building_load_and_fixed_steps():
    from apps.simulator import scenario as scenarios

    spec = scenarios.load("""
building_load:
  base_a: [120, 20, 20]
  steps:
    - {name: A/C, phase: 1, amps: 20, on_minutes: 3, per_hour: 0, at_minutes: [4]}
""")
    s = schedule(spec.building_load.curve(), T0, 600, seed=1)
    assert s.load_at(T0 + timedelta(minutes=3)) == (D(120), D(20), D(20))
    assert s.load_at(T0 + timedelta(minutes=5)) == (D(140), D(20), D(20))
    assert s.load_at(T0 + timedelta(minutes=7, seconds=1)) == (D(120), D(20), D(20))
    with pytest.raises(scenarios.ScenarioError, match="phase"):
        scenarios.load("building_load: {base_a: [1, 1, 1], steps: [{name: x, phase: 4, amps: 1, on_minutes: 1, "
                       "per_hour: 1}]}")


def test_the_spare_power_is_what_the_cars_could_draw_through_every_node_and_phase():
    from apps.simulator.closedloop import Wiring, deliverable_w

    supply = NodeLimits("supply", (D(200),) * 3, (D(155),) * 3)
    cab = NodeLimits("cab", (D(32),) * 3, (D(32),) * 3, max_power_w=20_000, parent="supply")
    on = {phase: Wiring(f"A#{phase}", "cab", 1, phase) for phase in ("L1", "L2", "L3")}
    quiet = {"supply": (D(0), D(0), D(0))}
    # Two cars of 32 A on the cabinet's L1 share its 32 A, whatever the room on L2 and L3.
    assert deliverable_w([supply, cab], [(on["L1"], D(32), 1), (on["L1"], D(32), 1)], quiet) == D(32 * 230)
    # A car on each phase: 96 A would be 22 kW, the cabinet's input takes 20 kW.
    assert deliverable_w([supply, cab], [(on[p], D(32), 1) for p in on], quiet) == D(20_000)
    # A car near full takes less than its phase could give; no car, no spare.
    assert deliverable_w([supply, cab], [(on["L2"], D("12.5"), 1)], quiet) == D("12.5") * 230
    assert deliverable_w([supply, cab], [], quiet) == D(0)
    # Nodes that feed each other are not a tree: refused, not counted as no room.
    a = NodeLimits("a", (D(32),) * 3, (D(32),) * 3, parent="b")
    b = NodeLimits("b", (D(32),) * 3, (D(32),) * 3, parent="a")
    with pytest.raises(ValueError, match="nodes a, b form a loop"):
        deliverable_w([supply, cab, a, b], [(Wiring("C#1", "a", 1, "L1"), D(32), 1)], quiet)
    # The supply's room is after the non-EV load, per phase: 15 A left on L1 for the cabinet's L1 car.
    busy = {"supply": (D(140), D(0), D(0))}
    assert deliverable_w([supply, cab], [(on["L1"], D(32), 1), (on["L2"], D(32), 1)], busy) == D(15 + 32) * 230
    # Two cabinets under one supply each give their own: the spare is their sum, within the supply's room.
    cab_b = NodeLimits("cab-b", (D(32),) * 3, (D(32),) * 3, max_power_w=20_000, parent="supply")
    b_l1 = Wiring("B#1", "cab-b", 1, "L1")
    both = [(on["L1"], D(32), 1), (b_l1, D(32), 1)]
    assert deliverable_w([supply, cab, cab_b], both, quiet) == D(64 * 230)
    assert deliverable_w([supply, cab, cab_b], both, {"supply": (D(135), D(0), D(0))}) == D(20 * 230)
    # A three-phase gun's car takes its current on every phase: 3 x 16 A.
    three = Wiring("A#4", "cab", 3, "RST")
    assert deliverable_w([supply, cab], [(three, D(16), 3)], quiet) == D(48 * 230)
    with pytest.raises(ValueError, match="no node 'x'"):
        deliverable_w([supply, cab], [(Wiring("X#1", "x", 1, "L1"), D(16), 1)], quiet)


def test_simulate_building_says_when_the_balancers_pace_is_not_the_simulations_speed():
    from apps.simulator.management.options import pace_warning

    assert pace_warning(20.0, 20, 900) is None and pace_warning(1.0, 1, 900) is None
    assert pace_warning(0.5, 1, 900) is None
    unpaced = pace_warning(20.0, 1, 900)
    assert unpaced is not None and "a 15-minute need period lasts 5 simulated hours" in unpaced
    assert "LOADBALANCING_SIMULATION_SPEED=20" in unpaced
    assert "a 10-minute need period lasts 3.33333 simulated hours" in (pace_warning(20.0, 1, 600) or "")
    assert "off by 3 times" in (pace_warning(60.0, 20, 900) or "")
    assert "paced at 20x" in (pace_warning(1.0, 20, 900) or "")
