"""The building's utility bill against what the chargers metered and the residents paid.

Pure: no Django, no I/O, no clock. Money is Decimal, energy integer Wh; floats never touch either.

The rules (docs/reconciliation.md has a worked example):

- EV kWh is the EV sub-meter's reading when one is entered with the bill, otherwise the sum of the
  sessions' metered energy. The HOA pays for what the sub-meter saw, losses included, so that is what
  the residents' shares cover.
- Losses = (sub-meter kWh - sessions' kWh) / sub-meter kWh, only when a sub-meter value is entered.
- The EV share of the bill, by component, each rounded half-up to the minor unit:
  energy = energy charges x EV kWh / bill kWh (the bill's average energy rate times the EV kWh);
  demand = demand charges x EV kWh / bill kWh (rule ``energy``, the default) or x the EV load at the
  building's peak quarter hour / the building's peak (rule ``peak``; without peak figures it falls back
  to ``energy`` and says so); fixed = fixed charges x EV kWh / bill kWh when the building includes them,
  else nothing; taxes = taxes x the EV share before tax / the bill before tax.
- Each resident's share of the EV cost is split by their metered kWh with ``split_amount``: parts add up
  to the total exactly, the remainder going one cent at a time to the largest rounding losses (ties:
  the lower resident id, whatever order the inputs came in). Energy nobody is known for (visitors,
  unknown cards) takes its own share; the HOA keeps that one.
- True-up per resident = share - what they paid in tariff charges for that energy (net of tax):
  positive, they owe more; negative, a credit. One smaller in size than the building's minimum is
  waived (reported, not billed).

Doubtful input is returned as reasons, never guessed past: a bill without kWh, EV kWh above the
building's, a sub-meter below the chargers' own total.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from enum import StrEnum

from apps.billing.pricing import minor_unit, round_money, split_amount

HUNDRED = Decimal(100)
PERCENT = Decimal("0.01")


class DemandRule(StrEnum):
    ENERGY = "energy"  # demand charges shared like the energy: by kWh
    PEAK = "peak"  # by the EV load at the building's peak quarter hour


class RecoveryStatus(StrEnum):
    NO_INVESTMENT = "no_investment"
    RECOVERED = "recovered"
    RECOVERING = "recovering"
    NOT_RECOVERING = "not_recovering"  # the recent average is zero or negative: no payback in sight
    NO_HISTORY = "no_history"


@dataclass(frozen=True)
class Bill:
    energy_wh: int  # the whole building's consumption on the bill
    energy_charges: Decimal
    demand_charges: Decimal
    fixed_charges: Decimal
    taxes: Decimal
    currency: str
    ev_submeter_wh: int | None = None


@dataclass(frozen=True)
class Usage:
    """What one resident (``resident_id`` None: nobody known, e.g. visitors) charged and paid in the period."""

    resident_id: int | None
    energy_wh: int
    paid: Decimal  # tariff charges for the energy, net of tax


@dataclass(frozen=True)
class PeakDemand:
    building_peak_w: int  # the building's highest 15-minute load in the period
    ev_at_peak_w: int  # what the chargers drew in that quarter hour


@dataclass(frozen=True)
class Rules:
    demand_rule: DemandRule = DemandRule.ENERGY
    include_fixed: bool = False
    loss_alert_percent: Decimal = Decimal(8)
    true_up_minimum: Decimal = Decimal("1.00")


@dataclass(frozen=True)
class Share:
    resident_id: int | None
    energy_wh: int
    share: Decimal  # of the EV cost
    paid: Decimal
    true_up: Decimal  # 0 for nobody's energy and when waived
    waived: bool = False  # a true-up smaller than the minimum


@dataclass(frozen=True)
class Components:
    energy: Decimal
    demand: Decimal
    fixed: Decimal
    taxes: Decimal

    @property
    def total(self) -> Decimal:
        return self.energy + self.demand + self.fixed + self.taxes


@dataclass(frozen=True)
class Report:
    currency: str
    bill_total: Decimal
    sessions_wh: int
    ev_wh: int  # the basis of the EV share: the sub-meter when entered, else the sessions
    losses_wh: int | None
    losses_percent: Decimal | None
    loss_alert: bool
    average_rate_kwh: Decimal  # the bill's energy charges per kWh, 5 decimals, for display
    demand_rule: DemandRule
    ev_share: Components
    revenue: Decimal
    shortfall: Decimal  # EV cost - revenue: positive, the HOA is out of pocket
    shares: tuple[Share, ...]
    reasons: tuple[str, ...] = ()

    @property
    def true_up_total(self) -> Decimal:
        return sum((s.true_up for s in self.shares), Decimal(0))


def reconcile(bill: Bill, usage: Sequence[Usage], rules: Rules, peak: PeakDemand | None = None) -> Report:
    currency = bill.currency
    reasons: list[str] = []
    merged = _merge(usage)
    sessions_wh = sum(u.energy_wh for u in merged)
    revenue = sum((u.paid for u in merged), Decimal(0))
    bill_total = bill.energy_charges + bill.demand_charges + bill.fixed_charges + bill.taxes

    losses_wh: int | None = None
    losses_percent: Decimal | None = None
    ev_wh = sessions_wh
    if bill.ev_submeter_wh is not None:
        ev_wh = bill.ev_submeter_wh
        losses_wh = bill.ev_submeter_wh - sessions_wh
        if bill.ev_submeter_wh > 0:
            losses_percent = (Decimal(losses_wh) * HUNDRED / bill.ev_submeter_wh).quantize(PERCENT, ROUND_HALF_UP)
        if losses_wh < 0:
            reasons.append(
                f"the EV sub-meter ({_kwh(bill.ev_submeter_wh)} kWh) reads less than the chargers' sessions "
                f"({_kwh(sessions_wh)} kWh): check the reading or the period"
            )
    loss_alert = losses_percent is not None and losses_percent > rules.loss_alert_percent

    if bill.energy_wh <= 0:
        reasons.append("the bill has no kWh: nothing can be shared")
        zero = Components(Decimal(0), Decimal(0), Decimal(0), Decimal(0))
        return Report(currency, bill_total, sessions_wh, ev_wh, losses_wh, losses_percent, loss_alert,
                      Decimal(0), rules.demand_rule, zero, revenue, -revenue,
                      tuple(Share(u.resident_id, u.energy_wh, Decimal(0), u.paid, Decimal(0)) for u in merged),
                      tuple(reasons))
    if ev_wh > bill.energy_wh:
        reasons.append(f"EV kWh ({_kwh(ev_wh)}) exceed the building's bill ({_kwh(bill.energy_wh)} kWh)")

    fraction = Decimal(ev_wh) / Decimal(bill.energy_wh)
    demand_fraction = fraction
    demand_rule = rules.demand_rule
    if demand_rule is DemandRule.PEAK:
        if peak is None or peak.building_peak_w <= 0:
            reasons.append("no peak-demand figures for the period: demand charges shared by kWh instead")
            demand_rule = DemandRule.ENERGY
        else:
            demand_fraction = Decimal(min(max(peak.ev_at_peak_w, 0), peak.building_peak_w)) / peak.building_peak_w
    energy = bill.energy_charges * fraction
    demand = bill.demand_charges * demand_fraction
    fixed = bill.fixed_charges * fraction if rules.include_fixed else Decimal(0)
    pretax = bill.energy_charges + bill.demand_charges + bill.fixed_charges
    taxes = bill.taxes * (energy + demand + fixed) / pretax if pretax > 0 else Decimal(0)
    ev_share = Components(*(round_money(x, currency) for x in (energy, demand, fixed, taxes)))
    cost = ev_share.total
    average_rate = (bill.energy_charges * 1000 / bill.energy_wh).quantize(Decimal("0.00001"), ROUND_HALF_UP)

    shares = _shares(cost, merged, ev_wh, sessions_wh, rules, currency, reasons)
    return Report(currency, bill_total, sessions_wh, ev_wh, losses_wh, losses_percent, loss_alert, average_rate,
                  demand_rule, ev_share, revenue, cost - revenue, shares, tuple(reasons))


def _merge(usage: Sequence[Usage]) -> list[Usage]:
    """One row per resident (None: nobody known), in resident order: the same answer in any input order."""
    energy: dict[int | None, int] = {}
    paid: dict[int | None, Decimal] = {}
    for u in usage:
        if u.energy_wh < 0:
            raise ValueError(f"resident {u.resident_id}: negative energy {u.energy_wh} Wh")
        energy[u.resident_id] = energy.get(u.resident_id, 0) + u.energy_wh
        paid[u.resident_id] = paid.get(u.resident_id, Decimal(0)) + u.paid
    keys = sorted(energy, key=lambda k: (k is None, k or 0))
    return [Usage(k, energy[k], paid[k]) for k in keys]


def _shares(cost: Decimal, merged: list[Usage], ev_wh: int, sessions_wh: int, rules: Rules, currency: str,
            reasons: list[str]) -> tuple[Share, ...]:
    if not merged:
        return ()
    if sessions_wh <= 0:
        if cost > 0:
            reasons.append("the chargers metered nothing in the period: the EV cost is nobody's to share")
        return tuple(Share(u.resident_id, u.energy_wh, Decimal(0), u.paid, Decimal(0)) for u in merged)
    parts = split_amount(cost, [u.energy_wh for u in merged], currency)
    out = []
    for u, part in zip(merged, parts, strict=True):
        if u.resident_id is None:
            out.append(Share(None, u.energy_wh, part, u.paid, Decimal(0)))
            continue
        due = part - u.paid
        waived = due != 0 and abs(due) < rules.true_up_minimum
        out.append(Share(u.resident_id, u.energy_wh, part, u.paid, Decimal(0) if waived else due, waived))
    return tuple(out)


def _kwh(wh: int) -> str:
    return f"{Decimal(wh) / 1000:,.3f}"


def split_cost(amount: Decimal, weights: Sequence[int], currency: str) -> list[Decimal]:
    """``split_amount`` for the pages and tests: $100.00 / 3 -> 33.34, 33.33, 33.33."""
    return split_amount(amount, weights, currency)


# --- equipment investment recovery ------------------------------------------------------------------


@dataclass(frozen=True)
class MonthResult:
    month: date  # first day
    service_fees: Decimal
    margin: Decimal  # tariff revenue - what that energy cost the HOA

    @property
    def recovered(self) -> Decimal:
        return self.service_fees + self.margin


@dataclass(frozen=True)
class Recovery:
    invested: Decimal
    recovered: Decimal
    remaining: Decimal
    average_monthly: Decimal | None  # over the last ``window`` months with figures
    status: RecoveryStatus
    payback_month: date | None  # the month the investment is (or is projected to be) recovered in
    months: tuple[tuple[date, Decimal, Decimal], ...] = field(default=())  # month, that month, cumulative


def investment_recovery(invested: Decimal, months: Sequence[MonthResult], currency: str, *,
                        window: int = 6) -> Recovery:
    """Service fees plus tariff margin, month by month, against what the chargers cost.

    The projection is linear on the average of the last ``window`` months: remaining / average months
    after the last one, rounded up. An average of zero or less never pays back: ``not_recovering``.
    """
    if window < 1:
        raise ValueError("window must be at least one month")
    ordered = sorted(months, key=lambda m: m.month)
    if len({m.month for m in ordered}) != len(ordered):
        raise ValueError("a month appears twice")
    running = Decimal(0)
    cumulative: list[tuple[date, Decimal, Decimal]] = []
    crossed: date | None = None
    for m in ordered:
        running += m.recovered
        cumulative.append((m.month, m.recovered, running))
        if crossed is None and invested > 0 and running >= invested:
            crossed = m.month
    remaining = max(invested - running, Decimal(0))
    recent = ordered[-window:]
    average = (round_money(sum((m.recovered for m in recent), Decimal(0)) / len(recent), currency)
               if recent else None)
    if invested <= 0:
        status, payback = RecoveryStatus.NO_INVESTMENT, None
    elif remaining <= 0:
        status, payback = RecoveryStatus.RECOVERED, crossed
    elif average is None:
        status, payback = RecoveryStatus.NO_HISTORY, None
    elif average <= 0:
        status, payback = RecoveryStatus.NOT_RECOVERING, None
    else:
        needed = int((remaining / average).to_integral_value(ROUND_CEILING))
        status, payback = RecoveryStatus.RECOVERING, add_months(ordered[-1].month, needed)
    return Recovery(round_money(invested, currency), round_money(running, currency),
                    round_money(remaining, currency), average, status, payback,
                    tuple((m, round_money(a, currency), round_money(c, currency)) for m, a, c in cumulative))


def add_months(first_day: date, months: int) -> date:
    index = first_day.year * 12 + first_day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(first_day.day, calendar.monthrange(year, month + 1)[1]))


__all__ = [
    "Bill", "Components", "DemandRule", "MonthResult", "PeakDemand", "Recovery", "RecoveryStatus", "Report",
    "Rules", "Share", "Usage", "add_months", "investment_recovery", "minor_unit", "reconcile", "split_cost",
]
