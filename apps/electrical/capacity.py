"""The installer's capacity report: how much of the building's supply is left for EVs, and for how many.

Pure: no Django, no I/O, no clock. Currents are Decimal amperes with one decimal, energy integer Wh;
floats never touch either. The inputs are the site meter's quarter-hours (peak and mean current per phase
per 15 minutes, ``SiteMeterQuarter``), what the EVs drew in each quarter (from their sessions' energy
registers and ``Current.Import``), the supply's limits and the EV profile asked about.

What it computes (docs/capacity.md says it for installers):

* **Non-EV load** of a quarter = measured - the EVs' mean draw in that quarter (never below 0). The EV draw
  is rounded *down* to 0.1 A, so the building's own load is never under-stated.
* **The 7 x 24 table**: for each weekday and hour of the building's local time, per phase, the 95th
  percentile (nearest rank) and the maximum of the quarters' *peaks*, non-EV and total; the spare current
  = usable limit - p95 non-EV peak.
* **EVs served per night**: for each night of the history (``night_start`` to ``ready_by`` local time, DST
  nights are 12 or 14 hours long), the largest number of EVs that can each receive ``energy_wh`` within
  the night's per-phase headroom (usable limit - non-EV peak of each quarter) and the connector's
  minimum and maximum current. Energy-based, exact: see ``evs_on_phase``.
* **The upgrade**: the fewest whole amperes to add to every phase's usable limit so that the worst night
  serves the target number of EVs, and the supply rating that means.
* **Throttling**: a summary of the load balancer's (wanted, allowed) samples, read from its run records
  (``throttle_history`` in apps/core/capacity.py).

Doubtful input is not guessed at silently: missing quarters, quarters with too few readings (the meter
was stale), fewer days than ``min_days``: the report says what it is based on, and ``build_report`` refuses
with ``InsufficientHistory`` when there is too little.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from itertools import pairwise
from typing import Any

TENTH = Decimal("0.1")
ZERO = Decimal(0)
QUARTER = timedelta(minutes=15)
QUARTER_S = 900
QUARTERS_PER_DAY = 96
PERCENTILE = 95
PHASE_NAMES = ("L1", "L2", "L3")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# A night is evaluated once at least this share of its quarters is known; the unknown rest is filled with
# the worst load seen at that weekday and hour.
MIN_NIGHT_COVERAGE = Decimal("0.9")
NO_BALANCER_HISTORY = "no balancer history yet"


class InsufficientHistory(ValueError):
    """Too little site-meter history to say anything an installer could rely on."""


def down(value: Decimal) -> Decimal:
    return value.quantize(TENTH, rounding=ROUND_FLOOR)


def up(value: Decimal) -> Decimal:
    return value.quantize(TENTH, rounding=ROUND_CEILING)


def quarter_of(moment: datetime) -> datetime:
    """The start (UTC) of the quarter hour holding ``moment``."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % QUARTER_S, tz=UTC)


# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseLimits:
    """A circuit's rating per phase, its derate and margin. Usable = rating x derate - margin, down to 0.1 A."""

    rated_a: tuple[Decimal, ...]
    derate: Decimal = Decimal(1)
    margin_a: Decimal = ZERO

    @property
    def usable_a(self) -> tuple[Decimal, ...]:
        return tuple(max(ZERO, down(r * self.derate - self.margin_a)) for r in self.rated_a)

    def rating_for(self, usable_a: Decimal) -> int:
        """The whole-ampere rating whose usable current is at least ``usable_a``."""
        return math.ceil((usable_a + self.margin_a) / self.derate)


@dataclass(frozen=True)
class CircuitLimits:
    """A node of the electrical tree. ``connectors``: the AC connectors on it or on the circuits under it."""

    key: str
    limits: PhaseLimits
    is_supply: bool = False
    max_power_w: int | None = None
    connectors: int = 0
    parent: str | None = None


@dataclass(frozen=True)
class CircuitCapacity:
    """What a circuit under the supply could carry alone on a night of the usual length (no other load known
    on it: the site meter measures the supply), against its connectors."""

    key: str
    usable_a: tuple[Decimal, ...]
    max_power_w: int | None
    connectors: int
    evs_alone: int


@dataclass(frozen=True)
class QuarterLoad:
    """One quarter hour of the site meter: peak and mean current per phase, and the EVs' mean draw."""

    start: datetime  # aware; a quarter boundary
    samples: int
    peak_a: tuple[Decimal, ...]
    mean_a: tuple[Decimal, ...]
    ev_a: tuple[Decimal, ...] | None = None  # mean EV draw per grid phase; None: no EV charged

    def non_ev_peak(self) -> tuple[Decimal, ...]:
        ev = self.ev_a or (ZERO,) * len(self.peak_a)
        return tuple(max(ZERO, p - e) for p, e in zip(self.peak_a, ev, strict=True))

    def non_ev_mean(self) -> tuple[Decimal, ...]:
        ev = self.ev_a or (ZERO,) * len(self.mean_a)
        return tuple(max(ZERO, m - e) for m, e in zip(self.mean_a, ev, strict=True))


@dataclass(frozen=True)
class History:
    """The quarters of [start, end) (aware, quarter boundaries), and the building's time zone."""

    zone: tzinfo
    start: datetime
    end: datetime
    quarters: Sequence[QuarterLoad]


@dataclass(frozen=True)
class EvProfile:
    """What each EV needs a night and what its connector allows."""

    energy_wh: int
    phases: int = 1  # 1: each EV on one phase (the connectors spread over the phases); 3: all three
    min_a: Decimal = Decimal(6)
    max_a: Decimal = Decimal(32)


@dataclass(frozen=True)
class Parameters:
    ev: EvProfile
    night_start: time = time(18, 0)
    ready_by: time = time(7, 0)
    target_evs: int | None = None
    growth: Decimal = ZERO  # the non-EV load is planned at (1 + growth) x what was measured
    min_days: int = 7
    min_samples: int = 1  # a quarter with fewer readings is stale (the meter was silent in it)
    lowest_nights: int = 5


@dataclass(frozen=True)
class ThrottleSample:
    """One load-balancer run: how many connectors charged, what they wanted and what they were allowed."""

    at: datetime
    connectors: int
    wanted_a: Decimal
    allowed_a: Decimal


# --- the EV share of each quarter -----------------------------------------------------------


@dataclass(frozen=True)
class SessionDraw:
    """What one charging session tells about its draw.

    ``grid_phases``: the grid phase (0 = L1) of each of the connector's phases, after its rotation.
    ``registers``: (time, Wh) of its energy register, meterStart included, in time order.
    ``currents``: (quarter start UTC, connector phase 0-based) -> mean ``Current.Import`` in that quarter.
    ``max_power_w``: the connector's most; a register step implying more is not believed.
    """

    grid_phases: tuple[int, ...]
    registers: Sequence[tuple[datetime, Decimal]] = ()
    currents: Mapping[tuple[datetime, int], Decimal] = field(default_factory=dict)
    max_power_w: int | None = None


def register_energy_per_quarter(registers: Sequence[tuple[datetime, Decimal]],
                                max_power_w: int | None = None) -> dict[datetime, Decimal]:
    """Wh delivered in each quarter: each step of the register spread over its quarters by time.

    A step backwards (a meter reset), over no time, or faster than ``max_power_w`` (a kWh value labelled Wh)
    is skipped: its energy is not known, and the EVs' share is never over-stated.
    """
    energy: dict[datetime, Decimal] = {}
    for (t0, w0), (t1, w1) in pairwise(registers):
        seconds = Decimal(int((t1 - t0).total_seconds()))
        if w1 < w0 or seconds <= 0:
            continue
        if max_power_w is not None and (w1 - w0) * 3600 > max_power_w * seconds:
            continue
        cursor = t0
        while cursor < t1:
            q = quarter_of(cursor)
            upto = min(t1, q + QUARTER)
            share = Decimal(int((upto - cursor).total_seconds())) / seconds
            energy[q] = energy.get(q, ZERO) + (w1 - w0) * share
            cursor = upto
    return energy


def ev_draw_per_quarter(
    sessions: Iterable[SessionDraw], *, voltage_v: int, supply_phases: int,
) -> dict[datetime, tuple[Decimal, ...]]:
    """The EVs' mean current per grid phase in each quarter, summed over sessions, down to 0.1 A.

    From the energy register when it tells (energy / (voltage x 15 min), split over the connector's phases
    as its ``Current.Import`` samples split, evenly without them); from the mean ``Current.Import`` alone
    when there is no register step in the quarter.
    """
    totals: dict[datetime, list[Decimal]] = {}
    for session in sessions:
        by_register = register_energy_per_quarter(session.registers, session.max_power_w)
        quarters = set(by_register) | {q for q, _ in session.currents}
        for q in quarters:
            measured = [session.currents.get((q, n)) for n in range(len(session.grid_phases))]
            known = [m for m in measured if m is not None]
            if q in by_register:
                total_a = by_register[q] * 4 / voltage_v  # Wh in a quarter hour -> amperes over all phases
                if known and sum(known) > 0 and len(known) == len(measured):
                    split = [total_a * (m or ZERO) / sum(known) for m in measured]
                else:
                    split = [total_a / len(session.grid_phases)] * len(session.grid_phases)
            else:
                split = [m or ZERO for m in measured]
            row = totals.setdefault(q, [ZERO] * supply_phases)
            for grid, amps in zip(session.grid_phases, split, strict=True):
                # On a single-phase supply every connector is on its one phase, whatever its rotation says.
                row[grid if supply_phases > 1 else 0] += amps
    return {q: tuple(down(a) for a in row) for q, row in totals.items()}


# --- outputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One weekday and hour: per phase, the p95 and max of the quarters' peaks, non-EV and total."""

    weekday: int  # 0 = Monday
    hour: int
    quarters: int
    non_ev_p95_a: tuple[Decimal, ...]
    non_ev_max_a: tuple[Decimal, ...]
    total_p95_a: tuple[Decimal, ...]
    total_max_a: tuple[Decimal, ...]
    spare_a: tuple[Decimal, ...]  # usable - p95 non-EV (with growth)


@dataclass(frozen=True)
class HourProfile:
    """One hour of the day over all weekdays: the worst weekday's p95 non-EV peak and the spare left."""

    hour: int
    non_ev_p95_a: tuple[Decimal, ...]
    spare_a: tuple[Decimal, ...]


@dataclass(frozen=True)
class Night:
    """One night of the history: how many EVs needing ``energy_wh`` it would have served."""

    date: date  # the evening's date
    start: datetime  # local
    end: datetime  # local
    quarters: int  # in the window (48 on a spring-forward night, 56 on a fall-back one, else 52)
    known: int  # of which the history has (trusted)
    evs: int
    evs_per_phase: tuple[int, ...]  # single-phase EVs on each phase; for three-phase EVs, one figure
    headroom_wh: int  # energy the non-EV load left under the usable limit in the window, all phases
    limiting_phase: str | None  # the phase with the least headroom energy; None when they are level


@dataclass(frozen=True)
class Coverage:
    requested_days: int
    start: datetime  # local
    end: datetime  # local
    expected: int
    present: int
    stale: int  # present but with fewer readings than min_samples
    trusted: int
    missing: int
    days: Decimal  # trusted quarters / 96, one decimal
    nights_evaluated: int
    nights_skipped: int  # fewer than MIN_NIGHT_COVERAGE of their quarters known
    ev_quarters: int  # quarters in which some EV charged


@dataclass(frozen=True)
class Upgrade:
    target_evs: int
    served_now: int
    needed: bool
    needed_from_evs: int  # the first EV count the worst night can no longer serve
    extra_a: int | None  # whole amperes to add to every phase's usable limit; None: no upgrade reaches it
    rating_a: tuple[int, ...] | None  # the supply rating per phase that gives it
    reason: str


@dataclass(frozen=True)
class Throttling:
    samples: int
    throttled: int
    deepest_a: Decimal | None  # the largest (wanted - allowed)
    deepest_at: datetime | None  # local
    lowest_share_pct: Decimal | None  # the smallest allowed / wanted, in percent
    by_hour: tuple[int, ...]  # throttled samples per local hour of the day
    worst_hours: tuple[int, ...]
    note: str


@dataclass(frozen=True)
class CapacityReport:
    voltage_v: int
    phases: int
    supply: PhaseLimits
    usable_a: tuple[Decimal, ...]
    circuits: tuple[CircuitLimits, ...]
    circuit_capacity: tuple[CircuitCapacity, ...]  # the circuits under the supply that have connectors
    params: Parameters
    coverage: Coverage
    cells: tuple[Cell, ...]  # 7 x 24, weekday-major; a cell without quarters has quarters = 0
    hours: tuple[HourProfile, ...]  # 24
    nights: tuple[Night, ...]  # in date order
    worst_evs: int
    median_evs: int
    lowest_nights: tuple[Night, ...]
    upgrade: Upgrade | None
    throttling: Throttling
    notes: tuple[str, ...]

    @property
    def phase_names(self) -> tuple[str, ...]:
        return PHASE_NAMES[: self.phases]


# --- the arithmetic --------------------------------------------------------------------------


def percentile(values: Sequence[Decimal], pct: int = PERCENTILE) -> Decimal:
    """Nearest-rank percentile: the smallest value with at least ``pct`` % of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, (pct * len(ordered) + 99) // 100)
    return ordered[rank - 1]


def quarter_wh(amperes: Decimal, voltage_v: int) -> Decimal:
    """Energy of ``amperes`` on one phase for a quarter hour."""
    return amperes * voltage_v / 4


def usable_current(headroom_a: Decimal, evs: int, ev: EvProfile) -> Decimal:
    """What ``evs`` EVs can draw together from ``headroom_a`` in one quarter.

    As many as fit at their minimum charge at once (the others wait their turn), each up to its maximum.
    """
    if evs <= 0 or headroom_a < ev.min_a:
        return ZERO
    at_once = min(evs, int(headroom_a // ev.min_a))
    return min(headroom_a, at_once * ev.max_a)


def evs_on_phase(headroom_a: Sequence[Decimal], voltage_v: int, ev: EvProfile, *, conductors: int = 1,
                 limit: int = 10_000) -> int:
    """The most EVs that can each get ``ev.energy_wh`` from quarters with these headrooms.

    ``k`` EVs fit when the energy they can draw together, quarter by quarter (``usable_current``), is at
    least ``k x energy_wh``: identical EVs share each quarter evenly, or take turns at their minimum.
    ``conductors``: 3 for three-phase EVs (``headroom_a`` is then the smallest phase's). The energy each EV
    can draw per quarter grows slower than ``k``, so the EVs that fit are 0..k: the first failure ends it.
    """
    if ev.energy_wh <= 0:
        return limit
    # In tenths of an ampere, as integers: exact (every current here has one decimal) and fast. Energy is
    # compared x 40: tenths of an ampere x volts = 40 x Wh in a quarter hour.
    tenths = [_tenths(h) for h in headroom_a]
    low_t, high_t = _tenths(ev.min_a), _tenths(ev.max_a)
    need = ev.energy_wh * 40

    def fits(k: int) -> bool:
        drawn = 0
        for h in tenths:
            if h >= low_t:
                drawn += min(h, min(k, h // low_t) * high_t)
        return drawn * voltage_v * conductors >= k * need

    # No more than the whole headroom's energy allows: a bound to search under.
    bound = sum(tenths) * voltage_v * conductors // need
    low, high = 0, min(limit, bound) + 1  # fits(low); not fits(high)
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def _tenths(amperes: Decimal) -> int:
    """Amperes as whole tenths, rounded down (a headroom is never over-stated)."""
    return int((amperes * 10).to_integral_value(rounding=ROUND_FLOOR))


def _night_window(day: date, params: Parameters, zone: tzinfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, params.night_start, tzinfo=zone)
    end_day = day if params.ready_by > params.night_start else day + timedelta(days=1)
    return start, datetime.combine(end_day, params.ready_by, tzinfo=zone)


def _quarters_between(start: datetime, end: datetime) -> list[datetime]:
    """The quarter starts (UTC) of [start, end); real time, so a DST night has 4 quarters more or less."""
    first, last = start.astimezone(UTC), end.astimezone(UTC)
    count = int((last - first).total_seconds()) // QUARTER_S
    return [first + QUARTER * n for n in range(count)]


def _grow(values: tuple[Decimal, ...], growth: Decimal) -> tuple[Decimal, ...]:
    return tuple(up(v * (1 + growth)) for v in values) if growth else values


def night_evs(headroom: Sequence[tuple[Decimal, ...]], voltage_v: int, ev: EvProfile,
              phases: int) -> tuple[int, tuple[int, ...]]:
    """EVs served by quarters of per-phase headroom: single-phase EVs phase by phase, three-phase on the least."""
    if ev.phases == 3:
        least = [min(h) for h in headroom]
        served = evs_on_phase(least, voltage_v, ev, conductors=3)
        return served, (served,)
    per_phase = tuple(evs_on_phase([h[p] for h in headroom], voltage_v, ev) for p in range(phases))
    return sum(per_phase), per_phase


def build_report(
    *,
    supply: PhaseLimits,
    voltage_v: int,
    history: History,
    params: Parameters,
    circuits: Sequence[CircuitLimits] = (),
    throttling: Sequence[ThrottleSample] = (),
) -> CapacityReport:
    """The whole report; ``InsufficientHistory`` when the history cannot carry it.

    ``throttling`` is the load balancer's run history for the same period (empty until it keeps one).
    """
    phases = len(supply.rated_a)
    if phases not in (1, 3):
        raise ValueError(f"supply: {phases} phases; 1 or 3 expected")
    if params.ev.phases not in (1, 3) or params.ev.phases > phases:
        raise ValueError(f"EV profile: {params.ev.phases}-phase EVs on a {phases}-phase supply")
    if params.ev.min_a <= 0 or params.ev.max_a < params.ev.min_a:
        raise ValueError(f"EV profile: min {params.ev.min_a} A, max {params.ev.max_a} A: 0 < min <= max expected")
    usable = supply.usable_a
    zone = history.zone
    # In UTC: aware datetimes of one ZoneInfo compare by wall clock, which a DST night gets wrong.
    history = History(zone, history.start.astimezone(UTC), history.end.astimezone(UTC), history.quarters)
    expected = _quarters_between(history.start, history.end)
    in_range = {q.start.astimezone(UTC): q for q in history.quarters if history.start <= q.start < history.end}
    trusted = {s: q for s, q in in_range.items() if q.samples >= params.min_samples}
    stale = len(in_range) - len(trusted)
    days = down(Decimal(len(trusted)) / QUARTERS_PER_DAY)
    # Whole days asked for: a window over a DST change is an hour shorter or longer.
    requested_days = (int((history.end - history.start).total_seconds()) + 43_200) // 86_400

    # The 7 x 24 table, from the trusted quarters.
    by_cell: dict[tuple[int, int], list[QuarterLoad]] = {}
    for start, q in trusted.items():
        local = start.astimezone(zone)
        by_cell.setdefault((local.weekday(), local.hour), []).append(q)
    cells = []
    for weekday in range(7):
        for hour in range(24):
            members = by_cell.get((weekday, hour), [])
            if not members:
                cells.append(Cell(weekday, hour, 0, (), (), (), (), ()))
                continue
            non_ev = [_grow(q.non_ev_peak(), params.growth) for q in members]
            total = [q.peak_a for q in members]
            p95 = tuple(percentile([v[p] for v in non_ev]) for p in range(phases))
            cells.append(Cell(
                weekday, hour, len(members), p95, tuple(max(v[p] for v in non_ev) for p in range(phases)),
                tuple(percentile([v[p] for v in total]) for p in range(phases)),
                tuple(max(v[p] for v in total) for p in range(phases)),
                tuple(u - v for u, v in zip(usable, p95, strict=True)),
            ))
    hours = []
    for hour in range(24):
        filled = [c for c in cells if c.hour == hour and c.quarters]
        if filled:
            top = tuple(max(c.non_ev_p95_a[p] for c in filled) for p in range(phases))
            hours.append(HourProfile(hour, top, tuple(u - w for u, w in zip(usable, top, strict=True))))
        else:
            hours.append(HourProfile(hour, (), ()))
    cell_max = {(c.weekday, c.hour): c.non_ev_max_a for c in cells if c.quarters}

    # The nights: every night whose window lies in the history.
    nights_non_ev: list[tuple[date, datetime, datetime, int, list[tuple[Decimal, ...]]]] = []
    skipped = 0
    first_day = history.start.astimezone(zone).date() - timedelta(days=1)
    last_day = history.end.astimezone(zone).date()
    for offset in range((last_day - first_day).days + 1):
        day = first_day + timedelta(days=offset)
        start, end = _night_window(day, params, zone)
        if start < history.start or end > history.end:
            continue
        window = _quarters_between(start, end)
        known = [s for s in window if s in trusted]
        if not window or Decimal(len(known)) < MIN_NIGHT_COVERAGE * len(window):
            skipped += 1
            continue
        loads = []
        for s in window:
            if s in trusted:
                loads.append(_grow(trusted[s].non_ev_peak(), params.growth))
            else:  # unknown: the worst seen at that weekday and hour, or no headroom at all
                local = s.astimezone(zone)
                loads.append(cell_max.get((local.weekday(), local.hour), usable))
        nights_non_ev.append((day, start, end, len(known), loads))

    if days < params.min_days or not nights_non_ev:
        raise InsufficientHistory(
            f"the site-meter history of the last {requested_days} days holds {len(trusted)} "
            f"usable quarter hours ({days} days; {len(expected) - len(in_range)} missing, {stale} stale) and "
            f"{len(nights_non_ev)} complete nights; at least {params.min_days} days and one complete night "
            "are needed"
        )

    def evaluate(extra_a: Decimal) -> list[Night]:
        limits = tuple(u + extra_a for u in usable)
        result = []
        for night_day, start, end, known_count, loads in nights_non_ev:
            headroom = [tuple(max(ZERO, lim - load[p]) for p, lim in enumerate(limits)) for load in loads]
            evs, per_phase = night_evs(headroom, voltage_v, params.ev, phases)
            energy = [sum((quarter_wh(h[p], voltage_v) for h in headroom), ZERO) for p in range(phases)]
            least = min(range(phases), key=lambda p: energy[p])
            result.append(Night(
                night_day, start.astimezone(zone), end.astimezone(zone), len(loads), known_count, evs, per_phase,
                int(sum(energy, ZERO).to_integral_value(rounding=ROUND_FLOOR)),
                PHASE_NAMES[least] if phases > 1 and len(set(energy)) > 1 else None,
            ))
        return result

    nights = evaluate(ZERO)
    median_quarters = sorted(n.quarters for n in nights)[(len(nights) - 1) // 2]
    counts = sorted(n.evs for n in nights)
    worst = counts[0]
    median = counts[(len(counts) - 1) // 2]
    lowest = tuple(sorted(nights, key=lambda n: (n.evs, n.headroom_wh, n.date))[: params.lowest_nights])

    # The worst nights first: a search for the upgrade stops at the first night that falls short.
    by_need = [nights_non_ev[i] for i in sorted(range(len(nights)), key=lambda i: nights[i].evs)]

    def serves(extra_a: Decimal, target: int) -> bool:
        limits = tuple(u + extra_a for u in usable)
        for *_, loads in by_need:
            headroom = [tuple(max(ZERO, lim - load[p]) for p, lim in enumerate(limits)) for load in loads]
            if night_evs(headroom, voltage_v, params.ev, phases)[0] < target:
                return False
        return True

    upgrade = None
    if params.target_evs is not None:
        upgrade = _upgrade(params, supply, usable, worst, serves,
                           [load for *_, loads in nights_non_ev for load in loads])

    notes = [
        f"Loads are 15-minute peaks; the table shows the {PERCENTILE}th percentile (nearest rank) and the maximum.",
        "Non-EV load = measured - the EVs' mean draw in the same quarter hour.",
    ]
    if params.ev.phases == 1 and phases == 3:
        notes.append("Single-phase EVs are counted phase by phase, each phase taking what its headroom allows "
                     "(the connectors spread over L1, L2, L3 to match).")
    if stale:
        notes.append(f"{stale} quarter hours had fewer than {params.min_samples} readings (a silent meter): "
                     "left out.")
    if skipped:
        notes.append(f"{skipped} nights had less than {int(MIN_NIGHT_COVERAGE * 100)} % of their quarter hours: "
                     "left out.")
    if params.growth:
        notes.append(f"The non-EV load is planned {up(params.growth * 100)} % above what was measured.")
    coverage = Coverage(
        requested_days=requested_days, start=history.start.astimezone(zone),
        end=history.end.astimezone(zone), expected=len(expected), present=len(in_range), stale=stale,
        trusted=len(trusted), missing=len(expected) - len(in_range), days=days, nights_evaluated=len(nights),
        nights_skipped=skipped, ev_quarters=sum(1 for q in trusted.values() if q.ev_a and any(q.ev_a)),
    )
    return CapacityReport(
        voltage_v=voltage_v, phases=phases, supply=supply, usable_a=usable, circuits=tuple(circuits),
        circuit_capacity=tuple(circuit_capacity(circuits, voltage_v, params, median_quarters)),
        params=params, coverage=coverage, cells=tuple(cells), hours=tuple(hours), nights=tuple(nights),
        worst_evs=worst, median_evs=median, lowest_nights=lowest, upgrade=upgrade,
        throttling=summarize_throttling(throttling, zone), notes=tuple(notes),
    )


def circuit_capacity(circuits: Sequence[CircuitLimits], voltage_v: int, params: Parameters,
                     quarters: int) -> list[CircuitCapacity]:
    """EVs each circuit with connectors could serve alone in ``quarters`` quarter hours: its usable current
    on every phase, its power limit (W x hours / energy) too."""
    result = []
    for circuit in circuits:
        if circuit.is_supply or not circuit.connectors:
            continue
        usable = circuit.limits.usable_a
        ev = params.ev if params.ev.phases <= len(usable) else replace(params.ev, phases=1)
        served, _ = night_evs([usable] * quarters, voltage_v, ev, len(usable))
        if circuit.max_power_w is not None and ev.energy_wh > 0:
            served = min(served, circuit.max_power_w * quarters // (4 * ev.energy_wh))
        result.append(CircuitCapacity(circuit.key, usable, circuit.max_power_w, circuit.connectors, served))
    return result


def _upgrade(params: Parameters, supply: PhaseLimits, usable: tuple[Decimal, ...], worst: int,
             serves: Callable[[Decimal, int], bool], loads: list[tuple[Decimal, ...]]) -> Upgrade:
    target = params.target_evs or 0
    if worst >= target:
        return Upgrade(target, worst, False, worst + 1, 0, None,
                       f"the worst night already serves {worst} EVs: no upgrade needed for {target}")
    # Enough for every EV at its maximum on one phase above the worst load ever seen: beyond it, more
    # amperes change nothing (the connectors are the limit).
    ceiling = int(target * params.ev.max_a + max((max(load) for load in loads), default=ZERO)) + 1
    if not serves(Decimal(ceiling), target):
        return Upgrade(target, worst, True, worst + 1, None, None,
                       f"{target} EVs cannot each get {params.ev.energy_wh} Wh between "
                       f"{params.night_start:%H:%M} and {params.ready_by:%H:%M} through "
                       f"{params.ev.max_a} A connectors, whatever the supply")
    low, high = 0, ceiling  # not serves(low), serves(high)
    while high - low > 1:
        middle = (low + high) // 2
        if serves(Decimal(middle), target):
            high = middle
        else:
            low = middle
    rating = tuple(supply.rating_for(u + high) for u in usable)
    return Upgrade(target, worst, True, worst + 1, high, rating,
                   f"{target} EVs need {high} A more on every phase: a supply rated "
                   f"{' / '.join(str(r) for r in rating)} A (derate {supply.derate}, margin {supply.margin_a} A)")


def summarize_throttling(samples: Sequence[ThrottleSample], zone: tzinfo) -> Throttling:
    """How far and when the load balancer held charging below what the EVs wanted."""
    if not samples:
        return Throttling(0, 0, None, None, None, (0,) * 24, (), NO_BALANCER_HISTORY)
    throttled = [s for s in samples if s.allowed_a < s.wanted_a]
    by_hour = [0] * 24
    for s in throttled:
        by_hour[s.at.astimezone(zone).hour] += 1
    if not throttled:
        return Throttling(len(samples), 0, ZERO, None, Decimal(100), tuple(by_hour), (),
                          "charging was never held below what the EVs wanted")
    deepest = max(throttled, key=lambda s: (s.wanted_a - s.allowed_a, s.at))
    lowest = min((s.allowed_a * 100 / s.wanted_a for s in throttled if s.wanted_a > 0), default=ZERO)
    worst_hours = tuple(sorted((h for h in range(24) if by_hour[h]), key=lambda h: (-by_hour[h], h))[:3])
    return Throttling(
        len(samples), len(throttled), deepest.wanted_a - deepest.allowed_a, deepest.at.astimezone(zone),
        down(lowest), tuple(by_hour), worst_hours,
        f"charging was held below what the EVs wanted in {len(throttled)} of {len(samples)} balancer runs",
    )


# --- shaping ---------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _phases(values: tuple[Decimal, ...], names: Sequence[str]) -> dict[str, str]:
    return {name: str(v) for name, v in zip(names, values, strict=False)}


def report_as_dict(report: CapacityReport) -> dict[str, Any]:
    """The report as JSON-ready values: amperes as strings (exact decimals), energy as integer Wh."""
    names = report.phase_names
    p, c, u, t = report.params, report.coverage, report.upgrade, report.throttling
    return {
        "supply": {
            "voltage_v": report.voltage_v, "phases": report.phases, "rated_a": _phases(report.supply.rated_a, names),
            "derate": str(report.supply.derate), "margin_a": str(report.supply.margin_a),
            "usable_a": _phases(report.usable_a, names),
        },
        "circuits": [{"key": ci.key, "is_supply": ci.is_supply, "usable_a": _phases(ci.limits.usable_a, names),
                      "max_power_w": ci.max_power_w, "connectors": ci.connectors}
                     for ci in report.circuits],
        "circuit_capacity": [{"key": cc.key, "connectors": cc.connectors, "evs_alone": cc.evs_alone}
                             for cc in report.circuit_capacity],
        "parameters": {
            "energy_wh": p.ev.energy_wh, "ev_phases": p.ev.phases, "min_a": str(p.ev.min_a),
            "max_a": str(p.ev.max_a), "night_start": p.night_start.strftime("%H:%M"),
            "ready_by": p.ready_by.strftime("%H:%M"), "target_evs": p.target_evs, "growth": str(p.growth),
            "percentile": PERCENTILE,
        },
        "coverage": {key: _plain(getattr(c, key)) for key in c.__dataclass_fields__},
        "peak_load": [
            {"weekday": WEEKDAYS[cell.weekday], "hour": cell.hour, "quarters": cell.quarters,
             "non_ev_p95_a": _phases(cell.non_ev_p95_a, names), "non_ev_max_a": _phases(cell.non_ev_max_a, names),
             "total_p95_a": _phases(cell.total_p95_a, names), "total_max_a": _phases(cell.total_max_a, names),
             "spare_a": _phases(cell.spare_a, names)}
            for cell in report.cells
        ],
        "spare_by_hour": [{"hour": h.hour, "non_ev_p95_a": _phases(h.non_ev_p95_a, names),
                           "spare_a": _phases(h.spare_a, names)} for h in report.hours],
        "evs": {
            "worst_night": report.worst_evs, "median_night": report.median_evs,
            "nights": [_night(n, names) for n in report.nights],
            "lowest_nights": [_night(n, names) for n in report.lowest_nights],
        },
        "upgrade": None if u is None else {
            "target_evs": u.target_evs, "served_now": u.served_now, "needed": u.needed,
            "needed_from_evs": u.needed_from_evs, "extra_a": u.extra_a,
            "rating_a": None if u.rating_a is None else dict(zip(names, u.rating_a, strict=False)),
            "reason": u.reason,
        },
        "throttling": {key: _plain(getattr(t, key)) for key in t.__dataclass_fields__},
        "notes": list(report.notes),
    }


def _night(night: Night, names: Sequence[str]) -> dict[str, Any]:
    return {
        "date": night.date.isoformat(), "start": night.start.isoformat(), "end": night.end.isoformat(),
        "quarters": night.quarters, "known": night.known, "evs": night.evs,
        "evs_per_phase": list(night.evs_per_phase), "headroom_wh": night.headroom_wh,
        "limiting_phase": night.limiting_phase,
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(h).rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True)) for row in rows]
    return lines


def render_text(report: CapacityReport, *, title: str = "") -> str:
    """The report as aligned plain-text tables, for the installer's terminal."""
    names = report.phase_names
    c, p = report.coverage, report.params
    out = [f"Capacity report{': ' + title if title else ''}", ""]
    out.append(f"Based on {c.trusted} quarter hours ({c.days} days) from {c.start:%Y-%m-%d %H:%M} to "
               f"{c.end:%Y-%m-%d %H:%M} ({c.requested_days} days asked); {c.missing} missing, {c.stale} stale; "
               f"{c.nights_evaluated} nights evaluated, {c.nights_skipped} left out.")
    out.append(f"Supply: {report.phases} x {report.voltage_v} V, rated "
               f"{' / '.join(str(a) for a in report.supply.rated_a)} A x {report.supply.derate} - "
               f"{report.supply.margin_a} A = usable {' / '.join(str(a) for a in report.usable_a)} A.")
    alone = {cc.key: cc for cc in report.circuit_capacity}
    for circuit in report.circuits:
        if circuit.is_supply:
            continue
        line = f"  circuit {circuit.key}: usable {' / '.join(str(a) for a in circuit.limits.usable_a)} A"
        if circuit.max_power_w is not None:
            line += f", {circuit.max_power_w} W"
        if circuit.key in alone:
            cc = alone[circuit.key]
            line += (f"; {cc.connectors} connectors, alone it could serve {cc.evs_alone} EVs a night "
                     f"({p.ev.energy_wh} Wh each)")
        out.append(line)
    out += ["", f"Peak non-EV load per hour of the day (p{PERCENTILE} of 15-minute peaks, worst weekday) "
                "and the spare current left, A"]
    header = ["hour", *(f"load {n}" for n in names), *(f"spare {n}" for n in names)]
    rows = [[f"{h.hour:02d}", *(str(v) for v in h.non_ev_p95_a), *(str(v) for v in h.spare_a)]
            if h.non_ev_p95_a else [f"{h.hour:02d}", *(["-"] * (2 * len(names)))] for h in report.hours]
    out += _table(header, rows)
    out += ["", f"Peak total load (EVs included), max over all phases, p{PERCENTILE} per weekday and hour, A"]
    header = ["hour", *WEEKDAYS]
    by = {(cell.weekday, cell.hour): cell for cell in report.cells}
    rows = [[f"{hour:02d}", *(str(max(by[(d, hour)].total_p95_a)) if by[(d, hour)].quarters else "-"
                              for d in range(7))] for hour in range(24)]
    out += _table(header, rows)
    ev = p.ev
    out += ["", f"EVs needing {Decimal(ev.energy_wh) / 1000} kWh each, {p.night_start:%H:%M} to {p.ready_by:%H:%M} "
                f"({ev.phases}-phase, {ev.min_a}-{ev.max_a} A): worst night {report.worst_evs}, "
                f"median night {report.median_evs}."]
    header = ["night", "quarters", "known", "EVs", *((f"on {n}" for n in names) if ev.phases == 1 else ()),
              "headroom kWh", "tightest"]
    rows = [[f"{n.date:%a %Y-%m-%d}", str(n.quarters), str(n.known), str(n.evs),
             *((str(k) for k in n.evs_per_phase) if ev.phases == 1 else ()),
             str((Decimal(n.headroom_wh) / 1000).quantize(TENTH, rounding=ROUND_FLOOR)), n.limiting_phase or "-"]
            for n in report.lowest_nights]
    out.append("Lowest nights:")
    out += _table(header, rows)
    out.append("")
    if report.upgrade is not None:
        u = report.upgrade
        if u.needed:
            out.append(f"Upgrade: needed beyond {u.served_now} EVs; for {u.target_evs}: {u.reason}.")
        else:
            out.append(f"Upgrade: none for {u.target_evs} EVs ({u.reason}); needed beyond {u.served_now}.")
    else:
        out.append(f"Upgrade: needed beyond {report.worst_evs} EVs (no target given).")
    t = report.throttling
    if t.samples:
        out.append(f"Throttling: {t.note}; deepest {t.deepest_a} A"
                   f"{f' at {t.deepest_at:%Y-%m-%d %H:%M}' if t.deepest_at else ''}; worst hours "
                   f"{', '.join(f'{h:02d}:00' for h in t.worst_hours) or '-'}.")
    else:
        out.append(f"Throttling: {t.note}.")
    out += ["", *(f"Note: {n}" for n in report.notes)]
    return "\n".join(out) + "\n"
