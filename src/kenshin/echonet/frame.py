"""ECHONET Lite frames: bytes in, `Frame` out, and back. No I/O.

Format 1 (EHD 0x10 0x81, "specified message format") is decoded fully; format 2 (0x10 0x82,
"arbitrary message format") is carried as an opaque payload. Every length is checked: a
frame decodes completely or raises `EchonetDecodeError` naming the field and byte offset.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from .errors import EchonetDecodeError, EchonetEncodeError

ECHONET_PORT = 3610
MULTICAST_GROUP = "224.0.23.0"
EHD1 = 0x10
EHD2_FORMAT1 = 0x81
EHD2_FORMAT2 = 0x82
HEADER_LEN = 12  # EHD1 EHD2 TID(2) SEOJ(3) DEOJ(3) ESV OPC


class ESV(IntEnum):
    """ECHONET Lite service codes."""

    SETI_SNA = 0x50
    SETC_SNA = 0x51
    GET_SNA = 0x52
    INF_SNA = 0x53
    SETGET_SNA = 0x5E
    SETI = 0x60
    SETC = 0x61
    GET = 0x62
    INF_REQ = 0x63
    SETGET = 0x6E
    SET_RES = 0x71
    GET_RES = 0x72
    INF = 0x73
    INFC = 0x74
    INFC_RES = 0x7A
    SETGET_RES = 0x7E

    @property
    def is_request(self) -> bool:
        return self in _REQUESTS

    @property
    def is_error(self) -> bool:
        """An SNA ("service not available") response: some property was refused."""
        return 0x50 <= self <= 0x5F

    @property
    def carries_two_lists(self) -> bool:
        """SetGet and its answers hold a Set list then a Get list."""
        return self in _SETGET_FAMILY


_REQUESTS = frozenset({ESV.SETI, ESV.SETC, ESV.GET, ESV.INF_REQ, ESV.SETGET})
_SETGET_FAMILY = frozenset({ESV.SETGET, ESV.SETGET_RES, ESV.SETGET_SNA})
_ESV_BY_CODE: dict[int, ESV] = {int(e): e for e in ESV}
_TWO_LIST_CODES = frozenset(int(e) for e in _SETGET_FAMILY)

# The answer a request gets when every property was accepted, and when some were refused.
RESPONSE_FOR: dict[ESV, tuple[ESV | None, ESV]] = {
    ESV.SETI: (None, ESV.SETI_SNA),
    ESV.SETC: (ESV.SET_RES, ESV.SETC_SNA),
    ESV.GET: (ESV.GET_RES, ESV.GET_SNA),
    ESV.INF_REQ: (ESV.INF, ESV.INF_SNA),
    ESV.SETGET: (ESV.SETGET_RES, ESV.SETGET_SNA),
    ESV.INFC: (ESV.INFC_RES, ESV.INFC_RES),
}


class EOJ(NamedTuple):
    """ECHONET object: class group, class, instance (e.g. 0x02 0x88 0x01 = smart meter #1)."""

    group: int
    code: int
    instance: int

    @classmethod
    def parse(cls, value: int | str | bytes) -> EOJ:
        """From 0x028801, "028801", "0x028801" or three bytes."""
        if isinstance(value, bytes | bytearray):
            if len(value) != 3:
                raise EchonetEncodeError(f"an EOJ is 3 bytes, got {len(value)}")
            return cls(value[0], value[1], value[2])
        if isinstance(value, str):
            try:
                value = int(value, 16)
            except ValueError:
                raise EchonetEncodeError(f"not a hex EOJ: {value!r}") from None
        if not 0 <= value <= 0xFFFFFF:
            raise EchonetEncodeError(f"EOJ out of range: {value:#x}")
        return cls(value >> 16, (value >> 8) & 0xFF, value & 0xFF)

    @property
    def class_code(self) -> int:
        """Class group and class as one number, e.g. 0x0288."""
        return self[0] << 8 | self[1]

    def with_instance(self, instance: int) -> EOJ:
        return EOJ(self.group, self.code, instance)

    def to_bytes(self) -> bytes:
        return bytes(self)

    def __str__(self) -> str:
        return f"0x{self.group:02X}{self.code:02X}{self.instance:02X}"


NODE_PROFILE = EOJ(0x0E, 0xF0, 0x01)
CONTROLLER = EOJ(0x05, 0xFF, 0x01)
SMART_METER = EOJ(0x02, 0x88, 0x01)


class Property(NamedTuple):
    """One EPC with its EDT (empty for Get requests and for accepted Set answers)."""

    epc: int
    edt: bytes = b""


class Frame(NamedTuple):
    """A format-1 frame. `props` is the only list, or the Set list of a SetGet family frame;
    `props_get` is the Get list of a SetGet family frame and empty otherwise."""

    tid: int
    seoj: EOJ
    deoj: EOJ
    esv: ESV
    props: tuple[Property, ...]
    props_get: tuple[Property, ...] = ()

    def get(self, epc: int) -> bytes | None:
        """The EDT of `epc` in the (Get) property list, or None when absent."""
        for prop in self.props_get if self.esv.carries_two_lists else self.props:
            if prop.epc == epc:
                return prop.edt
        return None

    def to_bytes(self) -> bytes:
        return encode_frame(self)


class OpaqueFrame(NamedTuple):
    """A format-2 frame: only the TID is interpreted."""

    tid: int
    payload: bytes

    def to_bytes(self) -> bytes:
        if not 0 <= self.tid <= 0xFFFF:
            raise EchonetEncodeError(f"TID out of range: {self.tid}")
        return bytes((EHD1, EHD2_FORMAT2, self.tid >> 8, self.tid & 0xFF)) + self.payload


_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__: faster
_HEADS: dict[bytes, tuple[EOJ, EOJ, ESV, bool]] = {}  # bytes 4..10 -> SEOJ, DEOJ, ESV
_HEADS_MAX = 4096  # distinct (SEOJ, DEOJ, ESV) remembered: a LAN has a handful


def decode_frame(data: bytes) -> Frame | OpaqueFrame:
    """Decode one datagram. Raises `EchonetDecodeError` on anything malformed."""
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    if size < HEADER_LEN or data[0] != EHD1 or data[1] != EHD2_FORMAT1:
        return _decode_short_or_other(data)
    seoj, deoj, esv, two_lists = _HEADS.get(data[4:11]) or _decode_head(data)
    tid = (data[2] << 8) | data[3]
    if two_lists:
        props, pos = _decode_props(data, 11, size)
        if pos >= size:
            raise EchonetDecodeError("SetGet frame lacks its Get list (OPCGet)", offset=pos)
        props_get, pos = _decode_props(data, pos, size)
    else:
        opc = data[11]
        if opc == 1 and size > 13 and 14 + data[13] == size:
            # The commonest frame: one property ending exactly at the end of the data.
            prop = _new_tuple(Property, (data[12], data[14:]))
            return _new_tuple(Frame, (tid, seoj, deoj, esv, (prop,), ()))
        if opc == 0:
            raise EchonetDecodeError(
                "OPC is 0: a frame must carry at least one property", offset=11
            )
        # `_decode_props`, inline: a Get_Res of several properties is the next commonest.
        pos = 12
        found: list[Property] = []
        try:
            for _ in range(opc):
                end = pos + 2 + data[pos + 1]  # IndexError: no PDC
                if end > size:
                    raise _edt_truncated(data, pos, size)
                found.append(_new_tuple(Property, (data[pos], data[pos + 2 : end])))
                pos = end
        except IndexError:
            raise _pdc_missing(len(found), opc, pos) from None
        props = tuple(found)
        props_get = ()
    if pos != size:
        raise EchonetDecodeError(f"{size - pos} trailing bytes after the last property", offset=pos)
    return _new_tuple(Frame, (tid, seoj, deoj, esv, props, props_get))


def _decode_short_or_other(data: bytes) -> OpaqueFrame:
    """Frames that are not a format-1 frame of at least a header: format 2, or an error."""
    size = len(data)
    if size < 4:
        raise EchonetDecodeError(f"frame too short: {size} bytes, need at least 4", offset=size)
    if data[0] != EHD1:
        raise EchonetDecodeError(f"EHD1 is 0x{data[0]:02X}, not 0x10", offset=0)
    ehd2 = data[1]
    if ehd2 == EHD2_FORMAT2:
        return OpaqueFrame((data[2] << 8) | data[3], data[4:])
    if ehd2 != EHD2_FORMAT1:
        raise EchonetDecodeError(f"EHD2 is 0x{ehd2:02X}, not 0x81 or 0x82", offset=1)
    raise EchonetDecodeError(f"header truncated: {size} of {HEADER_LEN} bytes", offset=size)


def _decode_head(data: bytes) -> tuple[EOJ, EOJ, ESV, bool]:
    """SEOJ, DEOJ and ESV (bytes 4..10), checked, and remembered for the next frame."""
    esv = _ESV_BY_CODE.get(data[10])
    if esv is None:
        raise EchonetDecodeError(f"unknown ESV 0x{data[10]:02X}", offset=10)
    head = (
        EOJ(data[4], data[5], data[6]),
        EOJ(data[7], data[8], data[9]),
        esv,
        data[10] in _TWO_LIST_CODES,
    )
    if len(_HEADS) >= _HEADS_MAX:  # a flood of strangers: start afresh, stay bounded
        _HEADS.clear()
    _HEADS[data[4:11]] = head
    return head


def _decode_props(data: bytes, pos: int, size: int) -> tuple[tuple[Property, ...], int]:
    """Read OPC at `pos` and that many EPC/PDC/EDT triples; return them and the next offset."""
    opc = data[pos]
    pos += 1
    props = []
    try:
        for _ in range(opc):
            end = pos + 2 + data[pos + 1]  # IndexError: no PDC
            if end > size:
                raise _edt_truncated(data, pos, size)
            props.append(_new_tuple(Property, (data[pos], data[pos + 2 : end])))
            pos = end
    except IndexError:
        raise _pdc_missing(len(props), opc, pos) from None
    return tuple(props), pos


def _edt_truncated(data: bytes, pos: int, size: int) -> EchonetDecodeError:
    return EchonetDecodeError(
        f"EDT needs {data[pos + 1]} bytes, only {size - pos - 2} left",
        offset=pos + 1,
        epc=data[pos],
    )


def _pdc_missing(done: int, opc: int, pos: int) -> EchonetDecodeError:
    return EchonetDecodeError(f"property {done + 1} of {opc} truncated before its PDC", offset=pos)


def encode_frame(frame: Frame) -> bytes:
    """Encode a format-1 frame, checking every field's range."""
    if not 0 <= frame.tid <= 0xFFFF:
        raise EchonetEncodeError(f"TID out of range: {frame.tid}")
    out = bytearray((EHD1, EHD2_FORMAT1, frame.tid >> 8, frame.tid & 0xFF))
    for eoj in (frame.seoj, frame.deoj):
        if not all(0 <= part <= 0xFF for part in eoj):
            raise EchonetEncodeError(f"EOJ part out of range: {eoj}")
        out += bytes(eoj)
    out.append(int(frame.esv))
    esv = ESV(frame.esv)
    _encode_props(out, frame.props, allow_empty=esv.carries_two_lists)
    if esv.carries_two_lists:
        _encode_props(out, frame.props_get, allow_empty=True)
    elif frame.props_get:
        raise EchonetEncodeError(f"{esv.name} carries one property list, not two")
    return bytes(out)


def _encode_props(out: bytearray, props: tuple[Property, ...], *, allow_empty: bool) -> None:
    if not props and not allow_empty:
        raise EchonetEncodeError("a frame must carry at least one property")
    if len(props) > 0xFF:
        raise EchonetEncodeError(f"too many properties: {len(props)} (at most 255)")
    out.append(len(props))
    for epc, edt in props:
        if not 0 <= epc <= 0xFF:
            raise EchonetEncodeError(f"EPC out of range: {epc}")
        if len(edt) > 0xFF:
            raise EchonetEncodeError(f"EDT of EPC 0x{epc:02X} is {len(edt)} bytes (at most 255)")
        out.append(epc)
        out.append(len(edt))
        out += edt
