"""What an audit export reads of one building-month (call inside the building's schema).

The month is the building's local month (apps.statements.periods). Sessions belong to the month they
ended in, as statements bill them; the statements are those of the month's BillingPeriod, plus the credit
notes issued in the month; payments, refunds and disputes are those made in the month (a payment also when
it succeeded in the month). Each reader is one query however many rows it yields, read in chunks
(``iterator``), so a large building never sits in memory; the summaries are aggregates in SQL.

Rows are dicts keyed by the export's column names (apps/audit/formats.py), values as stored: datetimes,
dates, Decimal, integer Wh. The writers format them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import CharField, Count, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Cast, Concat

from apps.billing.models import SessionCharge
from apps.charging.models import ChargingSession
from apps.payments.models import Dispute, Payment, Refund
from apps.statements import periods
from apps.statements.models import BillingPeriod, PaymentAllocation, Statement, StatementLine

CHUNK = 2000
UNPAID = (Statement.Status.OPEN, Statement.Status.PAST_DUE)


@dataclass(frozen=True)
class AuditMonth:
    """One building-month: its bounds in UTC and whether its statements are final."""

    slug: str
    name: str
    timezone: str
    currency: str
    month: periods.Month
    period_id: int | None
    closed: bool
    closed_at: datetime | None

    @property
    def label(self) -> str:
        return self.month.label


def audit_month(*, slug: str, name: str, timezone: str, currency: str, first_day: date) -> AuditMonth:
    bounds = periods.month_in(first_day, timezone)
    period = BillingPeriod.objects.filter(month=bounds.first_day).first()
    closed = period is not None and period.status == BillingPeriod.Status.CLOSED
    return AuditMonth(slug, name, timezone, currency, bounds, period.pk if period else None, closed,
                      period.closed_at if period else None)


def _statement_number_of(reference: str) -> Subquery:
    """The number of the statement a payment's reference (``statement:<id>``) names, in the same query."""
    return Subquery(
        Statement.objects.annotate(ref=Concat(Value("statement:"), Cast("pk", CharField())))
        .filter(ref=OuterRef(reference)).values("number")[:1]
    )


def session_rows(month: AuditMonth) -> Iterator[dict]:
    """Sessions that ended in the month, in the order they ended, with what they cost and where billed."""
    rows = (
        ChargingSession.objects.filter(stopped_at__gte=month.month.starts_at, stopped_at__lt=month.month.ends_at)
        .order_by("stopped_at", "pk")
        .values(
            session_id=F("pk"), charge_point_id_=F("charge_point__charge_point_id"),
            connector_id_=F("connector_number"), id_tag_=F("id_tag"), resident_email=F("resident__user__email"),
            started_at_=F("started_at"), stopped_at_=F("stopped_at"), meter_start_wh_=F("meter_start_wh"),
            meter_stop_wh_=F("meter_stop_wh"), energy_wh_=F("energy_wh"),
            tariff_code=F("charge__tariff_version__tariff__code"), tariff_number=F("charge__tariff_version__number"),
            amount=F("charge__total"), currency=F("charge__currency"), status=F("charge__status"),
            hold_reason=F("charge__hold_reason"), statement_number=F("charge__billed__statement__number"),
            charge_period=F("charge__period"), subtotal=F("charge__subtotal"), tax=F("charge__tax"),
            transaction_id_=F("transaction_id"), unit=F("resident__unit__number"), lines=F("charge__lines"),
            charge_energy_wh=F("charge__energy_wh"), billed_period=F("charge__billed__statement__period__month"),
        )
    )
    for row in rows.iterator(chunk_size=CHUNK):
        code, number = row.pop("tariff_code"), row.pop("tariff_number")
        row["tariff_version"] = f"{code} v{number}" if code else ""
        for key in [k for k in row if k.endswith("_")]:
            row[key[:-1]] = row.pop(key)
        row["status"] = row["status"] or "not priced"
        if row["status"] != "priced":  # a held session has no price until a person reviews it
            row["amount"] = row["subtotal"] = row["tax"] = None
        # Billed on a later month's statement, as a prior-period line (it was priced after its month closed).
        row["prior_period"] = row["billed_period"] is not None and row["billed_period"] > month.month.first_day
        row["lines"] = row["lines"] or []
        yield row


def statement_rows(month: AuditMonth) -> Iterator[dict]:
    """The month's statements (by number) and the credit notes issued in the month."""
    statements = Statement.objects.exclude(status=Statement.Status.DRAFT).filter(
        Q(kind=Statement.Kind.STATEMENT, period__month=month.month.first_day)
        | Q(kind=Statement.Kind.CREDIT_NOTE, issued_on__gte=month.month.first_day,
            issued_on__lt=periods.next_month(month.month.first_day))
    )
    rows = statements.order_by("kind", "sequence").values(
        "number", "status", "subtotal", "tax", "total", "currency", "kind", "issued_on", "due_on", "amount_paid",
        "amount_credited", "finalized_at", "paid_at", resident_email=F("resident__user__email"),
        unit=F("resident__unit__number"), period_month=F("period__month"), corrects_number=F("corrects__number"),
    )
    for row in rows.iterator(chunk_size=CHUNK):
        period_month = row.pop("period_month")
        row["period"] = period_month.strftime("%Y-%m") if period_month else ""
        row["corrects"] = row.pop("corrects_number") or ""
        row["amount_due"] = _amount_due(row)
        yield row


def _amount_due(row: dict) -> Decimal:
    if row["kind"] == Statement.Kind.CREDIT_NOTE or row["status"] == Statement.Status.VOID:
        return Decimal(0)
    return max(row["total"] - row["amount_paid"] - row["amount_credited"], Decimal(0))


def payment_rows(month: AuditMonth) -> Iterator[dict]:
    """Payments made or succeeded in the month, then refunds, then disputes opened in the month."""
    start, end = month.month.starts_at, month.month.ends_at
    payments = (
        Payment.objects.filter(Q(created_at__gte=start, created_at__lt=end) | Q(succeeded_at__gte=start,
                                                                                 succeeded_at__lt=end))
        .order_by("created_at", "pk")
        .values("kind", "status", "amount", "currency", "reference", "created_at", "succeeded_at",
                id_=F("pk"), resident_email=F("resident__user__email"), refunded=F("amount_refunded"),
                disputed=F("amount_disputed"), stripe_id=F("payment_intent_id"), reason=F("failure_message"),
                statement_number=_statement_number_of("reference"))
    )
    for row in payments.iterator(chunk_size=CHUNK):
        pk = row.pop("id_")
        yield {**row, "record": "payment", "id": pk, "payment_id": pk}
    refunds = (
        Refund.objects.filter(created_at__gte=start, created_at__lt=end).order_by("created_at", "pk")
        .values("status", "amount", "currency", "created_at", "reason", "payment_id", id_=F("pk"),
                resident_email=F("payment__resident__user__email"), stripe_id=F("refund_id"),
                reference=F("payment__reference"), statement_number=_statement_number_of("payment__reference"))
    )
    for row in refunds.iterator(chunk_size=CHUNK):
        pk = row.pop("id_")
        yield {**row, "record": "refund", "id": pk, "kind": "", "refunded": None, "disputed": None,
               "succeeded_at": None}
    disputes = (
        Dispute.objects.filter(created_at__gte=start, created_at__lt=end).order_by("created_at", "pk")
        .values("status", "amount", "currency", "created_at", "reason", "payment_id", id_=F("pk"),
                resident_email=F("payment__resident__user__email"), stripe_id=F("dispute_id"),
                reference=F("payment__reference"), statement_number=_statement_number_of("payment__reference"))
    )
    for row in disputes.iterator(chunk_size=CHUNK):
        pk = row.pop("id_")
        yield {**row, "record": "dispute", "id": pk, "kind": "", "refunded": None, "disputed": None,
               "succeeded_at": None}


def overdue_rows(*, today: date) -> Iterator[dict]:
    """Every unpaid statement of the building past its due date on ``today`` (any month), oldest due first."""
    rows = (
        Statement.objects.filter(kind=Statement.Kind.STATEMENT, status__in=UNPAID, due_on__lt=today)
        .order_by("due_on", "sequence")
        .values("due_on", "total", "amount_paid", "amount_credited", "currency", "reminders_sent", "status",
                "kind", resident_email=F("resident__user__email"), unit=F("resident__unit__number"),
                statement_number=F("number"), period_month=F("period__month"),
                standing=F("resident__account_standing"), overdue_since_=F("resident__overdue_since"))
    )
    for row in rows.iterator(chunk_size=CHUNK):
        due = _amount_due(row)
        if due <= 0:
            continue
        period_month = row.pop("period_month")
        since = row.pop("overdue_since_") or row["due_on"]
        yield {**row, "period": period_month.strftime("%Y-%m") if period_month else "", "amount_due": due,
               "overdue_since": since, "days_overdue": (today - row["due_on"]).days,
               "charging_blocked": row.pop("standing") != "good"}


@dataclass(frozen=True)
class StatementTotals:
    """Sums over the month's statements (not credit notes), computed in SQL, for the reconciliation."""

    count: int
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    session_lines_gross: Decimal  # session and idle lines, amount + tax
    other_lines_gross: Decimal  # service fees, adjustments...
    billed_charges_total: Decimal  # the SessionCharges billed on them
    billed_prior_period_total: Decimal  # of which sessions of earlier months
    billed_prior_period_count: int
    amount_paid: Decimal  # what the statements say was paid on them
    allocated: Decimal  # what the payments' allocations put on them (net of refunds and chargebacks)


def statement_totals(month: AuditMonth) -> StatementTotals:
    mine = Statement.objects.filter(kind=Statement.Kind.STATEMENT, period__month=month.month.first_day).exclude(
        status=Statement.Status.DRAFT)
    sums = mine.aggregate(subtotal=Sum("subtotal"), tax=Sum("tax"), total=Sum("total"), paid=Sum("amount_paid"))
    lines = StatementLine.objects.filter(statement__in=mine)
    session_kinds = (StatementLine.Kind.SESSION, StatementLine.Kind.IDLE)
    session_gross = lines.filter(kind__in=session_kinds).aggregate(v=Sum(F("amount") + F("tax")))["v"]
    other_gross = lines.exclude(kind__in=session_kinds).aggregate(v=Sum(F("amount") + F("tax")))["v"]
    billed = SessionCharge.objects.filter(billed__statement__in=mine)
    billed_total = billed.aggregate(v=Sum("total"))["v"]
    prior = billed.filter(period__lt=month.month.first_day).aggregate(v=Sum("total"), n=Count("pk"))
    allocated = PaymentAllocation.objects.filter(statement__in=mine).aggregate(v=Sum("amount"))["v"]
    zero = Decimal(0)
    return StatementTotals(
        mine.count(), sums["subtotal"] or zero, sums["tax"] or zero, sums["total"] or zero, session_gross or zero,
        other_gross or zero, billed_total or zero, prior["v"] or zero, prior["n"] or 0, sums["paid"] or zero,
        allocated or zero,
    )
