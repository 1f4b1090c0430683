"""Scores of a load-balancing run, from what was measured: the measures of quality in docs/load-balancing.md.

Pure: no Django, no I/O, no clock. Exact arithmetic (Fraction inside); results are Decimal, rounded
half-even to ``PLACES`` where a ratio does not end. Time series are sample-and-hold: a sample holds until
the next one (the last one until ``end``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

PLACES = Decimal("0.0001")
STRICT_RATIO = Fraction(113, 100)  # no second above 113 % of any rating
CLEAR_WITHIN = timedelta(seconds=30)  # every excursion above 100 % cleared within this


def _decimal(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(PLACES, rounding=ROUND_HALF_EVEN)


def _seconds(delta: timedelta) -> Fraction:
    return Fraction(delta // timedelta(microseconds=1), 1_000_000)


def jain_index(values: Sequence[Decimal | int]) -> Decimal | None:
    """Jain's fairness index (sum x)^2 / (n x sum x^2): 1 when all are equal, 1/n when one gets everything.

    Give it what the unsaturated sessions got (energy / demand, or mean current). None for no values;
    1 when every value is 0 (nobody got anything, equally).
    """
    if not values:
        return None
    xs = [Fraction(v) for v in values]
    if any(x < 0 for x in xs):
        raise ValueError("Jain's index is for values >= 0")
    squares = sum(x * x for x in xs)
    if squares == 0:
        return Decimal(1).quantize(PLACES)
    return _decimal(sum(xs) ** 2 / (len(xs) * squares))


def utilization(delivered_wh: int, spare_wh: int, demand_wh: int) -> Decimal | None:
    """EV energy delivered / min(spare energy, EV demand); None when there was nothing to deliver."""
    if min(delivered_wh, spare_wh, demand_wh) < 0:
        raise ValueError("energies must be >= 0")
    bound = min(spare_wh, demand_wh)
    if bound == 0:
        return None
    return _decimal(Fraction(delivered_wh, bound))


@dataclass(frozen=True)
class LoadSample:
    """The load on one node phase (or its power) at a moment, and its rating (limit x derate)."""

    at: datetime
    load: Decimal
    rating: Decimal


@dataclass(frozen=True)
class Excursion:
    """A stretch above 100 % of the rating."""

    start: datetime
    end: datetime
    peak_ratio: Decimal  # highest load / rating seen in it

    @property
    def seconds(self) -> Decimal:
        return _decimal(_seconds(self.end - self.start))


@dataclass(frozen=True)
class OverloadReport:
    seconds_above_100: Decimal
    seconds_above_113: Decimal
    excursions: tuple[Excursion, ...]

    @property
    def longest_excursion_s(self) -> Decimal:
        return max((e.seconds for e in self.excursions), default=Decimal(0).quantize(PLACES))

    @property
    def safe(self) -> bool:
        """No second above 113 %, and every excursion above 100 % cleared within 30 s."""
        return self.seconds_above_113 == 0 and all(
            e.end - e.start <= CLEAR_WITHIN for e in self.excursions)


def overload(samples: Sequence[LoadSample], end: datetime) -> OverloadReport:
    """Seconds above 100 % and 113 % of the rating, and each excursion above 100 %, over [first sample, end)."""
    for earlier, later in itertools.pairwise(samples):
        if later.at <= earlier.at:
            raise ValueError(f"samples must be in time order: {later.at.isoformat()} after {earlier.at.isoformat()}")
    if samples and end < samples[-1].at:
        raise ValueError("end is before the last sample")
    above_100 = Fraction(0)
    above_113 = Fraction(0)
    excursions: list[Excursion] = []
    start: datetime | None = None
    peak = Fraction(0)
    for i, sample in enumerate(samples):
        until = samples[i + 1].at if i + 1 < len(samples) else end
        if sample.rating <= 0:
            raise ValueError(f"rating must be positive (sample at {sample.at.isoformat()})")
        ratio = Fraction(sample.load) / Fraction(sample.rating)
        held = _seconds(until - sample.at)
        if ratio > 1:
            above_100 += held
            if ratio > STRICT_RATIO:
                above_113 += held
            if start is None:
                start, peak = sample.at, ratio
            else:
                peak = max(peak, ratio)
        elif start is not None:
            excursions.append(Excursion(start, sample.at, _decimal(peak)))
            start = None
    if start is not None:
        excursions.append(Excursion(start, end, _decimal(peak)))
    return OverloadReport(_decimal(above_100), _decimal(above_113), tuple(excursions))


def pauses(limits: Sequence[tuple[datetime, Decimal]]) -> int:
    """How many times a session was paused: a limit going from above 0 to 0 (in time order)."""
    count = 0
    for (_, before), (_, after) in itertools.pairwise(limits):
        if before > 0 and after == 0:
            count += 1
    return count


def pauses_per_hour(limits: Sequence[tuple[datetime, Decimal]]) -> Decimal | None:
    """Pause/resume cycles per hour over the span of the limits; None for less than two limits or no time."""
    if len(limits) < 2 or limits[-1][0] <= limits[0][0]:
        return None
    hours = _seconds(limits[-1][0] - limits[0][0]) / 3600
    return _decimal(Fraction(pauses(limits)) / hours)
