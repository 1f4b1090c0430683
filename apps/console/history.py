"""The console's chart of the last hours at the metered node: the building's load, the EVs' share of it, the rest,
and the limit, minute by minute. Pure: no Django, no I/O, no clock.

    chart = minutes(meter_rows, run_rows, start=start, end=end)
    chart["t"][0], chart["building_a"][0], chart["limit_a"][0]      # 1764650400, "48.2", "155.0"

Every series is in amperes on the node's most loaded phase, which is what trips a breaker:
- building: the site meter's highest phase in that minute (None where the meter sent nothing: a gap, not a zero);
- other: what the balancer believed the non-EV load to be (its latest run up to that minute, unmanaged load
  included), on the same phase as the building's reading;
- EVs: building minus other on that phase (never below zero);
- limit: the node's usable current on that phase in the balancer's latest run (rated x derate - margin).
A run holds until the next one; the meter's minutes do not carry over. Amperes go out as strings (exact).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from apps.console.board import amps_list

TENTH = Decimal("0.1")
MINUTE = timedelta(minutes=1)

Phases = tuple[Decimal | None, Decimal | None, Decimal | None]


@dataclass(frozen=True)
class MeterMinute:
    minute: datetime  # the minute's start
    amps: Phases  # the highest reading of each phase in that minute


@dataclass(frozen=True)
class RunMinute:
    minute: datetime
    node: Mapping[str, Any]  # the latest run's record of the node in that minute: capacity_a, non_ev_a, unmanaged_a


def _text(value: Decimal | None) -> str | None:
    return str(value.quantize(TENTH, ROUND_HALF_UP)) if value is not None else None


def minutes(meter: Sequence[MeterMinute], runs: Sequence[RunMinute], *, start: datetime,
            end: datetime) -> dict[str, list[Any]]:
    """The chart's columns from ``start`` (included) to ``end`` (excluded), one row a minute."""
    by_minute = {m.minute: m.amps for m in meter}
    ordered = sorted(runs, key=lambda r: r.minute)
    columns: dict[str, list[Any]] = {"t": [], "building_a": [], "ev_a": [], "other_a": [], "limit_a": []}
    node: Mapping[str, Any] | None = None
    i = 0
    while i < len(ordered) and ordered[i].minute < start:  # the run in force when the window opens
        node, i = ordered[i].node, i + 1
    minute = start
    while minute < end:
        while i < len(ordered) and ordered[i].minute <= minute:
            node, i = ordered[i].node, i + 1
        capacity = amps_list(node.get("capacity_a")) if node is not None else None
        non_ev = amps_list(node.get("non_ev_a")) if node is not None else None
        unmanaged = amps_list(node.get("unmanaged_a")) if node is not None else None
        other = [a + (unmanaged[p] if unmanaged else 0) for p, a in enumerate(non_ev)] if non_ev else None
        seen = by_minute.get(minute)
        building = ev = rest = None
        phase: int | None = None
        if seen is not None and any(a is not None for a in seen):
            phase = max((p for p in range(3) if seen[p] is not None), key=lambda p: seen[p] or 0)
            building = seen[phase]
        elif other is not None:
            phase = max(range(3), key=lambda p: other[p])
        if phase is not None and other is not None:
            rest = other[phase]
            ev = max(building - rest, Decimal(0)) if building is not None else None
        limit = capacity[phase] if capacity is not None and phase is not None else (
            min(capacity) if capacity is not None else None)
        columns["t"].append(int(minute.timestamp()))
        columns["building_a"].append(_text(building))
        columns["ev_a"].append(_text(ev))
        columns["other_a"].append(_text(rest))
        columns["limit_a"].append(_text(limit))
        minute += MINUTE
    return columns
