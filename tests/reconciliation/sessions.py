"""Maple Court's residents and their priced sessions at given times (Los Angeles), for the reconciliation tests."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from apps.billing import services as billing
from apps.buildings.models import Resident
from apps.charging.models import ChargePoint, ChargingSession
from apps.core.tenants import in_schema
from tests import factories

LA = ZoneInfo("America/Los_Angeles")


def la(*args: int) -> datetime:
    return datetime(*args, tzinfo=LA)


def resident(condo, name: str) -> Resident:
    user = factories.resident(condo, f"{name}-{uuid.uuid4().hex[:6]}@maple.test", "101")
    with in_schema(condo.schema_name):
        return Resident.objects.select_related("user").get(user=user)


def session(who: Resident | None, start: datetime, stop: datetime, wh: int) -> None:
    charger = ChargePoint.objects.get(charge_point_id="TEST-MAPLE-1")
    row = ChargingSession.objects.create(
        charge_point=charger, connector=charger.connectors.get(connector_id=1), connector_number=1,
        transaction_id=int(uuid.uuid4().int % 2_000_000_000), id_tag="T", resident=who, started_at=start,
        start_received_at=start, meter_start_wh=1_000_000, stopped_at=stop, stop_received_at=stop,
        meter_stop_wh=1_000_000 + wh, energy_wh=wh, energy_source=ChargingSession.EnergySource.REGISTER,
    )
    billing.session_price(session_pk=row.pk)
