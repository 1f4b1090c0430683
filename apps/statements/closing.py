"""Closing a building's month: one statement per resident with activity or fees, exactly once.

The month closes at local midnight on the 1st, in the building's time zone. Closing takes the month's
row (BillingPeriod) with a lock, so a second worker, or a second run, waits and then finds it closed;
everything else happens in the same transaction, so a crash leaves the month open and nothing half made.
A charging session goes on the statement of the month it ended in; one that was priced after its month
closed (an offline charger sent it late) goes on the next statement as a prior-period line. A session
is billed at most once: BilledCharge is unique per SessionCharge. Held sessions wait for a person.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from apps.billing import pricing
from apps.billing import selectors as billing_selectors
from apps.billing.models import BillingSettings, SessionCharge, TariffGroupMember
from apps.buildings.models import Resident
from apps.core.tenants import building_zone, current_condominium
from apps.statements import periods, settlement, sources
from apps.statements.models import BilledCharge, BillingPeriod, NumberSeries, Statement, StatementLine
from apps.statements.services import PREFIX, StatementRefused, _resident_language
from apps.tenancy.models import Condominium

log = logging.getLogger(__name__)

ENERGY_KINDS = {"energy", "time", "flat"}


@dataclass(frozen=True)
class CloseResult:
    month: date
    closed_now: bool  # False: it had been closed before (nothing changed)
    statements: int
    sessions_billed: int
    prior_period_sessions: int
    sessions_held: int  # priced but held for review: not billed
    sessions_without_resident: int
    total: Decimal


def _tax_of(amount: Decimal, rate: Decimal, included: bool, currency: str) -> Decimal:
    quantum = pricing.minor_unit(currency)
    if included:
        return (amount - amount / (1 + rate)).quantize(quantum, ROUND_HALF_UP)
    return (amount * rate).quantize(quantum, ROUND_HALF_UP)


def _days_of_access(resident: Resident, month: periods.Month, tz: str) -> int:
    """Days of the month the resident had access: from the day they were added (and, once deactivated,
    until the day it happened; the record keeps no separate move-out date)."""
    first = max(month.first_day, periods.local_day(resident.created_at, tz))
    last = month.first_day + timedelta(days=periods.days_in(month.first_day) - 1)
    if not resident.is_active:
        last = min(last, periods.local_day(resident.updated_at, tz))
    return periods.local_days_between(first, last)


@dataclass
class _TariffCache:
    """What one close reads once rather than once per resident. The tariff that applies to a resident
    (on no particular connector) depends only on their tariff group (billing.selectors.tariff_for), so it
    is asked once per group; a tariff's version in force at the month's end once per tariff."""

    group_of: dict[int, int]  # resident pk -> the group tariff_for would find (its first membership)
    choices: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)

    @classmethod
    def of(cls, residents: set[int]) -> _TariffCache:
        group_of: dict[int, int] = {}
        for resident_id, group_id in (TariffGroupMember.objects.filter(resident_id__in=residents)
                                      .order_by("pk").values_list("resident_id", "group_id")):
            group_of.setdefault(resident_id, group_id)
        return cls(group_of)

    def choice(self, resident_id: int):
        key = self.group_of.get(resident_id)
        if key not in self.choices:
            self.choices[key] = billing_selectors.tariff_for(connector_pk=None, resident_id=resident_id)
        return self.choices[key]


def _service_fee(resident: Resident, month: periods.Month, condo: Condominium, included: bool,
                 cache: _TariffCache | None = None) -> dict | None:
    if cache is None:
        choice = billing_selectors.tariff_for(connector_pk=None, resident_id=resident.pk)
        versions: dict = {}
    else:
        choice, versions = cache.choice(resident.pk), cache.versions
    if choice is None:
        return None
    if choice.tariff.pk not in versions:
        found = billing_selectors.version_in_force(choice.tariff, month.ends_at - timedelta(microseconds=1))
        versions[choice.tariff.pk] = (found, billing_selectors.pricing_tariff(found) if found else None)
    version, priced_tariff = versions[choice.tariff.pk]
    if version is None:
        return None
    fee = priced_tariff.monthly_fee
    if fee is None or fee.price <= 0:
        return None
    days = _days_of_access(resident, month, condo.timezone)
    if days <= 0:
        return None
    first = month.first_day
    gross = pricing.prorate_monthly_fee(fee.price, days_of_access=days, year=first.year, month=first.month,
                                        currency=condo.currency)
    if gross <= 0:
        return None
    tax = _tax_of(gross, fee.tax_rate, included, condo.currency)
    net = gross - tax if included else gross
    total_days = periods.days_in(first)
    return {
        "kind": StatementLine.Kind.SERVICE_FEE,
        "description": f"Monthly service fee ({choice.tariff.name or choice.tariff.code})"
                       + ("" if days == total_days else f", {days} of {total_days} days"),
        "quantity": Decimal(days), "unit": "day", "unit_price": fee.price / total_days,
        "amount": net, "tax_rate": fee.tax_rate, "tax": tax, "window": f"{version.tariff.code} v{version.number}",
    }


class _Charge(NamedTuple):
    """What the close needs of a priced session and its session, read as plain values: the close of a
    building reads ~6,000 of them, and model instances (the charge, its session, charger, connector and
    parking spot) cost more to build than everything else the close does with them."""

    pk: int
    status: str
    period: date
    energy_wh: int
    lines: list
    session_id: int
    resident_id: int | None
    transaction_id: int | None
    started_at: datetime | None
    stopped_at: datetime | None
    connector_number: int
    charge_point_id: str
    parking_spot_id: int | None
    parking_spot_label: str | None


_CHARGE_VALUES = (
    "pk", "status", "period", "energy_wh", "lines", "session_id", "session__resident_id", "session__transaction_id",
    "session__started_at", "session__stopped_at", "session__connector_number",
    "session__charge_point__charge_point_id", "session__connector__parking_spot_id",
    "session__connector__parking_spot__label",
)


def _session_lines(charge: _Charge, month: date) -> list[dict]:
    label = f"{charge.charge_point_id} #{charge.connector_number}"
    if charge.parking_spot_id:
        label = f"{charge.parking_spot_label} · {label}"
    duration = None
    if charge.started_at and charge.stopped_at:
        duration = max(int((charge.stopped_at - charge.started_at).total_seconds()), 0)
    common = {"session_id": charge.session_id, "prior_period": charge.period < month,
              "occurred_at": charge.started_at, "connector_label": label[:80]}
    main = {"net": Decimal(0), "tax": Decimal(0), "windows": [], "rates": set()}
    idle = {"net": Decimal(0), "tax": Decimal(0), "windows": [], "minutes": Decimal(0), "rates": set()}
    for line in charge.lines:
        bucket = idle if line["kind"] == "PARKING_TIME" else main
        total, tax = Decimal(line["total"]), Decimal(line["tax"])
        bucket["net"] += total - tax
        bucket["tax"] += tax
        bucket["rates"].add(Decimal(line["tax_rate"]))
        text = f"{line['window']} {line['unit_price']}/{line['unit']}"
        if line.get("interpolated"):
            text += " (interpolated)"
        if text not in bucket["windows"]:
            bucket["windows"].append(text)
        if bucket is idle:
            idle["minutes"] += Decimal(line["quantity"])
    out = [{
        **common, "kind": StatementLine.Kind.SESSION,
        "description": f"Charging session {charge.transaction_id or charge.session_id}",
        "energy_wh": charge.energy_wh, "duration_s": duration, "quantity": Decimal(charge.energy_wh) / 1000,
        "unit": "kWh", "amount": main["net"], "tax": main["tax"],
        "tax_rate": max(main["rates"], default=Decimal(0)), "window": "; ".join(main["windows"]),
    }]
    if idle["net"] or idle["tax"]:
        out.append({
            **common, "kind": StatementLine.Kind.IDLE, "description": "Idle fee after charging completed",
            "quantity": idle["minutes"], "unit": "min", "amount": idle["net"], "tax": idle["tax"],
            "tax_rate": max(idle["rates"], default=Decimal(0)), "window": "; ".join(idle["windows"]),
        })
    return out


def period_close(*, month: date, now: datetime | None = None,
                 progress: Callable[[int, int], None] | None = None) -> CloseResult:
    """Close the building's ``month`` (the current schema's building): statements made and finalized."""
    now = now or timezone.now()
    condo = current_condominium()
    bounds = periods.month_in(month, condo.timezone)
    if now < bounds.ends_at:
        raise StatementRefused(
            f"{condo.slug} {bounds.label}: the month is not over yet in {condo.timezone} "
            f"(it ends at {bounds.ends_at.isoformat()})"
        )
    BillingPeriod.objects.get_or_create(
        month=bounds.first_day, defaults={"starts_at": bounds.starts_at, "ends_at": bounds.ends_at}
    )
    with transaction.atomic():
        period = BillingPeriod.objects.select_for_update().get(month=bounds.first_day)
        if period.status == BillingPeriod.Status.CLOSED:
            return CloseResult(bounds.first_day, False, period.statements_made, 0, 0, 0, 0, Decimal(0))
        result = _close(period, bounds, condo, now, progress)
        settlement.statements_after_close(period.pk)
        period.status = BillingPeriod.Status.CLOSED
        period.closed_at = now
        period.statements_made = result.statements
        period.save(update_fields=["status", "closed_at", "statements_made"])
    if result.statements:
        from apps.statements import hooks

        transaction.on_commit(lambda: hooks.period_closed(condo.schema_name, period.pk))
    log.info("closed %s %s: %s statements, %s sessions", condo.slug, bounds.label, result.statements,
             result.sessions_billed)
    return result


def _close(period: BillingPeriod, bounds: periods.Month, condo: Condominium, now: datetime,
           progress: Callable[[int, int], None] | None) -> CloseResult:
    settings_row = BillingSettings.objects.first()
    included = bool(settings_row and settings_row.prices_include_tax)
    charges = [_Charge(*row) for row in (
        SessionCharge.objects.filter(period__lte=bounds.first_day, billed__isnull=True)
        .order_by("session__started_at", "session_id").values_list(*_CHARGE_VALUES)
    )]
    held = sum(1 for charge in charges if charge.status == SessionCharge.Status.HELD)
    priced = [charge for charge in charges if charge.status == SessionCharge.Status.PRICED]
    no_resident = sum(1 for charge in priced if charge.resident_id is None)
    by_resident: dict[int, list[_Charge]] = defaultdict(list)
    for charge in priced:
        if charge.resident_id is not None:
            by_resident[charge.resident_id].append(charge)
    wanted = set(by_resident) | set(Resident.objects.filter(is_active=True).values_list("pk", flat=True))
    # Lines other features registered (apps/statements/sources.py), e.g. true-ups after a utility bill.
    extras = sources.extra_lines(bounds.first_day, frozenset(wanted))
    wanted |= set(extras)
    residents = {r.pk: r for r in Resident.objects.filter(pk__in=wanted).select_related("user", "unit")}
    billed_callbacks: list[tuple[Statement, int, Callable[[int, int], None]]] = []

    drafts: list[tuple[Statement, list[dict], list[_Charge]]] = []
    cache = _TariffCache.of(set(residents))
    for index, resident_id in enumerate(sorted(residents), start=1):
        resident = residents[resident_id]
        mine = by_resident.get(resident_id, [])
        lines = [line for charge in mine for line in _session_lines(charge, bounds.first_day)]
        fee = _service_fee(resident, bounds, condo, included, cache)
        if fee:
            lines.append({**fee, "occurred_at": None})
        pending: list[tuple[int, Callable[[int, int], None]]] = []
        for extra in extras.get(resident_id, []):
            lines.append({"kind": extra.kind, "description": extra.description[:300], "amount": extra.amount,
                          "tax": extra.tax, "tax_rate": extra.tax_rate, "window": extra.window[:120],
                          "occurred_at": None})
            if extra.billed is not None:
                pending.append((len(lines), extra.billed))
        if lines:
            statement = _statement(resident, period, condo, lines, included)
            billed_callbacks += [(statement, position, callback) for position, callback in pending]
            drafts.append((statement, lines, mine))
        if progress:
            progress(index, len(residents))
    if not drafts:
        return CloseResult(bounds.first_day, True, 0, 0, 0, held, no_resident, Decimal(0))

    # Numbers for all of them at once: the series row stays locked until this transaction commits.
    NumberSeries.objects.get_or_create(kind=Statement.Kind.STATEMENT)
    series = NumberSeries.objects.select_for_update().get(kind=Statement.Kind.STATEMENT)
    issued = timezone.localdate(now, building_zone(condo))
    for offset, (statement, _, _) in enumerate(drafts, start=1):
        statement.sequence = series.last_number + offset
        statement.number = f"{PREFIX[Statement.Kind.STATEMENT]}-{statement.sequence:06d}"
        statement.finalized_at = now
        statement.issued_on = issued
        if statement.total > 0:
            statement.status = Statement.Status.OPEN
            statement.due_on = issued + timedelta(days=settings.STATEMENT_PAYMENT_TERMS_DAYS)
        else:
            statement.status = Statement.Status.PAID
            statement.paid_at = now
    series.last_number += len(drafts)
    series.save(update_fields=["last_number"])
    made = Statement.objects.bulk_create([statement for statement, _, _ in drafts])
    defaults = {name: StatementLine._meta.get_field(name).get_default() for name in LINE_COLUMNS}
    _copy(StatementLine, ("statement_id", "position", *LINE_COLUMNS), (
        (statement.pk, position, *[line.get(name, defaults[name]) for name in LINE_COLUMNS])
        for statement, (_, lines, _) in zip(made, drafts, strict=True)
        for position, line in enumerate(lines, start=1)
    ))
    _copy(BilledCharge, ("charge_id", "statement_id"), (
        (charge.pk, statement.pk)
        for statement, (_, _, mine) in zip(made, drafts, strict=True)
        for charge in mine
    ))
    for statement, position, callback in billed_callbacks:
        line = StatementLine.objects.only("pk").get(statement=statement, position=position)
        callback(line.pk, statement.pk)
    billed = [charge for _, _, mine in drafts for charge in mine]
    return CloseResult(
        bounds.first_day, True, len(made), len(billed),
        sum(1 for charge in billed if charge.period < bounds.first_day), held, no_resident,
        sum((statement.total for statement in made), Decimal(0)),
    )


# A statement line's columns besides its statement and position; a line (a dict) leaves out those that keep
# the model's default.
LINE_COLUMNS = ("kind", "description", "session_id", "prior_period", "occurred_at", "connector_label", "energy_wh",
                "duration_s", "window", "quantity", "unit", "unit_price", "amount", "tax_rate", "tax")


def _copy(model: type[models.Model], columns: tuple[str, ...], rows: Iterable[tuple]) -> None:
    """Insert rows with PostgreSQL's COPY, in this transaction and the building's schema: for the ~12,000
    lines and billed charges of a building's close, the ORM's bulk_create spent more time preparing each
    value of each row than the database took to store them. The values are what the ORM would send (Decimal,
    aware datetimes, str, int, bool, None); the table's constraints check them the same way."""
    quote = connection.ops.quote_name
    names = ", ".join(quote(model._meta.get_field(name).column) for name in columns)
    with connection.cursor() as cursor, cursor.cursor.copy(
        f"COPY {quote(model._meta.db_table)} ({names}) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)


def _statement(resident: Resident, period: BillingPeriod, condo: Condominium, lines: list[dict],
               included: bool) -> Statement:
    from apps.statements.services import _parties

    subtotal = sum((line["amount"] for line in lines), Decimal(0))
    tax = sum((line["tax"] for line in lines), Decimal(0))
    statement = Statement(
        kind=Statement.Kind.STATEMENT, resident=resident, period=period, currency=condo.currency,
        language=_resident_language(resident, condo), subtotal=subtotal, tax=tax, total=subtotal + tax,
        prices_include_tax=included,
    )
    statement.parties = _parties(statement, condo)
    return statement
