"""OCPP 1.6 smart-charging profiles as a charger applies them. Pure: no Django, no I/O, no clock.

A charger keeps the profiles it was sent (SetChargingProfile), removes them on
ClearChargingProfile, and at any moment charges at the lowest of:

- the ChargePointMaxProfile on connector 0 (the whole charger), and
- the TxProfile of the running transaction, or else the TxDefaultProfile of the
  connector, or else the TxDefaultProfile on connector 0.

Within one purpose the valid profile with the highest stackLevel wins (OCPP 1.6,
3.13.2). Limits in W become amperes per phase with the connector's voltage and
the phases in use; amperes are kept as Decimal with one decimal.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

CHARGE_POINT_MAX = "ChargePointMaxProfile"
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"
PURPOSES = (CHARGE_POINT_MAX, TX_DEFAULT, TX)
MAX_STACK_LEVEL = 8
TENTH = Decimal("0.1")


class ProfileRejected(ValueError):
    """The charger answers Rejected (the reason is only logged)."""


def _decimal(value: Any) -> Decimal:
    # JSON numbers arrive as int or float: go through str so 16.1 stays 16.1.
    return Decimal(str(value))


def _time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    text = str(value).replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ProfileRejected(f"time without a zone: {value!r}")
    return parsed


@dataclass(frozen=True)
class Period:
    start_s: int
    limit: Decimal
    number_phases: int | None = None


@dataclass(frozen=True)
class Profile:
    profile_id: int
    stack_level: int
    purpose: str
    kind: str  # Absolute, Recurring, Relative
    rate_unit: str  # A or W
    periods: tuple[Period, ...]
    recurrency: str | None = None  # Daily, Weekly
    start_schedule: datetime | None = None
    duration_s: int | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: int | None = None

    @classmethod
    def from_ocpp(cls, data: dict[str, Any]) -> Profile:
        """From SetChargingProfile's csChargingProfiles, with snake_case keys (as the ocpp package gives them)."""
        try:
            schedule = data["charging_schedule"]
            periods = tuple(
                Period(int(p["start_period"]), _decimal(p["limit"]), p.get("number_phases"))
                for p in schedule["charging_schedule_period"]
            )
            profile = cls(
                profile_id=int(data["charging_profile_id"]),
                stack_level=int(data["stack_level"]),
                purpose=str(data["charging_profile_purpose"]),
                kind=str(data["charging_profile_kind"]),
                rate_unit=str(schedule["charging_rate_unit"]),
                periods=periods,
                recurrency=data.get("recurrency_kind"),
                start_schedule=_time(schedule.get("start_schedule")),
                duration_s=schedule.get("duration"),
                valid_from=_time(data.get("valid_from")),
                valid_to=_time(data.get("valid_to")),
                transaction_id=data.get("transaction_id"),
            )
        except (KeyError, TypeError, ValueError, ArithmeticError) as error:
            raise ProfileRejected(f"unreadable profile: {error}") from None
        profile.check()
        return profile

    def check(self) -> None:
        if self.purpose not in PURPOSES:
            raise ProfileRejected(f"unknown purpose {self.purpose}")
        if not 0 <= self.stack_level <= MAX_STACK_LEVEL:
            raise ProfileRejected(f"stackLevel {self.stack_level} above ChargeProfileMaxStackLevel")
        if self.rate_unit not in ("A", "W"):
            raise ProfileRejected(f"unknown rate unit {self.rate_unit}")
        if not self.periods or self.periods[0].start_s != 0:
            raise ProfileRejected("the first period must start at 0")
        if any(p.limit < 0 for p in self.periods):
            raise ProfileRejected("negative limit")
        if self.kind == "Recurring" and (self.recurrency not in ("Daily", "Weekly") or self.start_schedule is None):
            raise ProfileRejected("a recurring profile needs recurrencyKind and startSchedule")

    def period_at(self, now: datetime, transaction_start: datetime | None, speed: float = 1.0) -> Period | None:
        """The schedule period in force at ``now``, or None when the profile does not apply.

        ``speed``: a simulation running N times faster than the wall clock counts the periods and the duration
        of a relative or absolute schedule in real seconds (elapsed simulated time / N), as the platform counts
        the leases it puts in them: otherwise a lease of L seconds would end after L / N real seconds, long
        before the platform renews it."""
        if self.valid_from is not None and now < self.valid_from:
            return None
        if self.valid_to is not None and now >= self.valid_to:
            return None
        if self.kind == "Relative":
            start = transaction_start
        elif self.kind == "Recurring" and self.start_schedule is not None:
            cycle = timedelta(days=1 if self.recurrency == "Daily" else 7)
            start = self.start_schedule + ((now - self.start_schedule) // cycle) * cycle
        else:
            # An Absolute profile without startSchedule starts when it is received (see ProfileBook.add).
            start = self.start_schedule
        if start is None or now < start:
            return None
        elapsed = int((now - start).total_seconds() / (speed if self.kind != "Recurring" else 1.0))
        if self.duration_s is not None and elapsed >= self.duration_s:
            return None
        current = None
        for period in self.periods:
            if period.start_s <= elapsed:
                current = period
        return current


@dataclass(frozen=True)
class Limit:
    """What the profiles allow on one connector: amperes per phase, and at most this many phases."""

    current_a: Decimal | None
    number_phases: int | None = None


def amps(limit: Decimal, rate_unit: str, voltage_v: int, phases: int) -> Decimal:
    if rate_unit == "A":
        return limit.quantize(TENTH, rounding=ROUND_DOWN)
    return (limit / (voltage_v * phases)).quantize(TENTH, rounding=ROUND_DOWN)


@dataclass
class ProfileBook:
    """The profiles a charger holds, per connector (0 is the whole charger)."""

    profiles: dict[int, list[Profile]] = field(default_factory=dict)
    speed: float = 1.0  # the simulation's speed (Profile.period_at)

    def add(self, connector_id: int, profile: Profile, now: datetime, transaction_id: int | None) -> None:
        if profile.purpose == CHARGE_POINT_MAX and connector_id != 0:
            raise ProfileRejected("ChargePointMaxProfile only on connector 0")
        if profile.purpose == TX:
            if connector_id == 0 or transaction_id is None:
                raise ProfileRejected("TxProfile without a transaction on the connector")
            if profile.transaction_id is not None and profile.transaction_id != transaction_id:
                raise ProfileRejected("TxProfile for another transaction")
            profile = replace(profile, transaction_id=transaction_id)
        if profile.kind == "Absolute" and profile.start_schedule is None:
            profile = replace(profile, start_schedule=now)
        kept = [
            p for p in self.profiles.get(connector_id, [])
            if p.profile_id != profile.profile_id
            and not (p.purpose == profile.purpose and p.stack_level == profile.stack_level)
        ]
        self.profiles[connector_id] = [*kept, profile]

    def clear(self, *, profile_id: int | None = None, connector_id: int | None = None, purpose: str | None = None,
              stack_level: int | None = None) -> int:
        removed = 0
        for number, profiles in self.profiles.items():
            kept = []
            for p in profiles:
                if profile_id is not None:
                    match = p.profile_id == profile_id
                else:
                    match = (connector_id is None or connector_id == number) and \
                        (purpose is None or purpose == p.purpose) and \
                        (stack_level is None or stack_level == p.stack_level)
                if match:
                    removed += 1
                else:
                    kept.append(p)
            self.profiles[number] = kept
        return removed

    def end_transaction(self, connector_id: int) -> None:
        """TxProfiles end with their transaction."""
        self.profiles[connector_id] = [p for p in self.profiles.get(connector_id, []) if p.purpose != TX]

    def _winner(self, connector_id: int, purpose: str, now: datetime, tx_start: datetime | None,
                transaction_id: int | None) -> tuple[Profile, Period] | None:
        best: tuple[Profile, Period] | None = None
        for p in self.profiles.get(connector_id, []):
            if p.purpose != purpose:
                continue
            if purpose == TX and p.transaction_id != transaction_id:
                continue
            period = p.period_at(now, tx_start, self.speed)
            if period is not None and (best is None or p.stack_level > best[0].stack_level):
                best = (p, period)
        return best

    def limit(self, connector_id: int, now: datetime, *, tx_start: datetime | None, transaction_id: int | None,
              voltage_v: int, phases: int) -> Limit:
        """The limit on ``connector_id`` at ``now`` for a load on ``phases`` phases."""
        found: list[tuple[Profile, Period]] = []
        charger_max = self._winner(0, CHARGE_POINT_MAX, now, tx_start, None)
        if charger_max:
            found.append(charger_max)
        tx_level = None
        if transaction_id is not None:
            tx_level = self._winner(connector_id, TX, now, tx_start, transaction_id)
        tx_level = tx_level or self._winner(connector_id, TX_DEFAULT, now, tx_start, None) \
            or self._winner(0, TX_DEFAULT, now, tx_start, None)
        if tx_level:
            found.append(tx_level)
        current: Decimal | None = None
        number_phases: int | None = None
        for profile, period in found:
            used = min(phases, period.number_phases or phases)
            a = amps(period.limit, profile.rate_unit, voltage_v, used)
            current = a if current is None else min(current, a)
            if period.number_phases is not None:
                number_phases = period.number_phases if number_phases is None else min(number_phases,
                                                                                        period.number_phases)
        return Limit(current, number_phases)
