"""MeterValues on connector 0 of the charger commissioned as the site meter become site-meter readings."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from apps.core.tenants import in_schema
from apps.electrical import latest
from apps.electrical.models import SiteMeterReading
from tests import factories
from tests.helpers import iso
from tests.ocpp.charger import FakeCharger
from tests.ocpp.conftest import PASSWORD, communicator


@pytest.fixture
def ocpp_meter(world, committed):
    """A committed charger in Maple Court, commissioned as its site meter (connector 0)."""
    charge_point_id = f"METER-{uuid.uuid4().hex[:8].upper()}"
    factories.charger(world.maple, charge_point_id, PASSWORD, connectors=1)
    key = f"ocpp-{uuid.uuid4().hex[:8]}"
    factories.site_meter(world.maple, {"id": key, "source": "ocpp", "ocpp": {"charger": charge_point_id}})
    latest.forget(world.maple.schema_name)
    yield charge_point_id, key
    factories.site_meter_retire(world.maple, key)
    factories.charger_retire(world.maple, charge_point_id)
    latest.forget(world.maple.schema_name)


def sampled(at, measurand, unit, values):
    return {"timestamp": iso(at), "sampledValue": [
        {"value": str(v), "measurand": measurand, "phase": phase, "unit": unit, "location": "Inlet"}
        for phase, v in zip(("L1", "L2", "L3"), values, strict=True)]}


def rows(schema, key):
    with in_schema(schema):
        return list(SiteMeterReading.objects.filter(meter__key=key).order_by("sampled_at")
                    .values_list("current_l1_a", "current_l2_a", "current_l3_a", "power_l1_w"))


async def test_connector_0_currents_and_powers_become_site_readings(world, ocpp_meter):
    charge_point_id, key = ocpp_meter
    schema = world.maple.schema_name
    comm = communicator(charge_point_id)
    ok, _ = await comm.connect(timeout=5)
    assert ok
    charger = FakeCharger(comm)
    try:
        now = timezone.now().replace(microsecond=0)
        answer = await charger.call("MeterValues", {"connectorId": 0, "meterValue": [
            sampled(now - timedelta(seconds=10), "Current.Import", "A", [41.2, 38, 44.9]),
            sampled(now - timedelta(seconds=5), "Power.Active.Import", "kW", ["9.476", "8.74", "0.23"]),
            # Only two phases: not a reading of the building.
            {"timestamp": iso(now), "sampledValue": [
                {"value": "5", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                {"value": "5", "measurand": "Current.Import", "phase": "L2", "unit": "A"}]},
        ]})
        assert answer[0] == 3
        found = await database_sync_to_async(rows)(schema, key)
        assert found == [(Decimal("41.2"), Decimal("38.0"), Decimal("44.9"), None),
                         (Decimal("41.2"), Decimal("38.0"), Decimal("1.0"), 9476)]
        held = await latest.asite_load_latest(schema)
        assert held.meter_key == key and held.reading.sampled_at == now - timedelta(seconds=5)

        # A spike is refused like a pushed one; a connector other than 0 is the charger's own metering.
        await charger.call("MeterValues", {"connectorId": 0, "meterValue": [
            sampled(now, "Current.Import", "A", [999, 0, 0])]})
        await charger.call("MeterValues", {"connectorId": 1, "meterValue": [
            sampled(now + timedelta(seconds=1), "Current.Import", "A", [7, 7, 7])]})
        assert len(await database_sync_to_async(rows)(schema, key)) == 2
    finally:
        await comm.disconnect()


async def test_another_charger_connector_0_is_not_the_site_meter(world, ocpp_meter, committed):
    _, key = ocpp_meter
    other = f"T-{uuid.uuid4().hex[:8].upper()}"
    await database_sync_to_async(factories.charger)(world.maple, other, PASSWORD, connectors=1)
    comm = communicator(other)
    ok, _ = await comm.connect(timeout=5)
    assert ok
    try:
        await FakeCharger(comm).call("MeterValues", {"connectorId": 0, "meterValue": [
            sampled(timezone.now(), "Current.Import", "A", [5, 5, 5])]})
        assert await database_sync_to_async(rows)(world.maple.schema_name, key) == []
    finally:
        await comm.disconnect()
        await database_sync_to_async(factories.charger_retire)(world.maple, other)
