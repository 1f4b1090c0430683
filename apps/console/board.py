"""The building console's picture: each circuit's load against its limit per phase, each connector's state, limit
and the reason for it, and what changed since the last picture. Pure: no Django, no I/O, no clock (the caller
reads the database and Redis and passes plain values in).

A node's load on a grid phase is what its chargers draw now (their live currents, each connector's phases mapped
to the grid's through its rotation) plus the rest of its load as the latest balancing run saw it (the non-EV load
it believed and the draw of chargers it could not control). Where the run knew nothing of the node (no run yet,
or a node it did not meter), the rest is unknown and the picture says so instead of counting it as zero.
Amperes have one decimal, kW one, kWh two, all Decimal; the JSON form carries them as strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from apps.loadbalancing.allocator import ROTATIONS

PHASES = ("L1", "L2", "L3")
TENTH = Decimal("0.1")
HUNDREDTH = Decimal("0.01")
HIGH_PERCENT = 90  # a phase at or above this share of its limit is shown as high


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class CircuitInfo:
    """A node of the electrical tree; ``limit_a`` per grid phase is what it may carry (derated, less its margin)."""

    key: str
    name: str
    parent: str | None
    limit_a: tuple[Decimal, Decimal, Decimal]
    max_power_w: int | None = None


@dataclass(frozen=True)
class ConnectorInfo:
    key: str  # "CHARGER#1", as the balancer names it
    charge_point_id: str
    number: int
    circuit: str
    rotation: str  # a key of allocator.ROTATIONS
    spot: str = ""
    dc: bool = False


@dataclass(frozen=True)
class SessionInfo:
    """The session under way on a connector, and whose it is."""

    transaction_id: int | None
    resident: str = ""
    unit: str = ""
    started_at: datetime | None = None


@dataclass(frozen=True)
class ConnectorNow:
    """What a connector's charger last reported (its live state)."""

    online: bool = False
    status: str = ""
    error_code: str = ""
    currents_a: tuple[Decimal | None, Decimal | None, Decimal | None] = (None, None, None)
    power_w: Decimal | None = None
    session_energy_wh: int | None = None
    transaction_id: int | None = None


@dataclass(frozen=True)
class RunInfo:
    """The latest balancing run, as recorded (apps.loadbalancing.models.BalancingRun's JSON fields)."""

    run_id: int
    started_at: datetime
    limits: Mapping[str, Mapping[str, Any]]
    nodes: Mapping[str, Mapping[str, Any]]


# --------------------------------------------------------------------------------------------- the picture


@dataclass(frozen=True)
class PhaseRow:
    phase: str
    limit_a: Decimal
    ev_a: Decimal
    other_a: Decimal | None  # None: not known (see the module's docstring)
    load_a: Decimal
    percent: int | None  # of the limit; None for a phase with no limit
    level: str  # "ok", "high" or "over"


@dataclass(frozen=True)
class NodeRow:
    key: str
    name: str
    depth: int
    phases: tuple[PhaseRow, ...]


@dataclass(frozen=True)
class ConnectorRow:
    key: str
    charge_point_id: str
    number: int
    circuit: str
    spot: str
    online: bool
    status: str
    error_code: str
    currents_a: tuple[Decimal | None, Decimal | None, Decimal | None]
    power_kw: Decimal | None
    limit: str  # "14.4 A", "22000 W" or "" (no limit set by the balancer)
    why: str
    sentence: str
    resident: str
    unit: str
    session_kwh: Decimal | None

    @property
    def currents_text(self) -> str:
        """As the page shows them: "15.9 / — / —" (static/js/console.js writes the same)."""
        return " / ".join(str(a) if a is not None else "—" for a in self.currents_a)

    @property
    def session_kwh_text(self) -> str:
        return f"{self.session_kwh} kWh" if self.session_kwh is not None else ""


@dataclass(frozen=True)
class Picture:
    nodes: tuple[NodeRow, ...]
    connectors: tuple[ConnectorRow, ...]
    run_at: datetime | None


def picture(circuits: Sequence[CircuitInfo], connectors: Sequence[ConnectorInfo],
            now: Mapping[str, ConnectorNow], sessions: Mapping[str, SessionInfo], run: RunInfo | None) -> Picture:
    """The console's picture. ``circuits`` in any order (a parent before or after its children); ``now`` and
    ``sessions`` by connector key (a connector missing from ``now`` is offline and silent)."""
    order = _tree_order(circuits)
    children: dict[str | None, list[str]] = {}
    for circuit in circuits:
        children.setdefault(circuit.parent, []).append(circuit.key)
    ev_by_circuit: dict[str, list[Decimal]] = {c.key: [Decimal(0)] * 3 for c in circuits}
    rows = []
    for connector in sorted(connectors, key=lambda c: (c.charge_point_id, c.number)):
        state = now.get(connector.key, ConnectorNow())
        grid = _grid_currents(connector, state)
        if connector.circuit in ev_by_circuit:
            for phase, amps in enumerate(grid):
                ev_by_circuit[connector.circuit][phase] += amps
        rows.append(_connector_row(connector, state, sessions.get(connector.key), run))
    subtree: dict[str, list[Decimal]] = {}
    for key, _ in reversed(order):  # children before parents
        total = list(ev_by_circuit[key])
        for child in children.get(key, []):
            total = [a + b for a, b in zip(total, subtree[child], strict=True)]
        subtree[key] = total
    by_key = {c.key: c for c in circuits}
    nodes = tuple(_node_row(by_key[key], depth, subtree[key], run) for key, depth in order)
    return Picture(nodes=nodes, connectors=tuple(rows), run_at=run.started_at if run is not None else None)


def _tree_order(circuits: Sequence[CircuitInfo]) -> list[tuple[str, int]]:
    """Depth-first from the supply (children by key), with each node's depth; nodes whose parent is unknown
    (a tree being edited) come last, at depth 0, so that nothing is hidden."""
    keys = {c.key for c in circuits}
    children: dict[str | None, list[str]] = {}
    for circuit in circuits:
        parent = circuit.parent if circuit.parent in keys else None
        children.setdefault(parent, []).append(circuit.key)
    order: list[tuple[str, int]] = []
    seen: set[str] = set()
    stack = [(key, 0) for key in sorted(children.get(None, []), reverse=True)]
    while stack:
        key, depth = stack.pop()
        if key in seen:
            continue
        seen.add(key)
        order.append((key, depth))
        stack.extend((child, depth + 1) for child in sorted(children.get(key, []), reverse=True))
    order.extend((c.key, 0) for c in sorted(circuits, key=lambda c: c.key) if c.key not in seen)  # a loop
    return order


def _grid_currents(connector: ConnectorInfo, state: ConnectorNow) -> list[Decimal]:
    """The connector's draw on each grid phase: its own phases through its rotation. A single-phase connector's
    current is whichever phase its charger reported it on."""
    grid = [Decimal(0)] * 3
    rotation = ROTATIONS.get(connector.rotation, (0,))
    reported = [a for a in state.currents_a if a is not None and a > 0]
    if len(rotation) == 1:
        if reported:
            grid[rotation[0]] += max(reported)
        return grid
    for own, amps in enumerate(state.currents_a):
        if amps is not None and amps > 0 and own < len(rotation):
            grid[rotation[own]] += amps
    return grid


def _node_row(circuit: CircuitInfo, depth: int, ev_a: list[Decimal], run: RunInfo | None) -> NodeRow:
    seen = run.nodes.get(circuit.key) if run is not None else None
    other = _other_load(seen) if seen is not None else None
    limits = amps_list(seen.get("capacity_a")) if seen is not None else None
    phases = []
    for index, name in enumerate(PHASES):
        limit = limits[index] if limits is not None else circuit.limit_a[index]
        ev = ev_a[index].quantize(TENTH, ROUND_HALF_UP)
        rest = other[index] if other is not None else None
        load = ev + (rest or 0)
        percent = int((load * 100 / limit).to_integral_value(ROUND_HALF_UP)) if limit > 0 else None
        level = "ok" if percent is None or percent < HIGH_PERCENT else ("high" if percent <= 100 else "over")
        phases.append(PhaseRow(name, limit, ev, rest, load, percent, level))
    return NodeRow(circuit.key, circuit.name or circuit.key, depth, tuple(phases))


def _other_load(seen: Mapping[str, Any]) -> list[Decimal] | None:
    non_ev, unmanaged = amps_list(seen.get("non_ev_a")), amps_list(seen.get("unmanaged_a"))
    if non_ev is None:
        return None
    return [(a + (unmanaged[i] if unmanaged is not None else 0)).quantize(TENTH, ROUND_HALF_UP)
            for i, a in enumerate(non_ev)]


def amps_list(raw: object) -> list[Decimal] | None:
    """Three amperes from a run's record; None when they are not there or do not read as numbers."""
    if not isinstance(raw, list | tuple) or len(raw) != 3:
        return None
    try:
        values = [Decimal(str(v)) for v in raw]
    except InvalidOperation:
        return None
    return values if all(v.is_finite() for v in values) else None


def _connector_row(connector: ConnectorInfo, state: ConnectorNow, session: SessionInfo | None,
                   run: RunInfo | None) -> ConnectorRow:
    balance = run.limits.get(connector.key, {}) if run is not None else {}
    limit = limit_text(balance)
    power = state.power_w
    energy = state.session_energy_wh
    return ConnectorRow(
        key=connector.key, charge_point_id=connector.charge_point_id, number=connector.number,
        circuit=connector.circuit, spot=connector.spot, online=state.online, status=state.status,
        error_code=state.error_code if state.error_code not in ("", "NoError") else "",
        currents_a=(_tenth(state.currents_a[0]), _tenth(state.currents_a[1]), _tenth(state.currents_a[2])),
        power_kw=(power / 1000).quantize(TENTH, ROUND_HALF_UP) if power is not None else None,
        limit=limit, why=str(balance.get("why") or ""), sentence=str(balance.get("sentence") or ""),
        resident=session.resident if session is not None else "", unit=session.unit if session is not None else "",
        session_kwh=(Decimal(energy) / 1000).quantize(HUNDREDTH, ROUND_HALF_UP)
        if energy is not None and session is not None else None,
    )


def limit_text(balance: Mapping[str, Any]) -> str:
    """A connector's limit in a balancing run's record as people read it: "14.4 A", "22000 W", or ""."""
    if balance.get("a") not in (None, ""):
        return f"{balance['a']} A"
    if balance.get("w") not in (None, ""):
        return f"{balance['w']} W"
    return ""


def _tenth(amps: Decimal | None) -> Decimal | None:
    return amps.quantize(TENTH, ROUND_HALF_UP) if amps is not None else None


# --------------------------------------------------------------------------------------------- the wire


def as_json(picture_: Picture) -> dict[str, Any]:
    """The picture as JSON-ready values (numbers as strings, exact), keyed for ``changes``."""
    return {
        "run_at": picture_.run_at.isoformat() if picture_.run_at is not None else None,
        "nodes": {row.key: _node_json(row) for row in picture_.nodes},
        "connectors": {row.key: _connector_json(row) for row in picture_.connectors},
    }


def _text(value: Decimal | None) -> str | None:
    return str(value) if value is not None else None


def _node_json(row: NodeRow) -> dict[str, Any]:
    return {"key": row.key, "name": row.name, "depth": row.depth, "phases": [
        {"phase": p.phase, "limit_a": str(p.limit_a), "ev_a": str(p.ev_a), "other_a": _text(p.other_a),
         "load_a": str(p.load_a), "percent": p.percent, "level": p.level} for p in row.phases]}


def _connector_json(row: ConnectorRow) -> dict[str, Any]:
    """Every field of the row (the page's script reads them by name), built directly: ``dataclasses.asdict``
    copied each value deeply and took two thirds of a push's time for 200 connectors."""
    return {
        "key": row.key, "charge_point_id": row.charge_point_id, "number": row.number, "circuit": row.circuit,
        "spot": row.spot, "online": row.online, "status": row.status, "error_code": row.error_code,
        "currents_a": [_text(a) for a in row.currents_a], "power_kw": _text(row.power_kw), "limit": row.limit,
        "why": row.why, "sentence": row.sentence, "resident": row.resident, "unit": row.unit,
        "session_kwh": _text(row.session_kwh),
    }


def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> dict[str, Any]:
    """What a client holding ``before`` (``as_json``) needs to show ``after``: the rows that differ, rows gone,
    and the run's time when it moved. An empty dict when nothing changed; all of ``after`` when ``before`` is None."""
    if before is None:
        return {"run_at": after["run_at"], "nodes": list(after["nodes"].values()),
                "connectors": list(after["connectors"].values()), "full": True}
    out: dict[str, Any] = {}
    for part in ("nodes", "connectors"):
        changed = [row for key, row in after[part].items() if before[part].get(key) != row]
        gone = sorted(set(before[part]) - set(after[part]))
        if changed:
            out[part] = changed
        if gone:
            out[f"{part}_gone"] = gone
    if before["run_at"] != after["run_at"]:
        out["run_at"] = after["run_at"]
    return out
