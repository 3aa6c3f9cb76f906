"""Codecs of the low-voltage smart meter's (0x0288) own EDT layouts: the energy unit,
phase currents, fixed-time and historical cumulative registers, 1-minute energy.

The generic codecs they build on are in `codecs.py`. No I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import IntEnum

from kenshin.jst import JST  # the meter's clock (its time properties)

from ..errors import EchonetDecodeError, EchonetEncodeError
from .codecs import (
    ENERGY_MAX,
    HISTORY1_SLOTS,
    NO_DATA_S16,
    NO_DATA_U32,
    UNSET_YEAR,
    Codec,
    Signed,
    Unsigned,
    _decode_datetime,
    _encode_datetime,
    _encode_uint,
    _uint,
)


class EnergyUnit(IntEnum):
    """0xE1: the unit of cumulative energy registers."""

    KWH_1 = 0x00
    KWH_0_1 = 0x01
    KWH_0_01 = 0x02
    KWH_0_001 = 0x03
    KWH_0_0001 = 0x04
    KWH_10 = 0x0A
    KWH_100 = 0x0B
    KWH_1000 = 0x0C
    KWH_10000 = 0x0D

    @property
    def kwh(self) -> Decimal:
        """The unit in kWh, exactly."""
        return _UNIT_KWH[self]

    @property
    def milliwatt_hours(self) -> int:
        """The unit in mWh: an integer for every code (the smallest is 100 mWh)."""
        return int(_UNIT_KWH[self] * 1_000_000)


_UNIT_KWH = {
    EnergyUnit.KWH_1: Decimal(1), EnergyUnit.KWH_0_1: Decimal("0.1"),
    EnergyUnit.KWH_0_01: Decimal("0.01"), EnergyUnit.KWH_0_001: Decimal("0.001"),
    EnergyUnit.KWH_0_0001: Decimal("0.0001"), EnergyUnit.KWH_10: Decimal(10),
    EnergyUnit.KWH_100: Decimal(100), EnergyUnit.KWH_1000: Decimal(1000),
    EnergyUnit.KWH_10000: Decimal(10000),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Currents:
    """0xE8: R and T phase currents in deci-amperes (0.1 A), signed.
    `t_da` is None on single-phase 2-wire service (the meter sends 0x7FFE)."""

    r_da: int
    t_da: int | None


_PHASE_MIN, _PHASE_MAX = -0x7FFF, 0x7FFD  # 0x8001..0x7FFD: -3276.7..3276.5 A
_TWO_PHASES = struct.Struct(">hh")  # R, T


class CurrentsCodec(Codec):
    size = 4
    _phase = Signed(2, minimum=_PHASE_MIN, maximum=_PHASE_MAX)

    def decode(self, edt: bytes) -> Currents:
        if len(edt) != 4:
            self._check_size(edt)
        r, t = _TWO_PHASES.unpack(edt)
        if not _PHASE_MIN <= r <= _PHASE_MAX:
            raise _phase_error(r, 0)
        if t == NO_DATA_S16:  # in T: single-phase 2-wire
            return Currents(r, None)
        if not _PHASE_MIN <= t <= _PHASE_MAX:
            raise _phase_error(t, 2)
        return Currents(r, t)

    def encode(self, value: Currents) -> bytes:
        t = NO_DATA_S16.to_bytes(2, "big") if value.t_da is None else self._phase.encode(value.t_da)
        return self._phase.encode(value.r_da) + t


def _phase_error(value: int, offset: int) -> EchonetDecodeError:
    return EchonetDecodeError(f"value {value} outside {_PHASE_MIN}..{_PHASE_MAX}", offset=offset)


ENERGY_RAW = Unsigned(4, maximum=ENERGY_MAX, no_data=(NO_DATA_U32,))


def _decode_energy(edt: bytes, start: int) -> int | None:
    """A cumulative register (4 bytes at `start`) as `ENERGY_RAW` decodes it: None for
    "no data", and an error naming the register's own offset beyond 8 digits."""
    value = edt[start] << 24 | edt[start + 1] << 16 | edt[start + 2] << 8 | edt[start + 3]
    if value > ENERGY_MAX:
        if value == NO_DATA_U32:
            return None
        raise EchonetDecodeError(f"value {value} outside 0..{ENERGY_MAX}", offset=start)
    return value


@dataclass(frozen=True, slots=True)
class FixedTimeEnergy:
    """0xEA/0xEB: the cumulative register at the latest 30-minute boundary, stamped with
    the meter's own JST clock. `raw` is None when the meter has no value."""

    at: datetime
    raw: int | None


_FIXED_TIME = struct.Struct(">HBBBBBI")  # YYYY MM DD hh mm ss, register


class FixedTimeEnergyCodec(Codec):
    size = 11

    def decode(self, edt: bytes) -> FixedTimeEnergy:
        if len(edt) != 11:
            self._check_size(edt)
        year, month, day, hour, minute, second, raw = _FIXED_TIME.unpack(edt)
        try:
            at = datetime(year, month, day, hour, minute, second, 0, JST)
        except ValueError:
            at = _decode_datetime(edt, 0, seconds=True)  # raises, saying what was wrong
        if raw > ENERGY_MAX:  # "no data", or malformed
            raw = _decode_energy(edt, 7)
        return FixedTimeEnergy(at, raw)

    def encode(self, value: FixedTimeEnergy) -> bytes:
        return _encode_datetime(value.at, seconds=True) + ENERGY_RAW.encode(value.raw)


@dataclass(frozen=True, slots=True)
class History1:
    """0xE2/0xE4: 48 half-hourly register values from 00:00 JST of the day `day` days ago
    (as selected by 0xE5); None where the meter has no data."""

    day: int
    raw: tuple[int | None, ...]


_HISTORY1 = struct.Struct(f">H{HISTORY1_SLOTS}I")  # day, then the slots


class History1Codec(Codec):
    size = 2 + HISTORY1_SLOTS * 4

    def decode(self, edt: bytes) -> History1:
        if len(edt) != self.size:
            self._check_size(edt)
        day, *slots = _HISTORY1.unpack(edt)
        if day > 99:
            raise EchonetDecodeError(f"history day {day} beyond 99", offset=0)
        if max(slots) > ENERGY_MAX:  # "no data" slots, or a bad value: slot by slot
            return History1(day, tuple(_decode_energy(edt, i) for i in range(2, self.size, 4)))
        return History1(day, tuple(slots))

    def encode(self, value: History1) -> bytes:
        if len(value.raw) != HISTORY1_SLOTS:
            raise EchonetEncodeError(f"history 1 holds 48 values, got {len(value.raw)}")
        if not 0 <= value.day <= 99:
            raise EchonetEncodeError(f"history day {value.day} outside 0..99")
        return _encode_uint(value.day, 2, "day") + b"".join(ENERGY_RAW.encode(v) for v in value.raw)


@dataclass(frozen=True, slots=True)
class HistoryTime:
    """0xED/0xEF: which history 2/3 to read: the newest time and how many values back.
    `at` is None when the meter reports the selector as not set (year 0xFFFF)."""

    at: datetime | None
    count: int


class HistoryTimeCodec(Codec):
    """0xED (30-minute steps, count 1..12) and 0xEF (1-minute steps, count 1..10)."""

    size = 7

    def __init__(self, step_minutes: int, max_count: int):
        self.step_minutes = step_minutes
        self.max_count = max_count

    def decode(self, edt: bytes) -> HistoryTime:
        self._check_size(edt)
        count = edt[6]
        if not 1 <= count <= self.max_count:
            raise EchonetDecodeError(f"count {count} outside 1..{self.max_count}", offset=6)
        if _uint(edt, 0, 2) == UNSET_YEAR:
            return HistoryTime(None, count)
        at = _decode_datetime(edt, 0, seconds=False)
        if at.minute % self.step_minutes:
            raise EchonetDecodeError(
                f"minute {at.minute} is not on a {self.step_minutes}-minute step", offset=5
            )
        return HistoryTime(at, count)

    def encode(self, value: HistoryTime) -> bytes:
        if not 1 <= value.count <= self.max_count:
            raise EchonetEncodeError(f"count {value.count} outside 1..{self.max_count}")
        if value.at is None:
            return b"\xff\xff\xff\xff\xff\xff" + bytes((value.count,))
        if value.at.astimezone(JST).minute % self.step_minutes or value.at.second:
            raise EchonetEncodeError(f"{value.at} is not on a {self.step_minutes}-minute step")
        return _encode_datetime(value.at, seconds=False) + bytes((value.count,))

    def __repr__(self) -> str:
        return f"HistoryTimeCodec({self.step_minutes} min, 1..{self.max_count})"


@dataclass(frozen=True, slots=True)
class History2:
    """0xEC (30-minute) and 0xEE (1-minute): (normal, reverse) register pairs going
    backwards from `newest`, one step each; None where the meter has no data."""

    newest: datetime | None
    step_minutes: int
    pairs: tuple[tuple[int | None, int | None], ...]

    def times(self) -> list[datetime]:
        """The JST time each pair belongs to, newest first."""
        if self.newest is None:
            return []
        step = timedelta(minutes=self.step_minutes)
        return [self.newest - i * step for i in range(len(self.pairs))]


class History2Codec(Codec):
    def __init__(self, step_minutes: int, max_count: int):
        self.step_minutes = step_minutes
        self.max_count = max_count
        self._selector = HistoryTimeCodec(step_minutes, max_count)

    def decode(self, edt: bytes) -> History2:
        if len(edt) < 7:
            raise EchonetDecodeError(f"history header truncated: {len(edt)} of 7 bytes", offset=0)
        head = self._selector.decode(edt[:7])
        if len(edt) != 7 + 8 * head.count:
            raise EchonetDecodeError(
                f"history holds {(len(edt) - 7) / 8:g} pairs but says {head.count}", offset=6
            )
        pairs = tuple(
            (_decode_energy(edt, i), _decode_energy(edt, i + 4)) for i in range(7, len(edt), 8)
        )
        return History2(head.at, self.step_minutes, pairs)

    def encode(self, value: History2) -> bytes:
        head = self._selector.encode(HistoryTime(value.newest, len(value.pairs)))
        return head + b"".join(ENERGY_RAW.encode(n) + ENERGY_RAW.encode(r) for n, r in value.pairs)

    def __repr__(self) -> str:
        return f"History2Codec({self.step_minutes} min, 1..{self.max_count})"


@dataclass(frozen=True, slots=True)
class OneMinuteEnergy:
    """0xD0: normal and reverse registers at the latest whole minute (newer meters only)."""

    at: datetime
    normal_raw: int | None
    reverse_raw: int | None


class OneMinuteEnergyCodec(Codec):
    size = 15

    def decode(self, edt: bytes) -> OneMinuteEnergy:
        if len(edt) != 15:
            self._check_size(edt)
        return OneMinuteEnergy(
            _decode_datetime(edt, 0, seconds=True), _decode_energy(edt, 7), _decode_energy(edt, 11)
        )

    def encode(self, value: OneMinuteEnergy) -> bytes:
        return (
            _encode_datetime(value.at, seconds=True)
            + ENERGY_RAW.encode(value.normal_raw)
            + ENERGY_RAW.encode(value.reverse_raw)
        )


class OnOff(IntEnum):
    ON = 0x30
    OFF = 0x31


class FaultStatus(IntEnum):
    FAULT = 0x41
    NO_FAULT = 0x42
