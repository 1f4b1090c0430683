"""Properties of the allocator over random buildings, sessions and meter readings (no database)."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.loadbalancing.allocator import (
    ROTATIONS,
    Connector,
    MeterReading,
    Node,
    Parameters,
    Session,
    allocate,
)
from tests.loadbalancing.checks import T0, assert_limits_well_formed, assert_safe, at, grid_load, under

D = Decimal
SINGLE = ["L1", "L2", "L3"]
THREE = ["RST", "RTS", "SRT", "STR", "TRS", "TSR"]


def amps(low: int, high: int):
    return st.integers(low * 10, high * 10).map(lambda x: D(x) / 10)


@st.composite
def trees(draw) -> list[Node]:
    """A supply and up to 9 more nodes, at most 4 levels deep."""
    count = draw(st.integers(1, 10))
    nodes: list[Node] = []
    depth: dict[str, int] = {}
    for i in range(count):
        key = "supply" if i == 0 else f"n{i}"
        parents = [n.key for n in nodes if depth[n.key] < 3]
        parent = None if i == 0 else draw(st.sampled_from(parents))
        depth[key] = 0 if parent is None else depth[parent] + 1
        symmetric = draw(st.booleans())
        limit = draw(amps(10, 250))
        limits = (limit,) * 3 if symmetric else (limit, draw(amps(10, 250)), draw(amps(10, 250)))
        nodes.append(Node(
            key=key, parent=parent, limits_a=limits,
            max_power_w=draw(st.none() | st.integers(3_000, 120_000)),
            derate=draw(st.sampled_from([D(1), D("0.8"), D("0.875")])),
            margin_a=draw(st.sampled_from([D(0), D(1), D("2.5"), D(5)])),
            voltage_v=draw(st.sampled_from([230, 220, 240])),
        ))
    return nodes


@st.composite
def connectors_for(draw, nodes: list[Node]) -> list[Connector]:
    out = []
    for i in range(draw(st.integers(1, 14))):
        node = draw(st.sampled_from([n.key for n in nodes]))
        kind = draw(st.sampled_from(["ac1", "ac1", "ac3", "dc"]))
        common = {
            "key": f"c{i:02d}", "node": node,
            "online": draw(st.booleans() | st.just(True)), "compliant": draw(st.booleans() | st.just(True)),
        }
        if kind == "dc":
            max_w = draw(st.integers(10, 150)) * 1000
            out.append(Connector(
                **common, phases=3, rotation=draw(st.sampled_from(THREE)), dc=True, max_power_w=max_w,
                min_power_w=draw(st.none() | st.integers(1_000, max_w)), min_current_a=D(0),
                efficiency=draw(st.none() | st.sampled_from([D("0.9"), D("0.93"), D("0.95")])),
                step_w=draw(st.sampled_from([1, 100, 500])),
            ))
        else:
            low = draw(st.sampled_from([D(6), D(6), D(8), D("6.5")]))
            high = draw(amps(int(low) + 1, 63))
            out.append(Connector(
                **common, phases=1 if kind == "ac1" else 3,
                rotation=draw(st.sampled_from(SINGLE if kind == "ac1" else THREE)),
                min_current_a=low, max_current_a=high,
                step_a=draw(st.sampled_from([D("0.1"), D(1), D("0.5")])),
                default_limit_a=draw(st.sampled_from([D(0), D(0), D(6)])),
            ))
    return out


@st.composite
def sessions_for(draw, connectors: list[Connector]) -> list[Session]:
    out = []
    for c in connectors:
        if not draw(st.booleans()):
            continue
        phases = draw(st.none() | st.integers(1, c.phases))
        age = draw(st.sampled_from([0, 5, 30, 200]))
        out.append(Session(
            id=f"s-{c.key}", connector=c.key, arrived_at=at(-draw(st.integers(0, 3600))),
            phases_in_use=phases,
            draw_a=None if c.dc else tuple(draw(amps(0, 40)) for _ in range(3)),
            draw_w=draw(st.integers(0, 160_000)) if c.dc else None,
            draw_at=draw(st.none() | st.just(at(-age))),
            priority=draw(st.sampled_from([D(1), D(1), D(2), D("0.5")])),
            energy_wh=draw(st.integers(0, 50_000)),
            # what the car still needs moves weights and water levels: safety must not depend on it
            demand_wh=draw(st.none() | st.integers(0, 90_000)),
            departure=draw(st.none() | st.builds(at, st.integers(-3600, 16 * 3600))),
        ))
    return out


@st.composite
def readings(draw) -> list[MeterReading]:
    kind = draw(st.sampled_from(["fresh", "fresh", "fresh", "stale", "none", "spike"]))
    if kind == "none":
        return []
    when = at(-draw(st.integers(0, 10))) if kind != "stale" else at(-120)
    currents = (D(999),) * 3 if kind == "spike" else tuple(draw(amps(0, 300)) for _ in range(3))
    return [MeterReading("supply", currents, when)]


@st.composite
def worlds(draw):
    nodes = draw(trees())
    connectors = draw(connectors_for(nodes))
    sessions = draw(sessions_for(connectors))
    meters = draw(readings())
    params = Parameters(stale_ev_budget_a=draw(st.sampled_from([D(0), D(16), D(40)])))
    return nodes, connectors, sessions, meters, params


MILLIAMP = Fraction(1, 1000)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(worlds())
def test_the_plan_never_exceeds_a_limit_and_every_limit_is_quantized_down(world):
    nodes, connectors, sessions, meters, params = world
    result = allocate(nodes, connectors, sessions, meters, None, T0, params)
    assert_safe(result, nodes, connectors, sessions, params)
    assert_limits_well_formed(result, connectors)
    managed = {c.key for c in connectors if c.online and c.compliant}
    with_session = {s.connector for s in sessions}
    assert set(result.limits) == managed & with_session
    assert set(result.why) == {c.key for c in connectors}


@PROPERTY
@given(worlds())
def test_the_non_ev_estimate_never_believes_less_than_the_meter_shows(world):
    """Rises are believed at once: what is planned with is at least the reading minus every EV's fresh draw."""
    nodes, connectors, sessions, meters, params = world
    result = allocate(nodes, connectors, sessions, meters, None, T0, params)
    used = result.non_ev_a["supply"]
    if meters and not any("site meter" in w for w in result.warnings):
        drawn = [Fraction(0)] * 3
        for s in sessions:
            if s.draw_at is not None and (T0 - s.draw_at).total_seconds() <= params.ev_sample_max_age_s:
                c = next(c for c in connectors if c.key == s.connector)
                rotation = ROTATIONS[c.rotation]
                if c.dc:
                    load = grid_load(c, s, None, s.draw_w, {n.key: n for n in nodes}, params)
                else:
                    load = {rotation[k]: Fraction(s.draw_a[k]) for k in range(c.phases)}
                for p, a in load.items():
                    drawn[p] += a
        for p in range(3):
            assert Fraction(used[p]) >= Fraction(meters[0].currents_a[p]) - drawn[p] - Fraction(1, 1000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.randoms(use_true_random=False))
def test_safe_at_every_cycle_while_the_meter_and_the_cars_wander(world, rnd: random.Random):
    """Many cycles with state carried over: spikes, silences, cars ramping and sulking; safe every time."""
    nodes, connectors, sessions, meters, params = world
    state = None
    base = [rnd.uniform(0, 200) for _ in range(3)]
    for cycle in range(25):
        now = at(cycle * 7)
        roll = rnd.random()
        if roll < 0.05:
            meters = [MeterReading("supply", (D(999),) * 3, now)]
        elif roll < 0.1:
            meters = []
        else:
            currents = tuple(D(str(round(max(0.0, b + rnd.uniform(-40, 40)), 1))) for b in base)
            meters = [MeterReading("supply", currents, now)]
        if rnd.random() < 0.2 and sessions:
            sessions = sessions[:-1]  # a car leaves
        sessions = [replace(s, draw_at=now, energy_wh=s.energy_wh + rnd.randrange(0, 3000), draw_a=None if s.draw_a is None else tuple(
            D(str(round(rnd.uniform(0, 35), 1))) for _ in range(3))) for s in sessions]
        result = allocate(nodes, connectors, sessions, meters, state, now, params)
        assert_safe(result, nodes, connectors, sessions, params)
        assert_limits_well_formed(result, connectors)
        state = result.state


@PROPERTY
@given(worlds(), st.randoms(use_true_random=False))
def test_the_same_inputs_give_the_same_answer_in_any_order(world, rnd: random.Random):
    nodes, connectors, sessions, meters, params = world
    first = allocate(nodes, connectors, sessions, meters, None, T0, params)
    shuffled = [list(x) for x in (nodes, connectors, sessions)]
    for x in shuffled:
        rnd.shuffle(x)
    second = allocate(shuffled[0], shuffled[1], shuffled[2], meters, None, T0, params)
    assert first == second


@st.composite
def fair_worlds(draw):
    """Equal priorities, everything online, fresh meter: the setting in which max-min fairness is checkable."""
    nodes = draw(trees())
    connectors = [replace(c, online=True, compliant=True) for c in draw(connectors_for(nodes))]
    sessions = [replace(s, priority=D(1), demand_wh=None, departure=None) for s in draw(sessions_for(connectors))]
    currents = tuple(draw(amps(0, 150)) for _ in range(3))
    return nodes, connectors, sessions, [MeterReading("supply", currents, T0)]


@PROPERTY
@given(fair_worlds())
def test_max_min_fair_no_one_can_gain_without_someone_with_less_or_equal_losing(world):
    """Every running car below its demand is held by a full constraint on its path (one more step of its own
    would break it, counted as the allocator counts: whole mA of grid current), and on one such constraint no
    other car could pay for that step and still stay above it (and above its own minimum): it could only gain
    at the expense of someone with less or as much. Up to two steps of the coarsest charger (quantization)."""
    nodes, connectors, sessions, meters = world
    result = allocate(nodes, connectors, sessions, meters, None, T0)
    by_node = {n.key: n for n in nodes}
    of = {s.connector: s for s in sessions}
    conn = {c.key: c for c in connectors}
    running = {k: lim for k, lim in result.limits.items() if not lim.paused}

    def load_of(key, amps=None, watts=None):
        c = conn[key]
        lim = running[key]
        return grid_load(c, of[key], lim.amps if amps is None else amps, lim.watts if watts is None else watts,
                         by_node, Parameters())

    levels = {key: max(load_of(key).values()) for key in running}

    def level(key) -> Fraction:
        return levels[key]

    def step_of(key) -> Fraction:
        c = conn[key]
        if c.dc:
            return max(load_of(key, watts=running[key].watts + c.step_w).values()) - level(key)
        return Fraction(c.step_a)

    totals = {n.key: [Fraction(0)] * 3 for n in nodes}
    members: dict[tuple[str, int], list[str]] = {}
    for key in running:
        for n in under(by_node, conn[key].node):
            for p, a in load_of(key).items():
                totals[n][p] += a
                members.setdefault((n, p), []).append(key)
            members.setdefault((n, "W"), []).append(key)
    budget = {n.key: result.nodes[n.key] for n in nodes}

    # Quantization leaves each car up to two steps of the coarsest charger from its exact fair share.
    coarsest = 2 * max([step_of(k) for k in running], default=Fraction(0))
    for key, lim in running.items():
        c = conn[key]
        at_max = (lim.watts + c.step_w > c.max_power_w) if c.dc else (lim.amps + c.step_a > c.max_current_a)
        if at_max:
            continue
        grown = load_of(key, amps=None if c.dc else lim.amps + c.step_a, watts=lim.watts + c.step_w if c.dc else None)
        delta = {p: grown[p] - load_of(key)[p] for p in grown}
        blockers = []
        rooms = {}  # per constraint on its path: how much more per phase it could take there
        for n in under(by_node, c.node):
            b = budget[n]
            for p, d in delta.items():
                room = Fraction(b.capacity_a[p]) - Fraction(b.non_ev_a[p]) - Fraction(b.unmanaged_a[p]) - Fraction(
                    b.planned_a[p])
                rooms[(n, p)] = room
                if d > room - MILLIAMP:  # the allocator counts whole mA, rounded towards safety
                    blockers.append((n, p))
            node = by_node[n]
            if node.max_power_w is not None:
                used_w = Fraction(b.planned_power_w)
                rooms[(n, "W")] = (node.max_power_w - used_w) / (node.voltage_v * len(delta))
                grown_w = used_w + sum(node.voltage_v * (d + MILLIAMP) for d in delta.values())
                if grown_w > node.max_power_w:
                    blockers.append((n, "W"))
        assert blockers, f"{key} could take one more step and nothing stops it"

        def floor_of(k) -> Fraction:
            c = conn[k]
            if c.dc:
                floor_w = -(-(c.min_power_w or c.step_w) // c.step_w) * c.step_w
                return max(grid_load(c, of[k], None, floor_w, by_node, Parameters()).values())
            return math.ceil(Fraction(c.min_current_a) / Fraction(c.step_a)) * Fraction(c.step_a)

        def could_fund(k, constraint, key=key, delta=delta) -> bool:
            """Whether k could give up, in whole steps of its own, what our step needs on this constraint while
            staying at or above its minimum and above our new level: then we are held unfairly."""
            _node, phase = constraint
            k_load = load_of(k)
            if phase == "W":
                need = sum(delta.values()) / len(k_load)
            else:
                need = delta.get(phase, Fraction(0)) if phase in k_load else None
            if need is None:
                return False
            steps = math.ceil((need - MILLIAMP) / step_of(k)) if need > MILLIAMP else 0
            after = level(k) - steps * step_of(k)
            return after >= floor_of(k) + MILLIAMP and after > level(key) + max(delta.values()) + coarsest

        def fair_on(constraint, key=key, rooms=rooms, could_fund=could_fund) -> bool:
            elsewhere = min([r for other, r in rooms.items() if other != constraint], default=Fraction(10**9))
            if elsewhere <= coarsest:
                return True  # what it could gain is quantization dust
            return not any(could_fund(k, constraint) for k in members.get(constraint, []) if k != key)

        assert any(fair_on(b) for b in blockers), f"{key} is held where others have more: {blockers}"
