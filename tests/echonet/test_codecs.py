"""Every property of every registered class: decode(encode(v)) == v, and random or mutated
EDTs only ever raise `EchonetDecodeError`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pychonet.lib.epc_functions import _009X

from kenshin.echonet import (
    EchonetDecodeError,
    EchonetEncodeError,
    decode_property,
    encode_property,
    property_spec,
)
from kenshin.echonet import edt as e
from kenshin.echonet.classes import SUPER_CLASS, all_classes

from ._strategies import (
    SAMPLERS,
    STRATEGIES,
    concrete_codec_types,
    edts_for,
    registered_specs,
    values_for,
)

SPECS = registered_specs()
SPEC_IDS = [f"{cls}-{epc:02X}-{spec.name}" for cls, epc, spec in SPECS]
CLASS_CODES = {cls.name: cls.class_code for cls in all_classes()}
# Property tests per spec: enough examples to hit the edges, few enough to stay quick.
PER_SPEC = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_every_codec_type_has_a_strategy() -> None:
    """A new codec type must come with a strategy (and a fuzz sampler) in _strategies.py."""
    used = {type(spec.codec) for _, _, spec in SPECS}
    assert used <= concrete_codec_types()
    missing = sorted(t.__name__ for t in concrete_codec_types() if t not in STRATEGIES)
    assert not missing, f"codec types without a hypothesis strategy: {missing}"
    missing = sorted(t.__name__ for t in concrete_codec_types() if t not in SAMPLERS)
    assert not missing, f"codec types without a fuzz sampler: {missing}"


def test_registry_is_walked() -> None:
    names = {cls for cls, _, _ in SPECS}
    assert {"node_profile", "low_voltage_smart_electric_energy_meter"} <= names
    assert len(SPECS) >= 100
    for cls in all_classes():
        if cls.name != "node_profile":
            assert set(SUPER_CLASS) <= set(cls.properties), cls.name


@pytest.mark.parametrize(("cls", "epc", "spec"), SPECS, ids=SPEC_IDS)
@PER_SPEC
@given(data=st.data())
def test_round_trip(cls: str, epc: int, spec, data: st.DataObject) -> None:
    value = data.draw(values_for(spec.codec), label=spec.name)
    code = CLASS_CODES[cls]
    edt = encode_property(code, epc, value)
    assert isinstance(edt, bytes)
    assert len(edt) <= 255
    if spec.codec.size is not None:
        assert len(edt) == spec.codec.size
    assert decode_property(code, epc, edt) == value
    assert encode_property(code, epc, decode_property(code, epc, edt)) == edt


def _mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """Small edits of a valid EDT: these get past the length checks and into the fields."""
    n = len(valid)
    flips = st.lists(st.tuples(st.integers(0, max(n - 1, 0)), st.integers(1, 255)), max_size=4)

    def flip(edits: list[tuple[int, int]]) -> bytes:
        out = bytearray(valid)
        for i, x in edits:
            if out:
                out[i] ^= x
        return bytes(out)

    return st.one_of(
        flips.map(flip),
        st.integers(0, n).map(lambda k: valid[:k]),
        st.binary(min_size=1, max_size=9).map(lambda b: valid + b),
        st.integers(0, max(n - 1, 0)).map(lambda k: valid[:k] + valid[k + 1 :]),
    )


@pytest.mark.parametrize(("cls", "epc", "spec"), SPECS, ids=SPEC_IDS)
@PER_SPEC
@given(data=st.data())
def test_decode_of_garbage_raises_only_decode_errors(
    cls: str, epc: int, spec, data: st.DataObject
) -> None:
    size = spec.codec.size
    garbage = st.one_of(
        st.binary(max_size=255),
        st.binary(min_size=size or 0, max_size=size or 20),
        edts_for(spec.codec).flatmap(_mutations),
    )
    edt = data.draw(garbage, label="edt")
    try:
        value = decode_property(CLASS_CODES[cls], epc, edt)
    except EchonetDecodeError as err:
        assert err.epc == epc
        assert err.offset is None or 0 <= err.offset <= len(edt)
        assert spec.name in err.reason
        return
    # Whatever decodes re-encodes to the same value (not necessarily the same bytes:
    # padding and ignored bytes are not kept). Ascii is lenient on purpose: a NUL inside
    # a serial number is accepted from a device but is not something we would send.
    if isinstance(spec.codec, e.Ascii) and "\x00" in value:
        return
    assert decode_property(CLASS_CODES[cls], epc, spec.codec.encode(value)) == value


def test_decode_property_of_unknown_epc_or_class_is_bytes() -> None:
    assert decode_property(0x0288, 0x01, b"\x01\x02") == b"\x01\x02"
    # An unknown device class still gets the super class's properties.
    assert property_spec(0x0999, 0x80) is SUPER_CLASS[0x80]
    assert decode_property(0x0999, 0x80, b"\x30") == e.OnOff.ON
    assert decode_property(0x0999, 0xE7, b"\x00") == b"\x00"
    assert encode_property(0x0999, 0xE7, b"\x00") == b"\x00"
    with pytest.raises(KeyError):
        encode_property(0x0999, 0xE7, 5)


# -- codec details that the generic tests cannot pin down ---------------------------------


def test_unsigned_and_signed_edges() -> None:
    c = e.Unsigned(1, minimum=1, maximum=8)
    assert c.decode(b"\x01") == 1 and c.decode(b"\x08") == 8
    for bad in (b"\x00", b"\x09", b"", b"\x01\x01"):
        with pytest.raises(EchonetDecodeError):
            c.decode(bad)
    for bad in (0, 9, None, "1", 1.0):
        with pytest.raises(EchonetEncodeError):
            c.encode(bad)
    s = e.Signed(4, no_data=(e.NO_DATA_S32,))
    assert s.decode(bytes.fromhex("80000000")) == -(2**31)
    assert s.decode(bytes.fromhex("7FFFFFFF")) == 2**31 - 1
    assert s.decode(bytes.fromhex("7FFFFFFE")) is None
    with pytest.raises(EchonetEncodeError):
        s.encode(0x7FFFFFFE)  # collides with "no data"
    with pytest.raises(EchonetEncodeError):
        s.encode(2**31)


def test_ascii_padding() -> None:
    c = e.Ascii(12)
    assert c.encode("AB12") == b"AB12" + bytes(8)
    assert c.decode(b"AB12" + bytes(8)) == "AB12"
    assert c.decode(b"AB12        ") == "AB12"
    for bad in ("x" * 13, "é", "a\nb", "a\x00"):
        with pytest.raises(EchonetEncodeError):
            c.encode(bad)
    with pytest.raises(EchonetDecodeError) as info:
        c.decode(b"AB\x0112" + bytes(7))
    assert info.value.offset == 2
    with pytest.raises(EchonetDecodeError):
        c.decode(b"AB\xff" + bytes(9))


def test_installation_location_is_1_or_17_bytes() -> None:
    """0x81 is one byte, or 17 when it carries position information (0xFF + 16 bytes)."""
    assert decode_property(0x0288, 0x81, b"\x00") == b"\x00"
    assert decode_property(0x0288, 0x81, b"\xff" + bytes(16)) == b"\xff" + bytes(16)
    with pytest.raises(EchonetDecodeError):
        decode_property(0x0288, 0x81, b"")


def test_datetimes_in_other_zones_go_on_the_wire_as_jst() -> None:
    codec = e.FixedTimeEnergyCodec()
    utc = datetime(2024, 3, 31, 15, 30, tzinfo=UTC)
    edt = codec.encode(e.FixedTimeEnergy(utc, 42))
    assert edt == bytes.fromhex("07E8 04 01 00 1E 00 0000002A")  # 2024-04-01 00:30:00 JST
    got = codec.decode(edt)
    assert got.at == utc and got.at.utcoffset() == timedelta(hours=9)
    with pytest.raises(EchonetEncodeError):
        codec.encode(e.FixedTimeEnergy(datetime(2024, 1, 1), 1))  # naive: refused


@pytest.mark.parametrize(
    "edt",
    [
        "0000 01 01 00 00 00 00000000",  # year 0
        "07E8 00 01 00 00 00 00000000",  # month 0
        "07E8 02 1E 00 00 00 00000000",  # 30 February
        "07E8 01 01 18 00 00 00000000",  # hour 24
        "07E8 01 01 00 3C 00 00000000",  # minute 60
        "07E8 01 01 00 00 3C 00000000",  # second 60
        "07E8 01 01 00 00 00 05F5E100",  # 100,000,000: beyond 8 digits
    ],
)
def test_fixed_time_energy_refuses_impossible_values(edt: str) -> None:
    with pytest.raises(EchonetDecodeError):
        decode_property(0x0288, 0xEA, bytes.fromhex(edt))


def test_history1_day_is_0_to_99_both_ways() -> None:
    codec = e.History1Codec()
    slots = (None,) * 48
    assert codec.decode(codec.encode(e.History1(99, slots))) == e.History1(99, slots)
    with pytest.raises(EchonetDecodeError):
        codec.decode(b"\x00\x64" + b"\xff\xff\xff\xfe" * 48)
    with pytest.raises(EchonetEncodeError):
        codec.encode(e.History1(100, slots))  # would not decode: refuse to send it
    with pytest.raises(EchonetEncodeError):
        codec.encode(e.History1(0, slots[:47]))


def test_history1_bad_slot_names_its_offset() -> None:
    edt = bytearray(e.History1Codec().encode(e.History1(0, (0,) * 48)))
    edt[2 + 4 * 5 : 2 + 4 * 6] = (100_000_000).to_bytes(4, "big")
    with pytest.raises(EchonetDecodeError) as info:
        decode_property(0x0288, 0xE2, bytes(edt))
    assert info.value.offset == 22 and info.value.epc == 0xE2


@settings(max_examples=200, deadline=None)
@given(values_for(e.PropertyMapCodec()))
def test_property_map_agrees_with_pychonet(epcs: frozenset[int]) -> None:
    """An independent decoder (pychonet's) reads our maps as the same set."""
    edt = e.PropertyMapCodec().encode(epcs)
    assert len(edt) == (1 + len(epcs) if len(epcs) < 16 else 17)
    assert set(_009X(edt)) == set(epcs)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=8, max_size=8))
def test_power_range_decodes_exactly_the_ordered_ranges_under_the_limit(edt: bytes) -> None:
    """0xC8/0xC9: any 8 bytes are a range when both halves are at most 999,999,999 W and
    the first is not over the second; anything else is refused with the offset of the
    half at fault, and what decodes encodes back to the same bytes."""
    codec = e.PowerRangeCodec()
    low, high = int.from_bytes(edt[:4], "big"), int.from_bytes(edt[4:], "big")
    if low <= high <= codec.LIMIT:
        assert codec.encode(codec.decode(edt)) == edt
        return
    with pytest.raises(EchonetDecodeError) as info:
        codec.decode(edt)
    assert info.value.offset == (4 if low <= codec.LIMIT < high else 0)


def test_power_range_refuses_to_encode_what_it_would_not_decode() -> None:
    codec = e.PowerRangeCodec()
    for bad in (e.PowerRange(5, 4), e.PowerRange(-1, 4), e.PowerRange(0, 10**9), (0, 1)):
        with pytest.raises(EchonetEncodeError):
            codec.encode(bad)
