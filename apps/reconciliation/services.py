"""Utility bills, their reconciliation with the chargers, true-ups and the chargers' cost (tenant schema).

The arithmetic is in compute.py (pure); this module reads the building's sessions and charges, stores
the figures and raises the losses alert. A true-up reaches a statement through the close's registry of
extra lines (apps/statements/sources.py): ``true_up_lines`` below, registered in apps.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from apps.alerts.models import Alert
from apps.alerts.services import alert_raise, alert_resolve
from apps.billing.models import SessionCharge
from apps.billing.pricing import minor_unit
from apps.charging.models import ChargingSession
from apps.charging.selectors import ev_draw_in_period
from apps.core.tenants import current_condominium
from apps.electrical import capacity
from apps.electrical.selectors import capacity_site, site_meter_quarters
from apps.reconciliation import compute
from apps.reconciliation.models import (
    ChargerInvestment,
    Reconciliation,
    ReconciliationSettings,
    TrueUp,
    UtilityBill,
)
from apps.statements.sources import ExtraLine

log = logging.getLogger(__name__)

# Tariff charges for energy: what a true-up compares with the resident's share (idle fees, PARKING_TIME,
# are not energy).
ENERGY_LINE_KINDS = {"ENERGY", "TIME", "FLAT"}


class ReconciliationRefused(ValueError):
    """Input or a state that does not allow the action; the message says what and where."""


def reconciliation_settings() -> ReconciliationSettings:
    return ReconciliationSettings.objects.first() or ReconciliationSettings()


def rules() -> compute.Rules:
    row = reconciliation_settings()
    return compute.Rules(demand_rule=compute.DemandRule(row.demand_rule), include_fixed=row.include_fixed,
                         loss_alert_percent=row.loss_alert_percent, true_up_minimum=row.true_up_minimum)


def _money(name: str, value: Decimal, currency: str, *, allow_negative: bool = False) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ReconciliationRefused(f"{name}: {value!r} is not an amount")
    if value < 0 and not allow_negative:
        raise ReconciliationRefused(f"{name}: {value} is negative")
    if value != value.quantize(minor_unit(currency)):
        raise ReconciliationRefused(f"{name}: {value} has more decimals than {currency} allows")
    return value


def kwh_to_wh(name: str, kwh: Decimal) -> int:
    """A bill's kWh (at most three decimals) as exact Wh."""
    if not isinstance(kwh, Decimal) or not kwh.is_finite() or kwh < 0:
        raise ReconciliationRefused(f"{name}: {kwh!r} is not a number of kWh")
    wh = kwh * 1000
    if wh != wh.to_integral_value():
        raise ReconciliationRefused(f"{name}: {kwh} kWh has more than three decimals (Wh is the finest)")
    return int(wh)


@transaction.atomic
def utility_bill_enter(*, period_start: date, period_end: date, kwh: Decimal, energy_charges: Decimal,
                       demand_charges: Decimal = Decimal(0), fixed_charges: Decimal = Decimal(0),
                       taxes: Decimal = Decimal(0), ev_kwh: Decimal | None = None, entered_by=None,
                       note: str = "", now: datetime | None = None) -> UtilityBill:
    condo = current_condominium()
    currency = condo.currency
    if period_end < period_start:
        raise ReconciliationRefused(f"the period ends ({period_end}) before it starts ({period_start})")
    if (period_end - period_start).days > 92:
        raise ReconciliationRefused(f"the period {period_start}..{period_end} is longer than a quarter: "
                                    "enter one bill per billing cycle")
    energy_wh = kwh_to_wh("kwh", kwh)
    if energy_wh <= 0:
        raise ReconciliationRefused("kwh: the bill's consumption must be more than 0")
    ev_wh = None if ev_kwh is None else kwh_to_wh("ev_kwh", ev_kwh)
    if ev_wh is not None and ev_wh > energy_wh:
        raise ReconciliationRefused(f"ev_kwh: {ev_kwh} kWh on the EV sub-meter is more than the bill's {kwh} kWh")
    overlap = UtilityBill.objects.filter(period_start__lte=period_end, period_end__gte=period_start).first()
    if overlap is not None:
        raise ReconciliationRefused(f"the period {period_start}..{period_end} overlaps bill {overlap.pk} "
                                    f"({overlap.period_start}..{overlap.period_end}): a kWh is billed once")
    return UtilityBill.objects.create(
        period_start=period_start, period_end=period_end, energy_wh=energy_wh,
        energy_charges=_money("energy", energy_charges, currency),
        demand_charges=_money("demand", demand_charges, currency),
        fixed_charges=_money("fixed", fixed_charges, currency), taxes=_money("taxes", taxes, currency),
        currency=currency, ev_submeter_wh=ev_wh, entered_by=entered_by, entered_at=now or timezone.now(),
        note=note,
    )


def bill_bounds(bill: UtilityBill, zone_name: str) -> tuple[datetime, datetime]:
    """The bill's days as instants: local midnight of the first day to local midnight after the last."""
    zone = ZoneInfo(zone_name)
    start = datetime.combine(bill.period_start, datetime.min.time(), zone)
    end = datetime.combine(bill.period_end + timedelta(days=1), datetime.min.time(), zone)
    return start, end


def usage_in(start: datetime, end: datetime) -> list[compute.Usage]:
    """Each session that stopped in [start, end): its metered Wh and the tariff charges for its energy."""
    rows = (ChargingSession.objects.filter(stopped_at__gte=start, stopped_at__lt=end)
            .select_related("charge").order_by("pk"))
    out = []
    for session in rows:
        charge = getattr(session, "charge", None)
        paid = Decimal(0)
        energy = session.energy_wh or 0
        if charge is not None:
            energy = charge.energy_wh
            if charge.status == SessionCharge.Status.PRICED:
                paid = sum((Decimal(line["total"]) - Decimal(line["tax"]) for line in charge.lines
                            if str(line["kind"]).upper() in ENERGY_LINE_KINDS), Decimal(0))
        out.append(compute.Usage(session.resident_id, max(energy, 0), paid))
    return out


def peak_in(start: datetime, end: datetime) -> compute.PeakDemand | None:
    """The building's highest quarter-hour mean load and the chargers' draw in it (site meter)."""
    quarters = site_meter_quarters(start=start, end=end)
    if not quarters:
        return None
    site = capacity_site()
    voltage = site.voltage_v if site else 230
    top = max(quarters, key=lambda q: (sum(q.mean_a), q.start))
    ev = capacity.ev_draw_per_quarter(ev_draw_in_period(start=top.start, end=top.start + timedelta(minutes=15)),
                                      voltage_v=voltage, supply_phases=len(top.mean_a))
    ev_a = sum(ev.get(top.start, ()), Decimal(0))
    return compute.PeakDemand(int(sum(top.mean_a) * voltage), int(ev_a * voltage))


def report_for(bill: UtilityBill) -> compute.Report:
    condo = current_condominium()
    start, end = bill_bounds(bill, condo.timezone)
    chosen = rules()
    peak = peak_in(start, end) if chosen.demand_rule is compute.DemandRule.PEAK else None
    return compute.reconcile(
        compute.Bill(bill.energy_wh, bill.energy_charges, bill.demand_charges, bill.fixed_charges, bill.taxes,
                     bill.currency, bill.ev_submeter_wh),
        usage_in(start, end), chosen, peak,
    )


def snapshot_of(report: compute.Report) -> dict:
    def plain(value):
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    data = plain(asdict(report))
    data["ev_share"]["total"] = str(report.ev_share.total)
    data["true_up_total"] = str(report.true_up_total)
    return data


@transaction.atomic
def reconciliation_compute(*, bill_id: int, now: datetime | None = None) -> Reconciliation:
    """Compute (or compute again, while a draft) the bill's reconciliation; raise or clear the losses alert."""
    bill = UtilityBill.objects.select_for_update().filter(pk=bill_id).first()
    if bill is None:
        raise ReconciliationRefused(f"bill {bill_id}: no such utility bill in this building")
    existing = Reconciliation.objects.filter(bill=bill).first()
    if existing is not None and existing.status == Reconciliation.Status.APPROVED:
        return existing  # approved figures never change
    report = report_for(bill)
    fields = {
        "sessions_wh": report.sessions_wh, "ev_wh": report.ev_wh, "losses_percent": report.losses_percent,
        "ev_cost": report.ev_share.total, "revenue": report.revenue, "shortfall": report.shortfall,
        "snapshot": snapshot_of(report), "computed_at": now or timezone.now(),
    }
    reconciliation, _ = Reconciliation.objects.update_or_create(bill=bill, defaults=fields)
    subject = f"bill-{bill.pk}"
    if report.loss_alert:
        alert_raise(
            kind=Alert.Kind.EV_LOSSES, charge_point_id=subject,
            message=(f"EV losses {report.losses_percent} % on the bill {bill.period_start}..{bill.period_end} "
                     f"(above {rules().loss_alert_percent} %): sub-meter {report.ev_wh} Wh, "
                     f"sessions {report.sessions_wh} Wh"),
            details={"bill_id": bill.pk, "losses_percent": str(report.losses_percent),
                     "losses_wh": report.losses_wh},
        )
    else:
        alert_resolve(kind=Alert.Kind.EV_LOSSES, charge_point_id=subject)
    return reconciliation


@transaction.atomic
def reconciliation_approve(*, reconciliation_id: int, approved_by=None,
                           now: datetime | None = None) -> Reconciliation:
    """Approve the figures as computed; with true-ups on, each resident's goes on their next statement. Once."""
    reconciliation = Reconciliation.objects.select_for_update().filter(pk=reconciliation_id).first()
    if reconciliation is None:
        raise ReconciliationRefused(f"reconciliation {reconciliation_id}: not found in this building")
    if reconciliation.status == Reconciliation.Status.APPROVED:
        return reconciliation
    now = now or timezone.now()
    reconciliation.status = Reconciliation.Status.APPROVED
    reconciliation.approved_at = now
    reconciliation.approved_by = approved_by
    reconciliation.save(update_fields=["status", "approved_at", "approved_by"])
    if reconciliation_settings().true_ups:
        bill = reconciliation.bill
        reason = f"True-up, utility bill {bill.period_start:%Y-%m-%d} to {bill.period_end:%Y-%m-%d}"
        TrueUp.objects.bulk_create(
            TrueUp(reconciliation=reconciliation, resident_id=share["resident_id"],
                   amount=Decimal(share["true_up"]), reason=reason)
            for share in reconciliation.snapshot["shares"]
            if share["resident_id"] is not None and Decimal(share["true_up"]) != 0
        )
    return reconciliation


def true_up_lines(month: date, resident_ids: frozenset[int]) -> Mapping[int, Iterable[ExtraLine]]:
    """The close's provider: every true-up not on a statement yet, locked until the close commits."""
    pending = TrueUp.objects.select_for_update().filter(line__isnull=True).order_by("pk")
    out: dict[int, list[ExtraLine]] = {}
    for true_up in pending:
        out.setdefault(true_up.resident_id, []).append(ExtraLine(
            kind="true_up", description=true_up.reason, amount=true_up.amount,
            window=f"{'owed' if true_up.amount > 0 else 'credit'}", billed=_billed(true_up.pk),
        ))
    return out


def _billed(true_up_id: int):
    def billed(line_id: int, statement_id: int) -> None:
        updated = TrueUp.objects.filter(pk=true_up_id, line__isnull=True).update(
            line_id=line_id, statement_id=statement_id, applied_at=timezone.now())
        if updated != 1:  # the row was locked by the provider: this cannot happen without a bug
            raise RuntimeError(f"true-up {true_up_id} was already on a statement")

    return billed


def investment_add(*, description: str, amount: Decimal, on: date, entered_by=None) -> ChargerInvestment:
    condo = current_condominium()
    description = (description or "").strip()
    if not description:
        raise ReconciliationRefused("description: say what was bought (e.g. '4 chargers and wiring')")
    if len(description) > 200:
        raise ReconciliationRefused("description: at most 200 characters")
    _money("amount", amount, condo.currency, allow_negative=True)
    if amount == 0:
        raise ReconciliationRefused("amount: 0 records nothing")
    return ChargerInvestment.objects.create(description=description, amount=amount, date=on, entered_by=entered_by)


__all__ = [
    "ReconciliationRefused", "bill_bounds", "investment_add", "kwh_to_wh",
    "reconciliation_approve", "reconciliation_compute", "report_for", "rules", "true_up_lines", "usage_in",
    "utility_bill_enter",
]
