"""A simulated Modbus TCP site meter: which meters the simulator may serve, and what one's registers hold for a
reading.

Pure: no Django, no I/O (apps/simulator/modbus_meter.py serves the registers). The registers hold the reading
the simulator computed for the meter's node, per phase, in its register map's quantity (apps/electrical/
registers.py): currents in A, or powers in W (the current x the node's phase-to-neutral voltage, which is what
the poller divides by again) for a power map, each at the map's resolution.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from apps.electrical.registers import RegisterMap, encode, map_of

# The raw range of each integer type: a value beyond it is held at the bound, as a saturated meter would.
_BOUNDS = {"int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1), "int32": (-(2**31), 2**31 - 1),
           "uint32": (0, 2**32 - 1)}
# float32 keeps about 7 significant digits: these steps keep every value below 10,000 A or 1,000,000 W exact.
_FLOAT_STEP = {"current_a": Decimal("0.001"), "power_w": Decimal("0.1")}


@dataclass(frozen=True)
class ModbusMeterSettings:
    """A commissioned Modbus site meter as the simulator serves it."""

    host: str
    port: int
    unit_id: int
    profile: str
    register_map: RegisterMap
    voltage_v: int  # phase to neutral, of the circuit the meter measures

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def modbus_settings(modbus: Mapping[str, Any], voltage_v: int) -> ModbusMeterSettings:
    """From a site meter's stored ``settings["modbus"]``, with the poller's defaults (apps/electrical/modbus.py)."""
    profile = str(modbus.get("profile", "sdm630"))
    return ModbusMeterSettings(host=str(modbus["host"]), port=int(modbus.get("port", 502)),
                               unit_id=int(modbus.get("unit_id", 1)), profile=profile,
                               register_map=map_of(profile, modbus.get("registers")), voltage_v=voltage_v)


def is_loopback(host: str) -> bool:
    """True for a host on this machine only (localhost, 127.0.0.0/8, ::1): the only meters the simulator serves."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolution(register_map: RegisterMap) -> Decimal:
    """The step of the values the map's registers hold: its scale for an integer type."""
    if register_map.value_type == "float32":
        return _FLOAT_STEP[register_map.quantity] * register_map.scale
    return register_map.scale


def meter_values(register_map: RegisterMap, amps: Sequence[Decimal], voltage_v: int) -> tuple[Decimal, ...]:
    """The per-phase values a meter of this map holds for these currents, at the map's resolution."""
    step = resolution(register_map)
    values = []
    for a in amps:
        value = a * voltage_v if register_map.quantity == "power_w" else a
        value = (value / step).to_integral_value(ROUND_HALF_UP) * step
        bounds = _BOUNDS.get(register_map.value_type)
        if bounds is not None:
            value = min(max(value, bounds[0] * register_map.scale), bounds[1] * register_map.scale)
        values.append(value)
    return tuple(values)


def meter_registers(register_map: RegisterMap, amps: Sequence[Decimal], voltage_v: int
                    ) -> tuple[tuple[Decimal, ...], dict[int, list[int]]]:
    """The values (``meter_values``) and the registers holding them: address -> words."""
    values = meter_values(register_map, amps, voltage_v)
    return values, encode(register_map, values)
