"""Smart meter (0x0288) fixtures, byte by byte, and the exact energy arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin.echonet import (
    JST,
    EchonetDecodeError,
    EchonetEncodeError,
    EnergyScale,
    EnergyUnit,
    decode_property,
    encode_property,
)
from kenshin.echonet import edt as e

METER = 0x0288


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


def meter(epc: int, text: str):
    return decode_property(METER, epc, hx(text))


# -- property maps -----------------------------------------------------------------------

# A typical meter's Get map: super class, D3 D7 and E0..ED (25 EPCs: bitmap form).
TYPICAL_GET_MAP = frozenset({
    0x80, 0x81, 0x82, 0x88, 0x8A, 0x8D, 0x97, 0x98, 0x9D, 0x9E, 0x9F, 0xD3, 0xD7,
    0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE7, 0xE8, 0xEA, 0xEB, 0xEC, 0xED,
})  # fmt: skip
# Worked by hand: byte i holds EPCs 0x?i; bit 0 = 0x8i, 1 = 0x9i, 5 = 0xDi, 6 = 0xEi.
TYPICAL_GET_MAP_EDT = "19 41 41 41 60 40 40 00 62 43 00 41 40 40 43 02 02"


def test_get_map_bitmap_fixture() -> None:
    assert meter(0x9F, TYPICAL_GET_MAP_EDT) == TYPICAL_GET_MAP
    assert encode_property(METER, 0x9F, TYPICAL_GET_MAP) == hx(TYPICAL_GET_MAP_EDT)


def test_short_maps_fixture() -> None:
    assert meter(0x9E, "05 81 97 98 E5 ED") == {0x81, 0x97, 0x98, 0xE5, 0xED}
    assert meter(0x9D, "04 EA 80 88 81") == {0x80, 0x81, 0x88, 0xEA}  # any order
    assert encode_property(METER, 0x9D, {0xEA, 0x80, 0x88, 0x81}) == hx("04 80 81 88 EA")
    assert meter(0x9D, "00") == frozenset()
    fifteen = frozenset(range(0x80, 0x8F))
    assert encode_property(METER, 0x9F, fifteen) == bytes([15, *range(0x80, 0x8F)])
    sixteen = frozenset(range(0x80, 0x90))
    assert encode_property(METER, 0x9F, sixteen) == bytes([16] + [1] * 16)


@pytest.mark.parametrize("i", range(16))
@pytest.mark.parametrize("j", range(8))
def test_bitmap_bit_j_of_byte_i(i: int, j: int) -> None:
    """Bit j of byte i means EPC 0x80 + 0x10*j + i: one bit at a time, with 15 fillers in
    another byte so that the map has the 16 entries that make it a bitmap."""
    filler_byte = (i + 1) % 16
    others = {0x80 + 0x10 * b + filler_byte for b in range(8)}
    others |= {0x80 + 0x10 * b + (i + 2) % 16 for b in range(7)}
    bitmap = bytearray(16)
    bitmap[i] |= 1 << j
    bitmap[filler_byte] = 0xFF
    bitmap[(i + 2) % 16] |= 0x7F
    epcs = meter(0x9F, f"10 {bitmap.hex()}")
    assert epcs == others | {0x80 + 0x10 * j + i}
    assert encode_property(METER, 0x9F, epcs) == bytes([16]) + bytes(bitmap)


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("", 0),  # no count
        ("03 80 81", 0),  # says 3, lists 2
        ("02 80 81 82", 0),  # says 2, lists 3
        ("02 80 80", 1),  # the same EPC twice
        ("10 " + "01" * 15, 0),  # bitmap of 15 bytes
        ("10 " + "01" * 17, 0),  # bitmap of 17 bytes
        ("11 " + "01" * 16, 0),  # bitmap holds 16, count says 17
        ("FF " + "FF" * 16, 0),  # bitmap holds 128, count says 255
    ],
)
def test_bad_property_maps(text: str, offset: int) -> None:
    with pytest.raises(EchonetDecodeError) as info:
        meter(0x9F, text)
    assert info.value.offset == offset and info.value.epc == 0x9F


def test_bitmap_cannot_hold_low_epcs() -> None:
    with pytest.raises(EchonetEncodeError):
        encode_property(METER, 0x9F, set(range(0x70, 0x90)))


# -- instantaneous values ----------------------------------------------------------------


def test_currents() -> None:
    assert meter(0xE8, "00 14 7F FE") == e.Currents(20, None)  # 2.0 A, single-phase 2-wire
    assert meter(0xE8, "00 0A 00 14") == e.Currents(10, 20)
    assert meter(0xE8, "FF F6 00 05") == e.Currents(-10, 5)  # R flowing in reverse
    assert meter(0xE8, "80 01 7F FD") == e.Currents(-32767, 32765)  # the range's ends
    assert encode_property(METER, 0xE8, e.Currents(20, None)) == hx("00 14 7F FE")
    assert encode_property(METER, 0xE8, e.Currents(-10, 5)) == hx("FF F6 00 05")
    for bad in ("00 14", "00 14 7F FE 00", "80 00 00 00", "00 00 80 00", "7F FF 00 00"):
        with pytest.raises(EchonetDecodeError):
            meter(0xE8, bad)
    for value in (e.Currents(32766, None), e.Currents(0, -32768)):
        with pytest.raises(EchonetEncodeError):
            encode_property(METER, 0xE8, value)


def test_instantaneous_power() -> None:
    assert meter(0xE7, "00 00 01 F4") == 500
    assert meter(0xE7, "FF FF FF 38") == -200  # selling to the grid
    assert meter(0xE7, "80 00 00 00") == -(2**31)
    assert meter(0xE7, "7F FF FF FE") is None  # no data
    assert encode_property(METER, 0xE7, -200) == hx("FF FF FF 38")
    assert encode_property(METER, 0xE7, None) == hx("7F FF FF FE")
    with pytest.raises(EchonetDecodeError):
        meter(0xE7, "FF FF 38")


def test_cumulative_energy() -> None:
    assert meter(0xE0, "05 F5 E0 FF") == 99_999_999
    assert meter(0xE0, "FF FF FF FE") is None
    assert meter(0xE3, "00 00 00 00") == 0
    with pytest.raises(EchonetDecodeError):
        meter(0xE0, "05 F5 E1 00")  # 100,000,000 needs nine digits


# -- fixed-time values and histories -----------------------------------------------------


def test_fixed_time_energy_with_jst_timestamp() -> None:
    value = meter(0xEA, "07 E6 0C 1F 17 1E 00 00 01 E2 40")
    assert value == e.FixedTimeEnergy(datetime(2022, 12, 31, 23, 30, tzinfo=JST), 123_456)
    assert value.at.utcoffset() == timedelta(hours=9)
    assert value.at == datetime(2022, 12, 31, 14, 30, tzinfo=UTC)
    assert encode_property(METER, 0xEA, value) == hx("07 E6 0C 1F 17 1E 00 00 01 E2 40")
    reverse = meter(0xEB, "07 E8 02 1D 00 00 00 FF FF FF FE")  # 29 February, no data
    assert reverse == e.FixedTimeEnergy(datetime(2024, 2, 29, 0, 0, tzinfo=JST), None)


def test_history1_with_no_data_slots() -> None:
    slots = "00000064 000000C8 0000012C" + " FFFFFFFE" * 45
    value = meter(0xE2, "00 01 " + slots)
    assert value.day == 1
    assert value.raw[:3] == (100, 200, 300)
    assert value.raw[3:] == (None,) * 45
    assert len(value.raw) == 48
    assert encode_property(METER, 0xE2, value) == hx("00 01 " + slots)
    with pytest.raises(EchonetDecodeError) as info:
        meter(0xE4, "00 01 " + slots[:-9])  # 47 slots
    assert info.value.offset == 0


def test_history1_day_selector() -> None:
    assert meter(0xE5, "00") == 0
    assert meter(0xE5, "63") == 99
    with pytest.raises(EchonetDecodeError):
        meter(0xE5, "64")


def test_history2_selector_and_backward_pairs() -> None:
    selector = meter(0xED, "07 E8 01 01 00 00 03")
    assert selector == e.HistoryTime(datetime(2024, 1, 1, 0, 0, tzinfo=JST), 3)
    history = meter(
        0xEC, "07 E8 01 01 00 00 03" + " 000003E8 00000005 000003DE 00000005 000003D4 FFFFFFFE"
    )
    assert history.pairs == ((1000, 5), (990, 5), (980, None))
    assert history.step_minutes == 30
    assert history.times() == [  # backwards, across midnight and the new year
        datetime(2024, 1, 1, 0, 0, tzinfo=JST),
        datetime(2023, 12, 31, 23, 30, tzinfo=JST),
        datetime(2023, 12, 31, 23, 0, tzinfo=JST),
    ]
    assert encode_property(METER, 0xEC, history)[:7] == hx("07 E8 01 01 00 00 03")


@pytest.mark.parametrize(
    ("epc", "text", "offset"),
    [
        (0xED, "07 E8 01 01 00 0F 03", 5),  # 00:15 is not a 30-minute boundary
        (0xED, "07 E8 01 01 00 00 00", 6),  # count 0
        (0xED, "07 E8 01 01 00 00 0D", 6),  # count 13
        (0xED, "07 E8 0D 01 00 00 01", 0),  # month 13
        (0xEF, "07 E8 01 01 00 11 0B", 6),  # 1-minute history counts at most 10
        (0xEC, "07 E8 01 01 00 00 02 000003E8 00000005", 6),  # says 2, holds 1
        (0xEC, "07 E8 01 01 00 00", 0),  # header truncated
        (0xEC, "07 E8 01 01 00 00 01 05F5E100 00000000", 7),  # beyond 8 digits
    ],
)
def test_history2_refusals(epc: int, text: str, offset: int) -> None:
    with pytest.raises(EchonetDecodeError) as info:
        meter(epc, text)
    assert info.value.offset == offset, str(info.value)


def test_history_selector_unset_year() -> None:
    assert meter(0xED, "FF FF FF FF FF FF 01") == e.HistoryTime(None, 1)
    assert meter(0xED, "FF FF 01 01 00 00 0C") == e.HistoryTime(None, 12)
    assert encode_property(METER, 0xED, e.HistoryTime(None, 1)) == hx("FF FF FF FF FF FF 01")
    unset = meter(0xEC, "FF FF FF FF FF FF 01 00000001 00000002")
    assert unset.newest is None and unset.pairs == ((1, 2),) and unset.times() == []


def test_history3_one_minute_steps() -> None:
    selector = meter(0xEF, "07 E8 06 0F 0C 11 0A")
    assert selector == e.HistoryTime(datetime(2024, 6, 15, 12, 17, tzinfo=JST), 10)
    history = meter(0xEE, "07 E8 06 0F 0C 11 02 00000010 00000000 0000000F 00000000")
    assert history.times() == [
        datetime(2024, 6, 15, 12, 17, tzinfo=JST),
        datetime(2024, 6, 15, 12, 16, tzinfo=JST),
    ]
    with pytest.raises(EchonetEncodeError):  # seconds cannot be sent in a selector
        encode_property(METER, 0xEF, e.HistoryTime(datetime(2024, 1, 1, 0, 0, 5, tzinfo=JST), 1))
    with pytest.raises(EchonetEncodeError):
        encode_property(METER, 0xED, e.HistoryTime(datetime(2024, 1, 1, 0, 10, tzinfo=JST), 1))


def test_one_minute_energy() -> None:
    value = meter(0xD0, "07 E8 06 0F 0C 11 00 00000010 FFFFFFFE")
    assert value == e.OneMinuteEnergy(datetime(2024, 6, 15, 12, 17, tzinfo=JST), 16, None)


# -- coefficient, unit, digits -> exact energy -------------------------------------------

UNIT_MWH = {
    0x00: 1_000_000,  # 1 kWh
    0x01: 100_000,  # 0.1 kWh
    0x02: 10_000,  # 0.01 kWh
    0x03: 1_000,  # 0.001 kWh
    0x04: 100,  # 0.0001 kWh = 0.1 Wh
    0x0A: 10_000_000,  # 10 kWh
    0x0B: 100_000_000,  # 100 kWh
    0x0C: 1_000_000_000,  # 1000 kWh
    0x0D: 10_000_000_000,  # 10000 kWh
}


def test_every_unit_code_is_listed() -> None:
    assert set(UNIT_MWH) == {int(u) for u in EnergyUnit}


@pytest.mark.parametrize("code", UNIT_MWH)
def test_unit_code_to_exact_milliwatt_hours(code: int) -> None:
    unit = meter(0xE1, f"{code:02X}")
    assert unit is EnergyUnit(code)
    assert unit.milliwatt_hours == UNIT_MWH[code]
    assert unit.kwh * 1_000_000 == UNIT_MWH[code]
    scale = EnergyScale(coefficient=1, unit=unit, digits=8)
    assert scale.to_milliwatt_hours(99_999_999) == 99_999_999 * UNIT_MWH[code]
    assert scale.to_wh(3) == Decimal(3 * UNIT_MWH[code]) / 1000


@pytest.mark.parametrize("code", [0x05, 0x09, 0x0E, 0xFF])
def test_unknown_unit_codes_are_refused(code: int) -> None:
    with pytest.raises(EchonetDecodeError):
        meter(0xE1, f"{code:02X}")


def test_scale_from_d3_d7_e1() -> None:
    scale = EnergyScale(
        coefficient=meter(0xD3, "00 00 00 0A"), unit=meter(0xE1, "02"), digits=meter(0xD7, "06")
    )
    assert scale == EnergyScale(10, EnergyUnit.KWH_0_01, 6)
    # 12345 counts x 0.01 kWh x 10 = 1234.5 kWh, exactly.
    assert scale.milliwatt_hours_per_count == 100_000
    assert scale.to_milliwatt_hours(12_345) == 1_234_500_000
    assert scale.to_wh(12_345) == Decimal(1_234_500)
    assert scale.modulus == 1_000_000


def test_smallest_unit_stays_exact() -> None:
    scale = EnergyScale(unit=EnergyUnit.KWH_0_0001)
    assert scale.to_wh(1) == Decimal("0.1")
    assert scale.to_wh(123_457) == Decimal("12345.7")


def test_coefficient_and_digits_decode_limits() -> None:
    assert meter(0xD3, "00 0F 42 3F") == 999_999
    assert meter(0xD7, "01") == 1 and meter(0xD7, "08") == 8
    for epc, text in ((0xD3, "00 00 00 00"), (0xD3, "00 0F 42 40"), (0xD7, "00"), (0xD7, "09")):
        with pytest.raises(EchonetDecodeError):
            meter(epc, text)


def test_default_scale_when_d3_is_absent() -> None:
    assert EnergyScale().coefficient == 1


def test_wrap_around_delta() -> None:
    scale = EnergyScale(coefficient=1, unit=EnergyUnit.KWH_0_1, digits=6)
    assert scale.delta_counts(999_990, 5) == 15  # 999_990 -> 999_999 -> 0 -> 5
    assert scale.delta_milliwatt_hours(999_990, 5) == 15 * 100_000  # 1.5 kWh
    assert scale.delta_counts(5, 5) == 0
    assert scale.delta_counts(0, 999_999) == 999_999
    eight = EnergyScale(digits=8)
    assert eight.delta_counts(99_999_999, 0) == 1


@given(st.integers(1, 8), st.data())
def test_wrap_delta_matches_the_rule(digits: int, data: st.DataObject) -> None:
    modulus = 10**digits
    old = data.draw(st.integers(0, modulus - 1))
    new = data.draw(st.integers(0, modulus - 1))
    expected = new - old if new >= old else new + modulus - old  # docs/protocol.md §4
    assert EnergyScale(digits=digits).delta_counts(old, new) == expected


def test_coefficient_10_with_unit_0_01() -> None:
    scale = EnergyScale(coefficient=10, unit=EnergyUnit.KWH_0_01, digits=6)
    # One count is 0.1 kWh = 100 Wh; across the wrap, 999_998 -> 3 is 5 counts = 500 Wh.
    assert scale.to_wh(1) == Decimal(100)
    assert scale.delta_milliwatt_hours(999_998, 3) == 500_000


@pytest.mark.parametrize(
    "kwargs", [{"coefficient": 0}, {"coefficient": 1_000_000}, {"digits": 0}, {"digits": 9}]
)
def test_scale_refuses_impossible_settings(kwargs: dict) -> None:
    with pytest.raises(EchonetEncodeError):
        EnergyScale(**kwargs)


def test_bad_fields_name_their_own_offset() -> None:
    with pytest.raises(EchonetDecodeError) as info:
        meter(0xE8, "00 14 80 00")  # T phase -3276.8 A: beyond the range
    assert info.value.offset == 2
    with pytest.raises(EchonetDecodeError) as info:
        meter(0xEA, "07 E8 01 01 00 00 00 05 F5 E1 00")  # the register, not the time
    assert info.value.offset == 7
    with pytest.raises(EchonetDecodeError) as info:
        meter(0xD0, "07 E8 01 01 00 00 00 00000001 05F5E100")  # the reverse register
    assert info.value.offset == 11
    # A history with "no data" slots and, further on, an impossible value.
    slots = ["FFFFFFFE"] * 48
    slots[30] = "05F5E100"
    with pytest.raises(EchonetDecodeError) as info:
        meter(0xE2, "00 00 " + " ".join(slots))
    assert info.value.offset == 2 + 4 * 30
