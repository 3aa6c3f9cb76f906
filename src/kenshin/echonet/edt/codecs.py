"""Generic codecs for property values (EDT): bytes <-> typed Python values. No I/O.

Each codec knows one EDT layout. `decode` raises `EchonetDecodeError` (offset inside the
EDT); `encode` raises `EchonetEncodeError`. Codecs are small objects so that classes can
be described by data (see `classes.py`) and so tests can walk every one of them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import IntEnum
from typing import Any

from kenshin.jst import JST  # the meter's clock (its time properties)

from ..errors import EchonetDecodeError, EchonetEncodeError
from ..frame import EOJ

NO_DATA_U32 = 0xFFFFFFFE  # cumulative values and history slots without data
NO_DATA_S32 = 0x7FFFFFFE  # instantaneous power without data
NO_DATA_S16 = 0x7FFE  # a current without data; in T: single-phase 2-wire
HISTORY1_SLOTS = 48
ENERGY_MAX = 99_999_999  # cumulative registers have at most 8 digits
UNSET_YEAR = 0xFFFF


class Codec:
    """Base of all EDT codecs. `size` is the fixed EDT length, or None when variable."""

    size: int | None = None

    def decode(self, edt: bytes) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def _check_size(self, edt: bytes) -> None:
        if self.size is not None and len(edt) != self.size:
            raise EchonetDecodeError(f"EDT is {len(edt)} bytes, expected {self.size}", offset=0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _uint(edt: bytes, start: int, size: int) -> int:
    return int.from_bytes(edt[start : start + size], "big")


def _encode_uint(value: int, size: int, what: str = "value") -> bytes:
    if not isinstance(value, int) or not 0 <= value < 1 << (8 * size):
        raise EchonetEncodeError(f"{what} {value!r} does not fit {size} unsigned bytes")
    return value.to_bytes(size, "big")


class Unsigned(Codec):
    """Big-endian unsigned integer with an optional valid range and no-data sentinels."""

    def __init__(
        self,
        size: int,
        *,
        minimum: int = 0,
        maximum: int | None = None,
        no_data: tuple[int, ...] = (),
    ):
        self.size = size
        self.minimum = minimum
        self.maximum = (1 << (8 * size)) - 1 if maximum is None else maximum
        self.no_data = no_data

    def decode(self, edt: bytes) -> int | None:
        if len(edt) != self.size:
            self._check_size(edt)
        value = int.from_bytes(edt, "big")
        if value in self.no_data:
            return None
        if not self.minimum <= value <= self.maximum:
            raise EchonetDecodeError(
                f"value {value} outside {self.minimum}..{self.maximum}", offset=0
            )
        return value

    def encode(self, value: int | None) -> bytes:
        if value is None:
            if not self.no_data:
                raise EchonetEncodeError("this property has no 'no data' value")
            return self.no_data[0].to_bytes(self.size, "big")
        if not isinstance(value, int) or not self.minimum <= value <= self.maximum:
            raise EchonetEncodeError(f"{value!r} outside {self.minimum}..{self.maximum}")
        return value.to_bytes(self.size, "big")

    def __repr__(self) -> str:
        return f"Unsigned({self.size}, {self.minimum}..{self.maximum})"


class Signed(Codec):
    """Big-endian two's-complement integer; `no_data` is given as its unsigned bit pattern."""

    def __init__(
        self,
        size: int,
        *,
        no_data: tuple[int, ...] = (),
        minimum: int | None = None,
        maximum: int | None = None,
    ):
        self.size = size
        self.no_data = no_data
        half = 1 << (8 * size - 1)
        self._half, self._modulus = half, half << 1
        self.minimum = -half if minimum is None else minimum
        self.maximum = half - 1 if maximum is None else maximum

    def decode(self, edt: bytes) -> int | None:
        if len(edt) != self.size:
            self._check_size(edt)
        value = int.from_bytes(edt, "big")
        if value in self.no_data:
            return None
        if value >= self._half:  # two's complement
            value -= self._modulus
        if not self.minimum <= value <= self.maximum:
            raise EchonetDecodeError(
                f"value {value} outside {self.minimum}..{self.maximum}", offset=0
            )
        return value

    def encode(self, value: int | None) -> bytes:
        if value is None:
            if not self.no_data:
                raise EchonetEncodeError("this property has no 'no data' value")
            return self.no_data[0].to_bytes(self.size, "big")
        if not isinstance(value, int) or not self.minimum <= value <= self.maximum:
            raise EchonetEncodeError(f"{value!r} outside {self.minimum}..{self.maximum}")
        encoded = value.to_bytes(self.size, "big", signed=True)
        if int.from_bytes(encoded, "big") in self.no_data:
            raise EchonetEncodeError(f"{value} collides with the 'no data' value")
        return encoded


class Choice(Codec):
    """One byte naming a member of an IntEnum; unknown codes are malformed input."""

    size = 1

    def __init__(self, enum: type[IntEnum]):
        self.enum = enum
        self._by_code = {int(m): m for m in enum}

    def decode(self, edt: bytes) -> IntEnum:
        if len(edt) != 1:
            self._check_size(edt)
        member = self._by_code.get(edt[0])
        if member is None:
            raise EchonetDecodeError(f"0x{edt[0]:02X} is not a {self.enum.__name__}", offset=0)
        return member

    def encode(self, value: IntEnum | int) -> bytes:
        if int(value) not in self._by_code:
            raise EchonetEncodeError(f"{value!r} is not a {self.enum.__name__}")
        return bytes((int(value),))

    def __repr__(self) -> str:
        return f"Choice({self.enum.__name__})"


class Raw(Codec):
    """Bytes kept as they are (identification numbers, vendor-specific data)."""

    def __init__(self, size: int | None = None, *, min_size: int = 0, max_size: int = 255):
        self.size = size
        self.min_size = size if size is not None else min_size
        self.max_size = size if size is not None else max_size

    def decode(self, edt: bytes) -> bytes:
        if not self.min_size <= len(edt) <= self.max_size:
            raise EchonetDecodeError(
                f"EDT is {len(edt)} bytes, expected {self.min_size}..{self.max_size}", offset=0
            )
        return bytes(edt)

    def encode(self, value: bytes) -> bytes:
        if not isinstance(value, bytes | bytearray) or not (
            self.min_size <= len(value) <= self.max_size
        ):
            raise EchonetEncodeError(f"expected {self.min_size}..{self.max_size} bytes")
        return bytes(value)


class Ascii(Codec):
    """Fixed-size ASCII text padded with NUL or spaces (e.g. 0x8D serial number, 12 bytes)."""

    def __init__(self, size: int):
        self.size = size

    def decode(self, edt: bytes) -> str:
        self._check_size(edt)
        for i, byte in enumerate(edt):
            if byte > 0x7E or (byte < 0x20 and byte != 0):
                raise EchonetDecodeError(f"byte 0x{byte:02X} is not printable ASCII", offset=i)
        return edt.decode("ascii").rstrip("\x00 ")

    def encode(self, value: str) -> bytes:
        data = value.encode("ascii", "strict") if value.isascii() else None
        if data is None or len(data) > self.size or not value.isprintable():
            raise EchonetEncodeError(f"{value!r} is not printable ASCII of at most {self.size}")
        return data.ljust(self.size, b"\x00")


@dataclass(frozen=True, slots=True)
class PowerRange:
    """The least and the most a device can be set to, in W (0xC8/0xC9 of a battery or an
    EV charger: its minimum and maximum charging or discharging power)."""

    minimum: int
    maximum: int


class PowerRangeCodec(Codec):
    """Two 4-byte unsigned values, minimum then maximum, each 0..999,999,999; a range
    whose minimum exceeds its maximum is malformed."""

    size = 8
    LIMIT = 999_999_999

    def decode(self, edt: bytes) -> PowerRange:
        self._check_size(edt)
        low, high = _uint(edt, 0, 4), _uint(edt, 4, 4)
        for offset, value in ((0, low), (4, high)):
            if value > self.LIMIT:
                raise EchonetDecodeError(f"{value} W is over {self.LIMIT}", offset=offset)
        if low > high:
            raise EchonetDecodeError(f"minimum {low} W over maximum {high} W", offset=0)
        return PowerRange(low, high)

    def encode(self, value: PowerRange) -> bytes:
        if not isinstance(value, PowerRange) or not 0 <= value.minimum <= value.maximum:
            raise EchonetEncodeError(f"{value!r} is not a range of watts")
        if value.maximum > self.LIMIT:
            raise EchonetEncodeError(f"{value.maximum} W is over {self.LIMIT}")
        return _encode_uint(value.minimum, 4) + _encode_uint(value.maximum, 4)


# -- dates and times -------------------------------------------------------------------


_DATETIME = struct.Struct(">HBBBBB")  # YYYY MM DD hh mm ss
_DATETIME_NO_SECONDS = struct.Struct(">HBBBB")  # YYYY MM DD hh mm


def _decode_datetime(edt: bytes, start: int, *, seconds: bool) -> datetime:
    """YYYY(2) MM DD hh mm [ss] as the meter's JST wall-clock time."""
    try:
        if seconds:
            return datetime(*_DATETIME.unpack_from(edt, start), 0, JST)
        return datetime(*_DATETIME_NO_SECONDS.unpack_from(edt, start), 0, 0, JST)
    except (ValueError, struct.error) as err:
        raise EchonetDecodeError(f"invalid date/time: {err}", offset=start) from None


def _encode_datetime(value: datetime, *, seconds: bool) -> bytes:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise EchonetEncodeError(f"expected an aware datetime, got {value!r}")
    local = value.astimezone(JST)
    out = local.year.to_bytes(2, "big") + bytes((local.month, local.day, local.hour, local.minute))
    return out + bytes((local.second,)) if seconds else out


class DateCodec(Codec):
    """0x98 current date: YYYY(2) MM DD."""

    size = 4

    def decode(self, edt: bytes) -> date:
        self._check_size(edt)
        try:
            return date(_uint(edt, 0, 2), edt[2], edt[3])
        except ValueError as err:
            raise EchonetDecodeError(f"invalid date: {err}", offset=0) from None

    def encode(self, value: date) -> bytes:
        return _encode_uint(value.year, 2, "year") + bytes((value.month, value.day))


class TimeCodec(Codec):
    """0x97 current time: hh mm."""

    size = 2

    def decode(self, edt: bytes) -> time:
        self._check_size(edt)
        try:
            return time(edt[0], edt[1])
        except ValueError as err:
            raise EchonetDecodeError(f"invalid time: {err}", offset=0) from None

    def encode(self, value: time) -> bytes:
        return bytes((value.hour, value.minute))


# -- profile structures ----------------------------------------------------------------


class PropertyMapCodec(Codec):
    """0x9D/0x9E/0x9F: a count, then EPCs one per byte (below 16) or a 16-byte bitmap.

    In the bitmap, bit j of byte i (bit 0 = least significant) means EPC 0x80 + 0x10*j + i.
    """

    def decode(self, edt: bytes) -> frozenset[int]:
        if not edt:
            raise EchonetDecodeError("property map is empty", offset=0)
        count = edt[0]
        if count < 16:
            if len(edt) != 1 + count:
                raise EchonetDecodeError(
                    f"property map lists {count} EPCs in {len(edt) - 1} bytes", offset=0
                )
            epcs = frozenset(edt[1:])
            if len(epcs) != count:
                raise EchonetDecodeError("property map lists an EPC twice", offset=1)
            return epcs
        if len(edt) != 17:
            raise EchonetDecodeError(
                f"bitmap property map is {len(edt)} bytes, expected 17", offset=0
            )
        epcs = frozenset(
            0x80 + 0x10 * bit + i for i in range(16) for bit in range(8) if edt[1 + i] >> bit & 1
        )
        if len(epcs) != count:
            raise EchonetDecodeError(
                f"bitmap holds {len(epcs)} EPCs but its count says {count}", offset=0
            )
        return epcs

    def encode(self, value: frozenset[int] | set[int]) -> bytes:
        epcs = sorted(set(value))
        if len(epcs) < 16:
            return bytes((len(epcs), *epcs))
        bitmap = bytearray(16)
        for epc in epcs:
            if not 0x80 <= epc <= 0xFF:
                raise EchonetEncodeError(f"EPC 0x{epc:02X} cannot be in a bitmap property map")
            bitmap[(epc - 0x80) & 0x0F] |= 1 << ((epc - 0x80) >> 4)
        return bytes((len(epcs),)) + bytes(bitmap)


class InstanceListCodec(Codec):
    """0xD5/0xD6 (node profile): a count, then that many 3-byte EOJs (at most 84)."""

    def decode(self, edt: bytes) -> tuple[EOJ, ...]:
        if not edt or len(edt) != 1 + 3 * edt[0]:
            raise EchonetDecodeError("instance list length does not match its count", offset=0)
        return tuple(EOJ(edt[i], edt[i + 1], edt[i + 2]) for i in range(1, len(edt), 3))

    def encode(self, value: tuple[EOJ, ...]) -> bytes:
        if len(value) > 84:
            raise EchonetEncodeError("an instance list holds at most 84 objects")
        return bytes((len(value),)) + b"".join(bytes(EOJ(*e)) for e in value)


class ClassListCodec(Codec):
    """0xD7 (node profile): a count, then 2-byte class codes (at most 8)."""

    def decode(self, edt: bytes) -> tuple[int, ...]:
        if not edt or len(edt) != 1 + 2 * edt[0]:
            raise EchonetDecodeError("class list length does not match its count", offset=0)
        return tuple(_uint(edt, i, 2) for i in range(1, len(edt), 2))

    def encode(self, value: tuple[int, ...]) -> bytes:
        if len(value) > 8:
            raise EchonetEncodeError("a class list holds at most 8 classes")
        return bytes((len(value),)) + b"".join(_encode_uint(c, 2, "class") for c in value)


@dataclass(frozen=True, slots=True)
class StandardVersion:
    """0x82 of a device object: the Appendix release letter (e.g. 'J') and revision."""

    release: str
    revision: int = 0


class StandardVersionCodec(Codec):
    size = 4

    def decode(self, edt: bytes) -> StandardVersion:
        self._check_size(edt)
        if not 0x41 <= edt[2] <= 0x5A:
            raise EchonetDecodeError(f"release 0x{edt[2]:02X} is not a letter A..Z", offset=2)
        return StandardVersion(chr(edt[2]), edt[3])

    def encode(self, value: StandardVersion) -> bytes:
        if len(value.release) != 1 or not "A" <= value.release <= "Z":
            raise EchonetEncodeError(f"release {value.release!r} is not a letter A..Z")
        return bytes((0, 0, ord(value.release), value.revision))


@dataclass(frozen=True, slots=True)
class NodeVersion:
    """0x82 of the node profile: ECHONET Lite version and the message formats supported."""

    major: int
    minor: int
    message_formats: int = 0x0100  # bit 8: specified message format (format 1)


class NodeVersionCodec(Codec):
    size = 4

    def decode(self, edt: bytes) -> NodeVersion:
        self._check_size(edt)
        return NodeVersion(edt[0], edt[1], _uint(edt, 2, 2))

    def encode(self, value: NodeVersion) -> bytes:
        return bytes((value.major, value.minor)) + _encode_uint(value.message_formats, 2)
