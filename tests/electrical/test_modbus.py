"""Modbus TCP site meters polled by ``manage.py poll_site_meters`` from real pymodbus servers on loopback."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.alerts.models import Alert
from apps.core.tenants import in_schema
from apps.electrical import latest, registers, services
from apps.electrical.models import SiteMeterReading
from tests import factories
from tests.electrical.modbus_server import ModbusMeter
from tests.helpers import wait_for


@pytest.fixture
def modbus_meter(world, committed):
    servers: list[ModbusMeter] = []
    keys: list[str] = []

    def make(profile: str, *, condo=None, stale_after_s: int = 2, **modbus) -> tuple[ModbusMeter, str]:
        server = ModbusMeter(unit_id=modbus.pop("unit_id", 3)).start()
        servers.append(server)
        key = f"mb-{uuid.uuid4().hex[:8]}"
        factories.site_meter(condo or world.maple, {
            "id": key, "source": "modbus", "stale_after_s": stale_after_s,
            "modbus": {"host": "127.0.0.1", "port": server.port, "unit_id": server.unit_id, "profile": profile,
                       "interval_s": "0.2", "timeout_s": "0.1", **modbus}})
        latest.forget((condo or world.maple).schema_name)
        keys.append(key)
        return server, key

    yield make
    for server in servers:
        server.stop()
    for key in keys:
        factories.site_meter_retire(world.maple, key)
    latest.forget(world.maple.schema_name)


def rows(world, key):
    with in_schema(world.maple.schema_name):
        return list(SiteMeterReading.objects.filter(meter__key=key).order_by("sampled_at").values_list(
            "current_l1_a", "current_l2_a", "current_l3_a", "power_l1_w"))


def poll(seconds: float = 1.5) -> str:
    from io import StringIO

    out = StringIO()
    call_command("poll_site_meters", "--duration", str(seconds), stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(("profile", "values", "expected"), [
    ("sdm630", [41.2, 38.0, 44.95], (Decimal("41.2"), Decimal("38.0"), Decimal("45.0"), None)),
    ("em24", ["12.345", "0", "7.5"], (Decimal("12.4"), Decimal("0.0"), Decimal("7.5"), None)),
    ("em24-power", ["2300.5", "230", "0"], (Decimal("10.1"), Decimal("1.0"), Decimal("0.0"), 2300)),
    ("sdm630-power", [9476, 8740, 230], (Decimal("41.2"), Decimal("38.0"), Decimal("1.0"), 9476)),
])
def test_shipped_register_maps_are_read_into_readings(world, modbus_meter, profile, values, expected):
    server, key = modbus_meter(profile)
    server.set_registers(registers.encode(registers.MAPS[profile], values))
    out = poll()
    found = rows(world, key)
    assert len(found) >= 3, out  # every 0.2 s for 1.5 s
    assert set(found) == {expected}
    held = latest.site_load_latest(world.maple.schema_name)
    assert held.meter_key == key and held.reading.currents_a == expected[:3]
    assert f"{key}: {len(found)} readings" in out


def test_a_custom_map_of_holding_registers(world, modbus_meter):
    custom = registers.RegisterMap("custom", "holding", "uint16", "big", "current_a", (100, 101, 102), Decimal("0.1"))
    server, key = modbus_meter("custom", registers={"function": "holding", "type": "uint16",
                                                    "addresses": [100, 101, 102], "scale": "0.1"})
    server.set_registers(registers.encode(custom, [123, "4.5", 0]), function="holding")
    poll(1)
    assert set(rows(world, key)) == {(Decimal("123.0"), Decimal("4.5"), Decimal("0.0"), None)}


@pytest.mark.parametrize("trouble", ["hang", "fail", "nan", "spike", "down"])
def test_timeouts_errors_and_bad_data_give_no_reading_and_the_meter_turns_stale(world, modbus_meter, trouble):
    server, key = modbus_meter("sdm630", stale_after_s=1)
    server.set_registers(registers.encode(registers.SDM630, [10, 10, 10]))
    poll(0.6)
    assert rows(world, key), "the meter read well first"
    good = len(rows(world, key))
    if trouble in ("hang", "fail"):
        server.behaviour = trouble
    elif trouble == "nan":
        server.set_registers(registers.encode(registers.SDM630, [float("nan"), 10, 10]))
    elif trouble == "spike":
        server.set_registers(registers.encode(registers.SDM630, [999, 10, 10]))
    else:
        server.stop()
    poll(1.5)
    assert len(rows(world, key)) == good  # nothing new was used
    if trouble == "hang":
        assert server.requests > good  # it was asked, again and again, and each time gave up in time
    schema = world.maple.schema_name
    wait_for(lambda: latest.site_meter_is_stale(schema), 5, what="the meter turning stale")
    with in_schema(schema):
        assert services.site_meters_check_stale(schema_name=schema) == [key]
        assert Alert.objects.filter(kind=Alert.Kind.SITE_METER_STALE, resolved_at__isnull=True).exists()
        if trouble == "spike":
            from apps.electrical.models import SiteMeterRefusal

            assert SiteMeterRefusal.objects.get(meter__key=key, reason="implausible").count >= 1
    if trouble == "down":
        return
    server.behaviour = "ok"
    server.set_registers(registers.encode(registers.SDM630, [11, 11, 11]))
    poll(0.8)
    assert (Decimal(11), Decimal(11), Decimal(11), None) in rows(world, key)
    with in_schema(schema):
        assert services.site_meters_check_stale(schema_name=schema, now=timezone.now()) == []
        assert not Alert.objects.filter(kind=Alert.Kind.SITE_METER_STALE, resolved_at__isnull=True).exists()


def test_only_apps_electrical_modbus_and_the_simulators_meter_import_pymodbus():
    """The platform's client in one module; the simulator's Modbus site meter (a server) in another."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    importers = sorted(str(p.relative_to(root)) for p in (root / "apps").rglob("*.py")
                       if "pymodbus" in p.read_text(encoding="utf-8") and "import" in p.read_text(encoding="utf-8")
                       and any(line.lstrip().startswith(("import pymodbus", "from pymodbus"))
                               for line in p.read_text(encoding="utf-8").splitlines()))
    assert importers == ["apps/electrical/modbus.py", "apps/simulator/modbus_meter.py"]
