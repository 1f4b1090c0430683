"""A building's non-EV load: a daily curve per phase with sudden steps on one phase. Pure: no Django, no I/O, no clock.

The load on each grid phase at a moment is

    base + sum of the daily peaks (a triangle around each peak's hour) + the steps that are on

in Decimal amperes with one decimal. A step is a machine on one phase (an A/C compressor, an elevator
motor) that switches on for ``on_minutes`` at times drawn from a seeded generator, on average
``per_hour`` times an hour: the same seed and the same curve give the same load, minute for minute.
The format (the ``building_load`` section of a scenario file) is documented in docs/simulator.md.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

TENTH = Decimal("0.1")
Phases = tuple[Decimal, Decimal, Decimal]


@dataclass(frozen=True)
class Peak:
    """A bump of the daily curve: ``amps`` per phase at ``hour`` (local hour of day, 0-24), falling linearly
    to nothing ``width_hours`` either side."""

    hour: Decimal
    width_hours: Decimal
    amps: Phases

    def __post_init__(self) -> None:
        if not 0 <= self.hour < 24:
            raise ValueError(f"a peak's hour must be in [0, 24), not {self.hour}")
        if self.width_hours <= 0:
            raise ValueError("a peak's width must be > 0 hours")
        if any(a < 0 for a in self.amps):
            raise ValueError("a peak's amps must be >= 0")


@dataclass(frozen=True)
class Step:
    """A machine on one phase (1, 2 or 3): ``amps`` while on, ``on_minutes`` at a time, ``per_hour`` times an
    hour on average between ``from_hour`` and ``to_hour`` (local; to_hour < from_hour wraps past midnight)."""

    name: str
    phase: int
    amps: Decimal
    on_minutes: Decimal
    per_hour: Decimal
    from_hour: int = 0
    to_hour: int = 24
    at_minutes: tuple[Decimal, ...] = ()  # fixed switch-ons (minutes from the start), besides the random ones

    def __post_init__(self) -> None:
        if self.phase not in (1, 2, 3):
            raise ValueError(f"step {self.name!r}: phase must be 1, 2 or 3")
        if self.amps <= 0 or self.on_minutes <= 0 or self.per_hour < 0:
            raise ValueError(f"step {self.name!r}: amps and on_minutes must be > 0, per_hour >= 0")
        if not (0 <= self.from_hour <= 24 and 0 <= self.to_hour <= 24):
            raise ValueError(f"step {self.name!r}: hours must be in [0, 24]")

    def active_hour(self, hour: int) -> bool:
        if self.from_hour <= self.to_hour:
            return self.from_hour <= hour < self.to_hour
        return hour >= self.from_hour or hour < self.to_hour


@dataclass(frozen=True)
class LoadCurve:
    base_a: Phases = (Decimal(8), Decimal(8), Decimal(8))
    peaks: tuple[Peak, ...] = ()
    steps: tuple[Step, ...] = ()


DEFAULT_CURVE = LoadCurve(
    base_a=(Decimal(6), Decimal(6), Decimal(6)),
    peaks=(
        Peak(Decimal(7), Decimal(2), (Decimal(10), Decimal(8), Decimal(8))),  # breakfast
        Peak(Decimal(19), Decimal(3), (Decimal(18), Decimal(15), Decimal(14))),  # dinner, lights
    ),
    steps=(
        Step("A/C compressor", 1, Decimal(14), Decimal(12), Decimal("1.5"), 10, 23),
        Step("elevator", 2, Decimal(20), Decimal("1.5"), Decimal(4), 6, 23),
    ),
)


@dataclass(frozen=True)
class Switching:
    """When one step is on: [start, end) intervals in seconds from the schedule's start."""

    step: Step
    on: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Schedule:
    """A curve laid out over a horizon from ``start``: evaluate it with ``load_at``."""

    curve: LoadCurve
    start: datetime
    seconds: int
    switchings: tuple[Switching, ...] = field(default=())

    def load_at(self, moment: datetime) -> Phases:
        """The non-EV load per grid phase at ``moment`` (one decimal; held at the ends of the horizon)."""
        t = int((moment - self.start).total_seconds())
        t = max(0, min(t, self.seconds))
        hour = _hour_of_day(self.start + timedelta(seconds=t))
        amps = [self.curve.base_a[p] for p in range(3)]
        for peak in self.curve.peaks:
            distance = abs(hour - peak.hour)
            distance = min(distance, 24 - distance)
            if distance < peak.width_hours:
                weight = 1 - distance / peak.width_hours
                for p in range(3):
                    amps[p] += peak.amps[p] * weight
        for switching in self.switchings:
            if any(a <= t < b for a, b in switching.on):
                amps[switching.step.phase - 1] += switching.step.amps
        a, b, c = (x.quantize(TENTH, rounding=ROUND_HALF_EVEN) for x in amps)
        return a, b, c

    def steps_starting(self) -> list[tuple[int, str, int, Decimal]]:
        """Every switch-on: (seconds from start, step name, phase, amps), in time order."""
        out = [(a, s.step.name, s.step.phase, s.step.amps) for s in self.switchings for a, _ in s.on]
        return sorted(out)


def _hour_of_day(moment: datetime) -> Decimal:
    return Decimal(moment.hour) + Decimal(moment.minute) / 60 + Decimal(moment.second) / 3600


def schedule(curve: LoadCurve, start: datetime, seconds: int, seed: int) -> Schedule:
    """Lay ``curve`` out over ``seconds`` from ``start``: each step's switch-ons drawn from its own stream of
    ``seed`` (adding a step does not move the others). ``start`` must be timezone-aware (local time of day is
    the hour the curve speaks of)."""
    if start.tzinfo is None:
        raise ValueError("the load curve needs a timezone-aware start")
    if seconds < 0:
        raise ValueError("the horizon must be >= 0 seconds")
    switchings = []
    for index, step in enumerate(curve.steps):
        rng = random.Random(f"{seed}:{index}:{step.name}")  # noqa: S311 - a simulation, not secrets
        on: list[tuple[int, int]] = []
        length = int(step.on_minutes * 60)
        t = 0
        # Minute by minute, switch on with probability per_hour / 60 while not already on.
        chance = float(step.per_hour) / 60
        while t < seconds:
            hour = (start + timedelta(seconds=t)).hour
            if step.active_hour(hour) and rng.random() < chance:
                offset = rng.randrange(60)
                on.append((t + offset, t + offset + length))
                t += offset + length
                t -= t % 60
                t += 60
            else:
                t += 60
        for minute in step.at_minutes:
            begin = int(minute * 60)
            on.append((begin, begin + length))
        switchings.append(Switching(step, tuple(sorted(on))))
    return Schedule(curve, start, seconds, tuple(switchings))
