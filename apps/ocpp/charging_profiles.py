"""SetChargingProfile payloads for the load balancer's limits. Pure: no Django, no I/O, no clock.

Three purposes, each with its own profile id (so that a new one *replaces* the one before: OCPP 1.6,
3.13.3: same chargingProfileId, or same stackLevel and purpose, replaces), all at the highest stack
level the charger allows, so that they win over whatever a factory or another system left behind:

- ``ChargePointMaxProfile`` on connector 0: the cabinet's static cap (its circuit's limit).
- ``TxDefaultProfile`` on each connector: a safe default, so that a session that starts before the
  balancer has run can never overshoot: 0 A (the session waits, paused, for its first limit), or on a
  charger that refuses 0 A the connector's minimum (``safe_default_a``).
- ``TxProfile`` on a connector with a transaction: the live limit, with a lease: a second schedule
  period drops to a safe floor at the end of the lease, so a charger that no longer hears from the
  platform falls to the floor on its own.

Clock skew. Chargers' clocks are often wrong (a 1970 clock after a power cut, minutes of drift), so
nothing here depends on the charger agreeing with the platform about the time of day:
- no ``validFrom`` / ``validTo`` is ever sent: both are absolute times, and a charger whose clock is
  behind would ignore the profile (or keep one past its end);
- the one-period profiles (ChargePointMax, TxDefault) have no ``startSchedule``: one open-ended period,
  whatever the charger takes as its start, is in force from the moment it is received;
- the TxProfile is ``Relative`` (to the start of the transaction, on the charger's own clock). The lease's
  second period starts at ``elapsed + lease`` where ``elapsed`` is measured on the *platform's* clock
  from the moment the platform received StartTransaction. The charger started the transaction no later
  than that, so on its clock the floor comes no later than ``lease`` from now: any error is on the safe
  side (a transaction queued while offline gets a shorter lease, never a longer one).
A charger that rejects ``Relative`` gets an ``Absolute`` profile starting now (on the platform's clock)
instead; its lease is then only as exact as its clock, which is said in the result's notes.

Units: amperes per phase when the charger takes them (a load balancer's natural unit), watts when it only
takes power (or is DC); watts = amperes x voltage x phases, rounded down. Limits are rounded down, never
up (to 0.1 A, or to whole amperes for a charger that wants them).

Quirks. A charger that answers Rejected to a profile gets the ``fallbacks`` of it, one at a time: first
each single change that could explain the refusal (integer amperes, amperes instead of watts or the
reverse, an absolute schedule, stack level 0, the lease as a duration, the lowest current it accepts
instead of 0 A, the live limit as the connector's TxDefaultProfile), then all of them together. What
worked is remembered as the charger's ``Quirks`` (stored on the charger) and used from then on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

CHARGE_POINT_MAX = "ChargePointMaxProfile"
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"
PURPOSES = (CHARGE_POINT_MAX, TX_DEFAULT, TX)

AMPS = "A"
WATTS = "W"
TENTH = Decimal("0.1")
ONE = Decimal(1)

# chargingProfileId = base of the purpose + connector number (connectors are 0..999, apps/ocpp/edge.py).
PROFILE_ID_BASE = {CHARGE_POINT_MAX: 7_100_000, TX_DEFAULT: 7_200_000, TX: 7_300_000}

STACK_LEVEL_KEY = "ChargeProfileMaxStackLevel"
RATE_UNIT_KEY = "ChargingScheduleAllowedChargingRateUnit"
MAX_PERIODS_KEY = "ChargingScheduleMaxPeriods"
MAX_PROFILES_KEY = "MaxChargingProfilesInstalled"

# key -> {"value": ..., "readonly": ...}, as GetConfiguration answered it (apps.ocpp.measurands)
Configuration = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Capabilities:
    """What the charger's configuration says about smart charging (unknown keys: the spec's minimums)."""

    max_stack_level: int = 0
    rate_units: frozenset[str] = frozenset({AMPS, WATTS})
    max_periods: int | None = None
    max_profiles: int | None = None

    @classmethod
    def from_configuration(cls, configuration: Configuration) -> Capabilities:
        level = _int(configuration, STACK_LEVEL_KEY)
        units_text = str((configuration.get(RATE_UNIT_KEY) or {}).get("value") or "")
        units = set()
        for word in units_text.replace(";", ",").split(","):
            word = word.strip().lower()
            if word in ("current", "a"):
                units.add(AMPS)
            elif word in ("power", "w"):
                units.add(WATTS)
        return cls(
            max_stack_level=max(level, 0) if level is not None else 0,
            rate_units=frozenset(units) or frozenset({AMPS, WATTS}),
            max_periods=_int(configuration, MAX_PERIODS_KEY),
            max_profiles=_int(configuration, MAX_PROFILES_KEY),
        )


@dataclass(frozen=True)
class Quirks:
    """What a charger was found to refuse; stored per charger (``to_json`` / ``from_json``).

    Every flag starts False and is only ever set by a fallback that the charger then accepted (or, for
    ``no_smart_charging``, by a NotSupported/NotImplemented answer).
    """

    integer_amps: bool = False  # rejects fractional limits
    amps_rejected: bool = False  # rejects A: send W
    watts_rejected: bool = False  # rejects W: send A
    absolute_only: bool = False  # rejects Relative schedules
    stack_level_zero: bool = False  # rejects the stack level its configuration allows
    single_period: bool = False  # rejects a second period: the lease becomes the schedule's duration
    zero_rejected: bool = False  # rejects 0 A: it gets the lowest current it takes, and an alert
    tx_profile_rejected: bool = False  # rejects TxProfile: the live limit goes in the connector's TxDefaultProfile
    no_smart_charging: bool = False  # answers NotSupported / NotImplemented to SetChargingProfile

    def to_json(self) -> dict[str, bool]:
        return {name: value for name, value in asdict(self).items() if value}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Quirks:
        known = {f.name for f in fields(cls)}
        return cls(**{name: bool(value) for name, value in (data or {}).items() if name in known})

    def merged(self, other: Quirks) -> Quirks:
        return Quirks(**{f.name: getattr(self, f.name) or getattr(other, f.name) for f in fields(self)})

    def describe(self) -> str:
        return ", ".join(name.replace("_", " ") for name in self.to_json()) or "none"


@dataclass(frozen=True)
class ProfileRequest:
    """A limit to put on a charger: amperes per phase (Decimal), for ``purpose`` on ``connector_id``.

    ``phases`` and ``voltage_v`` turn amperes into watts. ``min_current_a`` is what the charger is given
    instead of 0 A when it refuses 0 A. For a TxProfile: ``transaction_id``, the lease (``lease_s``
    seconds, then ``floor_a``) and ``elapsed_s``, the seconds since the platform received the
    transaction's StartTransaction (see the module's note on clock skew).
    """

    purpose: str
    connector_id: int
    limit_a: Decimal
    phases: int = 1
    voltage_v: int = 230
    min_current_a: Decimal = Decimal(6)
    dc: bool = False
    transaction_id: int | None = None
    lease_s: int | None = None
    floor_a: Decimal | None = None
    elapsed_s: int = 0

    def __post_init__(self) -> None:
        if self.purpose not in PURPOSES:
            raise ValueError(f"unknown charging profile purpose {self.purpose!r}")
        if self.purpose == CHARGE_POINT_MAX and self.connector_id != 0:
            raise ValueError("a ChargePointMaxProfile goes on connector 0")
        if self.purpose != CHARGE_POINT_MAX and self.connector_id < 1:
            raise ValueError(f"a {self.purpose} goes on a connector (1 or more), not {self.connector_id}")
        if self.limit_a < 0 or (self.floor_a is not None and self.floor_a < 0):
            raise ValueError(f"a negative limit on connector {self.connector_id}")
        if self.phases not in (1, 2, 3) or self.voltage_v <= 0:
            raise ValueError(f"connector {self.connector_id}: phases must be 1-3 and the voltage positive")
        if self.lease_s is not None and self.lease_s <= 0:
            raise ValueError(f"connector {self.connector_id}: the lease must be positive")


@dataclass(frozen=True)
class Built:
    """One SetChargingProfile request (OCPP 1.6 field names) and what it asks for, in amperes per phase."""

    connector_id: int  # where it is sent (a TxProfile refused becomes a TxDefaultProfile on the same connector)
    purpose: str
    payload: dict[str, Any]
    unit: str
    limit_a: Decimal  # what the charger is asked to hold, per phase (after rounding; 0 A refused -> the minimum)
    floor_a: Decimal | None  # after the lease, or None
    notes: tuple[str, ...] = field(default=())


def profile_id(purpose: str, connector_id: int) -> int:
    """The same id for the same purpose and connector, every time: a new profile replaces the last one."""
    return PROFILE_ID_BASE[purpose] + connector_id


def stack_level(capabilities: Capabilities, quirks: Quirks) -> int:
    return 0 if quirks.stack_level_zero else capabilities.max_stack_level


def rate_unit(request: ProfileRequest, capabilities: Capabilities, quirks: Quirks) -> str:
    allowed = set(capabilities.rate_units)
    if quirks.watts_rejected:
        allowed.discard(WATTS)
    if quirks.amps_rejected:
        allowed.discard(AMPS)
    preferred = (WATTS, AMPS) if request.dc else (AMPS, WATTS)
    for unit in preferred:
        if unit in allowed:
            return unit
    # Both refused at some point: amperes, the unit the limits are computed in.
    return AMPS


def quantize_a(value: Decimal, quirks: Quirks) -> Decimal:
    """Rounded down: to 0.1 A, or to whole amperes for a charger that wants them. Never up."""
    return value.quantize(ONE if quirks.integer_amps else TENTH, rounding=ROUND_DOWN)


def _as_unit(limit_a: Decimal, unit: str, request: ProfileRequest) -> Decimal:
    if unit == AMPS:
        return limit_a
    return (limit_a * request.voltage_v * request.phases).quantize(ONE, rounding=ROUND_DOWN)


def _number(value: Decimal) -> int | float:
    """A limit for the JSON payload: an integer when whole, else the one-decimal value (str -> float, exact)."""
    return int(value) if value == value.to_integral_value() else float(str(value))


def build(request: ProfileRequest, capabilities: Capabilities, quirks: Quirks, *, now: datetime) -> Built:
    """The SetChargingProfile request for ``request`` on a charger with these capabilities and quirks.

    ``now`` is only used for the start of an Absolute schedule (a charger that refuses Relative ones).
    """
    notes: list[str] = []
    purpose, connector_id = request.purpose, request.connector_id
    if purpose == TX and quirks.tx_profile_rejected:
        purpose = TX_DEFAULT
        notes.append("TxProfile refused by this charger: the live limit is its TxDefaultProfile")
    unit = rate_unit(request, capabilities, quirks)
    limit_a = quantize_a(request.limit_a, quirks)
    floor_a = quantize_a(request.floor_a, quirks) if request.floor_a is not None else None
    if quirks.zero_rejected:
        lowest = quantize_a(request.min_current_a, quirks)
        if limit_a < lowest:
            notes.append(f"0 A refused by this charger: {lowest} A instead of {limit_a} A")
            limit_a = lowest
        if floor_a is not None and floor_a < lowest:
            floor_a = lowest
    leased = request.purpose == TX and request.lease_s is not None and floor_a is not None and floor_a < limit_a
    periods: list[dict[str, Any]] = [{"startPeriod": 0, "limit": _number(_as_unit(limit_a, unit, request))}]
    schedule: dict[str, Any] = {"chargingRateUnit": unit}
    profile: dict[str, Any] = {
        "chargingProfileId": profile_id(purpose, connector_id),
        "stackLevel": stack_level(capabilities, quirks),
        "chargingProfilePurpose": purpose,
    }
    if request.purpose == TX:
        # Relative to the transaction's start on the charger's clock; see the module's note on clock skew.
        lease_end = request.elapsed_s + (request.lease_s or 0)
        if quirks.absolute_only:
            profile["chargingProfileKind"] = "Absolute"
            schedule["startSchedule"] = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            lease_end = request.lease_s or 0
            notes.append("Relative refused by this charger: an Absolute schedule, its lease as exact as its clock")
        else:
            profile["chargingProfileKind"] = "Relative"
        if leased and floor_a is not None:
            single = quirks.single_period or (capabilities.max_periods is not None and capabilities.max_periods < 2)
            if single:
                # After the duration the profile ends and the safe TxDefaultProfile applies again.
                schedule["duration"] = lease_end
                notes.append("one period only: the lease is the schedule's duration")
            else:
                periods.append({"startPeriod": lease_end, "limit": _number(_as_unit(floor_a, unit, request))})
        if purpose == TX and request.transaction_id is not None:
            profile["transactionId"] = request.transaction_id
    else:
        profile["chargingProfileKind"] = "Absolute"
    schedule["chargingSchedulePeriod"] = periods
    profile["chargingSchedule"] = schedule
    payload = {"connectorId": connector_id, "csChargingProfiles": profile}
    return Built(connector_id, purpose, payload, unit, limit_a, floor_a if leased else None, tuple(notes))


def fallbacks(request: ProfileRequest, capabilities: Capabilities, quirks: Quirks) -> list[Quirks]:
    """The quirk sets to try, in order, after ``build(request, capabilities, quirks)`` was Rejected.

    First every single change that could explain the refusal (so that a charger with one quirk is
    remembered with exactly that one), then all of them together. Changes that would not alter the
    profile (the limit already whole, the unit already A...) are left out. Empty: nothing more to try.
    """
    built = build(request, capabilities, quirks, now=datetime(2000, 1, 1, tzinfo=UTC))
    steps: list[Quirks] = []
    frac = built.limit_a != built.limit_a.to_integral_value() or (
        built.floor_a is not None and built.floor_a != built.floor_a.to_integral_value())
    if frac and not quirks.integer_amps:
        steps.append(replace(quirks, integer_amps=True))
    if built.unit == WATTS and not quirks.watts_rejected:
        steps.append(replace(quirks, watts_rejected=True))
    if built.unit == AMPS and WATTS in capabilities.rate_units and not (quirks.amps_rejected or quirks.watts_rejected):
        steps.append(replace(quirks, amps_rejected=True))
    if built.payload["csChargingProfiles"]["chargingProfileKind"] == "Relative" and not quirks.absolute_only:
        steps.append(replace(quirks, absolute_only=True))
    if built.payload["csChargingProfiles"]["stackLevel"] > 0:
        steps.append(replace(quirks, stack_level_zero=True))
    if len(built.payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]) > 1:
        steps.append(replace(quirks, single_period=True))
    if built.limit_a == 0 and not quirks.zero_rejected:
        steps.append(replace(quirks, zero_rejected=True))
    if built.purpose == TX and not quirks.tx_profile_rejected:
        steps.append(replace(quirks, tx_profile_rejected=True))
    if len(steps) > 1:
        combined = quirks
        for step in steps:
            combined = combined.merged(step)
        steps.append(combined)
    return steps


def is_change(wanted_a: Decimal, held_a: Decimal | None, *, threshold_a: Decimal = ONE) -> bool:
    """Whether a new limit is worth sending: the charger holds nothing known, it is lower (a decrease of any size
    is sent: the plan fills its limits to the last tenth, and 0.1 A kept above it by one gun is an overshoot of
    the whole node), or it is higher by ``threshold_a``.

    A limit to or from 0 A always counts (pausing and resuming a session is never a no-op).
    """
    if held_a is None or wanted_a < held_a:
        return True
    if (wanted_a == 0) != (held_a == 0):
        return True
    return abs(wanted_a - held_a) >= threshold_a


def is_decrease(wanted_a: Decimal, held_a: Decimal | None) -> bool:
    """A decrease goes before any increase. Not knowing what the charger holds counts as one (it may be more)."""
    return held_a is None or wanted_a < held_a


def cabinet_cap_a(*, max_current_a: Decimal, max_power_w: int | None, voltage_v: int, phases: int) -> Decimal:
    """The per-phase current a circuit allows a charger behind it: its current limit, and its power limit
    spread over its phases (a 20 kW cabinet on 3 x 230 V: 28.9 A). Rounded down to 0.1 A."""
    cap = max_current_a
    if max_power_w is not None:
        cap = min(cap, Decimal(max_power_w) / (voltage_v * max(phases, 1)))
    return cap.quantize(TENTH, rounding=ROUND_DOWN)


def safe_default_a(*, circuit_cap_a: Decimal, connectors_on_circuit: int, min_current_a: Decimal,
                   max_current_a: Decimal | None, accepts_zero: bool = False) -> Decimal:
    """The TxDefaultProfile's limit. 0 A on a charger that accepts 0 A (``accepts_zero``: it does not have the
    ``zero_rejected`` quirk): a session that starts before its first limit waits, paused, for the balancer,
    which then keeps nothing free for the idle connectors. On one that refuses 0 A: the connector's minimum,
    or its even share of the circuit when that is less (then a session waits for the balancer rather than
    overshoot), never above its maximum. Every connector of the circuit at this default stays within the
    circuit. Rounded down to 0.1 A."""
    if accepts_zero:
        return Decimal(0)
    value = min(circuit_cap_a / max(connectors_on_circuit, 1), min_current_a)
    if max_current_a is not None:
        value = min(value, max_current_a)
    return max(value, Decimal(0)).quantize(TENTH, rounding=ROUND_DOWN)


def _int(configuration: Configuration, key: str) -> int | None:
    raw = (configuration.get(key) or {}).get("value")
    try:
        return int(str(raw).strip()) if raw is not None else None
    except ValueError:
        return None
