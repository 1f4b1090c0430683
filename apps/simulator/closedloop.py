"""What a closed-loop run of a building measured, observed from the outside, and its report. Pure: no Django,
no I/O, no clock (every sample carries its own time).

The caller (simulate_building, the acnportal comparison, the tests) feeds a ``Recorder``:

* ``load(at, node, amps)``: the EVs' actual current per grid phase on a node (plus the non-EV load where the
  node is metered), at simulated time ``at``. Scored against the node's *limit* (rating x derate - margin, what
  the allocator may plan up to) and against its raw *rating*.
* ``reading(at, amps, limit)``: a site-meter reading as POSTed, at wall-clock time ``at``. One that shows a
  rise of ``RISE_A`` or more on a phase while the total is above ``limit`` on that phase waits for a reaction.
* ``profile(at, connector, amps)``: a SetChargingProfile a simulated charger received, at wall-clock time
  ``at``. The first one that lowers a connector's limit answers every reading waiting for a reaction: the
  reaction time is real seconds, whatever the simulation's speed.
* ``limit(at, session, amps)``: a session's limit (simulated time), for the pauses.
* ``energy(seconds, spare_w, ev_w)``: one tick's spare power for EVs (``deliverable_w``) and what they drew.
* ``session(id, demand_wh, delivered_wh)``: once per session at the end.
* ``needs_stated(...)`` / ``needs_failed(problem)``: a simulated resident's needs the platform took, or a call
  that failed (apps/simulator/residents.py says who speaks; the report counts them).

``report(...)`` scores it with apps.loadbalancing.metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

from apps.loadbalancing.metrics import LoadSample, OverloadReport, jain_index, overload, pauses, utilization

RISE_A = Decimal(2)
UNANSWERED_AFTER = timedelta(seconds=30)
PLACES = Decimal("0.001")
Phases = tuple[Decimal, Decimal, Decimal]


@dataclass(frozen=True)
class NodeLimits:
    key: str
    rating_a: Phases  # the breaker's rating
    limit_a: Phases  # rating x derate - margin
    max_power_w: int | None = None  # a cabinet's input (not derated): scored as a fourth series
    parent: str | None = None
    voltage_v: int = 230


@dataclass(frozen=True)
class Wiring:
    """A gun as the building sees it: its node, its phases and the grid phase(s) it is wired to."""

    key: str
    node: str
    phases: int
    rotation: str  # L1/L2/L3 for a single-phase gun; RST... for a three-phase one


_GRID = {"L1": 0, "L2": 1, "L3": 2, "R": 0, "S": 1, "T": 2}


def grid_currents(wiring: Wiring, amps: Decimal, phases_used: int) -> Phases:
    """What a gun drawing ``amps`` per phase on ``phases_used`` of its phases puts on each grid phase."""
    out = [Decimal(0)] * 3
    if wiring.phases == 1 or phases_used == 1:
        first = wiring.rotation if wiring.rotation in ("L1", "L2", "L3") else wiring.rotation[:1]
        out[_GRID[first]] += amps
    else:
        for p in range(3):
            out[p] += amps
    return out[0], out[1], out[2]


def node_loads(nodes: Sequence[NodeLimits], guns: Sequence[tuple[Wiring, Decimal, int]],
               non_ev: dict[str, Phases]) -> dict[str, Phases]:
    """Each node's current per grid phase: its guns' and its children's, plus the non-EV load put on it."""
    by_key = {n.key: n for n in nodes}
    totals = {n.key: [Decimal(0)] * 3 for n in nodes}

    def add(node: str | None, amps: Sequence[Decimal]) -> None:
        seen = 0
        while node is not None:
            if node not in by_key or seen > len(nodes):
                raise ValueError(f"no node {node!r} in this building (or a loop in the tree)")
            for p in range(3):
                totals[node][p] += amps[p]
            node = by_key[node].parent
            seen += 1

    for wiring, amps, used in guns:
        add(wiring.node, grid_currents(wiring, amps, used))
    for node, other in non_ev.items():
        add(node, other)
    return {k: (v[0], v[1], v[2]) for k, v in totals.items()}


def deliverable_w(nodes: Sequence[NodeLimits], wants: Sequence[tuple[Wiring, Decimal, int]],
                  non_ev: dict[str, Phases]) -> Decimal:
    """The most the EVs could draw together at this moment: each gun's ``wants`` (what its car would take per
    phase on its phases in use, as in ``node_loads``) through the tree, with every node's room per phase (its
    limit less the non-EV load below and at it) and under its power. An upper bound on any schedule's draw,
    and the exact one for a single node: two cars on one phase of a 32 A cabinet can take 32 A between them,
    whatever the other phases' room. Bottom-up, each node passes on per phase the least of its room and what
    its guns and children could take, and in all the least of that sum, its children's totals and its power
    room."""
    loads = node_loads(nodes, [], non_ev)
    by_key = {n.key: n for n in nodes}
    children: dict[str | None, list[NodeLimits]] = {}
    for node in nodes:
        children.setdefault(node.parent if node.parent in by_key else None, []).append(node)
    direct: dict[str, list[Decimal]] = {n.key: [Decimal(0)] * 3 for n in nodes}
    for wiring, amps, used in wants:
        if wiring.node not in by_key:
            raise ValueError(f"no node {wiring.node!r} in this building")
        grid = grid_currents(wiring, amps, used)
        for p in range(3):
            direct[wiring.node][p] += grid[p]

    reached: set[str] = set()

    def through(node: NodeLimits) -> tuple[list[Decimal], Decimal]:
        reached.add(node.key)
        per_phase = list(direct[node.key])
        total = sum(per_phase, Decimal(0)) * node.voltage_v
        for child in children.get(node.key, []):
            phases, watts = through(child)
            per_phase = [a + b for a, b in zip(per_phase, phases, strict=True)]
            total += watts
        per_phase = [min(max(Decimal(0), node.limit_a[p] - loads[node.key][p]), per_phase[p]) for p in range(3)]
        total = min(total, sum(per_phase, Decimal(0)) * node.voltage_v)
        if node.max_power_w is not None:
            total = min(total, max(Decimal(0), node.max_power_w - sum(loads[node.key], Decimal(0)) * node.voltage_v))
        return per_phase, total

    spare = sum((through(root)[1] for root in children.get(None, [])), Decimal(0))
    if len(reached) < len(by_key):  # commissioning refuses such a tree; a hand-made one is refused here
        loop = sorted(set(by_key) - reached)
        raise ValueError(f"nodes {', '.join(loop)} form a loop: each is fed, through the others, by itself")
    return spare


@dataclass
class _Pending:
    at: datetime


@dataclass(frozen=True)
class NeedsStated:
    """A simulated resident's needs the platform took: the run's session id, the platform's session and the
    values as sent (``ready_by`` on the platform's clock)."""

    session: str
    platform_session: int
    energy_wh: int
    ready_by: datetime


@dataclass
class Recorder:
    nodes: Sequence[NodeLimits]
    _limit: dict[tuple[str, int], list[LoadSample]] = field(default_factory=dict)
    _rating: dict[tuple[str, int], list[LoadSample]] = field(default_factory=dict)
    _last_reading: Phases | None = None
    _pending: list[_Pending] = field(default_factory=list)
    _reactions: list[Decimal] = field(default_factory=list)
    _unanswered: int = 0
    _profile_limits: dict[str, Decimal] = field(default_factory=dict)
    _profiles: dict[str, int] = field(default_factory=dict)
    _session_limits: dict[str, list[tuple[datetime, Decimal]]] = field(default_factory=dict)
    _spare_ws: Fraction = Fraction(0)
    _ev_ws: Fraction = Fraction(0)
    _sessions: dict[str, tuple[int, int]] = field(default_factory=dict)
    _needs: list[NeedsStated] = field(default_factory=list)
    _needs_problems: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_key = {n.key: n for n in self.nodes}
        for node in self.nodes:
            if any(x <= 0 for x in node.limit_a + node.rating_a):
                raise ValueError(f"node {node.key!r}: limits and ratings must be > 0")

    def load(self, at: datetime, node: str, amps: Phases) -> None:
        limits = self._by_key.get(node)
        if limits is None:
            raise ValueError(f"no node {node!r} in this building")
        if limits.max_power_w is not None:
            watts = sum(amps, Decimal(0)) * limits.voltage_v
            for store in (self._limit, self._rating):
                series = store.setdefault((node, 3), [])
                if series and at <= series[-1].at:
                    raise ValueError(f"node {node!r}: samples must be in time order ({at.isoformat()})")
                series.append(LoadSample(at, watts, Decimal(limits.max_power_w)))
        for p in range(3):
            for store, rating in ((self._limit, limits.limit_a[p]), (self._rating, limits.rating_a[p])):
                series = store.setdefault((node, p), [])
                if series and at <= series[-1].at:
                    raise ValueError(f"node {node!r}: samples must be in time order ({at.isoformat()})")
                series.append(LoadSample(at, amps[p], rating))

    def reading(self, at: datetime, amps: Phases, limit: Phases) -> bool:
        """Record a site-meter reading; True when it shows a rise that waits for reduced profiles."""
        self._expire(at)
        before, self._last_reading = self._last_reading, amps
        if before is None:
            return False
        rose = any(amps[p] - before[p] >= RISE_A and amps[p] > limit[p] for p in range(3))
        if rose:
            self._pending.append(_Pending(at))
        return rose

    def _expire(self, now: datetime) -> None:
        keep = []
        for pending in self._pending:
            if now - pending.at > UNANSWERED_AFTER:
                self._unanswered += 1
            else:
                keep.append(pending)
        self._pending = keep

    def profile(self, at: datetime, connector: str, amps: Decimal) -> bool:
        """Record a profile a charger received; True when it lowered the connector's limit."""
        self._expire(at)
        self._profiles[connector] = self._profiles.get(connector, 0) + 1
        before = self._profile_limits.get(connector)
        self._profile_limits[connector] = amps
        reduced = before is not None and amps < before
        if reduced:
            for pending in self._pending:
                if at >= pending.at:
                    self._reactions.append(_q(Fraction((at - pending.at) // timedelta(microseconds=1), 10**6)))
            self._pending = [p for p in self._pending if at < p.at]
        return reduced

    def limit(self, at: datetime, session: str, amps: Decimal) -> None:
        self._session_limits.setdefault(session, []).append((at, amps))

    def energy(self, seconds: Decimal, spare_w: Decimal, ev_w: Decimal) -> None:
        if seconds < 0 or ev_w < 0:
            raise ValueError("seconds and the EVs' power must be >= 0")
        self._spare_ws += Fraction(seconds) * max(Fraction(0), Fraction(spare_w))
        self._ev_ws += Fraction(seconds) * Fraction(ev_w)

    def session(self, session: str, demand_wh: int, delivered_wh: int) -> None:
        if demand_wh < 0 or delivered_wh < 0:
            raise ValueError(f"session {session!r}: energies must be >= 0")
        self._sessions[session] = (demand_wh, delivered_wh)

    def needs_stated(self, stated: NeedsStated) -> None:
        if stated.energy_wh <= 0:
            raise ValueError(f"session {stated.session!r}: the energy stated must be > 0")
        self._needs.append(stated)

    def needs_failed(self, problem: str) -> None:
        """A resident's call that failed: an HTTP status, the platform unreachable, no session to speak of."""
        self._needs_problems[problem] = self._needs_problems.get(problem, 0) + 1

    def report(self, end: datetime, now: datetime, connectors: int, minutes: Decimal) -> Report:
        """Score everything recorded; ``end`` closes the load series (simulated time), ``now`` (wall clock)
        closes the readings still waiting, ``minutes`` of simulated time with ``connectors`` guns."""
        self._expire(now + UNANSWERED_AFTER + timedelta(microseconds=1))
        vs_limit = _worst(self._limit, end)
        vs_rating = _worst(self._rating, end)
        ratio_values = [min(Fraction(1), Fraction(got, want)) for want, got in self._sessions.values() if want > 0]
        demand = sum(want for want, _ in self._sessions.values())
        delivered = sum(got for _, got in self._sessions.values())
        spare_wh = int(self._spare_ws / 3600)
        per_minute = (Decimal(sum(self._profiles.values())) / (connectors * minutes)).quantize(PLACES) \
            if connectors and minutes > 0 else None
        pause_counts = [pauses(v) for v in self._session_limits.values()]
        return Report(
            vs_limit=vs_limit,
            vs_rating=vs_rating,
            reactions_s=tuple(sorted(self._reactions)),
            unanswered_rises=self._unanswered,
            profiles_per_connector_minute=per_minute,
            pauses_per_session=(Decimal(sum(pause_counts)) / len(pause_counts)).quantize(PLACES)
            if pause_counts else None,
            max_pauses=max(pause_counts, default=0),
            demand_wh=demand,
            delivered_wh=delivered,
            spare_wh=spare_wh,
            ev_drawn_wh=int(self._ev_ws / 3600),
            utilization=utilization(delivered, spare_wh, demand),
            jain=jain_index([_q(r) for r in ratio_values]),
            served_spread=_q(max(ratio_values) - min(ratio_values)) if ratio_values else None,
            sessions=len(self._sessions),
            session_energy=tuple((key, want, got) for key, (want, got) in sorted(self._sessions.items())),
            needs_stated=tuple(self._needs),
            needs_problems=tuple(sorted(self._needs_problems.items())),
        )


def _q(x: Fraction) -> Decimal:
    return (Decimal(x.numerator) / Decimal(x.denominator)).quantize(PLACES, rounding=ROUND_HALF_EVEN)


def _worst(store: dict[tuple[str, int], list[LoadSample]], end: datetime) -> OverloadReport:
    """The node phase with the most seconds above 113 %, then above 100 %, then the longest excursion."""
    reports = [overload(series, max(end, series[-1].at)) for series in store.values() if series]
    if not reports:
        return overload([], end)
    total_100 = sum((r.seconds_above_100 for r in reports), Decimal(0))
    total_113 = sum((r.seconds_above_113 for r in reports), Decimal(0))
    excursions = tuple(sorted((e for r in reports for e in r.excursions), key=lambda e: e.start))
    return OverloadReport(total_100, total_113, excursions)


def percentile(values: Sequence[Decimal], q: int) -> Decimal | None:
    """The nearest-rank percentile ``q`` (1-100) of ``values``; None for none."""
    if not values:
        return None
    if not 1 <= q <= 100:
        raise ValueError("q is a percentage in 1-100")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered) / 100) - 1)]


@dataclass(frozen=True)
class Report:
    vs_limit: OverloadReport
    vs_rating: OverloadReport
    reactions_s: tuple[Decimal, ...]
    unanswered_rises: int
    profiles_per_connector_minute: Decimal | None
    pauses_per_session: Decimal | None
    max_pauses: int
    demand_wh: int
    delivered_wh: int
    spare_wh: int
    ev_drawn_wh: int
    utilization: Decimal | None
    jain: Decimal | None
    served_spread: Decimal | None  # highest - lowest energy/demand across sessions
    sessions: int
    # Each session's demand and delivered energy (Wh), by session id: which car the fairness measures point at.
    session_energy: tuple[tuple[str, int, int], ...] = ()
    # The residents' needs the platform took, and the calls that failed by problem (e.g. "HTTP 404": 1).
    needs_stated: tuple[NeedsStated, ...] = ()
    needs_problems: tuple[tuple[str, int], ...] = ()

    @property
    def needs_failed(self) -> int:
        return sum(count for _, count in self.needs_problems)

    def worst(self, which: OverloadReport) -> tuple[Decimal, Decimal]:
        """The worst excursion's peak ratio and how long it lasted (0, 0 for none)."""
        if not which.excursions:
            return Decimal(0), Decimal(0)
        e = max(which.excursions, key=lambda e: (e.peak_ratio, e.seconds))
        return e.peak_ratio, e.seconds

    def targets(self) -> dict[str, bool | None]:
        p95 = percentile(self.reactions_s, 95)
        return {
            "never above 113 % of any limit": self.vs_limit.seconds_above_113 == 0,
            "every excursion above 100 % cleared within 30 s": self.vs_limit.safe,
            "reaction p95 <= 1 s": None if p95 is None else p95 <= 1 and self.unanswered_rises == 0,
            "utilization >= 95 %": None if self.utilization is None else self.utilization >= Decimal("0.95"),
            "Jain >= 0.99": None if self.jain is None else self.jain >= Decimal("0.99"),
            "energy/demand within 15 %": None if self.served_spread is None
            else self.served_spread <= Decimal("0.15"),
        }

    def as_json(self) -> dict[str, Any]:
        def over(r: OverloadReport) -> dict[str, Any]:
            peak, seconds = self.worst(r)
            return {"seconds_above_100": str(r.seconds_above_100), "seconds_above_113": str(r.seconds_above_113),
                    "excursions": len(r.excursions), "longest_excursion_s": str(r.longest_excursion_s),
                    "worst_peak_ratio": str(peak), "worst_lasted_s": str(seconds)}

        return {
            "vs_limit": over(self.vs_limit),
            "vs_rating": over(self.vs_rating),
            "reaction_s": {f"p{q}": _s(percentile(self.reactions_s, q)) for q in (50, 95, 99)}
            | {"count": len(self.reactions_s), "unanswered": self.unanswered_rises},
            "profiles_per_connector_minute": _s(self.profiles_per_connector_minute),
            "pauses_per_session": _s(self.pauses_per_session),
            "max_pauses": self.max_pauses,
            "demand_wh": self.demand_wh,
            "delivered_wh": self.delivered_wh,
            "spare_wh": self.spare_wh,
            "ev_drawn_wh": self.ev_drawn_wh,
            "utilization": _s(self.utilization),
            "jain": _s(self.jain),
            "served_spread": _s(self.served_spread),
            "sessions": self.sessions,
            "session_energy": [{"session": key, "demand_wh": want, "delivered_wh": got}
                               for key, want, got in self.session_energy],
            "needs": {
                "stated": len(self.needs_stated), "failed": self.needs_failed, "problems": dict(self.needs_problems),
                "sessions": [{"session": n.session, "platform_session": n.platform_session,
                              "energy_wh": n.energy_wh, "ready_by": n.ready_by.isoformat()}
                             for n in self.needs_stated],
            },
            "targets": self.targets(),
        }

    def table(self) -> str:
        rows: list[tuple[str, str]] = []
        for label, r in (("limit", self.vs_limit), ("rating", self.vs_rating)):
            peak, seconds = self.worst(r)
            rows += [
                (f"seconds above 100 % of {label}", str(r.seconds_above_100)),
                (f"seconds above 113 % of {label}", str(r.seconds_above_113)),
                (f"worst excursion vs {label}", f"{_pct(peak)} for {seconds} s"),
            ]
        rows += [
            ("reaction p50 / p95 / p99 (s, real)", " / ".join(_s(percentile(self.reactions_s, q)) or "-"
                                                             for q in (50, 95, 99))),
            ("rises measured / unanswered", f"{len(self.reactions_s)} / {self.unanswered_rises}"),
            ("utilization", _pct(self.utilization)),
            ("Jain (energy/demand)", _s(self.jain) or "-"),
            ("energy/demand spread", _pct(self.served_spread)),
            ("pauses per session (max)", f"{_s(self.pauses_per_session) or '-'} ({self.max_pauses})"),
            ("profiles per connector per minute", _s(self.profiles_per_connector_minute) or "-"),
            ("delivered / demand (Wh)", f"{self.delivered_wh} / {self.demand_wh}"),
            ("residents' needs stated / failed", f"{len(self.needs_stated)} / {self.needs_failed}"
             + (" (" + ", ".join(f"{p}: {n}" for p, n in self.needs_problems) + ")" if self.needs_problems else "")),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
        lines += [f"{'met' if ok else 'MISSED' if ok is False else 'n/a':6}  {name}"
                  for name, ok in self.targets().items()]
        return "\n".join(lines)


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{(value * 100).quantize(Decimal('0.1'))} %"
