"""The pricing engine: a charging session and the tariff version in force at its start -> priced lines.

Pure: no Django, no I/O, no clock. Money is Decimal, energy integer Wh; floats never touch either.
Times may come in any time zone; everything is computed on UTC instants (so a DST change neither adds
nor loses an hour of charging), and tariff windows are read in the building's local time (ZoneInfo).

A tariff version follows the OCPI model: an ordered list of elements, each with price components and
restrictions. For every instant of a session and every kind of component, the first element whose
restrictions hold and that has a component of that kind sets the price (OCPI's rule). Kinds:

    ENERGY        per kWh; step_size in Wh
    TIME          per hour of charging (from the start until charging completes); step_size in seconds
    PARKING_TIME  per minute of idle time (charging completed, car still plugged in), after a grace
                  period, up to a cap per session; step_size in seconds
    FLAT          per session (the element in force at the start)

Differences from OCPI, on purpose: PARKING_TIME is priced per minute (as idle fees are posted); the
min/max energy and duration restrictions are conditions on the whole session (OCPI lets them switch an
element on part-way), so that "sessions of 10 minutes or less are free" means exactly that. Step sizes
round up the session's total of a kind; what rounding adds goes on that kind's last line.

Rules kept here (docs/tariffs.md, shared spec billing.md): energy between two readings that straddle a
window boundary is split linearly and the line says so; each line is rounded half-up to the currency's
minor unit and the total is the sum of the rounded lines; a session without energy costs nothing; an
energy the connector cannot have delivered in the elapsed time (5 % tolerance) is held for review and
not billed; a missing meterStop uses the last reading.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from apps.payments import money

# The currencies a building may bill in (each a currency its residents can pay by card: see
# apps/payments/money.py, which holds their ISO 4217 minor units). A currency not listed is refused
# (with its code in the message) rather than guessed.
BILLING_CURRENCIES = frozenset({
    "AUD", "BHD", "BRL", "CAD", "CHF", "CLP", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "ILS", "INR", "JOD",
    "JPY", "KRW", "KWD", "MXN", "NOK", "NZD", "OMR", "PLN", "SEK", "SGD", "TND", "USD", "VND", "ZAR",
})
# An energy above what the connector could deliver in the elapsed time, by more than this, is held.
IMPLAUSIBLE_TOLERANCE = Decimal("1.05")
WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
PRICED = "priced"
HELD = "held"


class Kind(StrEnum):
    ENERGY = "ENERGY"
    TIME = "TIME"
    PARKING_TIME = "PARKING_TIME"
    FLAT = "FLAT"
    MONTHLY_FEE = "MONTHLY_FEE"  # not a session's: a statement's line (monthly_fee_line)


# The kinds a tariff element may price (OCPI's price component types).
COMPONENT_KINDS = (Kind.ENERGY, Kind.TIME, Kind.PARKING_TIME, Kind.FLAT)
UNITS = {Kind.ENERGY: "kWh", Kind.TIME: "h", Kind.PARKING_TIME: "min", Kind.FLAT: "session",
         Kind.MONTHLY_FEE: "day"}
# Seconds (or Wh) per unit of price, for the kinds priced by a measured quantity.
_PER_UNIT = {Kind.ENERGY: Decimal(1000), Kind.TIME: Decimal(3600), Kind.PARKING_TIME: Decimal(60)}


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of ``currency``: 0.01 for USD, 1 for JPY, 0.001 for KWD."""
    return money.quantum(currency)


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's minor unit."""
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_UP)


# --- the tariff ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceComponent:
    kind: Kind
    price: Decimal  # ENERGY per kWh, TIME per hour, PARKING_TIME per minute, FLAT per session
    tax_rate: Decimal = Decimal(0)  # a fraction: 0.08 is 8 %
    step_size: int = 1  # Wh for ENERGY, seconds for TIME and PARKING_TIME
    grace_minutes: int = 0  # PARKING_TIME: idle minutes not charged
    cap: Decimal | None = None  # PARKING_TIME: the most a session's idle time may cost


@dataclass(frozen=True)
class Restrictions:
    """When an element applies. Times and dates are the building's local ones.

    start_time/end_time: [start, end) of the local time of day; an end before the start crosses midnight.
    start_date/end_date: [start, end) of local dates. days_of_week: 0 is Monday.
    min/max kwh and duration: conditions on the whole session (min inclusive, max exclusive).
    """

    start_time: time | None = None
    end_time: time | None = None
    start_date: date | None = None
    end_date: date | None = None
    days_of_week: frozenset[int] | None = None
    min_kwh: Decimal | None = None
    max_kwh: Decimal | None = None
    min_duration_s: int | None = None
    max_duration_s: int | None = None

    def holds_at(self, local: datetime) -> bool:
        if self.start_date is not None and local.date() < self.start_date:
            return False
        if self.end_date is not None and local.date() >= self.end_date:
            return False
        if self.days_of_week is not None and local.weekday() not in self.days_of_week:
            return False
        moment = local.time().replace(tzinfo=None)
        start = self.start_time or time(0)
        end = self.end_time or time(0)
        if self.start_time is None and self.end_time is None:
            return True
        if start < end:
            return start <= moment < end
        return moment >= start or moment < end  # crosses midnight (or start == end: all day)

    def holds_for(self, energy_wh: int, duration_s: int) -> bool:
        kwh = Decimal(energy_wh) / 1000
        if self.min_kwh is not None and kwh < self.min_kwh:
            return False
        if self.max_kwh is not None and kwh >= self.max_kwh:
            return False
        if self.min_duration_s is not None and duration_s < self.min_duration_s:
            return False
        return not (self.max_duration_s is not None and duration_s >= self.max_duration_s)

    def describe(self) -> str:
        parts: list[str] = []
        if self.start_time is not None or self.end_time is not None:
            parts.append(f"{(self.start_time or time(0)):%H:%M}-{(self.end_time or time(0)):%H:%M}")
        if self.days_of_week is not None:
            parts.append(",".join(WEEKDAYS[d][:3].title() for d in sorted(self.days_of_week)))
        if self.start_date is not None:
            parts.append(f"from {self.start_date.isoformat()}")
        if self.end_date is not None:
            parts.append(f"before {self.end_date.isoformat()}")
        if self.min_kwh is not None:
            parts.append(f"sessions of {self.min_kwh} kWh or more")
        if self.max_kwh is not None:
            parts.append(f"sessions under {self.max_kwh} kWh")
        if self.min_duration_s is not None:
            parts.append(f"sessions of {_duration_text(self.min_duration_s)} or more")
        if self.max_duration_s is not None:
            parts.append(f"sessions under {_duration_text(self.max_duration_s)}")
        return ", ".join(parts) or "at any time"


@dataclass(frozen=True)
class TariffElement:
    components: tuple[PriceComponent, ...]
    restrictions: Restrictions = field(default_factory=Restrictions)
    label: str = ""

    def component(self, kind: Kind) -> PriceComponent | None:
        return next((c for c in self.components if c.kind == kind), None)

    def window(self) -> str:
        return self.label or self.restrictions.describe()


@dataclass(frozen=True)
class MonthlyFee:
    """A fixed monthly service fee (equipment cost recovery), prorated by days of access."""

    price: Decimal
    tax_rate: Decimal = Decimal(0)


@dataclass(frozen=True)
class TariffVersion:
    currency: str
    elements: tuple[TariffElement, ...]
    monthly_fee: MonthlyFee | None = None
    name: str = ""  # e.g. "residents v3", for explanations


# --- the session -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """An energy register reading: the meter showed ``wh`` at ``at``."""

    at: datetime
    wh: int


@dataclass(frozen=True)
class SessionInput:
    started_at: datetime
    stopped_at: datetime
    meter_start_wh: int | None = None
    meter_stop_wh: int | None = None  # None: missing (the last reading is used)
    readings: tuple[Reading, ...] = ()
    # The energy as reconstructed from the registers (apps.charging.metering); None: from the readings here.
    energy_wh: int | None = None
    energy_source: str = ""
    charging_complete_at: datetime | None = None  # None: it charged until it stopped
    unplugged_at: datetime | None = None  # None: at the stop
    max_power_w: int | None = None  # the connector's; None: no plausibility check
    review_reasons: tuple[str, ...] = ()  # reasons to hold the session for a person


@dataclass(frozen=True)
class Line:
    kind: Kind
    window: str  # which element / time window, in words
    start: datetime  # the local period the line covers
    end: datetime
    quantity: Decimal  # in ``unit``
    unit: str
    unit_price: Decimal
    amount: Decimal  # rounded; tax included or not as the building shows its prices
    tax_rate: Decimal
    tax: Decimal
    total: Decimal  # what the line costs, tax included
    interpolated: bool = False  # energy split linearly at a window boundary between two readings
    note: str = ""

    @property
    def net(self) -> Decimal:
        return self.total - self.tax

    def explain(self) -> str:
        text = f"{self.kind.value}: {self.quantity} {self.unit} x {self.unit_price} ({self.window}, "
        text += f"{self.start:%Y-%m-%d %H:%M}-{self.end:%H:%M})"
        if self.interpolated:
            text += ", energy interpolated at the window boundary"
        return text + (f"; {self.note}" if self.note else "")


@dataclass(frozen=True)
class PricedSession:
    status: str  # "priced" or "held"
    currency: str
    lines: tuple[Line, ...]
    energy_wh: int
    energy_source: str
    hold_reason: str = ""
    notes: tuple[str, ...] = ()

    @property
    def subtotal(self) -> Decimal:
        return sum((line.net for line in self.lines), Decimal(0))

    @property
    def tax(self) -> Decimal:
        return sum((line.tax for line in self.lines), Decimal(0))

    @property
    def total(self) -> Decimal:
        return sum((line.total for line in self.lines), round_money(Decimal(0), self.currency))

    @property
    def billable(self) -> bool:
        """Whether anything is to be paid (a held session, or a free one, sends nothing to a processor)."""
        return self.status == PRICED and self.total > 0


# --- pricing ---------------------------------------------------------------------------------


def price_session(
    tariff: TariffVersion, session: SessionInput, *, tz: tzinfo, prices_include_tax: bool = False,
) -> PricedSession:
    """The priced lines of a finished session under ``tariff`` (the version in force at its start)."""
    currency = tariff.currency
    start, stop = _utc(session.started_at), _utc(session.stopped_at)
    curve, source, notes = _energy_curve(session, start, stop)
    energy = curve.total
    if session.review_reasons:
        return PricedSession(HELD, currency, (), energy, source, "; ".join(session.review_reasons), notes)
    if stop < start:
        return PricedSession(HELD, currency, (), energy, source, "the session stopped before it started", notes)
    elapsed = stop - start
    if session.max_power_w is not None and energy > 0:
        possible = Decimal(session.max_power_w) * Decimal(int(elapsed.total_seconds())) / 3600
        if Decimal(energy) > possible * IMPLAUSIBLE_TOLERANCE:
            reason = (f"implausible energy: {energy} Wh in {_duration_text(int(elapsed.total_seconds()))} "
                      f"on a {session.max_power_w} W connector (at most {int(possible)} Wh)")
            return PricedSession(HELD, currency, (), energy, source, reason, notes)
    if energy <= 0:
        return PricedSession(PRICED, currency, (), 0, source, "", (*notes, "no energy delivered: nothing to pay"))

    duration_s = int(elapsed.total_seconds())
    elements = [e for e in tariff.elements if e.restrictions.holds_for(energy, duration_s)]
    complete = min(max(_utc(session.charging_complete_at), start), stop) if session.charging_complete_at else stop
    unplugged = max(_utc(session.unplugged_at), stop) if session.unplugged_at else stop

    pricer = _Pricer(currency, tz, prices_include_tax)
    lines: list[Line] = []
    lines += _energy_lines(pricer, elements, curve, start, stop)
    lines += _time_lines(pricer, elements, Kind.TIME, start, complete)
    lines += _time_lines(pricer, elements, Kind.PARKING_TIME, complete, unplugged)
    flat_element = _element_at(elements, Kind.FLAT, start.astimezone(tz))
    if flat_element is not None:
        component = flat_element.component(Kind.FLAT)
        assert component is not None
        lines.append(pricer.line(Kind.FLAT, flat_element.window(), start, start, Decimal(1), component,
                                 component.price))
    return PricedSession(PRICED, currency, tuple(lines), energy, source, "", notes)


def quote(
    tariff: TariffVersion, *, start: datetime, duration: timedelta, energy_wh: int, tz: tzinfo,
    prices_include_tax: bool = False, idle: timedelta = timedelta(0), max_power_w: int | None = None,
) -> PricedSession:
    """What a session would cost: ``energy_wh`` delivered evenly over ``duration`` from ``start``,
    then ``idle`` plugged in after charging completed."""
    stop = _utc(start) + duration
    session = SessionInput(
        started_at=_utc(start), stopped_at=stop + idle, meter_start_wh=0, meter_stop_wh=energy_wh,
        readings=(Reading(stop, energy_wh),), charging_complete_at=stop, energy_source="quote",
        max_power_w=max_power_w,
    )
    return price_session(tariff, session, tz=tz, prices_include_tax=prices_include_tax)


class _Pricer:
    def __init__(self, currency: str, tz: tzinfo, prices_include_tax: bool):
        self.currency, self.tz, self.inclusive = currency, tz, prices_include_tax

    def line(
        self, kind: Kind, window: str, start: datetime, end: datetime, quantity: Decimal,
        component: PriceComponent, raw_amount: Decimal, *, interpolated: bool = False, note: str = "",
    ) -> Line:
        amount = round_money(raw_amount, self.currency)
        rate = component.tax_rate
        if self.inclusive:
            tax = round_money(amount - amount / (1 + rate) if rate else Decimal(0), self.currency)
            total = amount
        else:
            tax = round_money(amount * rate, self.currency)
            total = amount + tax
        return Line(kind, window, start.astimezone(self.tz), end.astimezone(self.tz), quantity, UNITS[kind],
                    component.price, amount, rate, tax, total, interpolated, note)


# --- energy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Curve:
    """Energy delivered since the start, as a piecewise-linear function of time through known points."""

    points: tuple[tuple[datetime, Decimal], ...]  # (instant, Wh since the start), non-decreasing
    total: int

    def at(self, moment: datetime) -> Decimal:
        points = self.points
        if not points or moment <= points[0][0]:
            return Decimal(0)
        for (t0, e0), (t1, e1) in itertools.pairwise(points):
            if moment <= t1:
                if t1 == t0:
                    return e1
                span = Decimal(int((t1 - t0).total_seconds() * 1_000_000))
                part = Decimal(int((moment - t0).total_seconds() * 1_000_000))
                return e0 + (e1 - e0) * part / span
        return points[-1][1]

    def wh_at(self, moment: datetime) -> int:
        """Whole Wh delivered by ``moment``: lines get integer Wh that add up to the total exactly."""
        return min(int(self.at(moment).quantize(Decimal(1), rounding=ROUND_HALF_UP)), self.total)

    def measured_at(self, moment: datetime) -> bool:
        times = [t for t, _ in self.points]
        if moment <= times[0] or moment >= times[-1]:
            return True
        return moment in times


def _energy_curve(session: SessionInput, start: datetime, stop: datetime) -> tuple[_Curve, str, tuple[str, ...]]:
    notes: list[str] = []
    registers: list[tuple[datetime, int]] = []
    if session.meter_start_wh is not None:
        registers.append((start, session.meter_start_wh))
    registers += sorted((min(max(_utc(r.at), start), stop), r.wh) for r in session.readings)
    source = session.energy_source or "meterStart/meterStop"
    if session.meter_stop_wh is not None:
        registers.append((stop, session.meter_stop_wh))
    elif session.readings:
        source = "last meter value"
        notes.append("no meterStop: the last meter reading is used")
        registers.append((stop, registers[-1][1]))
    points: list[tuple[datetime, Decimal]] = []
    delivered = Decimal(0)
    for i, (moment, wh) in enumerate(registers):
        if i:
            step = wh - registers[i - 1][1]
            delivered += step if step >= 0 else wh  # a register that went back was reset: it counts from 0
        points.append((moment, delivered))
    if points and points[0][0] > start:
        points.insert(0, (start, Decimal(0)))
    measured_total = int(delivered)
    if session.energy_wh is None or session.energy_wh == measured_total:
        return _Curve(tuple(points), measured_total), source, tuple(notes)
    # The registers' own sum differs from the reconstructed energy (an implausible step ignored, kWh
    # labelled Wh): keep the reconstructed total, shaped by the readings when they have a shape.
    target = Decimal(session.energy_wh)
    if measured_total > 0:
        scaled = tuple((t, e * target / delivered) for t, e in points)
        notes.append(f"readings add up to {measured_total} Wh; spread to the session's {session.energy_wh} Wh")
        return _Curve(scaled, session.energy_wh), source, tuple(notes)
    notes.append(f"no usable readings: {session.energy_wh} Wh spread evenly over the session")
    return _Curve(((start, Decimal(0)), (stop, target)), session.energy_wh), source, tuple(notes)


def _energy_lines(
    pricer: _Pricer, elements: Sequence[TariffElement], curve: _Curve, start: datetime, stop: datetime,
) -> list[Line]:
    runs = _runs(elements, Kind.ENERGY, start, stop, pricer.tz)
    lines: list[Line] = []
    quantities: list[int] = []
    for _element, a, b in runs:
        wh = curve.wh_at(b) - curve.wh_at(a) if b < stop else curve.total - curve.wh_at(a)
        quantities.append(wh)
    _round_up_last(runs, quantities, Kind.ENERGY)
    for (element, a, b), wh in zip(runs, quantities, strict=True):
        if wh == 0 and len(runs) > 1:
            continue
        component = element.component(Kind.ENERGY)
        assert component is not None
        interpolated = not (curve.measured_at(a) and curve.measured_at(b))
        kwh = Decimal(wh) / 1000
        lines.append(pricer.line(Kind.ENERGY, element.window(), a, b, kwh, component, kwh * component.price,
                                 interpolated=interpolated))
    return lines


def _time_lines(
    pricer: _Pricer, elements: Sequence[TariffElement], kind: Kind, begin: datetime, end: datetime,
) -> list[Line]:
    if end <= begin:
        return []
    runs: list[tuple[TariffElement, datetime, datetime]] = []
    for element, a, b in _runs(elements, kind, begin, end, pricer.tz, graces=True):
        component = element.component(kind)
        assert component is not None
        if kind == Kind.PARKING_TIME:  # idle minutes within the grace period are free
            a = max(a, begin + timedelta(minutes=component.grace_minutes))
        if b > a:
            runs.append((element, a, b))
    seconds = [int((b - a).total_seconds()) for _, a, b in runs]
    _round_up_last(runs, seconds, kind)
    lines: list[Line] = []
    spent: dict[int, Decimal] = {}  # PARKING_TIME caps: amount so far per element
    for (element, a, b), secs in zip(runs, seconds, strict=True):
        component = element.component(kind)
        assert component is not None
        quantity = (Decimal(secs) / _PER_UNIT[kind]).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
        raw = component.price * Decimal(secs) / _PER_UNIT[kind]
        note = ""
        if component.cap is not None:
            so_far = spent.get(id(element), Decimal(0))
            rounded = round_money(raw, pricer.currency)
            if so_far + rounded > component.cap:
                raw = max(component.cap - so_far, Decimal(0))
                note = f"capped at {component.cap} a session"
            spent[id(element)] = so_far + round_money(raw, pricer.currency)
        lines.append(pricer.line(kind, element.window(), a, b, quantity, component, raw, note=note))
    return lines


def _round_up_last(runs: Sequence[tuple[TariffElement, datetime, datetime]], quantities: list[int],
                   kind: Kind) -> None:
    """Round the session's total of ``kind`` up to the step size (of its last element); the last line gets it."""
    if not runs:
        return
    component = runs[-1][0].component(kind)
    assert component is not None
    step = max(component.step_size, 1)
    total = sum(quantities)
    rounded = -(-total // step) * step
    quantities[-1] += rounded - total


def _element_at(elements: Sequence[TariffElement], kind: Kind, local: datetime) -> TariffElement | None:
    return next((e for e in elements if e.component(kind) is not None and e.restrictions.holds_at(local)), None)


def _runs(
    elements: Sequence[TariffElement], kind: Kind, begin: datetime, end: datetime, tz: tzinfo,
    graces: bool = False,
) -> list[tuple[TariffElement, datetime, datetime]]:
    """[begin, end) cut where the element that prices ``kind`` changes: (element, from, to), in order."""
    cuts = {begin, end}
    cuts |= {t for t in _boundaries(elements, begin, end, tz) if begin < t < end}
    if graces:
        for element in elements:
            component = element.component(kind)
            if component is not None and component.grace_minutes:
                grace_end = begin + timedelta(minutes=component.grace_minutes)
                if begin < grace_end < end:
                    cuts.add(grace_end)
    ordered = sorted(cuts)
    runs: list[tuple[TariffElement, datetime, datetime]] = []
    for a, b in itertools.pairwise(ordered):
        found = _element_at(elements, kind, (a + (b - a) / 2).astimezone(tz))
        if found is None:
            continue
        element = found
        if runs and runs[-1][0] is element and runs[-1][2] == a:
            runs[-1] = (element, runs[-1][1], b)
        else:
            runs.append((element, a, b))
    return runs


def _boundaries(elements: Iterable[TariffElement], begin: datetime, end: datetime, tz: tzinfo) -> set[datetime]:
    """Every instant in [begin, end] at which some element's time, day or date restriction may change."""
    times = {time(0)}
    for element in elements:
        r = element.restrictions
        times |= {t for t in (r.start_time, r.end_time) if t is not None}
    found: set[datetime] = set()
    day = begin.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    while day <= last:
        for moment in times:
            for fold in (0, 1):  # a wall time that happens twice (DST ends) is a boundary both times
                found.add(datetime.combine(day, moment, tzinfo=tz).replace(fold=fold).astimezone(UTC))
        day += timedelta(days=1)
    return found


# --- months, proration, splits ---------------------------------------------------------------


def statement_month(stopped_at: datetime, tz: tzinfo) -> tuple[int, int]:
    """(year, month) of the statement a session belongs to: the local month in which it ended."""
    local = stopped_at.astimezone(tz)
    return local.year, local.month


def month_bounds(year: int, month: int, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of a local month as aware instants (UTC)."""
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def prorate_monthly_fee(fee: Decimal, *, days_of_access: int, year: int, month: int, currency: str) -> Decimal:
    """The monthly fee for ``days_of_access`` days of the month (half-up to the minor unit)."""
    days = calendar.monthrange(year, month)[1]
    if not 0 <= days_of_access <= days:
        raise ValueError(f"{days_of_access} days of access in a month of {days} days")
    return round_money(fee * days_of_access / days, currency)


def monthly_fee_line(
    fee: MonthlyFee, *, days_of_access: int, year: int, month: int, currency: str, tz: tzinfo,
    prices_include_tax: bool = False,
) -> Line:
    """The monthly service fee as a statement line: the fee x days of access / days in the month."""
    days = calendar.monthrange(year, month)[1]
    amount = prorate_monthly_fee(fee.price, days_of_access=days_of_access, year=year, month=month, currency=currency)
    start, end = month_bounds(year, month, tz)
    component = PriceComponent(Kind.MONTHLY_FEE, fee.price, fee.tax_rate)
    window = f"{days_of_access} of {days} days"
    return _Pricer(currency, tz, prices_include_tax).line(Kind.MONTHLY_FEE, window, start, end,
                                                          Decimal(days_of_access), component, amount)


def split_amount(amount: Decimal, weights: Sequence[int | Decimal], currency: str) -> list[Decimal]:
    """Split ``amount`` by ``weights`` so that the parts add up to it exactly.

    Each part is rounded down to the minor unit; what is left goes one minor unit at a time to the parts
    that lost the most to rounding (ties: the earlier part). $100.00 / 3 -> 33.34, 33.33, 33.33.
    """
    if not weights:
        raise ValueError("nothing to split between")
    unit = minor_unit(currency)
    amount = round_money(amount, currency)
    weight_total = sum((Decimal(w) for w in weights), Decimal(0))
    if weight_total <= 0 or any(Decimal(w) < 0 for w in weights):
        raise ValueError("weights must be non-negative and not all zero")
    exact = [amount * Decimal(w) / weight_total for w in weights]
    parts = [e.quantize(unit, rounding=ROUND_DOWN) for e in exact]
    left = int(((amount - sum(parts, Decimal(0))) / unit).to_integral_value())
    order = sorted(range(len(parts)), key=lambda i: (-(exact[i] - parts[i]), i))
    step = unit if left >= 0 else -unit
    for i in order[: abs(left)]:
        parts[i] += step
    return parts


def split_evenly(amount: Decimal, parts: int, currency: str) -> list[Decimal]:
    return split_amount(amount, [1] * parts, currency)


# --- the tariff as written (commissioning file, API, stored JSON) -------------------------------

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str


class TariffInvalid(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{_where(p.path)}: {p.message}" for p in problems))


def _where(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(tariff)"


_COMPONENT_KEYS = {"type", "price", "tax_rate", "step_size", "grace_minutes", "cap"}
_RESTRICTION_KEYS = {"start_time", "end_time", "start_date", "end_date", "day_of_week", "min_kwh", "max_kwh",
                     "min_duration", "max_duration"}
_ELEMENT_KEYS = {"label", "price_components", "restrictions"}
_DOCUMENT_KEYS = {"elements", "monthly_fee"}
MAX_ELEMENTS = 50


def parse_tariff(data: Any, *, currency: str, name: str = "") -> TariffVersion:
    """A tariff version's prices as written (``{elements: [...], monthly_fee: {...}}``), checked.

    Raises TariffInvalid listing every problem with its place (``elements[1].price_components[0].price``).
    Numbers must be exact: Decimal, int or a decimal string (a float is refused).
    """
    problems: list[Problem] = []
    if currency not in BILLING_CURRENCIES:
        problems.append(Problem((), f"currency {currency!r} is not supported (ISO 4217, e.g. USD, EUR, JPY)"))
        raise TariffInvalid(problems)
    if not isinstance(data, Mapping):
        raise TariffInvalid([Problem((), "must be a mapping with elements (and optionally monthly_fee)")])
    _unknown(data, _DOCUMENT_KEYS, (), problems)
    raw_elements = data.get("elements")
    elements: list[TariffElement] = []
    if not isinstance(raw_elements, list) or not raw_elements:
        problems.append(Problem(("elements",), "give at least one element with price_components"))
    elif len(raw_elements) > MAX_ELEMENTS:
        problems.append(Problem(("elements",), f"at most {MAX_ELEMENTS} elements"))
    else:
        for i, raw in enumerate(raw_elements):
            element = _parse_element(raw, ("elements", i), currency, problems)
            if element is not None:
                elements.append(element)
    fee = None
    if data.get("monthly_fee") is not None:
        fee = _parse_monthly_fee(data["monthly_fee"], ("monthly_fee",), currency, problems)
    if problems:
        raise TariffInvalid(problems)
    return TariffVersion(currency, tuple(elements), fee, name)


def _unknown(data: Mapping[Any, Any], known: set[str], path: Path, problems: list[Problem]) -> None:
    for key in data:
        if key not in known:
            problems.append(Problem((*path, str(key)), f"is not a known key (known: {', '.join(sorted(known))})"))


def _parse_element(raw: Any, path: Path, currency: str, problems: list[Problem]) -> TariffElement | None:
    if not isinstance(raw, Mapping):
        problems.append(Problem(path, "must be a mapping with price_components (and optionally restrictions)"))
        return None
    before = len(problems)
    _unknown(raw, _ELEMENT_KEYS, path, problems)
    label = raw.get("label", "")
    if not isinstance(label, str) or len(label) > 100:
        problems.append(Problem((*path, "label"), "must be text of at most 100 characters"))
        label = ""
    raw_components = raw.get("price_components")
    components: list[PriceComponent] = []
    if not isinstance(raw_components, list) or not raw_components:
        problems.append(Problem((*path, "price_components"), "give at least one price component"))
    else:
        kinds: set[Kind] = set()
        for j, rc in enumerate(raw_components):
            component = _parse_component(rc, (*path, "price_components", j), currency, problems)
            if component is None:
                continue
            if component.kind in kinds:
                problems.append(Problem((*path, "price_components", j, "type"),
                                        f"{component.kind.value} is priced twice in this element"))
            kinds.add(component.kind)
            components.append(component)
    restrictions = _parse_restrictions(raw.get("restrictions"), (*path, "restrictions"), problems)
    if len(problems) > before or restrictions is None:
        return None
    return TariffElement(tuple(components), restrictions, label)


def _parse_component(raw: Any, path: Path, currency: str, problems: list[Problem]) -> PriceComponent | None:
    if not isinstance(raw, Mapping):
        problems.append(Problem(path, "must be a mapping with type and price"))
        return None
    before = len(problems)
    _unknown(raw, _COMPONENT_KEYS, path, problems)
    kind_text = raw.get("type")
    kind: Kind | None = None
    if kind_text not in {k.value for k in COMPONENT_KINDS}:
        problems.append(Problem((*path, "type"), "must be one of ENERGY, TIME, PARKING_TIME, FLAT"))
    else:
        kind = Kind(kind_text)
    price = _money(raw.get("price"), (*path, "price"), problems, required=True)
    tax_rate = _decimal(raw.get("tax_rate", 0), (*path, "tax_rate"), problems)
    if tax_rate is not None and not 0 <= tax_rate < 1:
        problems.append(Problem((*path, "tax_rate"), "is a fraction from 0 to 1 (8 % is 0.08)"))
    step = _integer(raw.get("step_size", 1), (*path, "step_size"), problems, low=1, high=86_400)
    grace = _integer(raw.get("grace_minutes", 0), (*path, "grace_minutes"), problems, low=0, high=24 * 60)
    cap = _money(raw.get("cap"), (*path, "cap"), problems)
    if kind is not None and kind != Kind.PARKING_TIME:
        for key in ("grace_minutes", "cap"):
            if raw.get(key) is not None:
                problems.append(Problem((*path, key), "applies to PARKING_TIME (idle time) only"))
    if kind == Kind.FLAT and raw.get("step_size") is not None:
        problems.append(Problem((*path, "step_size"), "a FLAT fee has no step size"))
    if price is not None and _decimals(price) > money.currency_exponent(currency) + 4:
        problems.append(Problem((*path, "price"), f"has too many decimals for {currency}"))
    if len(problems) > before or kind is None or price is None:
        return None
    return PriceComponent(kind, price, tax_rate or Decimal(0), step or 1, grace or 0, cap)


def _parse_restrictions(raw: Any, path: Path, problems: list[Problem]) -> Restrictions | None:
    if raw is None:
        return Restrictions()
    if not isinstance(raw, Mapping):
        problems.append(Problem(path, "must be a mapping (start_time, end_time, day_of_week, ...)"))
        return None
    _unknown(raw, _RESTRICTION_KEYS, path, problems)
    start_time = _time(raw.get("start_time"), (*path, "start_time"), problems)
    end_time = _time(raw.get("end_time"), (*path, "end_time"), problems)
    if (raw.get("start_time") is None) != (raw.get("end_time") is None):
        problems.append(Problem(path, "give both start_time and end_time (an end before the start crosses midnight)"))
    start_date = _date(raw.get("start_date"), (*path, "start_date"), problems)
    end_date = _date(raw.get("end_date"), (*path, "end_date"), problems)
    if start_date and end_date and end_date <= start_date:
        problems.append(Problem((*path, "end_date"), "must be after start_date (the end date is excluded)"))
    days: frozenset[int] | None = None
    raw_days = raw.get("day_of_week")
    if raw_days is not None:
        if not isinstance(raw_days, list) or not raw_days:
            problems.append(Problem((*path, "day_of_week"), "must be a list of days, e.g. [MONDAY, TUESDAY]"))
        else:
            found: set[int] = set()
            for k, day in enumerate(raw_days):
                if not isinstance(day, str) or day.upper() not in WEEKDAYS:
                    problems.append(Problem((*path, "day_of_week", k), f"{day!r} is not a day (MONDAY ... SUNDAY)"))
                else:
                    found.add(WEEKDAYS.index(day.upper()))
            days = frozenset(found)
    min_kwh = _decimal(raw.get("min_kwh"), (*path, "min_kwh"), problems, non_negative=True)
    max_kwh = _decimal(raw.get("max_kwh"), (*path, "max_kwh"), problems, non_negative=True)
    min_duration = _integer(raw.get("min_duration"), (*path, "min_duration"), problems, low=0, high=10**7)
    max_duration = _integer(raw.get("max_duration"), (*path, "max_duration"), problems, low=1, high=10**7)
    if min_kwh is not None and max_kwh is not None and max_kwh <= min_kwh:
        problems.append(Problem((*path, "max_kwh"), "must be above min_kwh"))
    if min_duration is not None and max_duration is not None and max_duration <= min_duration:
        problems.append(Problem((*path, "max_duration"), "must be above min_duration"))
    return Restrictions(start_time, end_time, start_date, end_date, days, min_kwh, max_kwh, min_duration,
                        max_duration)


def _parse_monthly_fee(raw: Any, path: Path, currency: str, problems: list[Problem]) -> MonthlyFee | None:
    if not isinstance(raw, Mapping):
        problems.append(Problem(path, "must be a mapping {price, tax_rate}"))
        return None
    _unknown(raw, {"price", "tax_rate"}, path, problems)
    price = _money(raw.get("price"), (*path, "price"), problems, required=True)
    tax_rate = _decimal(raw.get("tax_rate", 0), (*path, "tax_rate"), problems)
    if tax_rate is not None and not 0 <= tax_rate < 1:
        problems.append(Problem((*path, "tax_rate"), "is a fraction from 0 to 1 (8 % is 0.08)"))
    if price is not None and _decimals(price) > money.currency_exponent(currency):
        problems.append(Problem((*path, "price"), f"has more decimals than {currency} has"))
    if price is None:
        return None
    return MonthlyFee(price, tax_rate or Decimal(0))


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _decimal(raw: Any, path: Path, problems: list[Problem], *, non_negative: bool = False) -> Decimal | None:
    if raw is None:
        return None
    if isinstance(raw, bool | float):
        problems.append(Problem(path, "write an exact decimal number (e.g. 0.32 in the file, \"0.32\" in JSON)"))
        return None
    try:
        value = Decimal(str(raw).strip()) if isinstance(raw, int | str | Decimal) else None
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        problems.append(Problem(path, f"{raw!r} is not a number"))
        return None
    if non_negative and value < 0:
        problems.append(Problem(path, "must not be negative"))
        return None
    return value


def _money(raw: Any, path: Path, problems: list[Problem], *, required: bool = False) -> Decimal | None:
    if raw is None:
        if required:
            problems.append(Problem(path, "is required"))
        return None
    value = _decimal(raw, path, problems)
    if value is not None and value < 0:
        problems.append(Problem(path, "must not be negative"))
        return None
    return value


def _integer(raw: Any, path: Path, problems: list[Problem], *, low: int, high: int) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | Decimal | str):
        problems.append(Problem(path, "must be a whole number"))
        return None
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        problems.append(Problem(path, f"{raw!r} is not a whole number"))
        return None
    if not value.is_finite() or value != value.to_integral_value():
        problems.append(Problem(path, f"{raw!r} is not a whole number"))
        return None
    if not low <= value <= high:
        problems.append(Problem(path, f"must be from {low} to {high}"))
        return None
    return int(value)


def _time(raw: Any, path: Path, problems: list[Problem]) -> time | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        problems.append(Problem(path, 'write the time in quotes, e.g. "22:00" (YAML reads 22:00 unquoted as a number)'))
        return None
    if isinstance(raw, str):
        try:
            value = time.fromisoformat(raw.strip())
        except ValueError:
            value = None
        if value is not None and value.tzinfo is None and len(raw.strip()) == 5:
            return value
    problems.append(Problem(path, f"{raw!r} is not a local time of day HH:MM (e.g. \"07:00\")"))
    return None


def _date(raw: Any, path: Path, problems: list[Problem]) -> date | None:
    if raw is None:
        return None
    if isinstance(raw, date) and not isinstance(raw, datetime):
        return raw
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw.strip())
        except ValueError:
            pass
    problems.append(Problem(path, f"{raw!r} is not a date YYYY-MM-DD"))
    return None


def tariff_document(tariff: TariffVersion) -> dict[str, Any]:
    """The tariff as JSON-safe data (numbers as strings) that ``parse_tariff`` reads back to the same tariff."""
    elements = []
    for element in tariff.elements:
        components = []
        for c in element.components:
            component: dict[str, Any] = {"type": c.kind.value, "price": str(c.price)}
            if c.tax_rate:
                component["tax_rate"] = str(c.tax_rate)
            if c.step_size != 1:
                component["step_size"] = c.step_size
            if c.grace_minutes:
                component["grace_minutes"] = c.grace_minutes
            if c.cap is not None:
                component["cap"] = str(c.cap)
            components.append(component)
        r = element.restrictions
        restrictions: dict[str, Any] = {}
        if r.start_time is not None:
            restrictions["start_time"] = f"{r.start_time:%H:%M}"
        if r.end_time is not None:
            restrictions["end_time"] = f"{r.end_time:%H:%M}"
        if r.start_date is not None:
            restrictions["start_date"] = r.start_date.isoformat()
        if r.end_date is not None:
            restrictions["end_date"] = r.end_date.isoformat()
        if r.days_of_week is not None:
            restrictions["day_of_week"] = [WEEKDAYS[d] for d in sorted(r.days_of_week)]
        for key, value in (("min_kwh", r.min_kwh), ("max_kwh", r.max_kwh)):
            if value is not None:
                restrictions[key] = str(value)
        for key, seconds in (("min_duration", r.min_duration_s), ("max_duration", r.max_duration_s)):
            if seconds is not None:
                restrictions[key] = seconds
        item: dict[str, Any] = {"price_components": components}
        if element.label:
            item["label"] = element.label
        if restrictions:
            item["restrictions"] = restrictions
        elements.append(item)
    document: dict[str, Any] = {"elements": elements}
    if tariff.monthly_fee is not None:
        document["monthly_fee"] = {"price": str(tariff.monthly_fee.price)}
        if tariff.monthly_fee.tax_rate:
            document["monthly_fee"]["tax_rate"] = str(tariff.monthly_fee.tax_rate)
    return document


# --- the result as stored --------------------------------------------------------------------


def lines_document(priced: PricedSession) -> list[dict[str, Any]]:
    """The lines as JSON-safe data (amounts as strings), with their explanations."""
    return [
        {
            "kind": line.kind.value, "window": line.window, "start": line.start.isoformat(),
            "end": line.end.isoformat(), "quantity": str(line.quantity), "unit": line.unit,
            "unit_price": str(line.unit_price), "amount": str(line.amount), "tax_rate": str(line.tax_rate),
            "tax": str(line.tax), "total": str(line.total), "interpolated": line.interpolated,
            "note": line.note, "explanation": line.explain(),
        }
        for line in priced.lines
    ]


# --- helpers ---------------------------------------------------------------------------------


def _utc(moment: datetime | None) -> datetime:
    if moment is None or moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    # Arithmetic on UTC instants: two local times of one zone subtract as wall clocks, ignoring DST.
    return moment.astimezone(UTC)


def _duration_text(seconds: int) -> str:
    if seconds % 3600 == 0 and seconds:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


__all__ = [
    "BILLING_CURRENCIES", "HELD", "PRICED", "Kind", "Line", "MonthlyFee", "PriceComponent", "PricedSession",
    "Problem", "Reading", "Restrictions", "SessionInput", "TariffElement", "TariffInvalid", "TariffVersion",
    "lines_document", "minor_unit", "month_bounds", "monthly_fee_line", "parse_tariff", "price_session",
    "prorate_monthly_fee", "quote", "round_money", "split_amount", "split_evenly", "statement_month", "tariff_document",
]
