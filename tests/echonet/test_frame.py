"""ECHONET Lite frames: round trips, specification fixtures, every malformed shape."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin.echonet import (
    CONTROLLER,
    EOJ,
    ESV,
    NODE_PROFILE,
    SMART_METER,
    EchonetDecodeError,
    EchonetEncodeError,
    Frame,
    OpaqueFrame,
    Property,
    decode_frame,
    encode_frame,
)

from ._strategies import frames


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("esv", list(ESV), ids=lambda v: v.name)
@given(data=st.data())
def test_round_trip_every_esv(esv: ESV, data: st.DataObject) -> None:
    frame = data.draw(frames(esv=esv))
    wire = encode_frame(frame)
    assert decode_frame(wire) == frame
    assert frame.to_bytes() == wire
    assert encode_frame(decode_frame(wire)) == wire  # canonical both ways


@given(frames())
def test_round_trip_lengths(frame: Frame) -> None:
    wire = encode_frame(frame)
    lists = (frame.props, frame.props_get) if frame.esv.carries_two_lists else (frame.props,)
    assert len(wire) == 11 + sum(1 + sum(2 + len(p.edt) for p in ps) for ps in lists)


@given(st.integers(0, 0xFFFF), st.binary(max_size=300))
def test_format2_is_carried_opaquely(tid: int, payload: bytes) -> None:
    wire = bytes((0x10, 0x82, tid >> 8, tid & 0xFF)) + payload
    frame = decode_frame(wire)
    assert frame == OpaqueFrame(tid, payload)
    assert frame.to_bytes() == wire


def test_format2_tid_is_range_checked() -> None:
    with pytest.raises(EchonetEncodeError):
        OpaqueFrame(0x10000, b"").to_bytes()


def test_setget_family_carries_two_lists() -> None:
    for esv in (ESV.SETGET, ESV.SETGET_RES, ESV.SETGET_SNA):
        assert esv.carries_two_lists
    for esv in set(ESV) - {ESV.SETGET, ESV.SETGET_RES, ESV.SETGET_SNA}:
        assert not esv.carries_two_lists


def test_esv_classification() -> None:
    assert {e for e in ESV if e.is_request} == {
        ESV.SETI, ESV.SETC, ESV.GET, ESV.INF_REQ, ESV.SETGET
    }  # fmt: skip
    assert {e for e in ESV if e.is_error} == {
        ESV.SETI_SNA, ESV.SETC_SNA, ESV.GET_SNA, ESV.INF_SNA, ESV.SETGET_SNA
    }  # fmt: skip


# -- fixtures from the specification -----------------------------------------------------

FIXTURES = {
    # Get of 0xE7 (instantaneous power) to the smart meter from a controller.
    "get_e7": (
        "10 81 00 01 05 FF 01 02 88 01 62 01 E7 00",
        Frame(1, CONTROLLER, SMART_METER, ESV.GET, (Property(0xE7),)),
    ),
    # Its answer: 500 W.
    "get_res_e7": (
        "10 81 00 01 02 88 01 05 FF 01 72 01 E7 04 00 00 01 F4",
        Frame(1, SMART_METER, CONTROLLER, ESV.GET_RES, (Property(0xE7, hx("000001F4")),)),
    ),
    # Start-up announcement of the instance list, node profile to node profile.
    "inf_d5": (
        "10 81 00 00 0E F0 01 0E F0 01 73 01 D5 04 01 02 88 01",
        Frame(0, NODE_PROFILE, NODE_PROFILE, ESV.INF, (Property(0xD5, hx("01028801")),)),
    ),
    # Get_SNA: E7 given, C0 refused with PDC 0.
    "get_sna": (
        "10 81 00 02 02 88 01 05 FF 01 52 02 E7 04 00 00 01 F4 C0 00",
        Frame(
            2,
            SMART_METER,
            CONTROLLER,
            ESV.GET_SNA,
            (Property(0xE7, hx("000001F4")), Property(0xC0)),
        ),
    ),
    # SetC of E5 (history day) = 1 and its Set_Res (accepted: PDC 0).
    "setc_e5": (
        "10 81 00 03 05 FF 01 02 88 01 61 01 E5 01 01",
        Frame(3, CONTROLLER, SMART_METER, ESV.SETC, (Property(0xE5, b"\x01"),)),
    ),
    "set_res_e5": (
        "10 81 00 03 02 88 01 05 FF 01 71 01 E5 00",
        Frame(3, SMART_METER, CONTROLLER, ESV.SET_RES, (Property(0xE5),)),
    ),
    # SetGet: set E5 = 1, get E2; then a SetGet with an empty Set list.
    "setget": (
        "10 81 00 04 05 FF 01 02 88 01 6E 01 E5 01 01 01 E2 00",
        Frame(
            4, CONTROLLER, SMART_METER, ESV.SETGET, (Property(0xE5, b"\x01"),), (Property(0xE2),)
        ),
    ),
    "setget_empty_set": (
        "10 81 00 05 05 FF 01 02 88 01 6E 00 01 E7 00",
        Frame(5, CONTROLLER, SMART_METER, ESV.SETGET, (), (Property(0xE7),)),
    ),
    "setget_res": (
        "10 81 00 04 02 88 01 05 FF 01 7E 01 E5 00 01 E7 04 FF FF FF 38",
        Frame(
            4,
            SMART_METER,
            CONTROLLER,
            ESV.SETGET_RES,
            (Property(0xE5),),
            (Property(0xE7, hx("FFFFFF38")),),
        ),
    ),
    # INF_REQ of D5 to the node profile (the AIF start-up fallback).
    "inf_req_d5": (
        "10 81 FF FF 05 FF 01 0E F0 01 63 01 D5 00",
        Frame(0xFFFF, CONTROLLER, NODE_PROFILE, ESV.INF_REQ, (Property(0xD5),)),
    ),
    # INFC and its INFC_Res.
    "infc_res": (
        "10 81 12 34 05 FF 01 02 88 01 7A 01 EA 00",
        Frame(0x1234, CONTROLLER, SMART_METER, ESV.INFC_RES, (Property(0xEA),)),
    ),
}


@pytest.mark.parametrize("name", FIXTURES)
def test_specification_fixtures(name: str) -> None:
    text, frame = FIXTURES[name]
    assert decode_frame(hx(text)) == frame
    assert encode_frame(frame) == hx(text)


def test_get_e7_bytes_exactly() -> None:
    frame = Frame(1, EOJ.parse(0x05FF01), EOJ.parse("028801"), ESV.GET, (Property(0xE7),))
    assert frame.to_bytes() == bytes(
        [0x10, 0x81, 0x00, 0x01, 0x05, 0xFF, 0x01, 0x02, 0x88, 0x01, 0x62, 0x01, 0xE7, 0x00]
    )


def test_decode_accepts_bytearray_and_memoryview() -> None:
    wire = hx(FIXTURES["get_res_e7"][0])
    assert decode_frame(bytearray(wire)) == decode_frame(memoryview(wire)) == decode_frame(wire)
    assert type(decode_frame(memoryview(wire)).props[0].edt) is bytes


def test_frame_get() -> None:
    frame = decode_frame(hx(FIXTURES["get_sna"][0]))
    assert frame.get(0xE7) == hx("000001F4")
    assert frame.get(0xC0) == b""
    assert frame.get(0xE8) is None
    setget = decode_frame(hx(FIXTURES["setget_res"][0]))
    assert setget.get(0xE7) == hx("FFFFFF38")  # from the Get list
    assert setget.get(0xE5) is None  # the Set list is not where values are


def test_eoj_parse() -> None:
    assert EOJ.parse(0x028801) == EOJ.parse("0x028801") == EOJ.parse(b"\x02\x88\x01")
    assert EOJ.parse("028801") == SMART_METER
    assert SMART_METER.class_code == 0x0288
    assert str(SMART_METER) == "0x028801"
    assert SMART_METER.with_instance(0) == EOJ(2, 0x88, 0)
    for bad in (b"\x01\x02", "zz", 0x1000000, -1):
        with pytest.raises(EchonetEncodeError):
            EOJ.parse(bad)


# -- malformed input ---------------------------------------------------------------------

GET_RES_2 = "10 81 00 01 02 88 01 05 FF 01 72 02 E7 04 00 00 01 F4 E0 04 00 00 00 10"

MALFORMED = {
    "empty": ("", 0),
    "one byte": ("10", 1),
    "three bytes": ("10 81 00", 3),
    "bad EHD1": ("11 81 00 01 05 FF 01 02 88 01 62 01 E7 00", 0),
    "EHD1 zero": ("00 81 00 01", 0),
    "bad EHD2": ("10 80 00 01 05 FF 01 02 88 01 62 01 E7 00", 1),
    "EHD2 0x83": ("10 83 00 01", 1),
    "header only TID": ("10 81 00 01", 4),
    "header short": ("10 81 00 01 05 FF 01 02 88 01 62", 11),
    "unknown ESV 0x64": ("10 81 00 01 05 FF 01 02 88 01 64 01 E7 00", 10),
    "unknown ESV 0x00": ("10 81 00 01 05 FF 01 02 88 01 00 01 E7 00", 10),
    "unknown ESV 0xFF": ("10 81 00 01 05 FF 01 02 88 01 FF 01 E7 00", 10),
    "OPC 0": ("10 81 00 01 05 FF 01 02 88 01 62 00", 11),
    "OPC 0 with bytes": ("10 81 00 01 05 FF 01 02 88 01 72 00 E7 00", 11),
    "OPC 1 no EPC": ("10 81 00 01 05 FF 01 02 88 01 62 01", 12),
    "EPC without PDC": ("10 81 00 01 05 FF 01 02 88 01 62 01 E7", 12),
    "OPC says 2, has 1": ("10 81 00 01 05 FF 01 02 88 01 62 02 E7 00", 14),
    "PDC past end": ("10 81 00 01 02 88 01 05 FF 01 72 01 E7 04 00 00 01", 13),
    "PDC 255 past end": ("10 81 00 01 02 88 01 05 FF 01 72 01 E7 FF 00", 13),
    "second EDT truncated": (GET_RES_2[:-3], 19),
    "trailing byte": (GET_RES_2 + " 00", 24),
    "trailing bytes": ("10 81 00 01 05 FF 01 02 88 01 62 01 E7 00 E8 00", 14),
    "SetGet lacks OPCGet": ("10 81 00 04 05 FF 01 02 88 01 6E 01 E5 01 01", 15),
    "SetGet empty, lacks OPCGet": ("10 81 00 04 05 FF 01 02 88 01 6E 00", 12),
    "SetGet_Res lacks OPCGet": ("10 81 00 04 02 88 01 05 FF 01 7E 01 E5 00", 14),
    "SetGet Get list truncated": ("10 81 00 04 05 FF 01 02 88 01 6E 01 E5 01 01 02 E2 00", 18),
    "SetGet Get EDT truncated": ("10 81 00 04 02 88 01 05 FF 01 7E 00 01 E7 04 00 00", 14),
    "SetGet trailing": ("10 81 00 04 05 FF 01 02 88 01 6E 00 01 E2 00 00", 15),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_frames(name: str) -> None:
    text, offset = MALFORMED[name]
    data = hx(text)
    with pytest.raises(EchonetDecodeError) as info:
        decode_frame(data)
    err = info.value
    assert err.offset == offset, (name, str(err))
    assert 0 <= err.offset <= len(data)
    assert err.reason and str(err).startswith(err.reason)


def test_truncated_edt_names_the_epc() -> None:
    with pytest.raises(EchonetDecodeError) as info:
        decode_frame(hx(MALFORMED["PDC past end"][0]))
    assert info.value.epc == 0xE7
    assert "EPC 0xE7" in str(info.value)
    assert "offset 13" in str(info.value)


@given(frames())
def test_every_truncation_of_a_valid_frame_is_refused(frame: Frame) -> None:
    wire = encode_frame(frame)
    for cut in range(len(wire)):
        with pytest.raises(EchonetDecodeError) as info:
            decode_frame(wire[:cut])
        assert info.value.offset is not None and 0 <= info.value.offset <= cut


@given(frames(), st.binary(min_size=1, max_size=8))
def test_trailing_garbage_is_refused(frame: Frame, extra: bytes) -> None:
    wire = encode_frame(frame)
    with pytest.raises(EchonetDecodeError) as info:
        decode_frame(wire + extra)
    # Either the extra bytes are reported as trailing, or (for a SetGet family frame whose
    # Get list absorbed them) as an overrun beyond the end.
    assert info.value.offset is not None and info.value.offset >= 11


@given(frames(), st.integers(0, 255))
def test_unknown_esv_codes_are_refused(frame: Frame, code: int) -> None:
    wire = bytearray(encode_frame(frame))
    wire[10] = code
    if code in {int(e) for e in ESV}:
        return
    with pytest.raises(EchonetDecodeError) as info:
        decode_frame(bytes(wire))
    assert info.value.offset == 10


# -- encoding checks ---------------------------------------------------------------------

BAD_FRAMES = {
    "TID negative": Frame(-1, CONTROLLER, SMART_METER, ESV.GET, (Property(0xE7),)),
    "TID too big": Frame(0x10000, CONTROLLER, SMART_METER, ESV.GET, (Property(0xE7),)),
    "EOJ part": Frame(1, EOJ(0x100, 0, 1), SMART_METER, ESV.GET, (Property(0xE7),)),
    "EOJ negative": Frame(1, CONTROLLER, EOJ(2, -1, 1), ESV.GET, (Property(0xE7),)),
    "no property": Frame(1, CONTROLLER, SMART_METER, ESV.GET, ()),
    "EPC range": Frame(1, CONTROLLER, SMART_METER, ESV.GET, (Property(0x100),)),
    "EDT too long": Frame(1, CONTROLLER, SMART_METER, ESV.SETC, (Property(0xE5, bytes(256)),)),
    "too many": Frame(1, CONTROLLER, SMART_METER, ESV.GET, (Property(0xE7),) * 256),
    "Get with two lists": Frame(
        1, CONTROLLER, SMART_METER, ESV.GET, (Property(0xE7),), (Property(0xE8),)
    ),
    "SetGet Get list too long": Frame(
        1, CONTROLLER, SMART_METER, ESV.SETGET, (), (Property(0xE7),) * 256
    ),
}


@pytest.mark.parametrize("name", BAD_FRAMES)
def test_encode_refuses(name: str) -> None:
    with pytest.raises(EchonetEncodeError):
        encode_frame(BAD_FRAMES[name])


def test_encode_limits_are_inclusive() -> None:
    most = Frame(0xFFFF, EOJ(255, 255, 255), EOJ(0, 0, 0), ESV.SETC,
                 tuple(Property(i, bytes(255)) for i in range(255)))  # fmt: skip
    assert decode_frame(encode_frame(most)) == most
    empty_setget = Frame(0, CONTROLLER, SMART_METER, ESV.SETGET, ())
    assert encode_frame(empty_setget).endswith(b"\x6e\x00\x00")
    assert decode_frame(encode_frame(empty_setget)) == empty_setget


def test_header_memo_is_bounded_and_holds_only_valid_headers() -> None:
    """decode_frame remembers decoded (SEOJ, DEOJ, ESV) triples; a flood of distinct
    ones must neither grow it without bound nor change any answer."""
    from kenshin.echonet import frame as frame_module

    memo = frame_module._HEADS
    for i in range(frame_module._HEADS_MAX + 500):
        seoj = EOJ(0x02, 0x88, i & 0xFF)
        deoj = EOJ(0x05, (i >> 8) & 0xFF, 0x01)
        frame = Frame(i & 0xFFFF, seoj, deoj, ESV.GET_RES, (Property(0xE7, b"\0\0\0\1"),))
        assert decode_frame(encode_frame(frame)) == frame
    assert len(memo) <= frame_module._HEADS_MAX
    bad = hx("10 81 00 01 05 FF 01 02 88 01 64 01 E7 00")
    for _ in range(2):  # an unknown ESV is refused every time, never remembered
        with pytest.raises(EchonetDecodeError):
            decode_frame(bad)
    assert all(key[6] in {int(e) for e in ESV} for key in memo)
