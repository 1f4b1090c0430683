"""The portfolio: every building a company manager looks after, in one table, on the company's site.

Per building: chargers online, offline and faulted (their live state in Redis), sessions under way, the EV power
now, the building's load at the supply against what the supply may carry (the site meter's latest reading), the
energy and revenue priced this month (the building's own month, in its time zone), the accounts overdue and the
open alerts. Each building is its own schema: a fixed number of queries per building (tests/console), one Redis
round trip for its chargers and one for its meter, however many chargers it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, Q, Sum

from apps.alerts.models import Alert
from apps.audit.selectors import overdue_rows
from apps.billing.models import SessionCharge
from apps.charging.models import ChargePoint, ChargingSession
from apps.console import board
from apps.console.selectors import usable_per_phase
from apps.core.tenants import in_schema
from apps.electrical.latest import site_load_latest
from apps.electrical.models import Circuit
from apps.ocpp import live
from apps.statements import periods
from apps.tenancy.models import Condominium

FAULTED = "Faulted"


@dataclass(frozen=True)
class BuildingSummary:
    condominium: Condominium
    chargers: int
    online: int
    faulted: int
    sessions: int
    ev_kw: Decimal
    load_a: Decimal | None  # the most loaded phase at the supply, by the site meter's latest reading
    limit_a: Decimal | None  # what the supply may carry on that phase (rated x derate - margin)
    meter_stale: bool
    month: date
    energy_kwh: Decimal
    revenue: Decimal
    overdue_accounts: int
    overdue_amount: Decimal
    alerts: int

    @property
    def offline(self) -> int:
        return self.chargers - self.online

    @property
    def load_percent(self) -> int | None:
        if self.load_a is None or not self.limit_a:
            return None
        return int((self.load_a * 100 / self.limit_a).to_integral_value(ROUND_HALF_UP))


def building_summary(condominium: Condominium, now: datetime) -> BuildingSummary:
    """One building's line (its own schema entered here)."""
    month = periods.month_of(now, condominium.timezone)
    with in_schema(condominium.schema_name):
        charger_ids = list(ChargePoint.objects.filter(removed_at__isnull=True)
                           .values_list("charge_point_id", flat=True))
        sessions = ChargingSession.objects.filter(stopped_at__isnull=True, connector__isnull=False).count()
        priced = SessionCharge.objects.filter(period=month, status=SessionCharge.Status.PRICED).aggregate(
            energy=Sum("energy_wh"), revenue=Sum("total"))
        overdue = list(overdue_rows(today=now.date()))
        alerts = Alert.objects.filter(resolved_at__isnull=True).aggregate(n=Count("pk"))["n"]
        supply = (Circuit.objects.filter(removed_at__isnull=True, parent__isnull=True)
                  .values("max_current_l1_a", "max_current_l2_a", "max_current_l3_a", "derate", "margin_a").first())
    states = live.read_building_live(charger_ids)
    online = faulted = 0
    ev_w = Decimal(0)
    for charger in states.values():
        if charger.connected and charger.schema == condominium.schema_name:
            online += 1
            ev_w += sum((c.power_w for c in charger.connectors.values() if c.power_w is not None), Decimal(0))
        if charger.status == FAULTED or any(c.status == FAULTED for c in charger.connectors.values()):
            faulted += 1
    site = site_load_latest(condominium.schema_name)
    load_a = limit_a = None
    if site is not None:
        peak = max(range(len(site.reading.currents_a)), key=lambda i: site.reading.currents_a[i])
        load_a = site.reading.currents_a[peak]
        if supply is not None:
            limit_a = usable_per_phase(supply)[peak]
    return BuildingSummary(
        condominium=condominium, chargers=len(charger_ids), online=online, faulted=faulted, sessions=sessions,
        ev_kw=(ev_w / 1000).quantize(board.TENTH, ROUND_HALF_UP), load_a=load_a, limit_a=limit_a,
        meter_stale=site is not None and site.is_stale(now), month=month,
        energy_kwh=(Decimal(priced["energy"] or 0) / 1000).quantize(board.TENTH, ROUND_HALF_UP),
        revenue=(priced["revenue"] or Decimal(0)).quantize(Decimal("0.01"), ROUND_HALF_UP),
        overdue_accounts=len({row["resident_email"] for row in overdue}),
        overdue_amount=sum((row["amount_due"] for row in overdue), Decimal(0)),
        alerts=alerts,
    )


def managed_condominiums(user) -> list[Condominium]:
    """The buildings of every company ``user`` manages (public schema)."""
    from apps.accounts.models import CompanyMembership

    return list(Condominium.objects.filter(
        Q(company__memberships__user=user, company__memberships__role=CompanyMembership.Role.MANAGER))
        .select_related("company").distinct().order_by("company__name", "name"))


def portfolio(user, now: datetime) -> list[BuildingSummary]:
    return [building_summary(condominium, now) for condominium in managed_condominiums(user)]
