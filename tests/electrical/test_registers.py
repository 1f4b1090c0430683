"""Register maps decode exactly what the makers' protocol documents say the meters hold."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.electrical import registers
from apps.electrical.registers import EM24, SDM630, BadData, RegisterMap


def test_sdm630_float32_big_endian_phase_currents_at_6_8_10():
    assert SDM630.block(3) == (0x0006, 6)
    assert SDM630.block(1) == (0x0006, 2)
    # 41.2 as IEEE 754 single precision: 0x4224CCCD (high word first).
    words = [0x4224, 0xCCCD, 0, 0, 0x3F80, 0x0000]
    assert SDM630.decode(words, 0x0006, 3) == [Decimal("41.2"), Decimal(0), Decimal(1)]


def test_em24_int32_low_word_first_weighted_milliamps():
    assert EM24.block(3) == (0x000C, 6)
    # 70000 mA = 0x00011170: low word 0x1170 first, then the high word 0x0001.
    words = [0x1170, 0x0001, 0xFFFF, 0xFFFF, 500, 0]
    assert EM24.decode(words, 0x000C, 3) == [Decimal("70.000"), Decimal("-0.001"), Decimal("0.500")]
    power = registers.EM24_POWER
    assert power.addresses == (0x0012, 0x0014, 0x0016) and power.scale == Decimal("0.1")


def test_encode_and_decode_agree_for_every_shipped_map():
    for register_map in registers.MAPS.values():
        values = [Decimal("12.5"), Decimal(0), Decimal("230.0")]
        words = registers.encode(register_map, values)
        start, count = register_map.block(3)
        block = [0] * count
        for address, ws in words.items():
            block[address - start:address - start + len(ws)] = ws
        assert register_map.decode(block, start, 3) == values


def test_nan_infinity_and_short_reads_are_bad_data():
    with pytest.raises(BadData, match="0x0006: nan is not a number"):
        SDM630.decode([0x7FC0, 0, 0, 0, 0, 0], 0x0006, 3)
    with pytest.raises(BadData, match="is not a number"):
        SDM630.decode([0x7F80, 0, 0, 0, 0, 0], 0x0006, 3)
    with pytest.raises(BadData, match="0x000a: not read"):
        SDM630.decode([0, 0, 0, 0], 0x0006, 3)


def test_a_custom_map_of_scattered_int16_holding_registers():
    custom = RegisterMap("custom", "holding", "int16", "big", "current_a", (300, 310, 305), Decimal("0.1"))
    assert custom.block(3) == (300, 11)
    words = [0] * 11
    words[0], words[10], words[5] = 123, 0xFFF6, 7
    assert custom.decode(words, 300, 3) == [Decimal("12.3"), Decimal("-1.0"), Decimal("0.7")]
