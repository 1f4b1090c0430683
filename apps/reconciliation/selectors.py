"""Reads for the board's pages and the commands: investment recovery and a resident's year."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Sum

from apps.billing.models import SessionCharge
from apps.buildings.models import Resident
from apps.core.tenants import current_condominium
from apps.payments.models import Payment
from apps.reconciliation import compute
from apps.reconciliation.models import ChargerInvestment, Reconciliation, TrueUp
from apps.statements import periods
from apps.statements.models import Statement, StatementLine

RECOVERY_WINDOW_MONTHS = 6


def recovery_months() -> list[compute.MonthResult]:
    """Per month: the service fees billed (net, statements of that month) and the tariff margin of the
    utility bills that ended in it: tariff revenue for the EV energy + true-ups billed for it - its cost."""
    fees: dict[date, Decimal] = defaultdict(Decimal)
    for month, amount in (StatementLine.objects
                          .filter(kind=StatementLine.Kind.SERVICE_FEE, statement__kind=Statement.Kind.STATEMENT,
                                  statement__period__isnull=False)
                          .exclude(statement__status__in=[Statement.Status.VOID, Statement.Status.DRAFT])
                          .values_list("statement__period__month").annotate(total=Sum("amount"))):
        fees[month] += amount
    margins: dict[date, Decimal] = defaultdict(Decimal)
    true_ups = dict(TrueUp.objects.values_list("reconciliation_id").annotate(total=Sum("amount")))
    for reconciliation in Reconciliation.objects.select_related("bill"):
        month = reconciliation.bill.period_end.replace(day=1)
        margins[month] += reconciliation.revenue + true_ups.get(reconciliation.pk, Decimal(0)) - reconciliation.ev_cost
    return [compute.MonthResult(month, fees.get(month, Decimal(0)), margins.get(month, Decimal(0)))
            for month in sorted(set(fees) | set(margins))]


def investment_recovery(*, window: int = RECOVERY_WINDOW_MONTHS) -> compute.Recovery:
    condo = current_condominium()
    invested = ChargerInvestment.objects.aggregate(total=Sum("amount"))["total"] or Decimal(0)
    return compute.investment_recovery(invested, recovery_months(), condo.currency, window=window)


@dataclass
class MonthSummary:
    month: date
    sessions: int = 0
    energy_wh: int = 0
    charged: Decimal = Decimal(0)  # sessions' prices, tax included
    service_fees: Decimal = Decimal(0)
    true_ups: Decimal = Decimal(0)
    statements_total: Decimal = Decimal(0)
    paid: Decimal = Decimal(0)

    @property
    def kwh(self) -> Decimal:
        return Decimal(self.energy_wh) / 1000


@dataclass
class YearSummary:
    resident: Resident
    year: int
    currency: str
    months: list[MonthSummary]
    statements: list[Statement] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)

    def total(self, name: str):
        return sum((getattr(m, name) for m in self.months), type(getattr(self.months[0], name))(0))


def yearly_summary(*, resident_id: int, year: int) -> YearSummary:
    """A resident's year by month (the building's months): sessions, kWh, amounts, fees, statements,
    payments. Sessions count in the month they ended in (their statement's month)."""
    condo = current_condominium()
    resident = Resident.objects.select_related("user", "unit").get(pk=resident_id)
    months = {date(year, m, 1): MonthSummary(date(year, m, 1)) for m in range(1, 13)}
    charges = SessionCharge.objects.filter(session__resident_id=resident_id, period__year=year,
                                           status=SessionCharge.Status.PRICED)
    for charge in charges.only("period", "energy_wh", "total"):
        row = months[charge.period]
        row.sessions += 1
        row.energy_wh += charge.energy_wh
        row.charged += charge.total
    statements = list(Statement.objects.filter(resident_id=resident_id, kind=Statement.Kind.STATEMENT,
                                               period__month__year=year)
                      .exclude(status=Statement.Status.DRAFT).select_related("period").order_by("period__month"))
    for statement in statements:
        months[statement.period.month].statements_total += statement.total
    for month, kind, amount in (StatementLine.objects
                                .filter(statement__in=statements,
                                        kind__in=[StatementLine.Kind.SERVICE_FEE, StatementLine.Kind.TRUE_UP])
                                .values_list("statement__period__month", "kind").annotate(total=Sum("amount"))):
        if kind == StatementLine.Kind.SERVICE_FEE:
            months[month].service_fees += amount
        else:
            months[month].true_ups += amount
    start = periods.month_in(date(year, 1, 1), condo.timezone).starts_at
    end = periods.month_in(date(year, 12, 1), condo.timezone).ends_at
    payments = list(Payment.objects.filter(resident_id=resident_id, status=Payment.Status.SUCCEEDED,
                                           succeeded_at__gte=start, succeeded_at__lt=end).order_by("succeeded_at"))
    for payment in payments:
        months[periods.month_of(payment.succeeded_at, condo.timezone)].paid += payment.amount - payment.amount_refunded
    return YearSummary(resident, year, condo.currency, list(months.values()), statements, payments)


def moment_month(moment: datetime, zone: str) -> date:
    return periods.month_of(moment, zone)
