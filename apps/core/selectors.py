from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, F, Prefetch, Q
from django.utils import timezone

from apps.alerts.models import Alert
from apps.buildings.models import IdTag, ParkingSpot, Resident, Unit
from apps.charging.models import ChargePoint, Connector
from apps.core.tenants import in_public_schema
from apps.electrical.models import Circuit
from apps.loadbalancing.services import latest_run
from apps.ocpp import live
from apps.tenancy.models import ChargerRegistration, Condominium, ConnectionAttempt, Domain


@dataclass(frozen=True)
class ConnectorFigures:
    """A connector's live figures as the building page shows them (kW and kWh, rounded)."""

    status: str
    power_kw: Decimal | None
    session_kwh: Decimal | None
    currents_a: tuple[Decimal | None, Decimal | None, Decimal | None]

    @classmethod
    def from_live(cls, connector: live.ConnectorLive) -> ConnectorFigures:
        power, energy = connector.power_w, connector.session_energy_wh
        return cls(
            status=connector.status,
            power_kw=(power / 1000).quantize(Decimal("0.1")) if power is not None else None,
            session_kwh=(Decimal(energy) / 1000).quantize(Decimal("0.01")) if energy is not None else None,
            currents_a=connector.currents_a,
        )


@dataclass(frozen=True)
class CondominiumLink:
    condominium: Condominium
    url: str | None


def condominium_links(request, condominiums) -> list[CondominiumLink]:
    """Each condominium with the address of its own site (same scheme and port as this request)."""
    condominiums = list(condominiums)
    primary = {
        d.tenant_id: d.domain for d in Domain.objects.filter(tenant__in=condominiums).order_by("-is_primary", "id")
    }
    port = request.get_port()
    suffix = "" if port in ("80", "443") else f":{port}"
    return [
        CondominiumLink(c, f"{request.scheme}://{primary[c.pk]}{suffix}/" if c.pk in primary else None)
        for c in condominiums
    ]


def building_overview(condominium: Condominium) -> dict:
    """What a manager or board member sees first: alerts, chargers, circuits and people."""
    live_connectors = Connector.objects.filter(removed_at__isnull=True).select_related("parking_spot")
    charge_points = list(
        ChargePoint.objects.filter(removed_at__isnull=True)
        .select_related("circuit")
        .prefetch_related(Prefetch("connectors", queryset=live_connectors))
    )
    states = live.read_building_live(cp.charge_point_id for cp in charge_points)
    balance = connector_balance()
    for cp in charge_points:
        for connector in cp.connectors.all():
            connector.live = ConnectorFigures.from_live(states[cp.charge_point_id].connector(connector.connector_id))
            connector.balance = balance.get(f"{cp.charge_point_id}#{connector.connector_id}")
    return {
        "charge_points": charge_points,
        "circuits": Circuit.objects.filter(removed_at__isnull=True)
        .select_related("parent")
        .order_by(F("parent").asc(nulls_first=True), "key"),
        # Meta.ordering does not apply to aggregating queries: order explicitly.
        "units": Unit.objects.filter(is_active=True)
        .annotate(resident_count=Count("residents", filter=Q(residents__is_active=True)))
        .prefetch_related("parking_spots")
        .order_by("number"),
        "resident_count": Resident.objects.filter(is_active=True).count(),
        "alerts": Alert.objects.filter(resolved_at__isnull=True).order_by("-last_seen_at")[:50],
        "refused_connections": refused_connections(condominium),
        "weak_charger_passwords": weak_charger_passwords(condominium),
    }


def weak_charger_passwords(condominium: Condominium) -> list[str]:
    """Chargers whose password is shorter than 16 characters (known when set, or at the last handshake)."""
    with in_public_schema():
        return list(ChargerRegistration.objects.filter(condominium=condominium, password_weak=True)
                    .order_by("charge_point_id").values_list("charge_point_id", flat=True))


def refused_connections(condominium: Condominium, days: int = 7) -> list[ConnectionAttempt]:
    """Chargers of this building that failed the OCPP handshake lately (wrong password, removed...)."""
    since = timezone.now() - timedelta(days=days)
    with in_public_schema():
        return list(ConnectionAttempt.objects.filter(condominium=condominium, last_at__gte=since)[:50])


def connector_balance() -> dict[str, dict]:
    """Each connector's limit and the reason for it, from the load balancer's latest run (one query):
    ``{"CHARGER#1": {"a": "14.4", "w": None, "sentence": "...", "why": "node-power", ...}}``."""
    run = latest_run()
    return run.limits if run is not None else {}


def residences_of(user) -> list[dict]:
    """The units a resident lives in, with their parking spots, their chargers' limits and reasons, and cards."""
    residents = Resident.objects.filter(user=user, is_active=True).select_related("unit")
    balance = connector_balance() if residents else {}
    result = []
    for resident in residents:
        spots = list(ParkingSpot.objects.filter(unit=resident.unit).prefetch_related(
            Prefetch("connectors", queryset=Connector.objects.filter(removed_at__isnull=True)
                     .select_related("charge_point"))))
        for spot in spots:
            for connector in spot.connectors.all():
                connector.balance = balance.get(f"{connector.charge_point.charge_point_id}#{connector.connector_id}")
        result.append(
            {
                "resident": resident,
                "unit": resident.unit,
                "parking_spots": spots,
                "id_tags": IdTag.objects.filter(resident=resident),
            }
        )
    return result
