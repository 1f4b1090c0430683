"""What the pages and the load balancer read about the site meter. Call inside the building's schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from apps.electrical.latest import SiteLoad, site_load_latest
from apps.electrical.models import SiteMeter, SiteMeterRefusal


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
