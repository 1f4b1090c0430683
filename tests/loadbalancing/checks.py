"""Buildings for the allocator's tests, and checks that recompute its promises independently (exact fractions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from apps.loadbalancing.allocator import (
    DEFAULT_PARAMETERS,
    ROTATIONS,
    Allocation,
    Connector,
    MeterReading,
    Node,
    Parameters,
    Session,
    allocate,
)

D = Decimal
T0 = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def three(amps) -> tuple[Decimal, Decimal, Decimal]:
    if isinstance(amps, (tuple, list)):
        return (D(str(amps[0])), D(str(amps[1])), D(str(amps[2])))
    return (D(str(amps)),) * 3


def meter(amps, when: datetime = T0, node: str = "supply", stale_after_s: int = 15) -> MeterReading:
    return MeterReading(node, three(amps), when, stale_after_s)


@dataclass
class Building:
    nodes: list[Node]
    connectors: list[Connector]

    def connector(self, key: str) -> Connector:
        return next(c for c in self.connectors if c.key == key)


def maple_court() -> Building:
    """examples/maple-court.yaml: 200 A supply (derate 0.8, margin 5 A), a garage panel of 100 A, cabinet A
    (32 A, 20 kW input) with six 7.4 kW single-phase guns on L1, L2, L3, L1, L2, L3, and a 30 kW DC charger."""
    nodes = [
        Node("supply", three(200), derate=D("0.8"), margin_a=D(5)),
        Node("garage-panel", three(100), parent="supply"),
        Node("cabinet-a", three(32), parent="garage-panel", max_power_w=20_000),
    ]
    connectors = [
        Connector(f"MAPLE-CAB-A#{i}", "cabinet-a", phases=1, rotation=("L1", "L2", "L3")[(i - 1) % 3],
                  max_current_a=D(32))
        for i in range(1, 7)
    ]
    connectors.append(Connector("MAPLE-DC-1#1", "supply", phases=3, rotation="RST", dc=True, max_power_w=30_000,
                                min_power_w=5_000, efficiency=D("0.93"), min_current_a=D(0)))
    return Building(nodes, connectors)


def session(connector: str, arrived: float = 0, **kwargs) -> Session:
    return Session(id=f"s-{connector}", connector=connector, arrived_at=at(arrived), **kwargs)


# ---------------------------------------------------------------------------------- independent arithmetic


def _efficiency(c: Connector, params: Parameters) -> Fraction:
    return Fraction(c.efficiency or params.default_dc_efficiency)


def grid_load(c: Connector, s: Session | None, amps: Decimal | None, watts: int | None, nodes: dict[str, Node],
              params: Parameters) -> dict[int, Fraction]:
    """What a connector may draw per grid phase under a limit (exact)."""
    rotation = ROTATIONS[c.rotation]
    used = rotation if c.dc or s is None or s.phases_in_use is None else rotation[: s.phases_in_use]
    if c.dc:
        per_phase = Fraction(watts or 0) / (_efficiency(c, params) * c.phases * nodes[c.node].voltage_v)
        return dict.fromkeys(used, per_phase)
    return dict.fromkeys(used, Fraction(amps or 0))


def worst_load(c: Connector, nodes: dict[str, Node], params: Parameters) -> dict[int, Fraction]:
    if c.dc:
        return grid_load(c, None, None, c.max_power_w, nodes, params)
    return dict.fromkeys(ROTATIONS[c.rotation], Fraction(c.max_current_a))


def under(nodes: dict[str, Node], node: str) -> list[str]:
    """node and its ancestors."""
    out = []
    cursor: str | None = node
    while cursor is not None:
        out.append(cursor)
        cursor = nodes[cursor].parent
    return out


def assert_safe(result: Allocation, nodes: Sequence[Node], connectors: Sequence[Connector],
                sessions: Sequence[Session], params: Parameters = DEFAULT_PARAMETERS) -> None:
    """Planned allocation + non-EV + unmanaged <= limit x derate - margin on every node and phase, and the
    power limits; where the load without EVs alone is over, no managed EV may be planned there."""
    by_key = {n.key: n for n in nodes}
    of = {s.connector: s for s in sessions}
    fixed = {n.key: [Fraction(0)] * 3 for n in nodes}
    planned = {n.key: [Fraction(0)] * 3 for n in nodes}
    for c in connectors:
        if not c.online or not c.compliant:
            load = worst_load(c, by_key, params)
            target = fixed
        elif c.key in result.limits:
            limit = result.limits[c.key]
            load = grid_load(c, of.get(c.key), limit.amps, limit.watts, by_key, params)
            target = planned
        elif c.key not in of and not c.dc:
            load = dict.fromkeys(ROTATIONS[c.rotation], Fraction(c.default_limit_a))
            target = fixed
        else:
            continue
        for n in under(by_key, c.node):
            for p, amps in load.items():
                target[n][p] += amps
    # Non-EV as planned: at each metered node, carried up to unmetered parents.
    non_ev = {n.key: [Fraction(0)] * 3 for n in nodes}
    for key, amps in result.non_ev_a.items():
        for n in under(by_key, key):
            if n != key and n in result.non_ev_a:
                break
            for p in range(3):
                non_ev[n][p] += Fraction(amps[p])
    for n in nodes:
        cap = [Fraction(n.limits_a[p]) * Fraction(n.derate) - Fraction(n.margin_a) for p in range(3)]
        for p in range(3):
            base = non_ev[n.key][p] + fixed[n.key][p]
            if base > cap[p]:
                assert planned[n.key][p] == 0, f"{n.key} L{p + 1}: EVs planned although the rest is over"
            else:
                total = base + planned[n.key][p]
                assert total <= cap[p], f"{n.key} L{p + 1}: {float(total):.3f} A > {float(cap[p]):.3f} A"
        if n.max_power_w is not None:
            base_w = sum(n.voltage_v * (non_ev[n.key][p] + fixed[n.key][p]) for p in range(3))
            total_w = base_w + sum(n.voltage_v * planned[n.key][p] for p in range(3))
            if base_w > n.max_power_w:
                assert sum(planned[n.key]) == 0
            else:
                assert total_w <= n.max_power_w, f"{n.key}: {float(total_w):.1f} W > {n.max_power_w} W"


def assert_limits_well_formed(result: Allocation, connectors: Sequence[Connector]) -> None:
    """Within each connector's own range, on its charger's grid (quantized down, never up), or 0."""
    by_key = {c.key: c for c in connectors}
    for key, limit in result.limits.items():
        c = by_key[key]
        if c.dc:
            assert limit.amps is None and limit.watts is not None
            assert limit.watts % c.step_w == 0
            if limit.watts:
                assert (c.min_power_w or 0) <= limit.watts <= (c.max_power_w or 0)
        else:
            assert limit.watts is None and limit.amps is not None
            assert limit.amps % c.step_a == 0, f"{key}: {limit.amps} is not a multiple of {c.step_a}"
            if limit.amps:
                assert c.min_current_a <= limit.amps <= c.max_current_a


def planned_a(result: Allocation, key: str) -> Decimal:
    limit = result.limits[key]
    return limit.amps if limit.amps is not None else D(limit.watts or 0)


# The allocator run as the scenario tests run it: every result checked for safety and well-formed limits.
DEFAULTS = Parameters()


def run(building: Building, sessions, meters, state=None, now=T0, params=DEFAULTS):
    result = allocate(building.nodes, building.connectors, sessions, meters, state, now, params)
    assert_safe(result, building.nodes, building.connectors, sessions, params)
    assert_limits_well_formed(result, building.connectors)
    return result


def amps(result, key) -> Decimal:
    return result.limits[key].amps


def guns(limits_a, rotations, *, supply_kwargs=None, **connector_kwargs) -> Building:
    """A supply and single-phase guns g0, g1, ... wired to the given grid phases."""
    nodes = [Node("supply", three(limits_a), **(supply_kwargs or {}))]
    connectors = [Connector(f"g{i}", "supply", rotation=r, **connector_kwargs) for i, r in enumerate(rotations)]
    return Building(nodes, connectors)
