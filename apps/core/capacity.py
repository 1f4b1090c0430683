"""The capacity report of a building: its inputs read from the electrical and charging layers, the
arithmetic done by ``apps.electrical.capacity`` (pure). The command ``capacity_report`` and the managers'
page ``/capacity/`` both call ``building_capacity_report``.

Call inside the building's schema. A fixed number of queries, however long the history: the meter and the
circuits (2), the quarter hours (1), the sessions and their thinned meter values (3), the connectors (1).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from apps.charging.models import Connector
from apps.charging.selectors import ev_draw_in_period
from apps.electrical import capacity
from apps.electrical.selectors import capacity_site, site_meter_quarters
from apps.loadbalancing.models import BalancingRun

DEFAULT_DAYS = 30
DEFAULT_ENERGY_WH = 20_000
MIN_DAYS = 7
MAX_DAYS = 3650


class CapacityUnavailable(Exception):
    """The report cannot be made for this building (no site meter, too little history): the message says why."""


@dataclass(frozen=True)
class CapacityRequest:
    """What the installer asks; ``None`` takes the building's own (its connectors, its parking spots)."""

    days: int = DEFAULT_DAYS
    energy_wh: int = DEFAULT_ENERGY_WH
    ready_by: time = time(7, 0)
    night_start: time = time(18, 0)
    target_evs: int | None = None
    growth: Decimal = Decimal(0)

    def problems(self) -> list[str]:
        found = []
        if not MIN_DAYS <= self.days <= MAX_DAYS:
            found.append(f"days: {self.days}; between {MIN_DAYS} and {MAX_DAYS}")
        if not 0 < self.energy_wh <= 200_000:
            found.append(f"kWh: {Decimal(self.energy_wh) / 1000}; more than 0 and at most 200")
        if self.ready_by == self.night_start:
            found.append("ready-by: the same time as the night's start")
        if self.target_evs is not None and not 0 < self.target_evs <= 10_000:
            found.append(f"evs: {self.target_evs}; between 1 and 10000")
        if not 0 <= self.growth <= 2:
            found.append(f"growth: {self.growth * 100} %; between 0 and 200 %")
        return found


def throttle_history(*, start: datetime, end: datetime) -> tuple[capacity.ThrottleSample, ...]:
    """The load balancer's runs in [start, end), oldest first, in one query: when, how many connectors had a
    session, the amperes they could have taken (each one's maximum) and what they were allowed. A DC
    connector counts through its grid current. Runs are kept LOADBALANCING_RUN_RETENTION_DAYS."""
    samples = []
    runs = (BalancingRun.objects.filter(started_at__gte=start, started_at__lt=end).order_by("started_at", "id")
            .values_list("started_at", "limits"))
    for at, limits in runs.iterator(chunk_size=2000):
        count, wanted, allowed = 0, Decimal(0), Decimal(0)
        for record in limits.values():
            grid = record.get("grid_a")
            if grid is None or record.get("why") == "done":
                continue  # no session on it, or a car that has its energy: it wants nothing
            count += 1
            granted = Decimal(record["a"]) if record.get("a") else max(Decimal(value) for value in grid)
            allowed += granted
            wanted += Decimal(record["max_a"]) if record.get("max_a") else granted
        if count:
            samples.append(capacity.ThrottleSample(at=at, connectors=count, wanted_a=wanted, allowed_a=allowed))
    return tuple(samples)


def ev_profile() -> tuple[capacity.EvProfile, int | None, Counter[str]]:
    """The most common AC connector of the building (phases, minimum, maximum); how many parking spots have a
    connector (the connectors themselves when no spot is named); the AC connectors per circuit key.
    1-phase 6-32 A without connectors."""
    rows = list(Connector.objects.filter(removed_at__isnull=True, is_dc=False, charge_point__removed_at__isnull=True)
                .values_list("phases", "min_current_a", "max_current_a", "parking_spot_id",
                             "charge_point__circuit__key"))
    kinds = Counter((phases, low, high or Decimal(32)) for phases, low, high, *_ in rows)
    phases, low, high = kinds.most_common(1)[0][0] if kinds else (1, Decimal(6), Decimal(32))
    spots = {spot for *_, spot, _circuit in rows if spot is not None}
    target = len(spots) or len(rows) or None
    per_circuit = Counter(circuit for *_, circuit in rows)
    return capacity.EvProfile(energy_wh=DEFAULT_ENERGY_WH, phases=3 if phases >= 3 else 1, min_a=low,
                              max_a=high), target, per_circuit


def with_connectors(circuits: tuple[capacity.CircuitLimits, ...],
                    per_circuit: Counter[str]) -> tuple[capacity.CircuitLimits, ...]:
    """Each circuit with the connectors on it and on every circuit under it."""
    parents = {c.key: c.parent for c in circuits}
    total: Counter[str] = Counter()
    for key, count in per_circuit.items():
        seen: set[str] = set()
        while key is not None and key not in seen:  # up the tree to the supply
            seen.add(key)
            total[key] += count
            key = parents.get(key)
    return tuple(replace(c, connectors=total[c.key]) for c in circuits)


def building_capacity_report(*, zone_name: str, request: CapacityRequest, now: datetime) -> capacity.CapacityReport:
    """The report over the ``request.days`` days before the quarter hour under way at ``now``.

    ``CapacityUnavailable`` with a clear message when there is no site meter or too little history.
    """
    problems = request.problems()
    if problems:
        raise CapacityUnavailable("; ".join(problems))
    site = capacity_site()
    if site is None:
        raise CapacityUnavailable("this building has no site meter: the capacity report reads its history")
    zone = ZoneInfo(zone_name)
    end = capacity.quarter_of(now)
    start = end - timedelta(days=request.days)
    phases = len(site.supply.rated_a)
    quarters = site_meter_quarters(start=start, end=end)
    ev = capacity.ev_draw_per_quarter(ev_draw_in_period(start=start, end=end), voltage_v=site.voltage_v,
                                      supply_phases=phases)
    loads = [capacity.QuarterLoad(q.start, q.samples, q.peak_a, q.mean_a, ev.get(q.start)) for q in quarters
             if len(q.peak_a) == phases]
    profile, spots, per_circuit = ev_profile()
    if profile.phases > phases:
        profile = capacity.EvProfile(profile.energy_wh, 1, profile.min_a, profile.max_a)
    params = capacity.Parameters(
        ev=capacity.EvProfile(request.energy_wh, profile.phases, profile.min_a, profile.max_a),
        night_start=request.night_start, ready_by=request.ready_by,
        target_evs=request.target_evs if request.target_evs is not None else spots, growth=request.growth,
        min_days=MIN_DAYS,
        # A meter that reports at least every stale_after_s gives 900 / stale_after_s readings a quarter; one
        # with fewer than half of them was silent for part of it, and its peak may have been missed.
        min_samples=max(1, 900 // site.stale_after_s // 2),
    )
    try:
        return capacity.build_report(
            supply=site.supply, voltage_v=site.voltage_v, circuits=with_connectors(site.circuits, per_circuit),
            history=capacity.History(zone, start, end, loads), params=params,
            throttling=throttle_history(start=start, end=end),
        )
    except capacity.InsufficientHistory as exc:
        raise CapacityUnavailable(f"too little history: {exc}") from None
