"""Modbus TCP site meters: the only module of the platform that imports pymodbus (the simulator's meter,
apps/simulator/modbus_meter.py, is the other one).

``poll_forever()`` (run by ``manage.py poll_site_meters``, its own process in the Procfile) polls every
Modbus site meter of every building, each in its own asyncio task on its own interval: one read of the
block holding the per-phase values of its register map (apps/electrical/registers.py), with a timeout.
A good read becomes a reading through the same checks and storage as an HTTP push; a timeout, a Modbus
error or bad data (NaN, too few registers) gives no reading, is logged once per kind of trouble, and the
connection is opened again at the next tick. A meter silent long enough turns stale (the beat task
apps.electrical.tasks.check_site_meters raises the alert). The list of meters is read again every
SITE_METER_POLL_RELOAD_S, so meters added, changed or retired by commissioning are followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from decimal import Decimal

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from apps.core.tenants import all_condominiums, in_condominium, run_in_schema
from apps.electrical import registers, services
from apps.electrical.models import SiteMeter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModbusTarget:
    """One Modbus site meter to poll, as commissioned."""

    schema_name: str
    meter_key: str
    host: str
    port: int
    unit_id: int
    register_map: registers.RegisterMap
    phases: int
    interval_s: float
    timeout_s: float


def register_map_of(modbus: dict) -> registers.RegisterMap:
    return registers.map_of(modbus.get("profile", "sdm630"), modbus.get("registers"))


def load_targets() -> list[ModbusTarget]:
    """Every active Modbus site meter of every building."""
    targets = []
    for condo in all_condominiums():
        with in_condominium(condo):
            for meter in SiteMeter.objects.filter(source=SiteMeter.Source.MODBUS, removed_at__isnull=True
                                                  ).select_related("circuit"):
                modbus = meter.settings.get("modbus") or {}
                try:
                    targets.append(ModbusTarget(
                        schema_name=condo.schema_name, meter_key=meter.key, host=modbus["host"],
                        port=int(modbus.get("port", 502)), unit_id=int(modbus.get("unit_id", 1)),
                        register_map=register_map_of(modbus), phases=meter.circuit.phases,
                        interval_s=float(modbus.get("interval_s", 5)), timeout_s=float(modbus.get("timeout_s", 2))))
                except (KeyError, ValueError, TypeError):
                    logger.exception("site meter %s of %s: unusable Modbus settings %r", meter.key,
                                     condo.schema_name, modbus)
    return targets


async def read_values(client: AsyncModbusTcpClient, target: ModbusTarget) -> list[Decimal]:
    """One read of the meter's per-phase values; raises on a Modbus error or bad data."""
    start, count = target.register_map.block(target.phases)
    read = (client.read_input_registers if target.register_map.function == "input"
            else client.read_holding_registers)
    response = await read(start, count=count, device_id=target.unit_id)
    if response.isError():
        raise ModbusException(f"the meter answered {response}")
    return target.register_map.decode(response.registers, start, target.phases)


class MeterPoller:
    """Polls one meter on its interval until cancelled."""

    def __init__(self, target: ModbusTarget):
        self.target = target
        self.client: AsyncModbusTcpClient | None = None
        self.last_trouble = ""
        self.readings = 0

    async def run(self) -> None:
        try:
            while True:
                started = time.monotonic()
                await self.poll_once()
                await asyncio.sleep(max(self.target.interval_s - (time.monotonic() - started), 0.05))
        finally:
            self.close()

    async def poll_once(self) -> bool:
        target = self.target
        try:
            values = await asyncio.wait_for(self._read(), target.timeout_s)
        except (TimeoutError, ModbusException, registers.BadData, OSError) as exc:
            self.trouble(f"{type(exc).__name__}: {exc}")
            self.close()  # a fresh connection at the next tick
            return False
        now = timezone.now()
        shaped = [(("modbus", target.register_map.name), now, target.register_map.quantity, values)]
        stored = await run_in_schema(target.schema_name, services.site_readings_from_values,
                                     meter_key=target.meter_key, values=shaped, now=now,
                                     building_schema=target.schema_name)
        if stored is not None and stored.accepted:
            self.readings += 1
            if self.last_trouble:
                logger.info("site meter %s (%s): reading again", target.meter_key, target.schema_name)
            self.last_trouble = ""
            return True
        self.trouble("refused: " + "; ".join(f"{r.where()}: {r.message}" for r in (stored.refused if stored else ())))
        return False

    async def _read(self) -> list[Decimal]:
        if self.client is None or not self.client.connected:
            self.close()
            self.client = AsyncModbusTcpClient(self.target.host, port=self.target.port, timeout=self.target.timeout_s,
                                               retries=0, reconnect_delay=0)
            if not await self.client.connect():
                raise ModbusException(f"cannot connect to {self.target.host}:{self.target.port}")
        return await read_values(self.client, self.target)

    def trouble(self, what: str) -> None:
        kind = what.split(":")[0]
        if kind != self.last_trouble.split(":")[0]:  # once per kind of trouble, not every tick
            logger.warning("site meter %s (%s) at %s:%s: no reading (%s)", self.target.meter_key,
                           self.target.schema_name, self.target.host, self.target.port, what)
        self.last_trouble = what

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None


async def poll_forever(*, stop: asyncio.Event | None = None, reload_s: float | None = None) -> dict[str, int]:
    """Poll every Modbus site meter until ``stop`` is set; readings stored per meter key."""
    stop = stop or asyncio.Event()
    reload_s = reload_s or settings.SITE_METER_POLL_RELOAD_S
    running: dict[ModbusTarget, tuple[MeterPoller, asyncio.Task]] = {}
    counts: dict[str, int] = {}
    try:
        while not stop.is_set():
            targets = set(await database_sync_to_async(load_targets)())
            for target in set(running) - targets:
                poller, task = running.pop(target)
                task.cancel()
                counts[target.meter_key] = counts.get(target.meter_key, 0) + poller.readings
            for target in targets - set(running):
                poller = MeterPoller(target)
                running[target] = (poller, asyncio.create_task(poller.run()))
                logger.info("polling site meter %s (%s) at %s:%s every %s s", target.meter_key, target.schema_name,
                            target.host, target.port, target.interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), reload_s)
    finally:
        for target, (poller, task) in running.items():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            counts[target.meter_key] = counts.get(target.meter_key, 0) + poller.readings
    return counts
