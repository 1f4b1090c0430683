"""A real pymodbus TCP server on loopback, in its own thread (apps/simulator/modbus_meter.py): an energy meter
whose registers a test sets, on a free port.

``behaviour`` makes it misbehave: "ok", "hang" (accepts the request, never answers: a timeout) or
"fail" (answers with a Modbus exception, device failure).
"""

from __future__ import annotations

import asyncio

from pymodbus.constants import ExcCodes

from apps.simulator.modbus_meter import ModbusMeterServer
from tests.servers import free_port


class ModbusMeter(ModbusMeterServer):
    def __init__(self, unit_id: int = 1):
        super().__init__("127.0.0.1", free_port(), unit_id)
        self.behaviour = "ok"
        self.requests = 0

    async def _action(self, function_code, start_address, address, count, current_registers, set_values):
        self.requests += 1
        if self.behaviour == "hang":
            await asyncio.sleep(3600)
        if self.behaviour == "fail":
            return ExcCodes.DEVICE_FAILURE
        return await super()._action(function_code, start_address, address, count, current_registers, set_values)
