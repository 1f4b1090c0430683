"""A real pymodbus TCP server on loopback, in its own thread: an energy meter whose registers a test sets.

``behaviour`` makes it misbehave: "ok", "hang" (accepts the request, never answers: a timeout) or
"fail" (answers with a Modbus exception, device failure).
"""

from __future__ import annotations

import asyncio
import socket
import threading

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator.simdata import DataType, SimData
from pymodbus.simulator.simdevice import SimDevice

from tests.servers import free_port

SIZE = 200


class ModbusMeter:
    def __init__(self, unit_id: int = 1):
        self.port = free_port()
        self.unit_id = unit_id
        self.words: dict[int, dict[int, int]] = {3: {}, 4: {}}  # function code -> address -> value
        self.behaviour = "ok"
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.server: ModbusTcpServer | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _action(self, function_code, start_address, address, count, current_registers, set_values):
        self.requests += 1
        if self.behaviour == "hang":
            await asyncio.sleep(3600)
        if self.behaviour == "fail":
            return ExcCodes.DEVICE_FAILURE
        for at, value in self.words.get(function_code, {}).items():
            if 0 <= at - start_address < len(current_registers):
                current_registers[at - start_address] = value
        return None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        device = SimDevice(self.unit_id, simdata=(
            bits, bits, [SimData(0, values=[0] * SIZE, datatype=DataType.REGISTERS)],
            [SimData(0, values=[0] * SIZE, datatype=DataType.REGISTERS)]), action=self._action)
        self.server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await self.server.serve_forever()

    def start(self) -> ModbusMeter:
        self.thread.start()
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            threading.Event().wait(0.05)
        raise RuntimeError("the Modbus server did not start")

    def set_registers(self, words_at: dict[int, list[int]], function: str = "input") -> None:
        fc = 4 if function == "input" else 3
        for address, words in words_at.items():
            for i, word in enumerate(words):
                self.words[fc][address + i] = word

    def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            asyncio.run_coroutine_threadsafe(server.shutdown(), self.loop).result(10)
            self.thread.join(10)
