"""Modbus register maps of energy meters, and decoding their registers into per-phase values.

Pure: no Django, no I/O (apps/electrical/modbus.py reads the registers). Shipped maps, from the makers'
protocol documents:

* Eastron SDM630 (``sdm630``): input registers (function 04), IEEE 754 float32, big-endian words and
  bytes; phase currents in A at 0x0006, 0x0008, 0x000A (30007/30009/30011); phase powers in W at
  0x000C, 0x000E, 0x0010.
* Carlo Gavazzi EM24 (``em24``): input registers (function 04; 03 reads the same), INT32 with the
  *low* word first (LSW -> MSW, bytes MSB first within a word); A L1/L2/L3 at 0x000C, 0x000E, 0x0010
  weighted A x 1000; W L1/L2/L3 at 0x0012, 0x0014, 0x0016 weighted W x 10.

A meter not listed gets a ``custom`` map in its commissioning file (docs/commissioning.md).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

Function = Literal["input", "holding"]
ValueType = Literal["float32", "int32", "uint32", "int16", "uint16"]
WordOrder = Literal["big", "little"]
Quantity = Literal["current_a", "power_w"]

VALUE_TYPES: tuple[ValueType, ...] = ("float32", "int32", "uint32", "int16", "uint16")
_WORDS = {"float32": 2, "int32": 2, "uint32": 2, "int16": 1, "uint16": 1}
_FORMATS = {"float32": ">f", "int32": ">i", "uint32": ">I", "int16": ">h", "uint16": ">H"}


class BadData(ValueError):
    """The registers do not hold a usable value (NaN, infinity, too few registers)."""


@dataclass(frozen=True)
class RegisterMap:
    """Where a meter keeps its per-phase values, and how to read them: value = raw x scale."""

    name: str
    function: Function
    value_type: ValueType
    word_order: WordOrder  # "little": the low word first (Carlo Gavazzi's INT32)
    quantity: Quantity
    addresses: tuple[int, ...]  # L1, L2, L3 (zero-based register addresses)
    scale: Decimal = Decimal(1)

    @property
    def words(self) -> int:
        return _WORDS[self.value_type]

    def block(self, phases: int) -> tuple[int, int]:
        """(first address, register count) of one read that covers the first ``phases`` values."""
        used = self.addresses[:phases]
        start = min(used)
        return start, max(used) + self.words - start

    def decode(self, registers: Sequence[int], start: int, phases: int) -> list[Decimal]:
        """The first ``phases`` values from a block read at ``start``; BadData when one is not a number."""
        values = []
        for address in self.addresses[:phases]:
            offset = address - start
            words = list(registers[offset:offset + self.words])
            if offset < 0 or len(words) != self.words or any(not 0 <= w <= 0xFFFF for w in words):
                raise BadData(f"register {address:#06x}: not read")
            if self.word_order == "little":
                words.reverse()
            raw = struct.unpack(_FORMATS[self.value_type], b"".join(w.to_bytes(2, "big") for w in words))[0]
            if isinstance(raw, float):
                if not math.isfinite(raw):
                    raise BadData(f"register {address:#06x}: {raw} is not a number")
                # The meter's float32 carries about 7 significant digits: keep what it holds, no more.
                number = Decimal(f"{raw:.7g}")
            else:
                number = Decimal(raw)
            values.append(number * self.scale)
        return values


SDM630 = RegisterMap("sdm630", "input", "float32", "big", "current_a", (0x0006, 0x0008, 0x000A))
SDM630_POWER = RegisterMap("sdm630-power", "input", "float32", "big", "power_w", (0x000C, 0x000E, 0x0010))
EM24 = RegisterMap("em24", "input", "int32", "little", "current_a", (0x000C, 0x000E, 0x0010), Decimal("0.001"))
EM24_POWER = RegisterMap("em24-power", "input", "int32", "little", "power_w", (0x0012, 0x0014, 0x0016),
                         Decimal("0.1"))

MAPS: dict[str, RegisterMap] = {m.name: m for m in (SDM630, SDM630_POWER, EM24, EM24_POWER)}


def map_of(profile: str, custom: Mapping[str, Any] | None = None) -> RegisterMap:
    """The register map of a commissioned meter: a shipped profile's, or for ``custom`` the one its
    ``registers`` describe (``site_meter.modbus`` of the commissioning file, as the meter's settings keep it)."""
    if profile != "custom":
        return MAPS[profile]
    if custom is None:
        raise KeyError("a custom profile needs registers")
    return RegisterMap(
        name="custom", function=custom.get("function", "input"), value_type=custom.get("type", "float32"),
        word_order=custom.get("word_order", "big"), quantity=custom.get("quantity", "current_a"),
        addresses=tuple(int(a) for a in custom["addresses"]), scale=Decimal(str(custom.get("scale", "1"))))


def encode(register_map: RegisterMap, values: Sequence[Decimal | float | int]) -> dict[int, list[int]]:
    """Registers holding ``values`` as a meter of this map would (for tests and the simulator)."""
    out: dict[int, list[int]] = {}
    for address, value in zip(register_map.addresses, values, strict=False):
        raw = Decimal(str(value)) / register_map.scale
        packed = struct.pack(_FORMATS[register_map.value_type],
                             float(raw) if register_map.value_type == "float32" else int(raw))
        words = [int.from_bytes(packed[i:i + 2], "big") for i in range(0, len(packed), 2)]
        if register_map.word_order == "little":
            words.reverse()
        out[address] = words
    return out
