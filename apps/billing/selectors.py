"""Reads of tariffs: which tariff applies to whom, where, and which of its versions is in force.

Call inside the condominium's schema. Writes are apps.billing.services.

Precedence (``tariff_for``), the most specific assignment wins:

    1. this connector, the driver's named group
    2. this connector, residents or visitors (whichever the driver is)
    3. this connector, everyone
    4. the driver's named group, anywhere
    5. residents or visitors, anywhere
    6. everyone, anywhere: the building's default tariff

A session with a known resident is a resident's (and their named group's, if they are in one); a session
without one (an unknown card, a visitor) is a visitor's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from django.db.models import Q

from apps.billing import pricing
from apps.billing.models import BillingSettings, Tariff, TariffAssignment, TariffGroupMember, TariffVersion
from apps.core.tenants import building_zone, current_condominium

Audience = TariffAssignment.Audience


@dataclass(frozen=True)
class TariffChoice:
    tariff: Tariff
    assignment: TariffAssignment
    reason: str  # why this tariff, in words


@dataclass(frozen=True)
class BuildingBilling:
    """What pricing needs to know about the building."""

    timezone: ZoneInfo
    currency: str
    prices_include_tax: bool


def building_billing() -> BuildingBilling:
    """The current schema's building: its time zone, currency and how it shows taxes."""
    condo = current_condominium()
    settings = BillingSettings.objects.first()
    return BuildingBilling(building_zone(condo), condo.currency, bool(settings and settings.prices_include_tax))


def tariff_for(
    *, connector_pk: int | None, resident_id: int | None, as_resident: bool | None = None,
) -> TariffChoice | None:
    """The tariff that applies to a driver (a resident, or None: a visitor) on a connector. Two queries.

    ``as_resident``: price as a resident (or a visitor) without naming one (a manager's quote).
    """
    resident = as_resident if as_resident is not None else resident_id is not None
    audience = Audience.RESIDENTS if resident else Audience.VISITORS
    group_id = None
    if resident_id is not None:
        group_id = TariffGroupMember.objects.filter(resident_id=resident_id).values_list("group_id", flat=True).first()
    where = Q(connector__isnull=True) | (Q(connector_id=connector_pk) if connector_pk is not None else Q(pk__in=[]))
    rows = list(TariffAssignment.objects.filter(where).select_related("tariff", "group"))

    def rank(row: TariffAssignment) -> int | None:
        here = row.connector_id is not None
        if row.audience == Audience.GROUP:
            return (1 if here else 4) if row.group_id == group_id and group_id is not None else None
        if row.audience == audience:
            return 2 if here else 5
        if row.audience == Audience.EVERYONE:
            return 3 if here else 6
        return None

    ranked = sorted(((r, row) for row in rows if (r := rank(row)) is not None), key=lambda pair: pair[0])
    if not ranked:
        return None
    level, row = ranked[0]
    who = f"group {row.group.code}" if row.group_id else str(row.audience)
    where = "this connector" if row.connector_id else "the building"
    return TariffChoice(row.tariff, row, f"{row.tariff.code}: {who} on {where} (precedence {level} of 6)")


def version_in_force(tariff: Tariff, at: datetime) -> TariffVersion | None:
    """The published version of ``tariff`` in force at ``at``: the latest to take effect at or before it."""
    return (
        TariffVersion.objects.filter(tariff=tariff, published_at__isnull=False, effective_from__lte=at)
        .order_by("-effective_from").first()
    )


def pricing_tariff(version: TariffVersion) -> pricing.TariffVersion:
    """A stored version as the pricing engine's tariff (checked again: what is stored was checked when written)."""
    return pricing.parse_tariff(version.document, currency=version.currency,
                                name=f"{version.tariff.code} v{version.number}")


def tariff_versions(tariff: Tariff) -> list[TariffVersion]:
    return list(TariffVersion.objects.filter(tariff=tariff).order_by("effective_from", "number"))
