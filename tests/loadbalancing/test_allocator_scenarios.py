"""The scenarios of docs/load-balancing.md, one test each (the pure allocator; no database)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from decimal import Decimal

import pytest

from apps.loadbalancing import statecodec
from apps.loadbalancing.allocator import (
    AllocationInputError,
    AllocatorState,
    Connector,
    Limit,
    Node,
    Parameters,
    Session,
    Why,
    allocate,
    lease_floors,
    split_changes,
)
from tests.loadbalancing.checks import (
    DEFAULTS,
    T0,
    Building,
    amps,
    at,
    guns,
    maple_court,
    meter,
    run,
    session,
    three,
)

D = Decimal


def test_fair_split_on_a_three_phase_supply_with_single_phase_guns():
    building = guns(32, ["L1", "L2", "L3", "L1", "L2", "L3"])
    result = run(building, [session(f"g{i}") for i in range(6)], [meter(0)])
    assert {k: amps(result, k) for k in result.limits} == dict.fromkeys([f"g{i}" for i in range(6)], D(16))
    assert result.why["g0"].why is Why.NODE_CURRENT
    assert (result.why["g0"].node, result.why["g0"].phase) == ("supply", "L1")
    assert "supply is full on L1" in result.why["g0"].sentence


def test_an_ev_drawing_less_than_allocated_is_reclaimed_and_the_cap_rises_again():
    building = guns(32, ["L1", "L1"])
    first = run(building, [session("g0"), session("g1")], [meter(0)])
    assert (amps(first, "g0"), amps(first, "g1")) == (D(16), D(16))
    # After the ramp-up window, g0 draws 5 A of its 16 A: capped at 5 + 2 A, the rest goes to g1.
    sulking = [session("g0", draw_a=three((5, 0, 0)), draw_at=at(85)), session("g1", draw_a=three((16, 0, 0)),
                                                                               draw_at=at(85))]
    second = run(building, sulking, [meter((21, 0, 0), at(90))], first.state, at(90))
    assert (amps(second, "g0"), amps(second, "g1")) == (D(7), D(25))
    assert second.why["g0"].why is Why.EV_DRAW and "draws less" in second.why["g0"].sentence
    # Within the ramp-up window nothing is reclaimed: a fresh session drawing nothing yet keeps its share.
    early = run(building, [session("g0", draw_a=three(0), draw_at=at(30)), session("g1")], [meter(0, at(30))],
                first.state, at(30))
    assert amps(early, "g0") == D(16)
    # It draws close to its cap again (6.5 of 7 A): the cap is lifted and the fair share comes back.
    wanting = [session("g0", draw_a=three((6.5, 0, 0)), draw_at=at(115)), session("g1", draw_a=three((25, 0, 0)),
                                                                                 draw_at=at(115))]
    third = run(building, wanting, [meter((31.5, 0, 0), at(120))], second.state, at(120))
    assert (amps(third, "g0"), amps(third, "g1")) == (D(16), D(16))
    # ... with a new ramp-up window: a low sample right after does not cap it again at once.
    ramping = [session("g0", draw_a=three((6.5, 0, 0)), draw_at=at(124)), session("g1", draw_a=three((16, 0, 0)),
                                                                                 draw_at=at(124))]
    fourth = run(building, ramping, [meter((22.5, 0, 0), at(125))], third.state, at(125))
    assert amps(fourth, "g0") == D(16) and fourth.why["g0"].why is Why.NODE_CURRENT


def test_a_sudden_air_conditioner_step_on_one_phase():
    building = guns(40, ["L1", "L2", "L3"])
    sessions = [session(f"g{i}") for i in range(3)]
    before = run(building, sessions, [meter(10)])
    assert [amps(before, f"g{i}") for i in range(3)] == [D(30)] * 3
    # 15 A more on L2: believed at once; only the L2 gun gives way.
    step = run(building, sessions, [meter((10, 25, 10), at(5))], before.state, at(5))
    assert [amps(step, f"g{i}") for i in range(3)] == [D(30), D(15), D(30)]
    # The air conditioner stops: a drop is believed only once it has held for drop_confirm_s (30 s).
    off = run(building, sessions, [meter(10, at(10))], step.state, at(10))
    assert amps(off, "g1") == D(15)
    still = run(building, sessions, [meter(10, at(39))], off.state, at(39))
    assert amps(still, "g1") == D(15)
    confirmed = run(building, sessions, [meter(10, at(41))], still.state, at(41))
    assert amps(confirmed, "g1") == D(30)


def simulate(building, sessions_at, meter_at, seconds, every=30, params=DEFAULTS):
    """Cycles every ``every`` s; returns per cycle {connector: running?} and the results."""
    state, history = None, []
    for tick in range(0, seconds, every):
        now = at(tick)
        sessions = sessions_at(tick)
        result = run(building, sessions, [meter_at(tick, now)], state, now, params)
        history.append((tick, {k: not lim.paused for k, lim in result.limits.items()}, result))
        state = result.state
    return history


def transitions(history, key):
    changes, last = [], None
    for tick, running, _ in history:
        if key in running and running[key] != last:
            if last is not None:
                changes.append(tick)
            last = running[key]
    return changes


def test_shortage_below_the_sum_of_minimums_pauses_and_rotates():
    """Three cars, room for two minimums: two charge, the third waits, and they take turns fairly."""
    building = guns(16, ["L1", "L1", "L1"])
    cars = [session("g0", 0), session("g1", 1), session("g2", 2)]
    history = simulate(building, lambda t: cars, lambda t, now: meter(0, now), 3 * 3600)
    for _, running, result in history:
        assert sum(running.values()) == 2
        paused = next(k for k, on in running.items() if not on)
        assert result.why[paused].why in (Why.ROTATION, Why.WAITING)
    for key in ("g0", "g1", "g2"):
        share = sum(running[key] for _, running, _ in history) / len(history)
        assert 0.5 <= share <= 0.8, (key, share)  # two of three run at a time: two thirds each, give or take
        changes = transitions(history, key)
        gaps = [b - a for a, b in itertools.pairwise(changes)]
        assert all(gap >= 300 for gap in gaps), (key, changes)  # never faster than the minimum pause / run
        assert len(changes) <= 3 * 3600 / (300 + 900) * 2 + 1


def test_no_flapping_when_spare_wobbles():
    """The spare wobbles around exactly three minimums every 10 s; the cars do not start and stop with it."""
    building = guns(20, ["L1", "L1", "L1"])
    cars = [session("g0", 0), session("g1", 1), session("g2", 2)]

    def wobble(tick, now):
        return meter((1.5 if (tick // 10) % 2 else 2.5, 0, 0), now)

    history = simulate(building, lambda t: cars, wobble, 3600, every=10)
    for key in ("g0", "g1", "g2"):
        changes = transitions(history, key)
        gaps = [b - a for a, b in itertools.pairwise(changes)]
        assert all(gap >= 300 for gap in gaps), (key, changes)
        assert len(changes) <= 6, (key, changes)


def test_a_newcomer_with_no_room_waits_its_turn():
    building = guns(16, ["L1", "L1", "L1", "L1"])
    sessions = [session("g0", 0), session("g1", 0)]
    first = run(building, sessions, [meter(0)])
    assert (amps(first, "g0"), amps(first, "g1")) == (D(8), D(8))
    # g2 arrives, then g3: no room for a third minimum; the two running ones are not cut short.
    later = [*sessions, session("g2", 100), session("g3", 200)]
    waiting = run(building, later, [meter(0, at(300))], first.state, at(300))
    assert (amps(waiting, "g0"), amps(waiting, "g1")) == (D(8), D(8))
    assert amps(waiting, "g2") == amps(waiting, "g3") == 0
    assert waiting.why["g2"].why is Why.WAITING and waiting.why["g2"].phase == "L1"
    assert "waiting for room" in waiting.why["g2"].sentence
    # Once the first two have run their minimum time, the one that waited longest starts first.
    turn = run(building, later, [meter(0, at(901))], waiting.state, at(901))
    assert amps(turn, "g2") > 0
    started = {k for k, lim in turn.limits.items() if not lim.paused}
    assert len(started) == 2 and "g2" in started


def test_a_single_phase_ev_on_a_three_phase_gun():
    nodes = [Node("supply", three(32))]
    connectors = [Connector("three", "supply", phases=3, rotation="RST"), Connector("single", "supply", rotation="L2")]
    building = Building(nodes, connectors)
    one_phase_car = run(building, [session("three", phases_in_use=1), session("single")], [meter(0)])
    assert (amps(one_phase_car, "three"), amps(one_phase_car, "single")) == (D(32), D(32))
    assert one_phase_car.limits["three"].grid_a == (D(32), D(0), D(0))
    unknown = run(building, [session("three"), session("single")], [meter(0)])
    assert (amps(unknown, "three"), amps(unknown, "single")) == (D(16), D(16))


def test_phase_rotation():
    """A rotated cabinet: the gun's L1 is the grid's L2, whose limit is the lowest."""
    nodes = [Node("supply", three(100)), Node("cabinet", three((32, 16, 32)), parent="supply")]
    connectors = [Connector("rotated", "cabinet", phases=3, rotation="STR"),
                  Connector("straight", "cabinet", phases=3, rotation="RST")]
    building = Building(nodes, connectors)
    result = run(building, [session("rotated", phases_in_use=1), session("straight", phases_in_use=1)], [meter(0)])
    assert amps(result, "rotated") == D(16) and result.limits["rotated"].grid_a == (D(0), D(16), D(0))
    assert (result.why["rotated"].node, result.why["rotated"].phase) == ("cabinet", "L2")
    assert amps(result, "straight") == D(32)


def test_unbalanced_non_ev_load():
    nodes = [Node("supply", three(63))]
    connectors = [Connector("three", "supply", phases=3, rotation="RST")] + [
        Connector(f"g{i}", "supply", rotation=r) for i, r in enumerate(["L1", "L2", "L3"])]
    building = Building(nodes, connectors)
    sessions = [session(c.key) for c in connectors]
    result = run(building, sessions, [meter((50, 20, 5))])
    # 13 A left on L1 for the three-phase car and the L1 gun; the three-phase car is held there on all phases.
    assert (amps(result, "three"), amps(result, "g0")) == (D("6.5"), D("6.5"))
    assert (amps(result, "g1"), amps(result, "g2")) == (D(32), D(32))
    assert result.why["three"].phase == "L1"
    assert result.non_ev_a["supply"] == (D(50), D(20), D(5))


def test_twelve_guns_behind_a_20_kw_cabinet():
    nodes = [Node("supply", three(250)), Node("cabinet", three(63), parent="supply", max_power_w=20_000)]
    connectors = [Connector(f"g{i:02d}", "cabinet", rotation=("L1", "L2", "L3")[i % 3]) for i in range(12)]
    building = Building(nodes, connectors)
    result = run(building, [session(c.key) for c in connectors], [meter(0)])
    # 20 kW / 230 V = 86.96 A: 7.2 A each (86.4 A), and the 0.5 A left as 0.1 A steps to five of them.
    assert sorted(amps(result, c.key) for c in connectors) == [D("7.2")] * 7 + [D("7.3")] * 5
    assert result.why["g00"].why is Why.NODE_POWER and result.why["g00"].node == "cabinet"
    assert result.nodes["cabinet"].planned_power_w <= 20_000


def test_a_dc_charger_beside_ac_guns():
    building = maple_court()
    sessions = [session(c.key) for c in building.connectors]
    light = run(building, sessions, [meter(40)])
    assert light.limits["MAPLE-DC-1#1"].watts == 30_000 and light.limits["MAPLE-DC-1#1"].amps is None
    assert light.why["MAPLE-DC-1#1"].why is Why.CONNECTOR_MAX
    # The cabinet's 20 kW input holds the six AC guns: 20000 / 230 / 6 = 14.49 A.
    assert sorted(amps(light, f"MAPLE-CAB-A#{i}") for i in range(1, 7)) == [D("14.4")] + [D("14.5")] * 5
    assert light.why["MAPLE-CAB-A#1"].why is Why.NODE_POWER
    # A heavy evening: 120 A of the 155 A usable per phase. The DC car and the two guns of each phase share
    # the 35 A left as equals in grid current: about 11.66 A each.
    heavy = run(building, sessions, [meter(120, at(1))], light.state, at(1))
    dc = heavy.limits["MAPLE-DC-1#1"]
    assert 7_400 <= dc.watts <= 7_500  # 11.66 A x 3 x 230 V x 0.93
    assert {amps(heavy, f"MAPLE-CAB-A#{i}") for i in range(1, 7)} <= {D("11.6"), D("11.7")}
    assert heavy.why["MAPLE-DC-1#1"].node == "supply"


def test_maple_court_supply_cabinet_and_dc_charger():
    """examples/maple-court.yaml as commissioned: everything plugged in, a building drawing 60/45/80 A."""
    building = maple_court()
    sessions = [session(c.key, i) for i, c in enumerate(building.connectors)]
    result = run(building, sessions, [meter((60, 45, 80))])
    budgets = result.nodes
    assert budgets["supply"].capacity_a == (D(155), D(155), D(155))  # 200 A x 0.8 - 5 A
    assert budgets["cabinet-a"].planned_power_w <= 20_000
    for p in range(3):
        total = budgets["supply"].non_ev_a[p] + budgets["supply"].planned_a[p]
        assert total <= D(155)
    assert all(not lim.paused for lim in result.limits.values())
    assert set(result.why) == {c.key for c in building.connectors}


def test_stale_site_meter_falls_back_to_the_safe_budget():
    building = guns(63, ["L1", "L1", "L2"])
    sessions = [session(f"g{i}") for i in range(3)]
    silent = meter(5, at(-60))  # stale_after_s is 15
    budget = Parameters(stale_ev_budget_a=D(16))
    result = run(building, sessions, [silent], params=budget)
    assert (amps(result, "g0"), amps(result, "g1"), amps(result, "g2")) == (D(8), D(8), D(16))
    assert result.why["g0"].why is Why.METER_STALE
    assert any("site meter at supply has been silent" in w for w in result.warnings)
    # The default budget is nothing: with the meter silent, no car charges.
    nothing = run(building, sessions, [silent])
    assert all(lim.paused for lim in nothing.limits.values())
    assert {nothing.why[k].why for k in nothing.limits} == {Why.METER_STALE}
    # No reading at all is treated the same way.
    none = run(building, sessions, [], params=budget)
    assert amps(none, "g2") == D(16)
    # A high estimate from before the silence is kept when it leaves less than the budget.
    before = run(building, sessions, [meter((55, 0, 0))])
    held = run(building, sessions, [meter((55, 0, 0), at(-1))], before.state, at(60), budget)
    assert amps(held, "g0") + amps(held, "g1") == D(8)  # 63 - 55 = 8 A, not the budget's 16
    assert amps(held, "g2") == D(16)


def test_a_spike_reading_999_a_then_0_a():
    building = maple_court()
    sessions = [session(c.key) for c in building.connectors]
    budget = Parameters(stale_ev_budget_a=D(20))
    normal = run(building, sessions, [meter(40)], params=budget)
    normal_limits = {k: lim.value for k, lim in normal.limits.items()}
    # 999 A on a 200 A supply is a meter fault: this cycle runs on the safe budget, and the fault is named.
    spike = run(building, sessions, [meter(999, at(1))], normal.state, at(1), budget)
    assert any("implausible" in w for w in spike.warnings)
    assert all(spike.limits[k].value <= normal_limits[k] for k in normal_limits)
    # 0 A right after: a drop, not believed until confirmed; nothing rises above what 40 A allowed.
    state = spike.state
    for t in (2, 10, 25):
        zero = run(building, sessions, [meter(0, at(t))], state, at(t), budget)
        state = zero.state
        assert all(zero.limits[k].value <= normal_limits[k] for k in normal_limits)
        assert zero.non_ev_a["supply"] == (D(40), D(40), D(40))
    confirmed = run(building, sessions, [meter(0, at(33))], state, at(33), budget)
    assert confirmed.non_ev_a["supply"] == (D(0), D(0), D(0))


def test_a_charger_going_offline_while_charging_counts_as_unmanaged():
    building = guns(32, ["L1", "L1"], max_current_a=D(32))
    sessions = [session("g0"), session("g1")]
    both = run(building, sessions, [meter(0)])
    assert (amps(both, "g0"), amps(both, "g1")) == (D(16), D(16))
    offline = Building(building.nodes, [replace(building.connector("g0"), online=False), building.connector("g1")])
    result = run(offline, sessions, [meter(0, at(5))], both.state, at(5))
    assert "g0" not in result.limits and result.why["g0"].why is Why.UNMANAGED
    assert "offline" in result.why["g0"].sentence
    assert amps(result, "g1") == 0  # g0 may draw its full 32 A on its own
    assert result.nodes["supply"].unmanaged_a == (D(32), D(0), D(0))
    smaller = Building(building.nodes, [replace(building.connector("g0"), online=False, max_current_a=D(10)),
                                        building.connector("g1")])
    assert amps(run(smaller, sessions, [meter(0, at(5))], both.state, at(5)), "g1") == D(22)


def test_the_server_going_down_chargers_fall_to_the_lease_floor():
    """The last period of every live profile is the lease floor: safe for all of them at once, with the
    building at its worst (only the safe budget left), for as long as the server is silent."""
    building = maple_court()
    budget = Parameters(stale_ev_budget_a=D(24))
    floors = lease_floors(building.nodes, building.connectors, T0, budget)
    assert set(floors) == {c.key for c in building.connectors}
    per_phase = [sum(lim.grid_a[p] for lim in floors.values()) for p in range(3)]
    assert all(total <= D(24) for total in per_phase)
    assert all(lim.paused or lim.amps is None or lim.amps >= D(6) for lim in floors.values())
    assert any(not lim.paused for lim in floors.values())
    assert all(lim.paused for lim in lease_floors(building.nodes, building.connectors, T0).values())


def test_a_charger_rejecting_a_profile_counts_at_its_worst():
    building = guns(40, ["L1", "L1"], max_current_a=D(16))
    sessions = [session("g0"), session("g1")]
    stubborn = Building(building.nodes, [replace(building.connector("g0"), compliant=False), building.connector("g1")])
    result = run(stubborn, sessions, [meter(0)])
    assert result.why["g0"].why is Why.UNMANAGED and "not following" in result.why["g0"].sentence
    assert amps(result, "g1") == D(16) and result.nodes["supply"].unmanaged_a[0] == D(16)


def test_a_charger_rejecting_zero_amps_is_never_paused():
    building = guns(16, ["L1", "L1", "L1"])
    no_zero = Building(building.nodes, [*building.connectors[:2], replace(building.connectors[2], accepts_zero=False)])
    sessions = [session("g0", 0), session("g1", 1), session("g2", 2)]
    result = run(no_zero, sessions, [meter(0)])
    assert amps(result, "g2") >= D(6)  # arrived last, but cannot be paused by a profile
    assert sorted([amps(result, "g0"), amps(result, "g1")]) == [D(0), D(8)]


def test_a_charger_that_accepts_but_does_not_apply():
    building = guns(32, ["L1", "L1"])
    sessions = [session("g0"), session("g1")]
    first = run(building, sessions, [meter(0)])
    # g0 was told 16 A and keeps drawing 24 A: the excess stays in the non-EV load (only 16 A is subtracted).
    ignoring = [session("g0", draw_a=three((24, 0, 0)), draw_at=at(20)),
                session("g1", draw_a=three((8, 0, 0)), draw_at=at(20))]
    result = run(building, ignoring, [meter((32, 0, 0), at(20))], first.state, at(20))
    assert result.non_ev_a["supply"][0] == D(8)
    assert any("g0: draws 24 A above its limit 16 A" in w for w in result.warnings)
    assert amps(result, "g0") + amps(result, "g1") <= D(24)


def test_a_paused_or_new_session_that_draws_stays_in_the_non_ev_load():
    """What a car draws without a limit from us (first cycle) or while paused is nowhere in the plan."""
    building = guns(16, ["L1", "L1", "L1"])
    cars = [session("g0", 0), session("g1", 1), session("g2", 2)]
    first = run(building, cars, [meter(0)])
    paused = next(k for k, lim in first.limits.items() if lim.paused)
    assert [amps(first, k) for k in ("g0", "g1")] == [D(8), D(8)] and paused == "g2"
    drawing = [replace(s, draw_a=three((6 if s.connector == paused else 8, 0, 0)), draw_at=at(5)) for s in cars]
    result = run(building, drawing, [meter((22, 0, 0), at(5))], first.state, at(5))
    assert result.non_ev_a["supply"][0] == D(6)  # 22 - 8 - 8: the paused car's 6 A is not subtracted
    newcomer = run(building, [session("g0", draw_a=three((10, 0, 0)), draw_at=T0)], [meter((10, 0, 0))])
    assert newcomer.non_ev_a["supply"][0] == D(10)


def test_charger_clock_skew():
    building = guns(32, ["L1", "L1"])
    first = run(building, [session("g0"), session("g1")], [meter(0)])
    ahead = [session("g0", draw_a=three((16, 0, 0)), draw_at=at(600)), session("g1")]
    result = run(building, ahead, [meter((20, 0, 0), at(5))], first.state, at(5))
    # A sample stamped ten minutes ahead is not believed: nothing is subtracted for it.
    assert result.non_ev_a["supply"][0] == D(20)
    believed = [session("g0", draw_a=three((16, 0, 0)), draw_at=at(4)), session("g1")]
    assert run(building, believed, [meter((20, 0, 0), at(5))], first.state, at(5)).non_ev_a["supply"][0] == D(4)
    assert any("check the charger's clock" in w for w in result.warnings)
    # A site meter stamped ahead is not believed either.
    skewed = run(building, [session("g0"), session("g1")], [meter(0, at(120))])
    assert any("ahead of now" in w for w in skewed.warnings)
    assert all(lim.paused for lim in skewed.limits.values())


def test_quantization_rounds_down_never_up():
    building = guns(20, ["L1", "L1", "L1"], step_a=D(1))
    result = run(building, [session(f"g{i}") for i in range(3)], [meter(0)])
    values = sorted(amps(result, f"g{i}") for i in range(3))
    assert values == [D(6), D(7), D(7)]  # 6.67 A each is not possible: 6, and the 2 A left to two of them
    assert all(v == v.to_integral_value() for v in values)
    tenth = run(guns(20, ["L1", "L1", "L1"]), [session(f"g{i}") for i in range(3)], [meter(0)])
    assert sorted(amps(tenth, f"g{i}") for i in range(3)) == [D("6.6"), D("6.7"), D("6.7")]
    nodes = [Node("supply", three(20))]
    dc = Building(nodes, [Connector("dc", "supply", phases=3, rotation="RST", dc=True, max_power_w=50_000,
                                    efficiency=D("0.93"), step_w=500, min_current_a=D(0))])
    dc_result = run(dc, [session("dc")], [meter(0)])
    # 20 A x 3 x 230 V x 0.93 = 12,834 W: 12,500 W on the charger's 500 W grid, not 13,000.
    assert dc_result.limits["dc"].watts == 12_500


def test_the_first_seconds_of_a_session():
    building = guns(32, ["L1", "L1"])
    first = run(building, [session("g0", draw_a=three(0), draw_at=T0), session("g1")], [meter(0)])
    assert amps(first, "g0") == D(16)
    # The car has not started drawing yet; inside the ramp-up window (60 s) it keeps its share.
    early = run(building, [session("g0", draw_a=three(0), draw_at=at(40)), session("g1")], [meter(0, at(45))],
                first.state, at(45))
    assert amps(early, "g0") == D(16)
    # Still nothing after it: it keeps only its minimum until it draws.
    late = run(building, [session("g0", draw_a=three(0), draw_at=at(65)), session("g1")], [meter(0, at(70))],
               early.state, at(70))
    assert amps(late, "g0") == D(6) and amps(late, "g1") == D(26)
    # An idle gun whose TxDefaultProfile lets a new car draw 6 A before its first limit keeps those 6 A free.
    reserving = Building(building.nodes, [building.connectors[0], replace(building.connectors[1],
                                                                         default_limit_a=D(6))])
    idle = run(reserving, [session("g0")], [meter(0)])
    assert amps(idle, "g0") == D(26) and idle.why["g1"].why is Why.IDLE


def test_eight_plug_ins_within_ten_seconds():
    nodes = [Node("supply", three(100)), Node("cabinet", three(16), parent="supply")]
    connectors = [Connector(f"g{i}", "cabinet", rotation=("L1", "L2", "L3")[i % 3]) for i in range(8)]
    building = Building(nodes, connectors)
    state, running_before = None, set()
    for second in range(10):
        now = at(second)
        arrived = [session(f"g{i}", i * 1.2) for i in range(8) if i * 1.2 <= second]
        result = run(building, arrived, [meter(0, now)], state, now)
        running = {k for k, lim in result.limits.items() if not lim.paused}
        assert running_before <= running  # nobody already charging is paused by a later arrival
        running_before, state = running, result.state
    # 16 A per phase: two minimums (with the resume margin) per phase; the third on L1 and L2 waits.
    assert running_before == {"g0", "g1", "g2", "g3", "g4", "g5"}
    assert result.why["g6"].why is Why.WAITING and result.why["g7"].why is Why.WAITING


def test_moving_current_from_one_gun_to_another_break_before_make():
    building = guns(16, ["L1", "L1"])
    alone = run(building, [session("g0")], [meter(0)])
    assert amps(alone, "g0") == D(16)
    shared = run(building, [session("g0"), session("g1", 10)], [meter(0, at(10))], alone.state, at(10))
    changes = split_changes(alone.limits, shared.limits)
    assert [(lim.connector, lim.amps) for lim in changes.decreases] == [("g0", D(8))]
    assert [(lim.connector, lim.amps) for lim in changes.increases] == [("g1", D(8))]


def test_split_changes_skips_small_increases_but_never_a_decrease():
    def ac(key, value):
        return Limit(key, amps=D(value), watts=None, grid_a=(D(value), D(0), D(0)))

    def dc(key, watts):
        return Limit(key, amps=None, watts=watts, grid_a=(D(0),) * 3)

    before = {"a": ac("a", "8"), "b": ac("b", "8"), "c": ac("c", "8"), "d": ac("d", "0"), "e": dc("e", 10_000)}
    after = {"a": ac("a", "8.5"), "b": ac("b", "7.6"), "c": ac("c", "0"), "d": ac("d", "6"), "e": dc("e", 10_500),
             "f": ac("f", "6")}
    changes = split_changes(before, after)
    assert [x.connector for x in changes.decreases] == ["b", "c"]
    assert [x.connector for x in changes.increases] == ["d", "f"]
    assert changes.skipped == ("a", "e")


def test_a_lowered_main_limit():
    building = guns(63, ["L1", "L2", "L3", "L1"])
    sessions = [session(f"g{i}") for i in range(4)]
    before = run(building, sessions, [meter(20)])
    assert amps(before, "g0") == D("21.5")
    lowered = Building([replace(building.nodes[0], limits_a=three(40))], building.connectors)
    after = run(lowered, sessions, [meter(20, at(1))], before.state, at(1))
    assert (amps(after, "g0"), amps(after, "g3")) == (D(10), D(10))
    assert [lim.connector for lim in split_changes(before.limits, after.limits).decreases] == ["g0", "g1", "g2", "g3"]


def test_weighted_priorities_share_in_proportion():
    building = guns(30, ["L1", "L1"])
    result = run(building, [session("g0", priority=D(2)), session("g1")], [meter(0)])
    assert (amps(result, "g0"), amps(result, "g1")) == (D(20), D(10))


def test_bad_input_is_refused_with_a_clear_error():
    supply = Node("supply", three(32))
    gun = Connector("g0", "supply")
    with pytest.raises(AllocationInputError, match="unknown parent 'nowhere'"):
        allocate([supply, Node("x", three(16), parent="nowhere")], [gun], [], [], None, T0)
    with pytest.raises(AllocationInputError, match="exactly one supply"):
        allocate([supply, Node("other", three(16))], [gun], [], [], None, T0)
    with pytest.raises(AllocationInputError, match="cycle"):
        allocate([supply, Node("a", three(1), parent="b"), Node("b", three(1), parent="a")], [gun], [], [], None, T0)
    with pytest.raises(AllocationInputError, match="rotation 'RST' does not fit 1 phase"):
        allocate([supply], [Connector("g0", "supply", rotation="RST")], [], [], None, T0)
    with pytest.raises(AllocationInputError, match="two sessions"):
        allocate([supply], [gun], [session("g0"), replace(session("g0"), id="other")], [], None, T0)
    with pytest.raises(AllocationInputError, match="unknown connector 'ghost'"):
        allocate([supply], [gun], [session("ghost")], [], None, T0)
    with pytest.raises(AllocationInputError, match="unknown node 'basement'"):
        allocate([supply], [gun], [], [meter(0, node="basement")], None, T0)


def test_state_of_an_ended_session_is_forgotten():
    building = guns(32, ["L1"])
    first = run(building, [session("g0")], [meter(0)])
    assert set(first.state.connectors) == {"g0"}
    gone = run(building, [], [meter(0, at(5))], first.state, at(5))
    assert gone.state.connectors == {} and isinstance(gone.state, AllocatorState)
    fresh = run(building, [Session("new", "g0", at(6))], [meter(0, at(6))], first.state, at(6))
    assert fresh.state.connectors["g0"].session_id == "new"


def test_a_sub_meter_counts_for_its_panel_and_the_nodes_above():
    """A meter on the garage panel: its non-EV load limits the panel; the supply keeps its own reading (or,
    without one, its safe budget)."""
    nodes = [Node("supply", three(100)), Node("garage", three(50), parent="supply"),
             Node("house", three(80), parent="supply")]
    connectors = [Connector("g0", "garage"), Connector("h0", "house")]
    building = Building(nodes, connectors)
    sessions = [session("g0"), session("h0")]
    only_sub = run(building, sessions, [meter((40, 0, 0), node="garage")], params=Parameters(stale_ev_budget_a=D(32)))
    assert only_sub.nodes["garage"].non_ev_a[0] == D(40)
    assert amps(only_sub, "g0") == D(10)  # 50 - 40 on the garage panel
    # The supply has no reading: it is on its safe budget (32 A for EVs), whatever the garage says.
    assert amps(only_sub, "h0") == D(22)
    both = run(building, sessions, [meter((30, 0, 0), node="garage"), meter((75, 0, 0))])
    assert both.non_ev_a == {"supply": three((75, 0, 0)), "garage": three((30, 0, 0))}
    assert amps(both, "g0") + amps(both, "h0") <= D(25)  # 100 - 75 at the supply


def _drawing(amps_each: float, when: float, count: int = 4):
    return [session(f"g{i}", draw_a=three((amps_each, 0, 0)), draw_at=at(when)) for i in range(count)]


def _steady(building):
    """Four cars given 10 A each, drawing it, no other load."""
    start = run(building, [session(f"g{i}") for i in range(4)], [meter(0)])
    return run(building, _drawing(10, 19), [meter((0, 40, 0), at(20))], start.state, at(20))


def test_cars_still_following_a_decrease_do_not_cut_the_others_for_half_a_minute():
    """A reading taken while lowered cars still draw their old current shows their excess as other load
    (the safe side: the charger may never follow). That rise is provisional: the first lower reading gives it
    back, instead of the 30 s a real drop of the other load waits."""
    building = guns(40, ["L2"] * 4)
    first = _steady(building)
    assert [amps(first, f"g{i}") for i in range(4)] == [D(10)] * 4
    # 8 A of other load on L2: believed at once, each car goes down to 8 A.
    step = run(building, _drawing(10, 24), [meter((0, 48, 0), at(25))], first.state, at(25))
    assert [amps(step, f"g{i}") for i in range(4)] == [D(8)] * 4
    # The cars have not followed yet: 8 A of their excess shows as other load, and they are cut further.
    lagging = run(building, _drawing(10, 25.5), [meter((0, 48, 0), at(26))], step.state, at(26))
    assert lagging.non_ev_a["supply"][1] == D(16)
    assert [amps(lagging, f"g{i}") for i in range(4)] == [D(6)] * 4
    assert statecodec.decode(statecodec.encode(lagging.state)) == lagging.state  # as kept in Redis between runs
    assert lagging.state.estimates["supply"].provisional_ma[1] == 8_000
    # They followed: the other load is 8 A again at once, and each car gets its 8 A back.
    followed = run(building, _drawing(6, 27.5), [meter((0, 32, 0), at(28))], lagging.state, at(28))
    assert followed.non_ev_a["supply"][1] == D(8)
    assert [amps(followed, f"g{i}") for i in range(4)] == [D(8)] * 4
    # Without the cars' own samples showing their excess, nothing is provisional: the drop waits 30 s.
    blind = run(building, [session(f"g{i}") for i in range(4)], [meter((0, 48, 0), at(26))], step.state, at(26))
    assert blind.non_ev_a["supply"][1] == D(48)
    later = run(building, [session(f"g{i}") for i in range(4)], [meter((0, 40, 0), at(28))], blind.state, at(28))
    assert later.non_ev_a["supply"][1] == D(48)


def test_a_car_that_never_follows_keeps_its_excess_in_the_other_load():
    building = guns(40, ["L2"] * 4)
    first = _steady(building)
    step = run(building, _drawing(10, 24), [meter((0, 48, 0), at(25))], first.state, at(25))
    lagging = run(building, _drawing(10, 25.5), [meter((0, 48, 0), at(26))], step.state, at(26))
    assert lagging.non_ev_a["supply"][1] == D(16)
    # Still 10 A each, two seconds later and after the follow window: the estimate holds (no lower reading).
    for t in (28, 40):
        lagging = run(building, _drawing(10, t - 0.5), [meter((0, 48, 0), at(t))], lagging.state, at(t))
        assert lagging.non_ev_a["supply"][1] >= D(16)
    # A lower reading after the follow window is an ordinary drop: believed only once it held 30 s.
    after = run(building, _drawing(6, 41.5), [meter((0, 32, 0), at(42))], lagging.state, at(42))
    assert after.non_ev_a["supply"][1] >= D(16)


def test_the_provisional_part_is_never_more_than_the_cars_excess():
    """A real rise of the other load while cars follow a decrease: only the cars' excess is given back."""
    building = guns(64, ["L2"] * 4)
    start = run(building, [session(f"g{i}") for i in range(4)], [meter(0)])
    steady = run(building, _drawing(16, 19), [meter((0, 64, 0), at(20))], start.state, at(20))
    step = run(building, _drawing(16, 24), [meter((0, 72, 0), at(25))], steady.state, at(25))
    assert [amps(step, f"g{i}") for i in range(4)] == [D(14)] * 4
    # The cars lag (8 A of excess) and an elevator adds 4 A at the same moment: 12 A more than believed.
    lagging = run(building, _drawing(16, 25.5), [meter((0, 76, 0), at(26))], step.state, at(26))
    assert lagging.non_ev_a["supply"][1] == D(20)
    given = amps(lagging, "g0")
    assert given == D(11)
    # The cars followed, the elevator runs on: the 8 A of excess are given back at once, its 4 A are not.
    followed = run(building, _drawing(11, 27.5), [meter((0, 12 + 4 * 11, 0), at(28))], lagging.state, at(28))
    assert followed.non_ev_a["supply"][1] == D(12)


def test_a_car_paused_by_cars_still_following_resumes_as_soon_as_they_followed():
    """Charging slows down rather than stops: a pause that came from a provisional rise (cars that had not yet
    followed their lower limits) does not hold the car for min_pause_s once they have."""
    building = guns(36, ["L2"] * 3)
    start = run(building, [session(f"g{i}") for i in range(3)], [meter(0)])
    steady = run(building, _drawing(12, 19, 3), [meter((0, 36, 0), at(20))], start.state, at(20))
    step = run(building, _drawing(12, 24, 3), [meter((0, 48, 0), at(25))], steady.state, at(25))
    assert [amps(step, f"g{i}") for i in range(3)] == [D(8)] * 3
    # The cars still draw 12 A: their 12 A of excess looks like other load, and one car is paused.
    lagging = run(building, _drawing(12, 25.5, 3), [meter((0, 48, 0), at(26))], step.state, at(26))
    paused = [f"g{i}" for i in range(3) if amps(lagging, f"g{i}") == 0]
    assert len(paused) == 1 and lagging.why[paused[0]].why is Why.ROTATION
    # They followed: the other load is 12 A again, and the paused car resumes at once, not after 300 s.
    followed = [session(f"g{i}", draw_a=three((0 if f"g{i}" in paused else 6, 0, 0)), draw_at=at(27.5))
                for i in range(3)]
    back = run(building, followed, [meter((0, 24, 0), at(28))], lagging.state, at(28))
    assert back.non_ev_a["supply"][1] == D(12)
    assert amps(back, paused[0]) > 0
    # A pause from a rise that was not provisional still rests its min_pause_s.
    real = run(building, _drawing(8, 27, 3), [meter((0, 24 + 24, 0), at(28))], step.state, at(28))
    rested = [f"g{i}" for i in range(3) if amps(real, f"g{i}") == 0]
    assert rested
    def quiet(t):
        return [session(f"g{i}", draw_a=three((0 if f"g{i}" in rested else 6, 0, 0)), draw_at=at(t - 1)) for i in range(3)]

    calm = run(building, quiet(40), [meter((0, 24, 0), at(40))], real.state, at(40))
    calm = run(building, quiet(71), [meter((0, 24, 0), at(71))], calm.state, at(71))
    assert calm.non_ev_a["supply"][1] == D(12)  # the drop is believed: there is room again
    assert all(amps(calm, key) == 0 and calm.why[key].why is Why.ROTATION for key in rested)


def test_only_a_pause_on_the_phase_of_the_provisional_rise_is_a_pause_on_lag():
    """A car paused on another phase, at the same moment, by a real rise of the other load there, rests its
    min_pause_s like any: only the node phases whose estimate holds a provisional part explain a pause."""
    building = guns(36, ["L2", "L2", "L2", "L1"])
    cars = [f"g{i}" for i in range(4)]

    def drawing(l2, l1, when):
        return [session(key, draw_a=three((l1 if key == "g3" else l2, 0, 0)), draw_at=at(when)) for key in cars]

    start = run(building, [session(key) for key in cars], [meter(0)])
    steady = run(building, drawing(12, 12, 19), [meter((12, 36, 0), at(20))], start.state, at(20))
    step = run(building, drawing(12, 12, 24), [meter((12, 48, 0), at(25))], steady.state, at(25))
    assert [amps(step, key) for key in cars[:3]] == [D(8)] * 3 and amps(step, "g3") > 0
    # L2's cars have not followed (their excess is provisional there); on L1 a machine takes 34 A for real.
    lagging = run(building, drawing(12, 12, 25.5), [meter((12 + 34, 48, 0), at(26))], step.state, at(26))
    assert lagging.state.estimates["supply"].provisional_ma == (0, 12_000, 0)
    paused_l2 = [key for key in cars[:3] if amps(lagging, key) == 0]
    assert len(paused_l2) == 1 and lagging.state.connectors[paused_l2[0]].paused_on_lag
    assert amps(lagging, "g3") == 0
    assert not lagging.state.connectors["g3"].paused_on_lag
