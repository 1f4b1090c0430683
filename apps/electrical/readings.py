"""Site-meter readings: parse a pushed body, check every value, and say what is wrong and where.

Pure: no Django, no I/O, no clock (``now`` is an argument). Numbers are read as Decimal, never float.

A reading is the whole building's load at the supply at one moment, EVs included, per phase:

    {"timestamp": "2026-11-30T01:15:00Z", "current_a": [41.2, 38.0, 44.9]}
    {"timestamp": "2026-11-30T01:15:00+01:00", "power_w": [9476, 8740, 10327]}

A single-phase supply sends one value. Two kinds of trouble, kept apart on purpose:

* a **bad body** (not JSON, a missing or unknown field, a timestamp that is not RFC 3339 with its offset,
  a value that is not a number, the wrong number of phases, more than MAX_READINGS readings): the whole
  body is refused (HTTP 400) with every problem and its place, e.g. ``readings[3].current_a[1]: must be a
  number``. Nothing is stored; the sender has a bug to fix.
* a **doubtful reading** in a well-formed body: a timestamp in the future beyond the clock tolerance, one
  older than the raw readings are kept, a negative value, or one above ``implausible_factor`` times the
  supply's rating of that phase (a 999 A spike on a 200 A supply). That reading alone is refused, with
  its place and reason, and counted for the managers; the other readings of the body are used.

Power is converted to current with the supply's phase-to-neutral voltage, exactly (Decimal), rounded up
to one decimal ampere (never under-state the building's load); the power as sent is kept beside it.
Measured currents with more than one decimal are rounded up the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Literal

from apps.core.yamlfile import Path, Problem

MAX_READINGS = 100
MAX_BODY_BYTES = 64 * 1024
TENTH = Decimal("0.1")

Kind = Literal["current_a", "power_w"]
KINDS: tuple[Kind, ...] = ("current_a", "power_w")
# Why a reading was refused (also the managers' counters, apps.electrical.models.SiteMeterRefusal).
FUTURE = "future"
TOO_OLD = "too_old"
IMPLAUSIBLE = "implausible"

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?P<fraction>\.\d+)?(?P<offset>[Zz]|[+-]\d{2}:\d{2})$"
)


@dataclass(frozen=True)
class Supply:
    """What the checks need to know about the building's supply."""

    phases: int  # 1 or 3
    voltage_v: int  # phase to neutral
    max_current_a: tuple[Decimal, Decimal, Decimal]  # rating per phase, L1 L2 L3


@dataclass(frozen=True)
class Limits:
    """How far a reading may stray before it is refused."""

    future_tolerance: timedelta = timedelta(seconds=10)
    max_age: timedelta = timedelta(days=14)
    implausible_factor: Decimal = Decimal(2)


@dataclass(frozen=True)
class Reading:
    """The building's load at ``sampled_at``: current per phase (one decimal A), and the power if sent so."""

    sampled_at: datetime
    currents_a: tuple[Decimal, ...]
    powers_w: tuple[int, ...] | None = None

    @property
    def peak_a(self) -> Decimal:
        return max(self.currents_a)


@dataclass(frozen=True)
class Refusal:
    """A well-formed reading that is not used: its place, the counter it goes to, and why."""

    path: Path
    reason: str  # FUTURE, TOO_OLD or IMPLAUSIBLE
    message: str
    sampled_at: datetime | None = None

    def where(self) -> str:
        return Problem(self.path, self.message).where()


@dataclass(frozen=True)
class Checked:
    """A body's readings: those to use (in time order, each timestamp once), and those refused."""

    readings: tuple[Reading, ...] = ()
    refused: tuple[Refusal, ...] = ()
    duplicates: int = 0  # the same timestamp more than once in the body: kept once
    single: bool = False  # the body was one reading, not {"readings": [...]}


@dataclass
class BodyRefused(Exception):
    """The body is not a reading nor a list of readings; ``problems`` says what and where."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "; ".join(f"{p.where()}: {p.message}" for p in self.problems)


# --- parsing a body ---------------------------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def load_json(raw: bytes) -> Any:
    """JSON with numbers as int or Decimal (never float); NaN and Infinity refused."""
    if len(raw) > MAX_BODY_BYTES:
        raise BodyRefused([Problem((), f"the body is {len(raw):,} bytes; the limit is {MAX_BODY_BYTES:,}")])
    try:
        return json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise BodyRefused([Problem((), "the body is not UTF-8 text")]) from None
    except ValueError as exc:
        raise BodyRefused([Problem((), f"the body is not JSON ({exc})")]) from None


def check_body(raw: bytes, supply: Supply, *, now: datetime, limits: Limits = Limits()) -> Checked:
    """Parse and check a pushed body, or raise BodyRefused listing every problem of its shape."""
    data = load_json(raw)
    if not isinstance(data, dict):
        raise BodyRefused([Problem((), 'must be an object: one reading, or {"readings": [...]}')])
    single = "readings" not in data
    if single:
        entries: list[tuple[Path, Any]] = [((), data)]
    else:
        extra = sorted(set(data) - {"readings"})
        problems = [Problem((name,), "unknown field") for name in extra]
        items = data["readings"]
        if not isinstance(items, list):
            problems.append(Problem(("readings",), "must be a list of readings"))
        elif not items:
            problems.append(Problem(("readings",), "is empty; send at least one reading"))
        elif len(items) > MAX_READINGS:
            problems.append(Problem(("readings",), f"has {len(items)} readings; the limit is {MAX_READINGS}"))
        if problems:
            raise BodyRefused(problems)
        entries = [(("readings", i), item) for i, item in enumerate(items)]

    problems = []
    shaped: list[tuple[Path, datetime, Kind, list[Decimal]]] = []
    for path, item in entries:
        found = _shape(path, item, supply.phases)
        if isinstance(found, list):
            problems += found
        else:
            shaped.append((path, *found))
    if problems:
        raise BodyRefused(problems)
    checked = check_values(shaped, supply, now=now, limits=limits)
    return Checked(checked.readings, checked.refused, checked.duplicates, single)


def _shape(path: Path, item: Any, phases: int) -> tuple[datetime, Kind, list[Decimal]] | list[Problem]:
    if not isinstance(item, dict):
        return [Problem(path, 'must be an object: {"timestamp": ..., "current_a": [...]}')]
    problems = [Problem((*path, name), "unknown field") for name in sorted(set(item) - {"timestamp", *KINDS})]
    sampled_at: datetime | None = None
    if "timestamp" not in item:
        problems.append(Problem((*path, "timestamp"), "is missing (RFC 3339, e.g. 2026-11-30T01:15:00Z)"))
    else:
        sampled_at = parse_timestamp(item["timestamp"])
        if sampled_at is None:
            problems.append(Problem((*path, "timestamp"),
                                    "must be an RFC 3339 time with its offset, e.g. 2026-11-30T01:15:00Z"))
    kinds = [k for k in KINDS if k in item]
    values: list[Decimal] = []
    if len(kinds) != 1:
        problems.append(Problem(path, "give current_a or power_w (one value per phase), not both" if kinds
                                else "has neither current_a nor power_w"))
    else:
        kind = kinds[0]
        raw = item[kind]
        wanted = "one value (a single-phase supply)" if phases == 1 else "three values (L1, L2, L3)"
        if not isinstance(raw, list) or len(raw) != phases:
            problems.append(Problem((*path, kind), f"must be a list of {wanted}"))
        else:
            for n, value in enumerate(raw):
                number = _number(value)
                if number is None:
                    problems.append(Problem((*path, kind, n), "must be a number"))
                else:
                    values.append(number)
    if problems:
        return problems
    assert sampled_at is not None
    return sampled_at, kinds[0], values


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def parse_timestamp(raw: Any) -> datetime | None:
    """An RFC 3339 time (with its offset) as an aware datetime in UTC; None when it is not one."""
    if not isinstance(raw, str):
        return None
    match = _RFC3339.match(raw.strip())
    if match is None:
        return None
    text = raw.strip()
    fraction = match.group("fraction")
    if fraction and len(fraction) > 7:  # Python keeps microseconds: cut finer fractions
        text = text.replace(fraction, fraction[:7], 1)
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


# --- checking values --------------------------------------------------------------------------


def check_values(
    shaped: Sequence[tuple[Path, datetime, Kind, Sequence[Decimal]]], supply: Supply, *, now: datetime,
    limits: Limits = Limits(),
) -> Checked:
    """Readings from well-formed values (a pushed body, an OCPP MeterValues, a Modbus poll).

    Each is used or refused on its own; the same timestamp twice is kept once (the first).
    """
    readings: dict[datetime, Reading] = {}
    refused: list[Refusal] = []
    duplicates = 0
    for path, sampled_at, kind, values in shaped:
        result = check_reading(path, sampled_at, kind, values, supply, now=now, limits=limits)
        if isinstance(result, Refusal):
            refused.append(result)
        elif result.sampled_at in readings:
            duplicates += 1
        else:
            readings[result.sampled_at] = result
    return Checked(tuple(sorted(readings.values(), key=lambda r: r.sampled_at)), tuple(refused), duplicates)


def check_reading(
    path: Path, sampled_at: datetime, kind: Kind, values: Sequence[Decimal], supply: Supply, *, now: datetime,
    limits: Limits = Limits(),
) -> Reading | Refusal:
    if sampled_at > now + limits.future_tolerance:
        ahead = (sampled_at - now).total_seconds()
        return Refusal((*path, "timestamp"), FUTURE,
                       f"is {ahead:.0f} s in the future (tolerance {limits.future_tolerance.total_seconds():.0f} s): "
                       "is the meter's clock right?", sampled_at)
    if sampled_at < now - limits.max_age:
        return Refusal((*path, "timestamp"), TOO_OLD,
                       f"is older than {limits.max_age.days} days, how long readings are kept", sampled_at)
    if len(values) != supply.phases:
        return Refusal((*path, kind), IMPLAUSIBLE, f"has {len(values)} values for a {supply.phases}-phase supply",
                       sampled_at)
    currents: list[Decimal] = []
    powers: list[int] = []
    for n, value in enumerate(values):
        rating = supply.max_current_a[n]
        top_a = (rating * limits.implausible_factor).quantize(TENTH)
        if kind == "current_a":
            current = value
            top = f"{top_a} A ({limits.implausible_factor} x the supply's {rating} A)"
        else:
            current = value / supply.voltage_v
            top = (f"{(top_a * supply.voltage_v).quantize(Decimal(1))} W ({limits.implausible_factor} x the "
                   f"supply's {rating} A at {supply.voltage_v} V)")
        if value < 0 or current > top_a:
            return Refusal((*path, kind, n), IMPLAUSIBLE, f"must be a number between 0 and {top}; got {value}",
                           sampled_at)
        currents.append(amps(current))
        if kind == "power_w":
            powers.append(int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)))
    return Reading(sampled_at, tuple(currents), tuple(powers) if kind == "power_w" else None)


def amps(value: Decimal) -> Decimal:
    """A current as stored: one decimal, rounded up (the load is never under-stated)."""
    return value.quantize(TENTH, rounding=ROUND_CEILING)


# --- OCPP MeterValues ---------------------------------------------------------------------------

_OCPP_KINDS: dict[str, tuple[Kind, dict[str, Decimal]]] = {
    "Current.Import": ("current_a", {"A": Decimal(1), "mA": Decimal("0.001")}),
    "Power.Active.Import": ("power_w", {"W": Decimal(1), "kW": Decimal(1000)}),
}


@dataclass(frozen=True)
class Sample:
    """One OCPP sampled value, as apps.ocpp.parsing rows carry it."""

    sampled_at: datetime
    measurand: str
    phase: str
    unit: str
    value: Decimal


def from_meter_values(samples: Sequence[Sample], phases: int) -> list[tuple[Path, datetime, Kind, list[Decimal]]]:
    """Site-meter values from a MeterValues of the site-meter charger: per timestamp, Current.Import of
    every phase (L1, L2, L3; "L1-N" counts as L1) if all are there, else Power.Active.Import of every phase.
    A timestamp with neither complete is left out."""
    by_time: dict[datetime, dict[Kind, dict[int, Decimal]]] = {}
    for sample in samples:
        found = _OCPP_KINDS.get(sample.measurand)
        if found is None:
            continue
        kind, units = found
        scale = units.get(sample.unit or next(iter(units)))
        phase = sample.phase.split("-")[0]
        if scale is None or phase not in ("L1", "L2", "L3"):
            continue
        by_time.setdefault(sample.sampled_at, {}).setdefault(kind, {})[int(phase[1]) - 1] = sample.value * scale
    shaped: list[tuple[Path, datetime, Kind, list[Decimal]]] = []
    for n, (sampled_at, kinds) in enumerate(sorted(by_time.items())):
        for kind in KINDS:
            values = kinds.get(kind, {})
            if all(i in values for i in range(phases)):
                shaped.append((("meterValue", n), sampled_at, kind, [values[i] for i in range(phases)]))
                break
    return shaped
