"""What the pages, the load balancer and the capacity report read about the site meter and the supply.

Call inside the building's schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import F, Func, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import JSONObject

from apps.electrical import capacity
from apps.electrical.latest import SiteLoad, site_load_latest
from apps.electrical.models import Circuit, SiteMeter, SiteMeterQuarter, SiteMeterRefusal


def ocpp_site_meter_of(charge_point_id: Func | F) -> Subquery:
    """For a query of chargers: ``{"key": ..., "connector": "<n>" or None}`` of the OCPP site meter that the
    charger ``charge_point_id`` (e.g. ``OuterRef("charge_point_id")``) is commissioned as, or NULL.

    The charger is named in the meter's ``settings.ocpp.charger``, case-insensitively; its ``connector``
    (0 when not given) is the one whose MeterValues are the building's load. A subquery, so that a
    charger's connection learns it in the same round trip as the rest of its context.
    """
    return Subquery(
        SiteMeter.objects.filter(source=SiteMeter.Source.OCPP, removed_at__isnull=True,
                                 settings__ocpp__charger__iexact=charge_point_id)
        .order_by("key")
        .values(json=JSONObject(key="key", connector=KT("settings__ocpp__connector")))[:1]
    )


def ocpp_site_meter_from(found: dict | None) -> tuple[str, int] | None:
    """(meter key, connector) from what ``ocpp_site_meter_of`` gave; None when the charger is no site meter."""
    if not found:
        return None
    return str(found["key"]), int(found.get("connector") or 0)


@dataclass(frozen=True)
class RefusalCount:
    reason: str  # SiteMeterRefusal.Reason
    count: int
    first_at: datetime
    last_at: datetime
    last_detail: str


@dataclass(frozen=True)
class SiteMeterStatus:
    """The building's site meter for its managers: how it reports, its latest reading, what was refused."""

    key: str
    source: str
    stale_after_s: int
    latest: SiteLoad | None
    refusals: tuple[RefusalCount, ...]


def site_meter_status() -> SiteMeterStatus | None:
    """The active site meter's status, in two queries and one Redis read; None when there is no meter."""
    meter = SiteMeter.objects.filter(removed_at__isnull=True).first()
    if meter is None:
        return None
    held = site_load_latest(connection.schema_name)
    refusals = tuple(
        RefusalCount(r.reason, r.count, r.first_at, r.last_at, r.last_detail)
        for r in SiteMeterRefusal.objects.filter(meter=meter).order_by("reason")
    )
    return SiteMeterStatus(meter.key, meter.source, meter.stale_after_s,
                           held if held is not None and held.meter_key == meter.key else None, refusals)


# --- for the capacity report (apps.electrical.capacity) ---------------------------------------


@dataclass(frozen=True)
class CapacitySite:
    """The supply and circuits the capacity report measures against, and the meter whose history it reads."""

    meter_key: str
    stale_after_s: int
    voltage_v: int
    supply: capacity.PhaseLimits
    circuits: tuple[capacity.CircuitLimits, ...]


def _limits(circuit: Circuit) -> capacity.PhaseLimits:
    return capacity.PhaseLimits(circuit.max_current_a[: circuit.phases], circuit.derate, circuit.margin_a)


def capacity_site() -> CapacitySite | None:
    """The active site meter with the supply and every circuit's usable limits; None without a meter. Two queries."""
    meter = SiteMeter.objects.filter(removed_at__isnull=True).select_related("circuit").first()
    if meter is None:
        return None
    circuits = list(Circuit.objects.filter(removed_at__isnull=True)
                    .order_by(F("parent").asc(nulls_first=True), "key"))
    supply = next((c for c in circuits if c.is_supply), meter.circuit)
    keys = {c.pk: c.key for c in circuits}
    return CapacitySite(
        meter_key=meter.key, stale_after_s=meter.stale_after_s, voltage_v=supply.voltage_v, supply=_limits(supply),
        circuits=tuple(capacity.CircuitLimits(c.key, _limits(c), c.is_supply, c.max_power_w,
                                              parent=keys.get(c.parent_id) if c.parent_id else None)
                       for c in circuits),
    )


def site_meter_quarters(*, start: datetime, end: datetime) -> list[capacity.QuarterLoad]:
    """The supply's quarter hours in [start, end), in time order. One query.

    Every meter that measured the supply counts (a replaced meter's history stays the building's); where two
    overlap, the quarter with more readings is kept.
    """
    rows = (SiteMeterQuarter.objects
            .filter(meter__circuit__parent__isnull=True, period_start__gte=start, period_start__lt=end)
            .order_by("period_start", "samples")
            .values_list("period_start", "samples", "peak_l1_a", "peak_l2_a", "peak_l3_a", "mean_l1_a", "mean_l2_a",
                         "mean_l3_a"))
    kept: dict[datetime, capacity.QuarterLoad] = {}
    for at, samples, p1, p2, p3, m1, m2, m3 in rows:
        peaks = tuple(v for v in (p1, p2, p3) if v is not None)
        means = tuple(v for v in (m1, m2, m3) if v is not None)
        kept[at] = capacity.QuarterLoad(at, samples, peaks, means)
    return list(kept.values())
