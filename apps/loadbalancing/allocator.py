"""The load-balancing allocator: the building's wiring, its sessions and its meter in; a limit per connector out.

Pure: no Django, no I/O, no clock (``now`` is an argument). Inputs and outputs are frozen dataclasses;
currents are Decimal amperes, powers integer watts. Inside, every current is an integer number of
milliamperes and every power an integer number of milliwatts, so results are exact and reproducible;
anything rounded is rounded towards safety (capacities down, loads up, limits down).

One call of ``allocate`` is one cycle:

1. non-EV load: site meter minus what the EV connectors draw; a rise is trusted at once, a drop only once
   it has held for ``drop_confirm_s``; a silent, skewed or implausible meter falls back to a safe budget;
2. headroom per node and phase: limit x derate - margin - non-EV - unmanaged load (offline, non-compliant
   and idle connectors at their worst plausible draw), and per node power limit in W;
3. reclaim: a car drawing well below its limit after the ramp-up window gets a cap a little above its draw;
4. floors: every running session gets its minimum if it fits on every node and phase of its path, else
   sessions pause in a fair order and take turns (minimum run and pause times, a resume margin); a car that
   has the energy it asked for and stopped drawing is paused;
5. water-filling above the floors, max-min fair in per-phase grid current, weighted by priority and, for a
   session that carries its demand and departure, by the rate it needs, from the share it already has
   (equal shares of demand by departure rather than equal current; ``_need``), counting the time at the end
   of its stay when its phases are its own (``_own_time``);
6. quantization down to what each charger accepts, then the leftover steps handed out in fair order.

Each connector's limit comes with the constraint that bound it and a sentence for "why is my car slow".
Sending the limits (decreases first, OCPP profiles, leases) is the control loop's work; ``split_changes``
and ``lease_floors`` are the pure parts of it.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from functools import lru_cache

PHASES = ("L1", "L2", "L3")
# Grid phase (0 = L1) wired to each of the connector's phases L1, L2, L3.
ROTATIONS: dict[str, tuple[int, ...]] = {
    "L1": (0,), "L2": (1,), "L3": (2,),
    "RST": (0, 1, 2), "RTS": (0, 2, 1), "SRT": (1, 0, 2), "STR": (1, 2, 0), "TRS": (2, 0, 1), "TSR": (2, 1, 0),
}
INFINITY = 1 << 62
# A priority of 1 is a weight of 10: priorities have one decimal.
WEIGHT_SCALE = 10
# A session's need scales its weight in 128ths: 128 is neutral (no demand info); Parameters bound it.
NEED_SCALE = 128
# Water-filling counts in 1/1280 mA, so that a level step (one unit per weight) is 1 mA at priority 1, neutral need.
FINE = WEIGHT_SCALE * NEED_SCALE
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class AllocationInputError(ValueError):
    """The tree, the connectors or the sessions do not describe one consistent building."""


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Node:
    """A node of the electrical tree: the supply (no parent), a sub-panel or a cabinet."""

    key: str
    limits_a: tuple[Decimal, Decimal, Decimal]
    parent: str | None = None
    max_power_w: int | None = None  # a cabinet's input rating; not derated (it is not a breaker's)
    derate: Decimal = Decimal(1)
    margin_a: Decimal = Decimal(0)
    voltage_v: int = 230  # phase to neutral


@dataclass(frozen=True)
class Connector:
    """One charging gun as the allocator sees it.

    ``rotation``: for a single-phase gun the grid phase its L1 is wired to (L1, L2, L3); for a three-phase
    gun the grid phases on its L1, L2, L3 (RST ... TSR). ``step_a`` is the resolution the charger accepts
    (0.1 A, or 1 A for chargers that want integer amps); DC connectors are limited in W in ``step_w``.
    A connector that is offline or does not follow its profiles (``compliant`` False) is not managed: it
    counts as load at ``max_current_a`` (DC: ``max_power_w``). An idle connector reserves
    ``default_limit_a``, the TxDefaultProfile a new session starts with before it gets its own limit.
    ``accepts_zero`` False: the charger rejects 0 A, so its running session is never paused by a profile.
    """

    key: str
    node: str
    phases: int = 1
    rotation: str = "L1"
    min_current_a: Decimal = Decimal(6)
    max_current_a: Decimal = Decimal(32)
    dc: bool = False
    max_power_w: int | None = None
    min_power_w: int | None = None
    efficiency: Decimal | None = None
    step_a: Decimal = Decimal("0.1")
    step_w: int = 100
    accepts_zero: bool = True
    online: bool = True
    compliant: bool = True
    default_limit_a: Decimal = Decimal(0)


@dataclass(frozen=True)
class Session:
    """A charging session on a connector.

    ``phases_in_use``: a single-phase car on a three-phase gun draws on the gun's L1 only (None: all of the
    gun's phases). ``draw_a`` is the measured current per connector phase (L1, L2, L3 of the gun, as its
    MeterValues report them); ``draw_w`` the DC output power; ``draw_at`` when it was measured, by the
    server's clock (a charger's clock may be skewed). ``priority`` weighs the fair share (1 = normal).
    """

    id: str
    connector: str
    arrived_at: datetime
    phases_in_use: int | None = None
    draw_a: tuple[Decimal, Decimal, Decimal] | None = None
    draw_w: int | None = None
    draw_at: datetime | None = None
    priority: Decimal = Decimal(1)
    energy_wh: int = 0
    demand_wh: int | None = None
    departure: datetime | None = None


@dataclass(frozen=True)
class MeterReading:
    """The latest reading of a site meter on ``node`` (usually the supply): current per grid phase."""

    node: str
    currents_a: tuple[Decimal, Decimal, Decimal] | None
    at: datetime | None
    stale_after_s: int = 15


@dataclass(frozen=True)
class Parameters:
    """The allocator's knobs (docs/load-balancing.md explains each)."""

    ramp_up_s: int = 60  # after a limit rises, the car gets this long to follow before it is reclaimed
    reclaim_below_a: Decimal = Decimal(3)  # "well below": the draw is this far under its limit
    reclaim_margin_a: Decimal = Decimal(2)  # the cap sits this far above the draw
    reclaim_rise_within_a: Decimal = Decimal(1)  # the cap is lifted when the draw comes this close to it
    min_run_s: int = 900  # a session that started running is not paused for rotation before this
    min_pause_s: int = 300  # a paused session is not resumed before this
    resume_margin_a: Decimal = Decimal(1)  # a waiting session starts only if its minimum fits with this to spare
    drop_confirm_s: int = 30  # a drop of the non-EV load is believed once it has held this long
    follow_s: int = 10  # a charger and its car take up to this long to follow a lower limit (see _lagging)
    lag_pause_grace_s: int = 60  # a car paused while part of the non-EV load was provisional may resume within
    # this without waiting min_pause_s: the pause may have come from cars that had not followed yet
    stale_ev_budget_a: Decimal = Decimal(0)  # per phase, for EVs under a silent meter's node
    ev_sample_max_age_s: int = 90  # an EV's draw older than this is not subtracted from the meter
    clock_skew_s: int = 5  # a timestamp further ahead of now than this is not believed
    implausible_factor: Decimal = Decimal(2)  # a reading above this x the node's rating is a meter fault
    default_dc_efficiency: Decimal = Decimal("0.9")  # when a DC connector has none (lower is safer)
    need_reference_a: Decimal = Decimal(16)  # a car needing this grid current per phase weighs as one without demand
    need_min: Decimal = Decimal("0.125")  # the need factor's bounds (x priority)
    need_max: Decimal = Decimal(8)
    need_horizon_s: int = 1800  # the time left to a departure is never counted below this (a late car)
    need_default_stay_s: int = 8 * 3600  # a car with a demand and no departure: as if it left this long from now
    done_within: Decimal = Decimal("0.01")  # a car this close to its demand (share of it) has what it asked for
    done_recheck_s: int = 1800  # a car paused as done is offered its minimum again after this (the demand may be
    # an estimate from the resident's history, or the car only stopped for a while): paused again if it still
    # does not draw after its ramp-up window, charging on (at the lowest weight) if it does
    need_period_s: int = 900  # need factors and shares are re-evaluated at most once per period (wall-clock aligned)
    # The residents' time runs this many times faster than ``now`` (1 in service): a closed-loop simulation
    # that plays a night in minutes. The residents' timers (min_run_s, min_pause_s, done_recheck_s,
    # need_period_s, need_horizon_s, need_default_stay_s) count their time, and so does the time to a
    # departure over which energy is needed; the devices' timers (ramp-up, follow, drop confirmation,
    # staleness) stay in ``now``'s seconds.
    pace: int = 1

    def __post_init__(self) -> None:
        if self.pace < 1:
            raise ValueError(f"pace must be 1 or more, not {self.pace}")


DEFAULT_PARAMETERS = Parameters()


# ---------------------------------------------------------------------------------------------- state


@dataclass(frozen=True)
class NonEvEstimate:
    """The non-EV load believed at a metered node, per grid phase, in mA; and a drop waiting for confirmation."""

    estimate_ma: tuple[int, int, int]
    pending_since: tuple[datetime | None, datetime | None, datetime | None] = (None, None, None)
    pending_peak_ma: tuple[int, int, int] = (0, 0, 0)
    read_at: datetime | None = None
    # The part of the latest rise that lowered cars still drawing above their new limits may explain (their
    # own samples say so), and when it rose: a lower reading within follow_s gives it back at once.
    provisional_ma: tuple[int, int, int] = (0, 0, 0)
    provisional_at: tuple[datetime | None, datetime | None, datetime | None] = (None, None, None)


@dataclass(frozen=True)
class ConnectorMemory:
    """What the allocator remembers of a connector's session between cycles."""

    session_id: str
    running: bool
    since: datetime  # running since / paused (or waiting) since
    limit_ma: int  # planned grid current per phase in use (0 when paused)
    raised_at: datetime | None = None  # when the limit last rose: the ramp-up window starts there
    reclaim_cap_ma: int | None = None
    ever_ran: bool = False
    need: int | None = None  # the need factor in 128ths last used (None: no demand info)
    need_served_ppm: int = 0  # the share of its demand it had then (with its own time ahead), in millionths
    need_at: datetime | None = None  # when they were evaluated
    need_demand_wh: int | None = None  # for what was asked then: a new demand or departure is evaluated at once
    need_departure: datetime | None = None
    done: bool = False  # paused because it has the energy it asked for
    lowered_at: datetime | None = None  # when its limit last went down, and from what (within follow_s)
    lowered_from_ma: int | None = None
    paused_on_lag: bool = False  # paused while part of the non-EV load was provisional


@dataclass(frozen=True)
class AllocatorState:
    estimates: Mapping[str, NonEvEstimate] = field(default_factory=dict)
    connectors: Mapping[str, ConnectorMemory] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- output


class Why(StrEnum):
    NODE_CURRENT = "node-current"  # a node's phase is full
    NODE_POWER = "node-power"  # a node's power limit is reached
    CONNECTOR_MAX = "connector-max"  # the connector's own maximum
    EV_DRAW = "ev-draw"  # reclaimed: the car draws less than it could have
    ROTATION = "rotation"  # paused so that others can charge
    WAITING = "waiting"  # waiting for room
    METER_STALE = "meter-stale"  # a silent site meter: a safe budget applies
    IDLE = "idle"  # no session
    UNMANAGED = "unmanaged"  # offline or ignoring its profiles: counted at its worst
    CANNOT_PAUSE = "cannot-pause"  # rejects 0 A: kept at its minimum
    DONE = "done"  # has the energy it asked for and stopped drawing: paused
    MISCONFIGURED = "misconfigured"


@dataclass(frozen=True)
class Binding:
    """The constraint that set a connector's limit, and a sentence a manager (or the car's owner) can read."""

    why: Why
    sentence: str
    node: str | None = None
    phase: str | None = None  # L1, L2, L3, or None for a power limit


@dataclass(frozen=True)
class Limit:
    """A connector's new limit: ``amps`` for AC, ``watts`` for DC; 0 means paused.

    ``grid_a`` is what it may draw on each grid phase under this limit (for the dispatcher and the checks).
    """

    connector: str
    amps: Decimal | None
    watts: int | None
    grid_a: tuple[Decimal, Decimal, Decimal]

    @property
    def paused(self) -> bool:
        return (self.amps if self.amps is not None else self.watts) == 0

    @property
    def value(self) -> Decimal:
        return self.amps if self.amps is not None else Decimal(self.watts or 0)


@dataclass(frozen=True)
class NodeBudget:
    """One node's arithmetic this cycle, per grid phase in A (and in W for its power limit)."""

    capacity_a: tuple[Decimal, Decimal, Decimal]  # limit x derate - margin
    non_ev_a: tuple[Decimal, Decimal, Decimal]
    unmanaged_a: tuple[Decimal, Decimal, Decimal]
    planned_a: tuple[Decimal, Decimal, Decimal]  # the managed connectors' limits
    max_power_w: int | None
    planned_power_w: Decimal  # everything above, in W


@dataclass(frozen=True)
class Allocation:
    limits: Mapping[str, Limit]  # managed connectors only
    why: Mapping[str, Binding]  # every connector
    state: AllocatorState
    non_ev_a: Mapping[str, tuple[Decimal, Decimal, Decimal]]  # the estimate used, per metered node
    nodes: Mapping[str, NodeBudget]
    warnings: tuple[str, ...]


# ------------------------------------------------------------------------------------------ arithmetic


@lru_cache(maxsize=4096)
def _ma_floor(amps: Decimal) -> int:
    return int((amps * 1000).to_integral_value(rounding=ROUND_FLOOR))


@lru_cache(maxsize=4096)
def _ma_ceil(amps: Decimal) -> int:
    return int((amps * 1000).to_integral_value(rounding=ROUND_CEILING))


@lru_cache(maxsize=65536)
def _amps(ma: int) -> Decimal:
    """mA as amperes, without trailing zeros (and never in exponent notation)."""
    value = Decimal(ma).scaleb(-3)
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


@lru_cache(maxsize=256)
def _seconds(n: int) -> timedelta:
    return timedelta(seconds=n)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _fmt_a(ma: int) -> str:
    return f"{_amps(ma):f} A"


@dataclass(frozen=True)
class _Dc:
    """Integer conversion between DC output W and AC grid mA per phase: W = mA x num x phases x V / (den x 1000)."""

    num: int
    den: int
    phases: int
    volts: int

    def watts(self, ma: int) -> int:
        return (ma * self.num * self.phases * self.volts) // (self.den * 1000)

    def ma_for(self, watts: int) -> int:
        """The least grid current that delivers ``watts``."""
        return _ceil_div(watts * 1000 * self.den, self.num * self.phases * self.volts)

    def ma_within(self, watts: int) -> int:
        """The most grid current that delivers no more than ``watts``."""
        return (watts * 1000 * self.den) // (self.num * self.phases * self.volts)


class _Plan:
    """One managed session inside a cycle."""

    __slots__ = (
        "binding",
        "connector",
        "constraints",
        "dc",
        "demand",
        "demand_why",
        "done",
        "floor",
        "grid",
        "index",
        "mandatory",
        "memory",
        "need",
        "need_at",
        "need_fresh",
        "need_served_ppm",
        "offset",
        "path",
        "session",
        "step",
        "thresholds",
        "value",
        "weight",
    )

    def __init__(self) -> None:
        self.index = 0
        self.grid: tuple[int, ...] = ()
        self.path: list[int] = []
        self.weight = WEIGHT_SCALE * NEED_SCALE
        self.offset = 0  # in FINE units: its value is weight x level - offset (clamped to floor..demand)
        self.floor = 0
        self.demand = 0
        self.demand_why = Why.CONNECTOR_MAX
        self.dc: _Dc | None = None
        self.step = 100
        self.value = 0
        self.binding: int | None = None
        self.memory: ConnectorMemory | None = None
        self.constraints: list[tuple[int, int]] = []  # (constraint id, coefficient)
        self.mandatory = False
        self.thresholds = (0, 0)
        self.need: int | None = None
        self.need_served_ppm = 0
        self.need_at: datetime | None = None
        self.need_fresh = False  # its need was evaluated this cycle (not held from the period's first)
        self.done = False

    session: Session
    connector: Connector


# ------------------------------------------------------------------------------------------ the cycle


def allocate(
    nodes: Sequence[Node],
    connectors: Sequence[Connector],
    sessions: Sequence[Session],
    meters: Sequence[MeterReading],
    state: AllocatorState | None,
    now: datetime,
    params: Parameters = DEFAULT_PARAMETERS,
) -> Allocation:
    """One allocation cycle. Raises AllocationInputError when the inputs contradict each other."""
    state = state or AllocatorState()
    warnings: list[str] = []
    tree = _Tree(nodes)
    n_nodes = len(tree.nodes)
    by_connector = _index_connectors(connectors, tree)
    session_of = _index_sessions(sessions, by_connector)

    # Constraint ids: 4 x node + phase (0..2) for currents in mA, 4 x node + 3 for power in mW.
    cap = [INFINITY] * (4 * n_nodes)
    fixed = [0] * (4 * n_nodes)
    for i, node in enumerate(tree.nodes):
        margin = _ma_ceil(node.margin_a)
        for p in range(3):
            cap[4 * i + p] = _ma_floor(node.limits_a[p] * node.derate) - margin
        if node.max_power_w is not None:
            cap[4 * i + 3] = node.max_power_w * 1000

    # --- unmanaged load (offline, non-compliant, idle with a default limit) and the EV draw the meters see
    unmanaged = [[0, 0, 0] for _ in range(n_nodes)]
    ev_seen = [[0, 0, 0] for _ in range(n_nodes)]  # EV draw to subtract from a meter on this node
    lagging = [[0, 0, 0] for _ in range(n_nodes)]  # what lowered cars may still draw above their new limits
    why: dict[str, Binding] = {}
    managed: list[_Plan] = []
    paused: list[Limit] = []  # managed but not chargeable (misconfigured)
    for connector in sorted(connectors, key=lambda c: c.key):
        node_index = tree.index[connector.node]
        session = session_of.get(connector.key)
        memory = state.connectors.get(connector.key)
        if memory is not None and (session is None or memory.session_id != session.id):
            memory = None
        dc = _dc_of(connector, tree.nodes[node_index], params) if connector.dc else None
        if session is not None:
            draw = _sample_ma(connector, session, dc, now, params, warnings)
            for p, ma in _fresh_draw(connector, draw, memory, warnings).items():
                ev_seen[node_index][p] += ma
            for p, ma in _lagging(draw, memory, now, params).items():
                lagging[node_index][p] += ma
        if not connector.online or not connector.compliant:
            worst = _worst_ma(connector, dc)
            for p in ROTATIONS[connector.rotation]:
                unmanaged[node_index][p] += worst
            state_word = "offline" if not connector.online else "not following its charging profiles"
            why[connector.key] = Binding(
                Why.UNMANAGED, f"{connector.key} is {state_word}: it is counted at its maximum "
                f"({_fmt_a(worst)} per phase) until it is managed again")
            continue
        if session is None:
            reserve = _ma_ceil(connector.default_limit_a) if not connector.dc else 0
            for p in ROTATIONS[connector.rotation]:
                unmanaged[node_index][p] += reserve
            why[connector.key] = Binding(Why.IDLE, "no car is charging here")
            continue
        plan = _plan_session(connector, session, memory, dc, tree, node_index, now, params, warnings)
        if plan is None:
            why[connector.key] = Binding(Why.MISCONFIGURED, f"{connector.key}: its minimum is above its maximum")
            warnings.append(f"{connector.key}: minimum above maximum after quantization; paused")
            paused.append(Limit(connector.key, amps=None if connector.dc else Decimal(0),
                                watts=0 if connector.dc else None, grid_a=(Decimal(0),) * 3))
            continue
        plan.index = len(managed)
        managed.append(plan)

    tree.sum_up(ev_seen)  # each node: its own connectors' and those of every node below it
    tree.sum_up(lagging)
    tree.sum_up(unmanaged)

    # --- non-EV load per metered node, then per node (a node without a meter carries its metered descendants')
    estimates: dict[str, NonEvEstimate] = {}
    non_ev_used: dict[int, list[int]] = {}
    stale_nodes: set[int] = set()
    readings = {r.node: r for r in meters}
    for key in readings:
        if key not in tree.index:
            raise AllocationInputError(f"site meter reading for unknown node {key!r}")
    metered = set(readings) | {tree.nodes[0].key}
    for key in sorted(metered, key=lambda k: tree.index[k]):
        i = tree.index[key]
        caps = [cap[4 * i + p] for p in range(3)]
        used, estimate, stale = _non_ev(
            tree.nodes[i], readings.get(key), state.estimates.get(key), ev_seen[i], unmanaged[i], caps, now,
            params, warnings, lagging[i])
        non_ev_used[i] = used
        if estimate is not None:
            estimates[key] = estimate
        if stale:
            stale_nodes.add(i)
    non_ev = [[0, 0, 0] for _ in range(n_nodes)]
    for i in reversed(range(n_nodes)):  # children come after their parents in tree.nodes
        if i in non_ev_used:
            non_ev[i] = list(non_ev_used[i])
        parent = tree.parent[i]
        if parent is not None and parent not in non_ev_used:
            for p in range(3):
                non_ev[parent][p] += non_ev[i][p]

    for i, node in enumerate(tree.nodes):
        for p in range(3):
            fixed[4 * i + p] = non_ev[i][p] + unmanaged[i][p]
            if non_ev[i][p] > cap[4 * i + p]:
                warnings.append(f"{node.key} {PHASES[p]}: the load without EVs ({_fmt_a(non_ev[i][p])}) is above "
                                f"the usable {_fmt_a(cap[4 * i + p])}; no EV charging there")
        if node.max_power_w is not None:
            fixed[4 * i + 3] = node.voltage_v * sum(fixed[4 * i + p] for p in range(3))

    # --- constraints of each session
    members: list[list[tuple[int, int]]] = [[] for _ in range(4 * n_nodes)]
    for plan in managed:
        for n in plan.path:
            for p in plan.grid:
                plan.constraints.append((4 * n + p, 1))
            if tree.nodes[n].max_power_w is not None:
                plan.constraints.append((4 * n + 3, tree.nodes[n].voltage_v * len(plan.grid)))
    _own_time(managed, cap, fixed, tree, now, params)
    _weigh(managed, params)

    # Part of the non-EV load may be cars still following a decrease: a car paused now, on a node phase whose
    # estimate holds such a provisional part, may resume sooner. Only there: a provisional rise on another
    # meter's node, or on another phase, says nothing about why this car was paused.
    provisional = {(tree.index[key], p) for key, estimate in estimates.items()
                   for p, ma in enumerate(estimate.provisional_ma) if ma > 0}

    # --- floors: who runs
    slack = [cap[c] - fixed[c] for c in range(4 * n_nodes)]
    running = _admit(managed, slack, tree, now, params, why, stale_nodes, warnings)
    for plan in running:
        for c, coef in plan.constraints:
            members[c].append((plan.index, coef))

    # --- water-filling above the floors, then quantization and the leftover steps
    _water_fill(running, members, [cap[c] - fixed[c] for c in range(4 * n_nodes)])
    used = [fixed[c] for c in range(4 * n_nodes)]
    for plan in running:
        plan.value = _quantize(plan, plan.value)
        for c, coef in plan.constraints:
            used[c] += coef * plan.value
    _hand_out_leftovers(running, cap, used)

    # --- output
    limits: dict[str, Limit] = {limit.connector: limit for limit in paused}
    memories: dict[str, ConnectorMemory] = {}
    planned = [[0, 0, 0] for _ in range(n_nodes)]
    run_set = {plan.index for plan in running}
    for plan in managed:
        key = plan.connector.key
        value = plan.value if plan.index in run_set else 0
        limits[key] = _limit_of(plan, value)
        lagging_here = any((n, p) in provisional for n in plan.path for p in plan.grid)
        memories[key] = _remember(plan, value, now, params, lagging_here)
        if plan.index in run_set:
            at_node = planned[plan.path[-1]]
            for p in plan.grid:
                at_node[p] += value
            why[key] = _binding_of(plan, value, tree, cap, stale_nodes)
    tree.sum_up(planned)
    budgets = _budgets(tree, cap, non_ev, unmanaged, planned)
    return Allocation(
        limits={k: limits[k] for k in sorted(limits)},
        why={k: why[k] for k in sorted(why)},
        state=AllocatorState(estimates=estimates, connectors=memories),
        non_ev_a={tree.nodes[i].key: _triple(non_ev_used[i]) for i in sorted(non_ev_used)},
        nodes=budgets,
        warnings=tuple(warnings),
    )


# ------------------------------------------------------------------------------------------ the tree


class _Tree:
    """The nodes in an order where every parent comes before its children; the supply first."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        by_key: dict[str, Node] = {}
        for node in nodes:
            if node.key in by_key:
                raise AllocationInputError(f"node {node.key!r} appears twice")
            if any(a < 0 for a in node.limits_a) or not (0 < node.derate <= 1):
                raise AllocationInputError(f"node {node.key!r}: limits must be >= 0 and derate in (0, 1]")
            by_key[node.key] = node
        roots = [n.key for n in nodes if n.parent is None]
        if len(roots) != 1:
            raise AllocationInputError(f"the tree needs exactly one supply (a node without parent), found {roots}")
        children: dict[str, list[str]] = {}
        for node in nodes:
            if node.parent is not None:
                if node.parent not in by_key:
                    raise AllocationInputError(f"node {node.key!r}: unknown parent {node.parent!r}")
                children.setdefault(node.parent, []).append(node.key)
        order: list[str] = []
        queue = deque([roots[0]])
        while queue:
            key = queue.popleft()
            order.append(key)
            queue.extend(sorted(children.get(key, [])))
        if len(order) != len(nodes):
            raise AllocationInputError("the tree has a cycle: some nodes do not lead to the supply")
        self.nodes = [by_key[k] for k in order]
        self.index = {k: i for i, k in enumerate(order)}
        self.parent: list[int | None] = [
            None if n.parent is None else self.index[n.parent] for n in self.nodes]
        self.depth = [0] * len(order)
        self._paths: list[list[int]] = []
        for i in range(len(order)):
            parent = self.parent[i]
            self.depth[i] = 0 if parent is None else self.depth[parent] + 1
            self._paths.append([i] if parent is None else [*self._paths[parent], i])

    def sum_up(self, values: list[list[int]]) -> None:
        """Add every node's values into its parent's, children first: each node then holds its subtree's sum."""
        for i in range(len(self.nodes) - 1, 0, -1):
            parent = self.parent[i]
            if parent is not None:
                mine, theirs = values[i], values[parent]
                for p in range(3):
                    theirs[p] += mine[p]

    def path(self, i: int) -> list[int]:
        """The supply ... node i."""
        return self._paths[i]


def _index_connectors(connectors: Sequence[Connector], tree: _Tree) -> dict[str, Connector]:
    by_key: dict[str, Connector] = {}
    for c in connectors:
        where = f"connector {c.key!r}"
        if c.key in by_key:
            raise AllocationInputError(f"{where} appears twice")
        if c.node not in tree.index:
            raise AllocationInputError(f"{where}: unknown node {c.node!r}")
        if c.phases not in (1, 3) or c.rotation not in ROTATIONS or len(ROTATIONS[c.rotation]) != c.phases:
            raise AllocationInputError(f"{where}: rotation {c.rotation!r} does not fit {c.phases} phase(s)")
        if c.dc and (c.max_power_w is None or c.max_power_w <= 0):
            raise AllocationInputError(f"{where}: a DC connector needs max_power_w")
        if c.efficiency is not None and not (0 < c.efficiency <= 1):
            raise AllocationInputError(f"{where}: efficiency must be in (0, 1]")
        if c.step_a <= 0 or c.step_w <= 0 or c.min_current_a < 0 or c.max_current_a < 0:
            raise AllocationInputError(f"{where}: steps must be positive and currents not negative")
        by_key[c.key] = c
    return by_key


def _index_sessions(sessions: Sequence[Session], connectors: Mapping[str, Connector]) -> dict[str, Session]:
    of: dict[str, Session] = {}
    for s in sessions:
        if s.connector not in connectors:
            raise AllocationInputError(f"session {s.id!r}: unknown connector {s.connector!r}")
        if s.connector in of:
            raise AllocationInputError(f"connector {s.connector!r} has two sessions ({of[s.connector].id!r}, {s.id!r})")
        if s.phases_in_use is not None and not (1 <= s.phases_in_use <= connectors[s.connector].phases):
            raise AllocationInputError(f"session {s.id!r}: phases_in_use {s.phases_in_use} does not fit its connector")
        if s.priority <= 0:
            raise AllocationInputError(f"session {s.id!r}: priority must be positive")
        of[s.connector] = s
    return of


def _dc_of(connector: Connector, node: Node, params: Parameters) -> _Dc:
    num, den = (connector.efficiency or params.default_dc_efficiency).as_integer_ratio()
    return _Dc(num=num, den=den, phases=connector.phases, volts=node.voltage_v)


def _worst_ma(connector: Connector, dc: _Dc | None) -> int:
    if dc is not None:
        return dc.ma_for(connector.max_power_w or 0)
    return _ma_ceil(connector.max_current_a)


def _grid_phases(connector: Connector, session: Session) -> tuple[int, ...]:
    rotation = ROTATIONS[connector.rotation]
    if connector.dc or session.phases_in_use is None:  # a DC charger's input is wired, whatever the car does
        return rotation
    return rotation[: session.phases_in_use]


def _believable(at: datetime | None, now: datetime, max_age_s: int, params: Parameters) -> bool:
    return at is not None and at <= now + _seconds(params.clock_skew_s) and now - at <= _seconds(max_age_s)


def _sample_ma(
    connector: Connector, session: Session, dc: _Dc | None, now: datetime, params: Parameters, warnings: list[str],
) -> dict[int, int] | None:
    """What this session's meter says it draws, per grid phase in mA; None unless recent and not stamped ahead."""
    if session.draw_at is not None and session.draw_at > now + _seconds(params.clock_skew_s):
        warnings.append(f"{connector.key}: its meter values are stamped {session.draw_at.isoformat()}, ahead of "
                        "now; check the charger's clock (not believed)")
        return None
    if not _believable(session.draw_at, now, params.ev_sample_max_age_s, params):
        return None
    return _draw_ma(connector, session, dc)


def _fresh_draw(
    connector: Connector, draw: dict[int, int] | None, memory: ConnectorMemory | None, warnings: list[str],
) -> dict[int, int]:
    """What to subtract from the site meter for this session (its believed sample, _sample_ma), per grid phase in
    mA, bounded by the limit it was given: a charger that accepts a lower limit and does not apply it leaves
    its excess in the non-EV load (safe side).
    """
    if draw is None:
        return {}
    # A session seen for the first time has no limit from us yet, and a paused one has 0: what they draw
    # stays in the non-EV load (it is nowhere in the plan).
    bound = memory.limit_ma if memory is not None else 0
    if memory is not None and max(draw.values(), default=0) > bound + 1000 and connector.compliant and connector.online:
        warnings.append(f"{connector.key}: draws {_fmt_a(max(draw.values()))} above its limit {_fmt_a(bound)}")
    return {p: min(ma, bound) for p, ma in draw.items()}


def _lagging(
    draw: dict[int, int] | None, memory: ConnectorMemory | None, now: datetime, params: Parameters,
) -> dict[int, int]:
    """What a car whose limit went down less than follow_s ago may still draw above its new limit, per grid phase
    in mA: the excess its latest sample shows, up to the limit it was lowered from.

    A charger and its car take a few seconds to follow a lower limit; a reading taken meanwhile still shows the
    old draw, and _fresh_draw leaves what is above the new limit in the non-EV load (the safe side, in case the
    charger never follows). That excess is marked provisional in the estimate (_non_ev), so the rise it made is
    given back as soon as a lower reading shows the car followed, not after drop_confirm_s: otherwise each
    decrease would inflate the non-EV load and cut the other cars too, for half a minute.
    """
    if memory is None or memory.lowered_at is None or memory.lowered_from_ma is None:
        return {}
    if draw is None or now - memory.lowered_at > _seconds(params.follow_s):
        return {}
    out = {p: min(ma, memory.lowered_from_ma) - memory.limit_ma for p, ma in draw.items()}
    return {p: ma for p, ma in out.items() if ma > 0}


def _draw_ma(connector: Connector, session: Session, dc: _Dc | None) -> dict[int, int] | None:
    grid = _grid_phases(connector, session)
    if dc is not None:
        if session.draw_w is None:
            return None
        ma = dc.ma_within(max(session.draw_w, 0))
        return dict.fromkeys(grid, ma)
    if session.draw_a is None:
        return None
    rotation = ROTATIONS[connector.rotation]
    out: dict[int, int] = {}
    for k, p in enumerate(rotation):
        if p in grid:
            out[p] = max(_ma_floor(session.draw_a[k]), 0)
    return out


def _plan_session(
    connector: Connector, session: Session, memory: ConnectorMemory | None, dc: _Dc | None, tree: _Tree,
    node_index: int, now: datetime, params: Parameters, warnings: list[str],
) -> _Plan | None:
    plan = _Plan()
    plan.session = session
    plan.connector = connector
    plan.memory = memory
    plan.grid = _grid_phases(connector, session)
    plan.path = tree.path(node_index)
    plan.dc = dc
    plan.mandatory = not connector.accepts_zero
    if dc is not None:
        step = connector.step_w
        min_w = _ceil_div(connector.min_power_w or step, step) * step
        max_w = (connector.max_power_w or 0) // step * step
        plan.step = step
        plan.floor = dc.ma_for(min_w)
        plan.demand = dc.ma_for(max_w)  # the grid current at full power (a limit in W is floored again)
    else:
        step_ma = _ma_floor(connector.step_a)
        if step_ma <= 0:
            raise AllocationInputError(f"connector {connector.key!r}: step_a below 1 mA")
        plan.step = step_ma
        plan.floor = max(_ceil_div(_ma_ceil(connector.min_current_a), step_ma) * step_ma, step_ma)
        plan.demand = _ma_floor(connector.max_current_a) // step_ma * step_ma
    if plan.floor > plan.demand:
        return None
    plan.need, plan.done = _need(plan, tree.nodes[node_index].voltage_v, now, params)
    cap = _reclaim(plan, now, params)
    if cap is not None and cap < plan.demand:
        plan.demand = max(plan.floor, cap)
        plan.demand_why = Why.EV_DRAW
    return plan


@lru_cache(maxsize=64)
def _need_constants(params: Parameters) -> tuple[int, int, int, int, int]:
    """(lowest and highest need factor, reference in mA, done_within as numerator and denominator)."""
    low = max(1, int((params.need_min * NEED_SCALE).to_integral_value(rounding=ROUND_CEILING)))
    high = max(low, int((params.need_max * NEED_SCALE).to_integral_value(rounding=ROUND_FLOOR)))
    num, den = params.done_within.as_integer_ratio()
    return low, high, max(_ma_floor(params.need_reference_a), 1), num, den


@lru_cache(maxsize=1024)
def _period_of(at: datetime, period: timedelta) -> int:
    """The index of the period ``at`` falls in (whole microseconds: exact, and a pace need not divide it)."""
    return (at - _EPOCH) // max(period, _MICROSECOND)


def _resident(seconds: int, params: Parameters) -> timedelta:
    """A resident timer as a span of ``now`` (``Parameters.pace``)."""
    return timedelta(seconds=seconds / params.pace)


def _need(plan: _Plan, volts: int, now: datetime, params: Parameters) -> tuple[int | None, bool]:
    """(the need factor in 128ths, or None without demand info; whether it is done and paused).

    The factor is the grid current per phase the car needs to get its remaining energy by its departure,
    over ``need_reference_a``, bounded to ``need_min``..``need_max``. It and the share of its demand the car
    had are evaluated once per ``need_period_s`` (periods aligned on the clock, the same for every car) and
    held in between: the shares move in one step a quarter of an hour, not a tenth of an ampere every cycle
    as energy flows (sets ``plan.need_served_ppm`` and ``plan.need_at``); a new demand or departure (the
    resident changed them) is evaluated at once.
    A car that has what it asked for gets the lowest factor, and is paused once it stops drawing (a fresh
    sample under its minimum after its ramp-up window; a charger that rejects 0 A is never paused); it is
    offered its minimum again every ``done_recheck_s``, so a wrong estimate never stops a car for good.
    A car that will have its phases to itself at the end of its stay is evaluated again by ``_own_time``.
    """
    session = plan.session
    memory = plan.memory
    if session.demand_wh is None:
        return None, False
    low, _, _, done_num, done_den = _need_constants(params)
    demand = max(session.demand_wh, 0)
    remaining_wh = session.demand_wh - session.energy_wh
    if remaining_wh * done_den <= demand * done_num:  # meters and batteries are not exact to the Wh
        plan.need_served_ppm, plan.need_at = 1_000_000, now
        if plan.mandatory:
            return low, False
        if memory is not None and memory.done and now - memory.since < _resident(params.done_recheck_s, params):
            return low, True
        return low, memory is not None and memory.running and _stopped_drawing(plan, memory, now, params)
    period = _resident(params.need_period_s, params)
    if (memory is not None and memory.need is not None and memory.need_at is not None and memory.need_at <= now
            and memory.need_demand_wh == session.demand_wh and memory.need_departure == session.departure
            and _period_of(memory.need_at, period) == _period_of(now, period)):
        plan.need_served_ppm, plan.need_at = memory.need_served_ppm, memory.need_at
        return memory.need, False
    plan.need_fresh = True
    return _evaluate_need(plan, volts, now, params, _stay_s(session, params, now), 0), False


def _evaluate_need(plan: _Plan, volts: int, now: datetime, params: Parameters, seconds: int, own_wh: int) -> int:
    """The need factor in 128ths for what is still missing, less ``own_wh``, over ``seconds``; sets the share of
    its demand the car has (what it got, and ``own_wh`` as if it had it already) and when it was evaluated."""
    session = plan.session
    low, high, reference_ma, _, _ = _need_constants(params)
    demand = max(session.demand_wh or 0, 1)
    plan.need_served_ppm = min(max(session.energy_wh, 0) + own_wh, demand) * 1_000_000 // demand
    plan.need_at = now
    # What it still needs over the time left; with the offset of what it already got (``_weigh``) a car ahead
    # of the others falls back twice: it needs less, and its level starts higher (the bench chose this).
    remaining_wh = max(demand - session.energy_wh - own_wh, 0)
    watts = _ceil_div(remaining_wh * 3600, max(seconds, 1))
    need_ma = plan.dc.ma_for(watts) if plan.dc is not None else _ceil_div(watts * 1000, volts * len(plan.grid))
    return min(high, max(low, (need_ma * NEED_SCALE + reference_ma // 2) // reference_ma))


def _stay_s(session: Session, params: Parameters, now: datetime) -> int:
    """The seconds a car's need is counted over: to its departure, at least ``need_horizon_s`` (a late car);
    without a departure ``need_default_stay_s``. In the residents' time (``Parameters.pace``), as energy is."""
    if session.departure is not None:
        return max(int((session.departure - now).total_seconds()) * params.pace, params.need_horizon_s, 1)
    return max(params.need_default_stay_s, 1)


def _own_time(plans: list[_Plan], cap: list[int], fixed: list[int], tree: _Tree, now: datetime,
              params: Parameters) -> None:
    """Evaluate again the need of a car whose phases will be its own at the end of its stay.

    The water-filling is myopic: two cars on a phase share it by what each needs by its departure, although
    the one that leaves last will then have the phase to itself and charge at full rate. Departures are
    known, so for a car whose need was evaluated this cycle: once every car it now shares a node phase with
    has left (the last of them at ``shared``), what it can draw until its departure counts as energy it
    already has (its share starts higher), and its need is what is still missing beyond that, over the time
    until ``shared``. What it can draw then is its maximum within what its nodes' limits leave, with the
    load without EVs as now and every other car still there drawing its maximum (``_alone_ma``): rather
    too little than too much, so that a car counting on its own time does not end up short. A car with no
    one on its phases now (others may still come), or a neighbour without a departure, counts none.
    """
    fresh = [p for p in plans if p.need_fresh and p.session.departure is not None]
    if not fresh:
        return
    # Only the departures known count: a car without one may stay as long as it likes.
    stays = {p.index: _stay_s(p.session, params, now) if p.session.departure is not None else INFINITY
             for p in plans if not p.done}
    on = _OnPhase(plans, stays)
    for plan in fresh:
        mine = stays[plan.index]
        shared = max((on.last_other(c, plan.index) for c, _ in plan.constraints if c % 4 != 3), default=-1)
        if shared < 0 or shared >= mine:
            continue
        volts = tree.nodes[plan.path[-1]].voltage_v
        powered = any(c % 4 == 3 for c, _ in plan.constraints)  # else nothing changes as the others leave
        ends = [*sorted({t for t in stays.values() if shared < t < mine} if powered else set()), mine]
        start, own_mws = shared, 0
        for end in ends:
            ma = _alone_ma(plan, start, on, cap, fixed, tree)
            mw = plan.dc.watts(ma) * 1000 if plan.dc is not None else ma * volts * len(plan.grid)
            own_mws += mw * (end - start)
            start = end
        own_wh = own_mws // 3_600_000
        if own_wh > 0:
            plan.need = _evaluate_need(plan, volts, now, params, shared, own_wh)


class _OnPhase:
    """The cars on each node phase by how long they stay: who leaves last, what those still there draw at most."""

    def __init__(self, plans: list[_Plan], stays: dict[int, int]) -> None:
        rows: dict[int, list[tuple[int, int, int]]] = {}
        for plan in plans:
            if plan.index in stays:
                for c, coef in plan.constraints:
                    if c % 4 != 3:
                        rows.setdefault(c, []).append((stays[plan.index], plan.index, coef * plan.demand))
        self.stays: dict[int, list[int]] = {}
        self.who: dict[int, list[int]] = {}
        self.beyond: dict[int, list[int]] = {}  # [k]: the sum of the maxima of the cars from the k-th on
        for c, group in rows.items():
            group.sort()
            self.stays[c] = [row[0] for row in group]
            self.who[c] = [row[1] for row in group]
            sums = [0] * (len(group) + 1)
            for k in range(len(group) - 1, -1, -1):
                sums[k] = sums[k + 1] + group[k][2]
            self.beyond[c] = sums

    def last_other(self, c: int, index: int) -> int:
        """The longest stay of the other cars on node phase ``c`` (-1: none)."""
        stays, who = self.stays.get(c, []), self.who.get(c, [])
        for k in range(len(stays) - 1, max(len(stays) - 3, -1), -1):
            if who[k] != index:
                return stays[k]
        return -1

    def load_after(self, c: int, t: int) -> int:
        """The most the cars on ``c`` that stay beyond ``t`` seconds can draw there, in mA."""
        if c not in self.stays:
            return 0
        return self.beyond[c][bisect_right(self.stays[c], t)]


def _alone_ma(plan: _Plan, t: int, on: _OnPhase, cap: list[int], fixed: list[int], tree: _Tree) -> int:
    """The grid current per phase a car can draw ``t`` seconds from now, alone on its node phases, the other
    cars still there drawing their maximum (each node phase at most full) under its nodes' power limits."""
    own = {c for c, _ in plan.constraints if c % 4 != 3}
    ma = plan.demand
    for c, coef in plan.constraints:
        room = cap[c] - fixed[c]
        if c % 4 == 3:
            n = c // 4
            for d in range(4 * n, 4 * n + 3):
                others = on.load_after(d, t) - (plan.demand if d in own else 0)
                room -= min(max(cap[d] - fixed[d], 0), others) * tree.nodes[n].voltage_v
        ma = min(ma, max(room, 0) // coef)
    return ma


def _weigh(plans: list[_Plan], params: Parameters) -> None:
    """Each session's weight (priority x need factor) and offset in the water-filling."""
    reference_ma = max(_ma_floor(params.need_reference_a), 1)
    for plan in plans:
        priority = max(1, int((plan.session.priority * WEIGHT_SCALE).to_integral_value()))
        plan.weight = priority * (plan.need if plan.need is not None else NEED_SCALE)
        if plan.need is not None:
            # Levels of a car with a demand count shares of its demand: what it already got moves its start up
            # (the reference current in mA = all of it), so that cars end at comparable shares.
            plan.offset = plan.weight * reference_ma * plan.need_served_ppm // 1_000_000


def _stopped_drawing(plan: _Plan, memory: ConnectorMemory, now: datetime, params: Parameters) -> bool:
    """A fresh sample, taken after the ramp-up window of its last raise, under the session's minimum."""
    session = plan.session
    ramped = (memory.raised_at or memory.since) + _seconds(params.ramp_up_s)
    if session.draw_at is None or session.draw_at < ramped or not _believable(
            session.draw_at, now, params.ev_sample_max_age_s, params):
        return False
    draw = _draw_ma(plan.connector, session, plan.dc)
    return draw is not None and bool(draw) and max(draw.values()) < plan.floor


def _reclaim(plan: _Plan, now: datetime, params: Parameters) -> int | None:
    """The reclaim cap (grid mA per phase) for this cycle, or None; also updates the plan's memory view."""
    memory = plan.memory
    if memory is None or not memory.running or memory.limit_ma <= 0:
        return None
    session = plan.session
    window_start = memory.raised_at or memory.since
    ramped = window_start + _seconds(params.ramp_up_s)
    if now < ramped or session.draw_at is None or session.draw_at < ramped or not _believable(
            session.draw_at, now, params.ev_sample_max_age_s, params):
        return memory.reclaim_cap_ma
    draw = _draw_ma(plan.connector, session, plan.dc)
    if not draw:
        return memory.reclaim_cap_ma
    peak = max(draw.values())
    cap = memory.reclaim_cap_ma
    margin = _ma_ceil(params.reclaim_margin_a)
    if cap is not None:
        if peak >= cap - _ma_floor(params.reclaim_rise_within_a):
            return None  # it wants more again: lifted; _remember starts a new ramp-up window
        if peak + margin <= cap - _ma_floor(params.reclaim_below_a):
            return peak + margin
        return cap
    if peak <= memory.limit_ma - _ma_floor(params.reclaim_below_a):
        return peak + margin
    return None


# ---------------------------------------------------------------------------------------- non-EV load


def _non_ev(
    node: Node, reading: MeterReading | None, previous: NonEvEstimate | None, ev: list[int], unmanaged: list[int],
    caps: list[int], now: datetime, params: Parameters, warnings: list[str], lagging: list[int] | None = None,
) -> tuple[list[int], NonEvEstimate | None, bool]:
    """(non-EV load to plan with per phase in mA, the estimator's next state, whether the meter is stale).

    A rise is believed at once; a drop once it has held for drop_confirm_s, except the provisional part of the
    last rise (at most what lowered cars' own samples showed above their new limits, ``lagging``), given back
    at once by a lower reading within follow_s of that rise: the cars followed."""
    lagging = lagging or [0, 0, 0]
    problem = None
    if reading is None or reading.currents_a is None or reading.at is None:
        problem = "has no reading"
    elif reading.at > now + timedelta(seconds=params.clock_skew_s):
        problem = f"is stamped {reading.at.isoformat()}, ahead of now"
    elif now - reading.at > timedelta(seconds=reading.stale_after_s):
        problem = f"has been silent since {reading.at.isoformat()}"
    else:
        for p in range(3):
            rated = _ma_floor(node.limits_a[p] * params.implausible_factor)
            if _ma_ceil(reading.currents_a[p]) > rated or reading.currents_a[p] < 0:
                problem = f"reads an implausible {reading.currents_a[p]} A on {PHASES[p]}"
    if problem is not None or reading is None or reading.currents_a is None or reading.at is None:
        warnings.append(f"site meter at {node.key} {problem}: EVs under it share a safe budget of "
                        f"{params.stale_ev_budget_a} A per phase")
        budget = _ma_floor(params.stale_ev_budget_a)
        held = previous.estimate_ma if previous is not None else (0, 0, 0)
        used = [max(held[p], caps[p] - unmanaged[p] - budget, 0) for p in range(3)]
        return used, previous, True
    at = reading.at
    raw = [max(_ma_ceil(reading.currents_a[p]) - ev[p], 0) for p in range(3)]
    if previous is None:
        estimate = NonEvEstimate(estimate_ma=(raw[0], raw[1], raw[2]), read_at=at)
        return raw, estimate, False
    values: list[int] = []
    since: list[datetime | None] = []
    peaks: list[int] = []
    provisional: list[int] = []
    provisional_at: list[datetime | None] = []
    confirm = timedelta(seconds=params.drop_confirm_s)
    follow = timedelta(seconds=params.follow_s)
    for p in range(3):
        old = previous.estimate_ma[p]
        pending = previous.pending_since[p]
        peak = previous.pending_peak_ma[p]
        prov, prov_at = previous.provisional_ma[p], previous.provisional_at[p]
        if prov_at is None or prov <= 0 or at - prov_at > follow or at < prov_at:
            prov, prov_at = 0, None
        if raw[p] < old and prov:  # the cars that made the last rise followed their lower limits
            back = min(prov, old - raw[p])
            old -= back
            prov -= back
            if not prov:
                prov_at = None
        if raw[p] >= old:  # a rise is believed at once
            rise = raw[p] - old
            if rise and lagging[p] > 0:
                prov, prov_at = min(prov + rise, lagging[p]), at
            elif rise:
                prov, prov_at = 0, None
            values.append(raw[p])
            since.append(None)
            peaks.append(0)
            provisional.append(prov)
            provisional_at.append(prov_at)
            continue
        provisional.append(prov)
        provisional_at.append(prov_at)
        if pending is None:
            pending, peak = at, raw[p]
        else:
            peak = max(peak, raw[p])
        if at - pending >= confirm:  # the drop held: believe the highest value seen while it held
            values.append(peak)
            since.append(None)
            peaks.append(0)
        else:
            values.append(old)
            since.append(pending)
            peaks.append(peak)
    estimate = NonEvEstimate(
        estimate_ma=(values[0], values[1], values[2]), pending_since=(since[0], since[1], since[2]),
        pending_peak_ma=(peaks[0], peaks[1], peaks[2]), read_at=at,
        provisional_ma=(provisional[0], provisional[1], provisional[2]),
        provisional_at=(provisional_at[0], provisional_at[1], provisional_at[2]))
    return values, estimate, False


# ---------------------------------------------------------------------------------------------- floors


def _admit(
    plans: list[_Plan], slack: list[int], tree: _Tree, now: datetime, params: Parameters, why: dict[str, Binding],
    stale_nodes: set[int], warnings: list[str],
) -> list[_Plan]:
    """Reserve floors in a fair order; return the sessions that run this cycle (their floors subtracted)."""
    min_run = _resident(params.min_run_s, params)
    min_pause = _resident(params.min_pause_s, params)
    resume_margin = _ma_ceil(params.resume_margin_a)

    def was_running(plan: _Plan) -> bool:
        return plan.memory is not None and plan.memory.running

    def since(plan: _Plan) -> datetime:
        return plan.memory.since if plan.memory is not None else plan.session.arrived_at

    done = {p.index for p in plans if p.done}
    plans_in_turn = [p for p in plans if p.index not in done]
    mandatory = [p for p in plans if p.mandatory]
    protected = [p for p in plans_in_turn if not p.mandatory and was_running(p) and now - since(p) < min_run]
    veterans = [p for p in plans_in_turn if not p.mandatory and was_running(p) and now - since(p) >= min_run]
    waiting = [p for p in plans_in_turn if not p.mandatory and not was_running(p)]
    lag_grace = timedelta(seconds=params.lag_pause_grace_s)
    eligible = [p for p in waiting if p.memory is None or not p.memory.ever_ran or now - since(p) >= min_pause
                or (p.memory.paused_on_lag and now - since(p) < lag_grace)]
    eligible_ids = {p.index for p in eligible}
    resting = {p.index for p in waiting if p.index not in eligible_ids}

    def order(group: list[_Plan], newest_first: bool = False) -> list[_Plan]:
        def key(p: _Plan) -> tuple[float, int, str]:
            stamp = since(p).timestamp()
            return (-stamp if newest_first else stamp, p.session.energy_wh, p.connector.key)
        return sorted(group, key=key)

    admitted: list[_Plan] = []
    blocked: dict[int, int] = {}

    def fits(plan: _Plan, extra: int) -> int | None:
        """None if the floor (+ extra per phase) fits every constraint on the path, else the first one that does not."""
        for c, coef in plan.constraints:
            if slack[c] < coef * (plan.floor + extra):
                return c
        return None

    def take(plan: _Plan) -> None:
        for c, coef in plan.constraints:
            slack[c] -= coef * plan.floor
        admitted.append(plan)

    for plan in order(mandatory):
        if fits(plan, 0) is not None:
            warnings.append(f"{plan.connector.key} rejects 0 A and its minimum does not fit: it is kept at its "
                            "minimum and the plan may exceed a limit until it stops")
        take(plan)
    for plan in order(protected):
        c = fits(plan, 0)
        if c is None:
            take(plan)
        else:
            blocked[plan.index] = c
    for plan in order(eligible):
        c = fits(plan, resume_margin)
        if c is None:
            take(plan)
        else:
            blocked[plan.index] = c
    for plan in order(veterans, newest_first=True):
        c = fits(plan, 0)
        if c is None:
            take(plan)
        else:
            blocked[plan.index] = c

    taken = {p.index for p in admitted}
    for plan in plans:
        if plan.index in taken:
            continue
        key = plan.connector.key
        c = blocked.get(plan.index)
        where = _constraint_words(c, tree) if c is not None else None
        if plan.index in done:
            why[key] = Binding(Why.DONE, f"the car has the energy it asked for ({plan.session.demand_wh} Wh) and "
                               "stopped drawing: paused, offered its minimum again every "
                               f"{params.done_recheck_s // 60} min")
        elif plan.index in resting and plan.memory is not None:
            resume = plan.memory.since + min_pause
            why[key] = Binding(Why.ROTATION, f"paused so that others can charge; it resumes in turn, not before "
                               f"{resume.isoformat()}")
        elif c is not None and c // 4 in stale_nodes:
            why[key] = Binding(Why.METER_STALE, f"the site meter at {tree.nodes[c // 4].key} is silent: waiting "
                               "within the safe budget", node=tree.nodes[c // 4].key, phase=_phase_name(c))
        elif was_running(plan) and where is not None:
            why[key] = Binding(Why.ROTATION, f"paused: {where} has no room for every car's minimum, cars take turns",
                               node=tree.nodes[c // 4].key if c is not None else None, phase=_phase_name(c))
        else:
            why[key] = Binding(Why.WAITING, f"waiting for room: {where}; it starts in turn when there is room",
                               node=tree.nodes[c // 4].key if c is not None else None, phase=_phase_name(c))
    for plan in admitted:
        plan.value = plan.floor
    return sorted(admitted, key=lambda p: p.index)


def _phase_name(c: int | None) -> str | None:
    return None if c is None or c % 4 == 3 else PHASES[c % 4]


def _constraint_words(c: int, tree: _Tree) -> str:
    node = tree.nodes[c // 4]
    if c % 4 == 3:
        return f"{node.key} is at its power limit ({node.max_power_w} W)"
    return f"{node.key} is full on {PHASES[c % 4]}"


# -------------------------------------------------------------------------------------- water-filling


class _Filling:
    """One constraint during progressive filling.

    Every session's current is clamp(weight x t, floor, demand) for a common integer level t. The load
    on the constraint is piecewise linear in t; ``events`` are the levels where a member enters its linear
    part (rises with t) or leaves it (reaches its demand). Everything below ``start`` is known feasible.
    """

    __slots__ = ("alive", "budget", "const", "events", "level", "ptr", "slope", "start")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.events: list[tuple[int, int, int, int]] = []  # (level, order, session, coefficient)
        self.ptr = 0
        self.start = 0
        self.slope = 0
        self.const = 0
        self.alive = 0
        self.level = INFINITY


def _thresholds(plan: _Plan) -> tuple[int, int]:
    """(level where it starts rising, level where it reaches its demand)."""
    return plan.thresholds


def _compute_thresholds(plan: _Plan) -> tuple[int, int]:
    t_in = (plan.floor * FINE + plan.offset) // plan.weight + 1
    t_out = _ceil_div((plan.demand * FINE + plan.offset), plan.weight)
    return min(t_in, t_out), t_out


def _apply_events(f: _Filling, upto: int, plans: list[_Plan], frozen: list[bool]) -> None:
    events = f.events
    while f.ptr < len(events) and events[f.ptr][0] <= upto:
        _, kind, i, coef = events[f.ptr]
        f.ptr += 1
        if frozen[i]:
            continue
        plan = plans[i]
        if kind == 0:  # enters the linear part
            f.const -= coef * (plan.floor * FINE + plan.offset)
            f.slope += coef * plan.weight
        elif kind == 1:  # reaches its demand
            f.slope -= coef * plan.weight
            f.const += coef * (plan.demand * FINE + plan.offset)
        else:  # jumps from floor to demand (no linear part)
            f.const += coef * ((plan.demand * FINE) - (plan.floor * FINE))


def _solve(f: _Filling, plans: list[_Plan], frozen: list[bool]) -> int:
    """The highest level at which this constraint still holds (INFINITY when it never binds)."""
    while True:
        nxt = f.events[f.ptr][0] if f.ptr < len(f.events) else INFINITY
        if f.slope == 0:
            if f.const > f.budget:
                return f.start - 1
            if nxt == INFINITY:
                return INFINITY
        else:
            top = (f.budget - f.const) // f.slope
            if top < f.start:
                return f.start - 1
            if nxt == INFINITY or top < nxt - 1:
                return top
        f.start = nxt
        _apply_events(f, nxt, plans, frozen)


def _value_at(plan: _Plan, level: int) -> int:
    return min((plan.demand * FINE), max((plan.floor * FINE), plan.weight * level - plan.offset))


def _water_fill(plans: list[_Plan], members: list[list[tuple[int, int]]], budgets: list[int]) -> None:
    """Max-min fair (weighted) progressive filling above the floors; sets plan.value and plan.binding."""
    if not plans:
        return
    by_index: dict[int, _Plan] = {p.index: p for p in plans}
    size = max(by_index) + 1
    plans_at: list[_Plan] = [plans[0]] * size
    for p in plans:
        plans_at[p.index] = p
    frozen = [False] * size
    for p in plans:
        p.thresholds = _compute_thresholds(p)
    fillings: dict[int, _Filling] = {}
    for c, group in enumerate(members):
        if not group:
            continue
        f = _Filling(budgets[c] * FINE)
        for i, coef in group:
            plan = plans_at[i]
            f.const += coef * (plan.floor * FINE)
            t_in, t_out = _thresholds(plan)
            if t_in < t_out:
                f.events.append((t_in, 0, i, coef))
                f.events.append((t_out, 1, i, coef))
            else:
                f.events.append((t_out, 2, i, coef))
        f.events.sort()
        f.alive = len(group)
        _apply_events(f, 0, plans_at, frozen)
        f.level = _solve(f, plans_at, frozen)
        fillings[c] = f
    heap = [(f.level, c) for c, f in fillings.items()]
    heapq.heapify(heap)
    while heap:
        level, c = heapq.heappop(heap)
        f = fillings[c]
        if f.alive == 0 or level != f.level:
            continue
        if level >= INFINITY:
            break
        tight = [c]
        while heap and heap[0][0] == level:
            _, other = heapq.heappop(heap)
            g = fillings[other]
            if g.alive and g.level == level and other not in tight:
                tight.append(other)
        touched: set[int] = set()
        for t in sorted(tight, key=lambda x: (-(x // 4), x)):
            for i, _ in members[t]:
                if frozen[i]:
                    continue
                plan = plans_at[i]
                fine = _value_at(plan, level)
                plan.value = fine // FINE
                plan.binding = t if plan.value < plan.demand else None
                frozen[i] = True
                for d, coef in plan.constraints:
                    g = fillings[d]
                    _unfreeze_contribution(g, plan, coef, fine)
                    g.alive -= 1
                    touched.add(d)
        for d in sorted(touched):
            g = fillings[d]
            if g.alive:
                g.level = _solve(g, plans_at, frozen)
                heapq.heappush(heap, (g.level, d))
    for plan in plans:
        if not frozen[plan.index]:
            plan.value = plan.demand
            plan.binding = None


def _unfreeze_contribution(f: _Filling, plan: _Plan, coef: int, value: int) -> None:
    """Replace the member's moving contribution (as it stands at f.start) by the fixed ``value``."""
    t_in, t_out = _thresholds(plan)
    if f.start >= t_out:
        f.const -= coef * (plan.demand * FINE)
    elif t_in < t_out and f.start >= t_in:
        f.slope -= coef * plan.weight
        f.const += coef * plan.offset
    else:
        f.const -= coef * (plan.floor * FINE)
    f.const += coef * value


# -------------------------------------------------------------------------------------- quantization


def _quantize(plan: _Plan, ma: int) -> int:
    """The largest grid current at or below ``ma`` that the charger can be told exactly (never above)."""
    if plan.dc is not None:
        return plan.dc.ma_for(_watts_of(plan, ma))
    return ma // plan.step * plan.step


def _watts_of(plan: _Plan, ma: int) -> int:
    """The DC limit for a grid current: at most what that current delivers, on the charger's grid, within its max."""
    assert plan.dc is not None
    return min(plan.dc.watts(ma), plan.connector.max_power_w or 0) // plan.step * plan.step


def _next_step(plan: _Plan) -> int:
    if plan.dc is not None:
        return plan.dc.ma_for(_watts_of(plan, plan.value) + plan.step)
    return plan.value + plan.step


def _level_of(plan: _Plan, value: int) -> int:
    """The water level (x 10^6) at which the session gets ``value``."""
    return (value * FINE + plan.offset) * 1_000_000 // plan.weight


def _hand_out_leftovers(plans: list[_Plan], cap: list[int], used: list[int]) -> None:
    """What integer levels and quantization left over goes to the lowest (weighted) first, a step at a time.

    The session with the lowest level takes steps until it passes the next lowest (or cannot take one more);
    a session that cannot take a step now never can (the room only shrinks), so this ends.
    """
    by_index = {p.index: p for p in plans}
    heap = [(_level_of(p, p.value), p.connector.key, p.index) for p in plans if p.value < p.demand]
    heapq.heapify(heap)
    while heap:
        _, _, i = heapq.heappop(heap)
        plan = by_index[i]
        room = min(((cap[c] - used[c]) // coef for c, coef in plan.constraints), default=INFINITY)
        top = min(plan.demand, plan.value + room)
        nxt = _next_step(plan)
        if nxt > top:
            continue
        if heap:
            other = by_index[heap[0][2]]
            # the value at which it reaches the other's level
            want = max(nxt, min(top, _ceil_div(
                (other.value * FINE + other.offset) * plan.weight - plan.offset * other.weight, other.weight * FINE)))
        else:
            want = top
        new = _quantize(plan, want)
        if new <= plan.value:
            continue
        for c, coef in plan.constraints:
            used[c] += coef * (new - plan.value)
        plan.value = new
        if new < plan.demand:
            heapq.heappush(heap, (_level_of(plan, new), plan.connector.key, i))


# ---------------------------------------------------------------------------------------------- output


def _limit_of(plan: _Plan, value: int) -> Limit:
    grid = [0, 0, 0]
    for p in plan.grid:
        grid[p] = value
    if plan.dc is not None:
        watts = _watts_of(plan, value) if value else 0
        return Limit(plan.connector.key, amps=None, watts=watts, grid_a=_triple(grid))
    amps = _amps(value).quantize(plan.connector.step_a, rounding=ROUND_FLOOR) if value else Decimal(0)
    return Limit(plan.connector.key, amps=amps, watts=None, grid_a=_triple(grid))


def _remember(plan: _Plan, value: int, now: datetime, params: Parameters, lagging: bool = False) -> ConnectorMemory:
    memory = plan.memory
    running = value > 0
    done = plan.done and not running
    if memory is None:
        return ConnectorMemory(
            session_id=plan.session.id, running=running, since=now if running else plan.session.arrived_at,
            limit_ma=value, raised_at=now if running else None, reclaim_cap_ma=None, ever_ran=running,
            need=plan.need, need_served_ppm=plan.need_served_ppm, need_at=plan.need_at,
            need_demand_wh=plan.session.demand_wh, need_departure=plan.session.departure, done=done)
    since = memory.since if running == memory.running else now
    cap = plan.demand if plan.demand_why is Why.EV_DRAW else None
    raised = memory.raised_at
    if value > memory.limit_ma or (memory.reclaim_cap_ma is not None and cap is None):
        raised = now  # a higher limit (or a lifted cap): the car gets a new ramp-up window
    lowered_at, lowered_from = memory.lowered_at, memory.lowered_from_ma
    if lowered_at is None or now - lowered_at > _seconds(params.follow_s):
        lowered_at, lowered_from = None, None
    if value < memory.limit_ma:  # within a window still open, from the highest limit it had in it
        lowered_at, lowered_from = now, max(memory.limit_ma, lowered_from or 0)
    paused_on_lag = not running and (memory.paused_on_lag or (memory.running and lagging))
    return ConnectorMemory(
        session_id=memory.session_id, running=running, since=since, limit_ma=value, raised_at=raised,
        reclaim_cap_ma=cap if running else None, ever_ran=memory.ever_ran or running, need=plan.need,
        need_served_ppm=plan.need_served_ppm, need_at=plan.need_at, need_demand_wh=plan.session.demand_wh,
        need_departure=plan.session.departure, done=done, lowered_at=lowered_at, lowered_from_ma=lowered_from,
        paused_on_lag=paused_on_lag)


def _binding_of(plan: _Plan, value: int, tree: _Tree, cap: list[int], stale_nodes: set[int]) -> Binding:
    connector = plan.connector
    if plan.mandatory and value <= plan.floor and plan.binding is not None:
        return Binding(Why.CANNOT_PAUSE, f"{connector.key} rejects 0 A: it is kept at its minimum")
    c = plan.binding
    if c is not None:
        node = tree.nodes[c // 4]
        phase = _phase_name(c)
        if c // 4 in stale_nodes:
            return Binding(Why.METER_STALE, f"the site meter at {node.key} is silent: charging within the safe budget",
                           node=node.key, phase=phase)
        if phase is None:
            return Binding(Why.NODE_POWER, f"{node.key} is at its power limit ({node.max_power_w} W), {_shared(plan)}",
                           node=node.key)
        return Binding(Why.NODE_CURRENT, f"{node.key} is full on {phase} ({_fmt_a(cap[c])} usable after derating "
                       f"and margin), {_shared(plan)}", node=node.key, phase=phase)
    if plan.demand_why is Why.EV_DRAW:
        return Binding(Why.EV_DRAW, "the car draws less than it was offered; its limit follows its draw and rises "
                       "again as soon as it draws more")
    if plan.dc is not None:
        return Binding(Why.CONNECTOR_MAX, f"charging at the charger's maximum ({connector.max_power_w} W)")
    return Binding(Why.CONNECTOR_MAX, f"charging at the connector's maximum ({connector.max_current_a} A)")


def _shared(plan: _Plan) -> str:
    if plan.need is None:
        return "shared fairly"
    return "shared by what each car still needs by its departure"


def _triple(values: Sequence[int]) -> tuple[Decimal, Decimal, Decimal]:
    return (_amps(values[0]), _amps(values[1]), _amps(values[2]))


def _budgets(
    tree: _Tree, cap: list[int], non_ev: list[list[int]], unmanaged: list[list[int]], planned: list[list[int]],
) -> dict[str, NodeBudget]:
    out: dict[str, NodeBudget] = {}
    for i, node in enumerate(tree.nodes):
        total = sum(non_ev[i][p] + unmanaged[i][p] + planned[i][p] for p in range(3))
        out[node.key] = NodeBudget(
            capacity_a=_triple([cap[4 * i + p] for p in range(3)]), non_ev_a=_triple(non_ev[i]),
            unmanaged_a=_triple(unmanaged[i]), planned_a=_triple(planned[i]), max_power_w=node.max_power_w,
            planned_power_w=Decimal(total * node.voltage_v).scaleb(-3))
    return out


# ---------------------------------------------------------------------------- helpers for the control loop


@dataclass(frozen=True)
class Changes:
    """New limits to send: every decrease first (wait for their acknowledgement), then the increases."""

    decreases: tuple[Limit, ...]
    increases: tuple[Limit, ...]
    skipped: tuple[str, ...]  # increases too small to be worth a profile


def split_changes(
    previous: Mapping[str, Limit], new: Mapping[str, Limit], *, min_change_a: Decimal = Decimal(1),
    min_change_w: int = 690,
) -> Changes:
    """Split the new limits into decreases and increases for break-before-make dispatch.

    An increase smaller than ``min_change_a`` (DC: ``min_change_w``) is skipped: the charger keeps its
    lower limit, which is safe. A decrease is never skipped, however small: the plan counts on it.
    Starting (from nothing or 0) and pausing (to 0) are always sent.
    """
    decreases: list[Limit] = []
    increases: list[Limit] = []
    skipped: list[str] = []
    for key in sorted(new):
        limit = new[key]
        before = previous.get(key)
        old = before.value if before is not None else None
        if old is not None and limit.value == old:
            continue
        if old is not None and limit.value < old:
            decreases.append(limit)
            continue
        threshold = min_change_a if limit.amps is not None else Decimal(min_change_w)
        if old is not None and old > 0 and limit.value - old < threshold:
            skipped.append(key)
            continue
        increases.append(limit)
    return Changes(tuple(decreases), tuple(increases), tuple(skipped))


def lease_floors(
    nodes: Sequence[Node], connectors: Sequence[Connector], now: datetime, params: Parameters = DEFAULT_PARAMETERS,
) -> dict[str, Limit]:
    """The limit each connector may fall back to when the server goes silent (the lease's last period).

    Safe whatever happens while nobody watches: every managed connector charging at once, the non-EV load
    at its worst (the meter treated as silent: only ``stale_ev_budget_a`` per phase is left for EVs).
    """
    sessions = [Session(id=f"lease:{c.key}", connector=c.key, arrived_at=now)
                for c in connectors if c.online and c.compliant]
    allocation = allocate(nodes, connectors, sessions, [], None, now, params)
    return dict(allocation.limits)
