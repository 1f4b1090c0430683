"""``simulate_chargers --push-site-meter`` serves a building's Modbus TCP site meter on its loopback host and port,
and the platform's poller reads back the reading the simulator computed."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal

import pytest
from pymodbus.client import AsyncModbusTcpClient

from apps.electrical import registers
from apps.electrical.modbus import ModbusTarget, read_values
from apps.simulator.meter_registers import is_loopback, meter_values, resolution
from tests import factories
from tests.helpers import wait_for
from tests.servers import free_port
from tests.simulator.buildings import modbus_meter, write_commissioning
from tests.simulator.running import Background, simulate

PASSWORD = "modbus-meter-secret-01"

# No EV: the meter's reading is the building's curve alone, per phase.
SCENARIO = "arrivals: {enabled: false}\nbuilding_load: {base_a: [41.3, 0, 17.5]}\n"


def _building(world, tmp_path, unique_id: str, modbus: dict) -> tuple[str, str, str]:
    charger = f"MB-{unique_id}"
    meter = f"mb-{unique_id.lower()}"
    factories.charger(world.maple, charger, PASSWORD, connectors=2)
    factories.site_meter(world.maple, {"id": meter, "source": "modbus", "stale_after_s": 15, "modbus": modbus})
    commissioning = write_commissioning(tmp_path / "building.yaml", charger=charger, password=PASSWORD,
                                        site_meter=modbus_meter(meter, modbus), guns=2)
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO)
    return charger, meter, str(commissioning)


def _read(port: int, unit_id: int, register_map: registers.RegisterMap) -> list[Decimal]:
    """One read by the poller's own code (apps/electrical/modbus.py) over a real pymodbus client."""
    target = ModbusTarget("unused", "unused", "127.0.0.1", port, unit_id, register_map, phases=3, interval_s=1,
                          timeout_s=2)

    async def read() -> list[Decimal]:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        assert await client.connect()
        try:
            return await read_values(client, target)
        finally:
            client.close()

    return asyncio.run(read())


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("profile", ["em24", "em24-power", "sdm630"])
def test_the_simulator_serves_a_loopback_modbus_site_meter_the_poller_reads(world, committed, tmp_path, unique_id,
                                                                            profile):
    port = free_port()
    charger, meter, commissioning = _building(world, tmp_path, unique_id, {
        "host": "127.0.0.1", "port": port, "unit_id": 7, "profile": profile, "interval_s": 2})
    nobody = f"ws://127.0.0.1:{free_port()}/ocpp/"  # the chargers keep retrying: only the meter matters here
    run = Background("--condominium", "maple-court", "--charger", charger, "--url", nobody,
                     "--commissioning-file", commissioning, "--scenario", str(tmp_path / "scenario.yaml"),
                     "--duration", "60", "--push-site-meter")
    try:
        wait_for(lambda: run.command.observers and run.command.observers[0].modbus is not None
                 and run.command.observers[0].modbus.shown is not None, timeout=20)
        feed = run.command.observers[0].modbus
        register_map = registers.MAPS[profile]
        read = _read(port, 7, register_map)
        shown = feed.shown
    finally:
        output = run.join(20, stop=True)
        factories.site_meter_retire(world.maple, meter)
        factories.charger_retire(world.maple, charger)
    assert f"site meter {meter} fed every 5 simulated s over Modbus TCP at 127.0.0.1:{port} (unit 7, " \
           f"profile {profile})" in output, output
    # What the registers hold is what the observer computed (the curve at the meter's node), at the map's
    # resolution: A for a current map, A x 230 V for a power map.
    expected = meter_values(register_map, [Decimal("41.3"), Decimal(0), Decimal("17.5")], 230)
    assert read == list(shown) == list(expected)
    assert all(v == v.quantize(resolution(register_map)) for v in read)
    if profile == "em24-power":
        assert read == [Decimal("9499.0"), Decimal(0), Decimal("4025.0")]
    else:
        assert read == [Decimal("41.3"), Decimal(0), Decimal("17.5")]
    assert not _listening(port)  # served for the run only


@pytest.mark.timeout(60)
def test_a_modbus_site_meter_on_another_host_is_not_served(world, committed, tmp_path, unique_id):
    port = free_port()
    charger, meter, commissioning = _building(world, tmp_path, unique_id, {
        "host": "192.0.2.10", "port": port, "unit_id": 1, "profile": "em24"})
    try:
        output = simulate("--condominium", "maple-court", "--charger", charger, "--url",
                          f"ws://127.0.0.1:{free_port()}/ocpp/", "--commissioning-file", commissioning,
                          "--scenario", str(tmp_path / "scenario.yaml"), "--duration", "1", "--push-site-meter")
    finally:
        factories.site_meter_retire(world.maple, meter)
        factories.charger_retire(world.maple, charger)
    assert f"maple-court: site meter {meter} is read over Modbus TCP at 192.0.2.10:{port}, not a loopback " \
           "address: none fed" in output, output
    assert "fed every" not in output


def test_loopback_hosts():
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "LOCALHOST", "::1", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("192.0.2.10", "10.0.0.5", "meter.local", "0.0.0.0", "::"))


def test_a_power_map_holds_the_currents_times_the_voltage_at_its_resolution():
    em24_power = registers.MAPS["em24-power"]
    values = meter_values(em24_power, [Decimal("10.0004"), Decimal("1.05"), Decimal(0)], 230)
    assert values == (Decimal("2300.1"), Decimal("241.5"), Decimal(0))
    words = registers.encode(em24_power, values)
    assert em24_power.decode([w for a in sorted(words) for w in words[a]], em24_power.addresses[0], 3) == list(values)
    # An integer type holds no more than its range: a saturated value, not an error.
    tiny = registers.RegisterMap("custom", "holding", "int16", "big", "current_a", (0, 1, 2), Decimal("0.01"))
    assert meter_values(tiny, [Decimal(500), Decimal("1.234"), Decimal(0)], 230) == (
        Decimal("327.67"), Decimal("1.23"), Decimal(0))
