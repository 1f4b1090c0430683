"""A Modbus TCP energy meter served by pymodbus in its own thread.

``ModbusMeterServer`` answers function 03 and 04 reads of one unit id with the registers it was given (0 where
none was): the simulator's site meter (``manage.py simulate_chargers --push-site-meter``) and the tests' meter
(tests/electrical/modbus_server.py). ``ModbusFeed`` is the simulator's: a commissioned meter's host, port and
unit id, whose registers hold each reading it is shown, encoded with the meter's register map
(apps/simulator/meter_registers.py). No Django.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from decimal import Decimal

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator.simdata import DataType, SimData
from pymodbus.simulator.simdevice import SimDevice

from apps.simulator.meter_registers import ModbusMeterSettings, meter_registers

SIZE = 200  # registers served from address 0, at least
FUNCTION_CODES = {"holding": 3, "input": 4}


class ModbusMeterServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 502, unit_id: int = 1, size: int = SIZE):
        self.host, self.port, self.unit_id, self.size = host, port, unit_id, size
        # function code -> address -> value; replaced whole on every change, so a read sees one set or the next
        self.words: dict[int, dict[int, int]] = {3: {}, 4: {}}
        self.loop = asyncio.new_event_loop()
        self.server: ModbusTcpServer | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"modbus-meter-{port}")
        self._listening = threading.Event()
        self._error: str | None = None

    async def _action(self, function_code, start_address, address, count, current_registers, set_values):
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
            bits, bits, [SimData(0, values=[0] * self.size, datatype=DataType.REGISTERS)],
            [SimData(0, values=[0] * self.size, datatype=DataType.REGISTERS)]), action=self._action)
        server = self.server = ModbusTcpServer(device, address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as error:  # it could not listen: the address is taken or not this machine's
            self._error = str(error)
            self.server = None
            return
        finally:
            self._listening.set()
        await server.serving

    def start(self) -> ModbusMeterServer:
        """Listen, or raise OSError saying why not."""
        self.thread.start()
        if not self._listening.wait(10) or self._error is not None:
            self.thread.join(1)
            raise OSError(f"cannot listen on {self.host}:{self.port} ({self._error or 'no answer in 10 s'})")
        return self

    def set_registers(self, words_at: dict[int, list[int]], function: str = "input") -> None:
        """Put ``words`` at each address (of the input registers, or ``function="holding"``)."""
        fc = FUNCTION_CODES[function]
        table = dict(self.words[fc])
        for address, words in words_at.items():
            for i, word in enumerate(words):
                table[address + i] = word
        self.words = {**self.words, fc: table}

    def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            asyncio.run_coroutine_threadsafe(server.shutdown(), self.loop).result(10)
        if self.thread.is_alive():
            self.thread.join(10)


class ModbusFeed:
    """A commissioned Modbus site meter served by the simulator: the last reading shown is in its registers."""

    def __init__(self, meter: ModbusMeterSettings):
        self.meter = meter
        register_map = meter.register_map
        size = max(SIZE, max(register_map.addresses) + register_map.words)
        self.server = ModbusMeterServer(meter.host, meter.port, meter.unit_id, size=size)
        self.shown: tuple[Decimal, ...] | None = None  # the values the registers hold

    def start(self) -> ModbusFeed:
        self.server.start()
        return self

    def show(self, amps: Sequence[Decimal]) -> tuple[Decimal, ...]:
        """Put the reading (per-phase currents at the meter's node) in the registers; the values they hold."""
        values, words = meter_registers(self.meter.register_map, amps, self.meter.voltage_v)
        self.server.set_registers(words, self.meter.register_map.function)
        self.shown = values
        return values

    def stop(self) -> None:
        self.server.stop()
