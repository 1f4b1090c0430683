"""Meter readings in, energy out: the arithmetic of "nothing lost, nothing counted twice".

Pure: no Django, no I/O, no clock. Values are Decimal, energy results integer Wh;
floats never touch them.

Real chargers send registers that reset on reboot, placeholders (0, -1) instead
of meterStop, and kWh values labelled Wh. ``reconstruct_energy`` walks the
readings of one session in time order and only counts steps that are physically
possible for the connector (power x elapsed time, with some slack); whatever it
had to guess about is returned as a review reason, so that billing can hold the
session for a person to check instead of charging an absurd amount.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

# Clock skew and sampling jitter tolerated when checking energy against power x time.
SLACK_SECONDS = 300
# A step may exceed power x time by this much before it counts as implausible.
TOLERANCE_WH = Decimal(10)
# Used when the connector's limits are unknown: 32 A on three phases at 230 V.
DEFAULT_MAX_POWER_W = 22_080
# A charger clock earlier than this was never set (many start at 1970 after a power loss).
EARLIEST_PLAUSIBLE = datetime(2015, 1, 1, tzinfo=UTC)
MAX_CLOCK_AHEAD = timedelta(minutes=5)

ENERGY_MEASURANDS_PREFIX = "Energy."
REGISTER_MEASURAND = "Energy.Active.Import.Register"

# OCPP 1.6 default unit per measurand family, when the sample names none.
_DEFAULT_UNITS = {
    "Energy.Active": "Wh",
    "Energy.Reactive": "varh",
    "Power.Active": "W",
    "Power.Reactive": "var",
    "Power.Offered": "W",
    "Power.Factor": "",
    "Current": "A",
    "Voltage": "V",
    "Temperature": "Celsius",
    "SoC": "Percent",
    "Frequency": "",
    "RPM": "",
}

# unit -> (multiplier to the base unit, base unit). Base units are integers:
# Wh, varh, W, var, VA, mA, mV, percent.
_SCALES: dict[str, tuple[Decimal, str]] = {
    "Wh": (Decimal(1), "Wh"),
    "kWh": (Decimal(1000), "Wh"),
    "varh": (Decimal(1), "varh"),
    "kvarh": (Decimal(1000), "varh"),
    "W": (Decimal(1), "W"),
    "kW": (Decimal(1000), "W"),
    "var": (Decimal(1), "var"),
    "kvar": (Decimal(1000), "var"),
    "VA": (Decimal(1), "VA"),
    "kVA": (Decimal(1000), "VA"),
    "A": (Decimal(1000), "mA"),
    "V": (Decimal(1000), "mV"),
    "Percent": (Decimal(1), "Percent"),
}


def default_unit(measurand: str) -> str:
    for prefix, unit in _DEFAULT_UNITS.items():
        if measurand.startswith(prefix):
            return unit
    return "Wh" if not measurand else ""


def parse_decimal(raw: str | int | Decimal) -> Decimal | None:
    """The sampled value as Decimal; None when it is not a finite number."""
    try:
        value = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def normalize(value: Decimal, unit: str) -> int | None:
    """The value as an integer in the base unit (Wh, W, mA, mV...), or None when it has none."""
    scale = _SCALES.get(unit)
    if scale is None:
        return None
    return int((value * scale[0]).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def to_wh(value: Decimal, unit: str) -> Decimal | None:
    """An energy value in Wh as Decimal (keeps the fraction of a kWh value labelled Wh)."""
    if unit in ("Wh", ""):
        return value
    if unit == "kWh":
        return value * 1000
    return None


def connector_max_power_w(max_current_a: Decimal | None, phases: int, voltage_v: int = 230) -> int:
    if not max_current_a or max_current_a <= 0:
        return DEFAULT_MAX_POWER_W
    return int(max_current_a * max(phases, 1) * voltage_v)


def charger_time_is_plausible(charger_time: datetime, server_time: datetime) -> bool:
    """Past timestamps are normal (offline transactions); the future and 1970 are not."""
    return EARLIEST_PLAUSIBLE <= charger_time <= server_time + MAX_CLOCK_AHEAD


@dataclass(frozen=True)
class RegisterReading:
    """One Energy.Active.Import.Register sample, in Wh (already scaled by its unit label)."""

    at: datetime | None
    wh: Decimal


@dataclass(frozen=True)
class SessionEnergy:
    energy_wh: int
    source: str  # "register", "samples", "mixed" or "none"
    review_reasons: tuple[str, ...] = field(default=())
    meter_start_wh: int | None = None
    meter_stop_wh: int | None = None

    @property
    def needs_review(self) -> bool:
        return bool(self.review_reasons)


def _allowed_wh(previous: datetime | None, current: datetime | None, max_power_w: int) -> Decimal | None:
    """Most energy the connector can deliver between two readings; None when time is unknown."""
    if previous is None or current is None:
        return None
    seconds = max((current - previous).total_seconds(), 0) + SLACK_SECONDS
    return Decimal(max_power_w) * Decimal(int(seconds)) / Decimal(3600) + TOLERANCE_WH


def reconstruct_energy(
    *,
    meter_start: Decimal | int | None,
    meter_stop: Decimal | int | None,
    started_at: datetime | None,
    stopped_at: datetime | None,
    readings: Sequence[RegisterReading] = (),
    max_power_w: int = DEFAULT_MAX_POWER_W,
) -> SessionEnergy:
    """Energy delivered in a session, from meterStart, the register samples and meterStop."""
    reasons: list[str] = []
    start = Decimal(meter_start) if meter_start is not None else None
    stop = Decimal(meter_stop) if meter_stop is not None else None
    if start is not None and start < 0:
        reasons.append(f"meterStart {start} is a placeholder")
        start = None
    if stop is not None and stop < 0:
        reasons.append(f"meterStop {stop} is a placeholder")
        stop = None
    if stop == 0 and start is not None and start > 0:
        reasons.append("meterStop 0 is a placeholder")
        stop = None
    if stop is None and meter_stop is None and stopped_at is not None:
        reasons.append("meterStop missing")

    ordered = sorted((r for r in readings if r.wh >= 0), key=lambda r: (r.at is None, r.at or datetime.min))
    if any(r.wh < 0 for r in readings):
        reasons.append("negative register samples ignored")
    # A meterStart of 0 on a meter that the samples show far above zero is a placeholder too.
    if start == 0 and ordered:
        allowed = _allowed_wh(started_at, ordered[0].at, max_power_w)
        if allowed is not None and ordered[0].wh > allowed:
            reasons.append("meterStart 0 is a placeholder")
            start = None

    points: list[RegisterReading] = []
    if start is not None:
        points.append(RegisterReading(started_at, start))
    points.extend(ordered)
    if stop is not None:
        points.append(RegisterReading(stopped_at, stop))

    if len(points) < 2:
        reasons.append("not enough meter data to compute energy")
        return SessionEnergy(0, "none", tuple(reasons), _int_or_none(start), _int_or_none(stop))

    total = Decimal(0)
    previous = points[0]
    for current in points[1:]:
        step = current.wh - previous.wh
        allowed = _allowed_wh(previous.at, current.at, max_power_w)
        if step >= 0 and (allowed is None or step <= allowed):
            total += step
            previous = current
            continue
        scaled = current.wh * 1000
        if step < 0 and scaled >= previous.wh and (allowed is None or scaled - previous.wh <= allowed):
            # The current value is kWh labelled Wh (a common firmware bug).
            _note(reasons, "energy in kWh labelled as Wh")
            total += scaled - previous.wh
            previous = RegisterReading(current.at, scaled)
            continue
        if step > 0 and previous.wh > 0 and allowed is not None:
            previous_scaled = previous.wh * 1000
            if previous_scaled <= current.wh and current.wh - previous_scaled <= allowed:
                _note(reasons, "energy in kWh labelled as Wh")
                total += current.wh - previous_scaled
                previous = current
                continue
        if step < 0:
            # The register went backwards: the meter was reset (reboot, replacement).
            # What it shows now is what it counted since the reset, if that is possible.
            _note(reasons, f"meter register reset from {previous.wh} to {current.wh} Wh")
            if allowed is None or current.wh <= allowed:
                total += current.wh
            previous = current
            continue
        _note(reasons, f"implausible jump of {step} Wh ignored")
        previous = current

    both_registers = start is not None and stop is not None
    source = ("mixed" if ordered else "register") if both_registers else "samples"
    energy = int(total.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return SessionEnergy(energy, source, tuple(reasons), _int_or_none(start), _int_or_none(stop))


def _note(reasons: list[str], reason: str) -> None:
    if reason not in reasons:
        reasons.append(reason)


def _int_or_none(value: Decimal | None) -> int | None:
    return None if value is None else int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
