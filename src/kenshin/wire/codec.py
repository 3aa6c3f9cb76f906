"""Messages to bytes and back: compact canonical CBOR, every field checked both ways.

A payload is one CBOR array, `[type, version, field, field, ...]`, fields in the order of
the message's dataclass, never keyed by name (names would be most of the bytes). A
readings batch is sent as columns, each delta-encoded, because each column's neighbours
are close: see `docs/wire.md` for the layout, the limits and a worked byte count.

Versioning: `version` is the protocol's major version, `WIRE_VERSION`. A payload of a
newer version raises `WireVersionError`. Inside one version the protocol only grows at
the end: a newer peer may append fields to any fixed-layout array (the envelope, the
scale, the instant and fixed blocks), and a decoder reads the fields it knows and ignores
the rest; fields added that way are optional. Anything else bumps the version.

`decode` raises only `WireError` subclasses, whatever the bytes: the fuzz test holds it
to that.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any, NamedTuple, NoReturn

import cbor2

from .errors import WireDecodeError, WireEncodeError, WireError, WireLimitError, WireVersionError
from .messages import (
    MESSAGE_FOR_KIND,
    UNIT_MILLIWATT_HOURS,
    Command,
    CommandResult,
    Event,
    FixedTimeValue,
    InstantSample,
    LinkState,
    Message,
    MeterScale,
    ReadingsBatch,
    Settings,
    Status,
    ValueSource,
    mask_secrets,
)
from .topics import parse_topic, topic_for

# 2: instant columns as varint bytes; 3: as Exp-Golomb codes on a grid. Every older
# version is still read, so the cloud can be updated before the fleet.
WIRE_VERSION = 3

# -- limits: a payload over any of them is refused whole, on either side -----------------

MAX_PAYLOAD_BYTES = 65_536
MAX_INSTANT_SAMPLES = 2_880  # two days at 60 s
MAX_FIXED_VALUES = 480  # ten days of half hours
MAX_NAME_LEN = 32  # meter ref, agent version, event code, command name
MAX_KEY_LEN = 64  # a key of a map, an error counter's name
MAX_TEXT_LEN = 1_024  # a text value in a map, a command's error
MAX_MAP_ITEMS = 256  # entries and list elements in one map, nested ones included
MAX_MAP_DEPTH = 4  # a map in a map in a map in a map
MAX_COUNTERS = 64  # error counters in a status
# A batch within the count limits always fits the payload limit: at most 16 bytes a
# sample and 16 a 30-minute value, 2,880 × 16 + 480 × 16 = 53,760 bytes and headers.

# -- ranges ------------------------------------------------------------------------------

UINT_MAX = 2**63 - 1  # seq, ids, versions, counters: fit a signed 64-bit SQL column
MIN_TIME_S = 946_684_800  # 2000-01-01T00:00:00Z: a gateway clock before it is not set
MAX_TIME_S = 4_102_444_799  # 2099-12-31T23:59:59Z
SLOT_S = 1_800
MAX_STEP_S = 86_400
POWER_W_MIN, POWER_W_MAX = -(2**31), 2**31 - 1  # E7: 4 bytes signed
CURRENT_DA_MIN, CURRENT_DA_MAX = -(2**15), 2**15 - 1  # E8: 2 bytes signed a phase
RAW_MAX = 99_999_999  # a cumulative register has at most 8 digits
COEFFICIENT_MAX = 999_999
LQI_MAX = 255
_CBOR_MAX_DEPTH = 16  # deeper than any valid message

JST = timezone(timedelta(hours=9), "JST")

# Wire codes of the link states: append only, never renumber.
LINK_STATE_CODES: dict[LinkState, int] = {
    LinkState.CONNECTING: 0,
    LinkState.JOINED: 1,
    LinkState.REAUTHENTICATING: 2,
    LinkState.AUTH_FAILED: 3,
    LinkState.DEVICE_LOST: 4,
    LinkState.NO_METER: 5,
    LinkState.CLOSED: 6,
}
_LINK_STATE_BY_CODE = {code: state for state, code in LINK_STATE_CODES.items()}
_SOURCE_BY_CODE = {int(s): s for s in ValueSource}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


# -- checks shared by both directions ------------------------------------------------------


class _Check:
    """Field checks; a failure raises `bad` (the decode or the encode error, by direction)
    or `WireLimitError`."""

    __slots__ = ("bad",)

    def __init__(self, bad: type[WireError]):
        self.bad = bad

    def fail(self, reason: str, where: str) -> NoReturn:
        raise self.bad(reason, where=where)

    def int_in(self, value: Any, lo: int, hi: int, where: str) -> int:
        if type(value) is not int and not _is_int(value):
            self.fail(f"expected an integer, got {_kind(value)}", where)
        if not lo <= value <= hi:
            self.fail(f"{_show(value)} outside {lo}..{hi}", where)
        return value

    def uint(self, value: Any, where: str) -> int:
        return self.int_in(value, 0, UINT_MAX, where)

    def time(self, value: Any, where: str) -> int:
        if type(value) is not int and not _is_int(value):
            self.fail(f"expected epoch seconds (an integer), got {_kind(value)}", where)
        if not MIN_TIME_S <= value <= MAX_TIME_S:
            self.fail(f"time {_show(value)} outside 2000-01-01..2099-12-31 (epoch s)", where)
        return value

    def optional(self, check: Callable[..., int], value: Any, *args: Any) -> int | None:
        return None if value is None else check(value, *args)

    def label(self, value: Any, where: str, max_len: int = MAX_NAME_LEN) -> str:
        """Short printable text: a meter ref, a version, a counter's name, a map key."""
        if not isinstance(value, str):
            self.fail(f"expected text, got {_kind(value)}", where)
        if len(value) > max_len:
            raise WireLimitError(f"text of {len(value)} characters, at most {max_len}", where=where)
        if not value or not value.isprintable():
            self.fail(f"need 1..{max_len} printable characters", where)
        return value

    def name(self, value: Any, where: str) -> str:
        """An identifier: an event code, a command name."""
        self.label(value, where)
        if not _NAME_CHARS.issuperset(value):
            self.fail(f"need 1..{MAX_NAME_LEN} of [A-Za-z0-9_.:-]", where)
        return value

    def text(self, value: Any, where: str) -> str:
        """Free text: may hold anything Unicode, newlines included."""
        if not isinstance(value, str):
            self.fail(f"expected text, got {_kind(value)}", where)
        if len(value) > MAX_TEXT_LEN:
            raise WireLimitError(
                f"text of {len(value)} characters, at most {MAX_TEXT_LEN}", where=where
            )
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate: not representable in CBOR text
            self.fail("text is not valid Unicode", where)
        return value

    def sequence(self, value: Any, limit: int, what: str, where: str) -> list | tuple:
        if not isinstance(value, list | tuple):
            self.fail(f"expected a sequence of {what}, got {_kind(value)}", where)
        if len(value) > limit:
            raise WireLimitError(f"{len(value)} {what}, at most {limit}", where=where)
        return value

    def value_map(self, value: Any, where: str) -> None:
        """A JSON-like map, within the size and depth limits."""
        budget = [MAX_MAP_ITEMS]
        self._map(value, where, budget, 1)

    def _map(self, value: Any, where: str, budget: list[int], depth: int) -> None:
        if not isinstance(value, Mapping):
            self.fail(f"expected a map, got {_kind(value)}", where)
        self._spend(budget, len(value), where)
        for key, item in value.items():
            self.label(key, f"{where} key", MAX_KEY_LEN)
            self._value(item, f"{where}[{key!r}]", budget, depth)

    def _value(self, value: Any, where: str, budget: list[int], depth: int) -> None:
        if value is None or type(value) is bool:
            pass
        elif _is_int(value):
            if not -(2**63) <= value <= UINT_MAX:
                self.fail(f"{_show(value)} outside the 64-bit signed range", where)
        elif type(value) is float:
            if not math.isfinite(value):
                self.fail("a number must be finite", where)
        elif isinstance(value, str):
            self.text(value, where)
        elif isinstance(value, Mapping | list | tuple):
            if depth >= MAX_MAP_DEPTH:
                raise WireLimitError(
                    f"maps and lists nested deeper than {MAX_MAP_DEPTH}", where=where
                )
            if isinstance(value, Mapping):
                self._map(value, where, budget, depth + 1)
            else:
                self._spend(budget, len(value), where)
                for i, item in enumerate(value):
                    self._value(item, f"{where}[{i}]", budget, depth + 1)
        else:
            self.fail(f"{_kind(value)} is not a map value (null, bool, number, text, list, map)",
                      where)  # fmt: skip

    def _spend(self, budget: list[int], count: int, where: str) -> None:
        budget[0] -= count
        if budget[0] < 0:
            raise WireLimitError(f"more than {MAX_MAP_ITEMS} items in one map", where=where)


_ENCODING = _Check(WireEncodeError)
_DECODING = _Check(WireDecodeError)


def _is_int(value: Any) -> bool:
    """An int or an int subclass (an IntEnum member), never a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


_KIND_NAMES = {
    type(None): "null", bool: "a boolean", int: "an integer", float: "a float",
    str: "text", bytes: "a byte string", list: "an array", tuple: "an array", dict: "a map",
}  # fmt: skip


def _kind(value: Any) -> str:
    """What a value is, in CBOR's words (for errors: never the value itself)."""
    return _KIND_NAMES.get(type(value)) or type(value).__name__


def _show(number: int) -> str:
    """An integer for an error message (a huge one stays short and printable)."""
    if -(10**24) < number < 10**24:
        return str(number)
    return f"an integer of {number.bit_length()} bits"


# -- checking a message, before encoding and after decoding --------------------------------


def _in(values: list[Any], lo: int, hi: int) -> bool:
    """All plain ints (not bools, not other numbers) within lo..hi."""
    if not values:
        return True
    return set(map(type, values)) == {int} and lo <= min(values) and max(values) <= hi


def _instant_plainly_valid(instant: Sequence[Any]) -> bool:
    """Whether every sample is an InstantSample of plain in-range integers, checked column
    by column with built-ins: the ingest checks every sample it decodes, and the sample by
    sample walk (which says exactly where a value is wrong) costs ten times as much. False
    sends the caller on that walk."""
    if set(map(type, instant)) - {InstantSample}:
        return False
    present = [v for s in instant for v in (s.current_r_da, s.current_t_da) if v is not None]
    return (
        _in([s.at_s for s in instant], MIN_TIME_S, MAX_TIME_S)
        and _in([s.power_w for s in instant if s.power_w is not None], POWER_W_MIN, POWER_W_MAX)
        and _in(present, CURRENT_DA_MIN, CURRENT_DA_MAX)
    )


def _check_batch(m: ReadingsBatch, c: _Check) -> None:
    c.uint(m.seq, "ReadingsBatch.seq")
    c.label(m.meter, "ReadingsBatch.meter")
    instant = c.sequence(m.instant, MAX_INSTANT_SAMPLES, "samples", "ReadingsBatch.instant")
    for i, s in enumerate(() if _instant_plainly_valid(instant) else instant):
        if type(s) is not InstantSample:
            c.fail(f"expected an InstantSample, got {_kind(s)}", f"ReadingsBatch.instant[{i}]")
        c.time(s.at_s, f"ReadingsBatch.instant[{i}].at_s")
        for name, value, lo, hi in (
            ("power_w", s.power_w, POWER_W_MIN, POWER_W_MAX),
            ("current_r_da", s.current_r_da, CURRENT_DA_MIN, CURRENT_DA_MAX),
            ("current_t_da", s.current_t_da, CURRENT_DA_MIN, CURRENT_DA_MAX),
        ):
            if value is not None:
                c.int_in(value, lo, hi, f"ReadingsBatch.instant[{i}].{name}")
    fixed = c.sequence(m.fixed, MAX_FIXED_VALUES, "30-minute values", "ReadingsBatch.fixed")
    for i, v in enumerate(fixed):
        where = f"ReadingsBatch.fixed[{i}]"
        if type(v) is not FixedTimeValue:
            c.fail(f"expected a FixedTimeValue, got {_kind(v)}", where)
        if c.time(v.slot_start_s, f"{where}.slot_start_s") % SLOT_S:
            c.fail("not on a half hour (a multiple of 1800 s)", f"{where}.slot_start_s")
        c.optional(c.int_in, v.normal_raw, 0, RAW_MAX, f"{where}.normal_raw")
        c.optional(c.int_in, v.reverse_raw, 0, RAW_MAX, f"{where}.reverse_raw")
        if not _is_int(v.source) or v.source not in _SOURCE_BY_CODE:
            c.fail("expected a ValueSource (0 measured, 1 refilled)", f"{where}.source")
    scale = m.scale
    if scale is None:
        if fixed:
            c.fail("30-minute values need the meter's scale", "ReadingsBatch.scale")
        return
    if type(scale) is not MeterScale:
        c.fail(f"expected a MeterScale, got {_kind(scale)}", "ReadingsBatch.scale")
    c.int_in(scale.coefficient, 1, COEFFICIENT_MAX, "ReadingsBatch.scale.coefficient")
    if not _is_int(scale.unit_code) or scale.unit_code not in UNIT_MILLIWATT_HOURS:
        c.fail("not an E1 unit code (0x00..0x04, 0x0A..0x0D)", "ReadingsBatch.scale.unit_code")
    c.int_in(scale.digits, 1, 8, "ReadingsBatch.scale.digits")


def _check_status(m: Status, c: _Check) -> None:
    c.time(m.at_s, "Status.at_s")
    c.label(m.agent_version, "Status.agent_version")
    c.uint(m.uptime_s, "Status.uptime_s")
    if not isinstance(m.link, str) or m.link not in LINK_STATE_CODES:
        c.fail(f"not a LinkState, got {_kind(m.link)}", "Status.link")
    c.optional(c.int_in, m.lqi, 0, LQI_MAX, "Status.lqi")
    c.uint(m.queue_depth, "Status.queue_depth")
    c.optional(c.time, m.last_good_read_s, "Status.last_good_read_s")
    c.optional(c.uint, m.settings_version, "Status.settings_version")
    if not isinstance(m.errors, Mapping):
        c.fail(f"expected a map, got {_kind(m.errors)}", "Status.errors")
    if len(m.errors) > MAX_COUNTERS:
        raise WireLimitError(
            f"{len(m.errors)} counters, at most {MAX_COUNTERS}", where="Status.errors"
        )
    for key, count in m.errors.items():
        c.label(key, "Status.errors key", MAX_KEY_LEN)
        c.uint(count, f"Status.errors[{key!r}]")


def _check_event(m: Event, c: _Check) -> None:
    c.name(m.code, "Event.code")
    c.time(m.at_s, "Event.at_s")
    c.value_map(m.detail, "Event.detail")


def _check_result(m: CommandResult, c: _Check) -> None:
    c.uint(m.id, "CommandResult.id")
    if type(m.ok) is not bool:
        c.fail(f"expected a boolean, got {_kind(m.ok)}", "CommandResult.ok")
    c.value_map(m.result, "CommandResult.result")
    if m.ok:
        if m.error is not None:
            c.fail("a successful result carries no error", "CommandResult.error")
    elif m.error is None or not c.text(m.error, "CommandResult.error"):
        c.fail("a failed result says why (1.. characters)", "CommandResult.error")


def _check_command(m: Command, c: _Check) -> None:
    c.uint(m.id, "Command.id")
    c.name(m.name, "Command.name")
    c.time(m.expires_s, "Command.expires_s")
    c.value_map(m.args, "Command.args")


def _check_settings(m: Settings, c: _Check) -> None:
    c.uint(m.version, "Settings.version")
    c.time(m.issued_s, "Settings.issued_s")
    c.value_map(m.values, "Settings.values")


# -- columns: times as a base, a step and deviations; values as deltas ----------------------


def _compress_times(units: list[int], step: int) -> list[Any]:
    """Deviations of each gap from `step`; a run of 3 or more zeros becomes `[n]`."""
    out: list[Any] = []
    zeros = 0
    for before, after in pairwise(units):
        deviation = after - before - step
        if deviation == 0:
            zeros += 1
            continue
        _flush_zeros(out, zeros)
        zeros = 0
        out.append(deviation)
    _flush_zeros(out, zeros)
    return out


def _flush_zeros(out: list[Any], zeros: int) -> None:
    if zeros >= 3:
        out.append([zeros])
    else:
        out.extend([0] * zeros)


def _common_step(times: list[int]) -> int:
    """The commonest gap between samples (the smallest of equals), within 0..MAX_STEP_S."""
    gaps = Counter(b - a for a, b in pairwise(times))
    usable = [(count, -gap) for gap, count in gaps.items() if 0 <= gap <= MAX_STEP_S]
    return -max(usable)[1] if usable else 0


def _expand_times(
    base: int, step: int, deviations: Any, lo: int, hi: int, limit: int, where: str
) -> list[int]:
    """The inverse of `_compress_times`, checking every time and the count as it goes."""
    if type(deviations) is not list:
        _bad(f"expected an array of deviations, got {_kind(deviations)}", where)
    out = [base]
    t = base
    for i, item in enumerate(deviations):
        if type(item) is int:
            t += step + item
            out.append(t)
        elif type(item) is list and len(item) == 1 and type(item[0]) is int:
            run = item[0]
            if run < 1:
                _bad(f"a run of zeros counts 1 or more, not {_show(run)}", f"{where}[{i}]")
            if len(out) + run > limit:
                raise WireLimitError(f"more than {limit} entries", where=f"{where}[{i}]")
            if step:
                out.extend(range(t + step, t + step * run + 1, step))
            else:
                out.extend([t] * run)
            t = out[-1]
        else:
            _bad(f"expected an integer or a [run], got {_kind(item)}", f"{where}[{i}]")
        if not lo <= t <= hi:
            _bad(f"time {_show(t)} outside {lo}..{hi}", f"{where}[{i}]")
        if len(out) > limit:
            raise WireLimitError(f"more than {limit} entries", where=f"{where}[{i}]")
    return out


def _delta_column(values: list[int | None]) -> list[Any] | None:
    """Each value less the previous present one (the first as is); a lone None stays None,
    a run of k ≥ 2 Nones is written [k] (currents read every fifth sample cost 2 bytes a
    gap instead of 4); the whole column is None when every value is."""
    out: list[Any] = []
    previous = 0
    present = False
    nones = 0
    for value in values:
        if value is None:
            nones += 1
            continue
        _flush_nones(out, nones)
        nones = 0
        out.append(value - previous)
        previous = value
        present = True
    _flush_nones(out, nones)
    return out if present else None


def _flush_nones(out: list[Any], nones: int) -> None:
    if nones == 1:
        out.append(None)
    elif nones > 1:
        out.append([nones])


# Instant columns (power, currents) go as byte strings of tokens, each value a delta from
# the previous present one. Version 2 (still read): a varint a token, n ≥ 1 a value
# zigzag⁻¹(n − 1) from the previous, 0 then a varint k for k absent values. Version 3
# (written): a header varint `(stride - 1) << 5 | k`, `offset` as a varint when stride > 1,
# then order-k Exp-Golomb codes of the tokens of only the samples offset, offset + stride,
# ... (the others are absent: currents read every fifth sample cost nothing for the four
# between). Household power moves by tens to hundreds of watts a minute: about 10 bits a
# sample where a varint takes 16. docs/wire.md has the layout.
MAX_VARINT_BYTES = 5  # 2^35: far beyond any power, current or run length
MAX_CODE_VALUE_BITS = 40  # a code's value part (after its zeros); a token needs at most 34
_ORDER_BITS = 5  # the header varint: (stride - 1) << 5 | k
MAX_ORDER = (1 << _ORDER_BITS) - 1


def _varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(delta: int) -> int:
    return 2 * delta if delta >= 0 else -2 * delta - 1


def _tokens(values: list[int | None]) -> list[tuple[int, int]]:
    """Version 3's tokens, (token, run): (0, 0) a value equal to the previous present one,
    (1, k) a run of k absent values, (n ≥ 2, 0) a value zigzag⁻¹(n − 1) from the previous
    (the first: from 0). A repeated value, the commonest, takes the shortest code."""
    out: list[tuple[int, int]] = []
    previous = 0
    nones = 0
    for value in values:
        if value is None:
            nones += 1
            continue
        if nones:
            out.append((1, nones))
            nones = 0
        out.append((_zigzag(value - previous) + 1 if value != previous else 0, 0))
        previous = value
    if nones:
        out.append((1, nones))
    return out


def _exp_golomb(n: int, k: int) -> str:
    x = n + (1 << k)
    return "0" * (x.bit_length() - k - 1) + format(x, "b")


def _code_grid(values: list[int | None], stride: int, offset: int) -> bytes:
    """The entries at offset, offset + stride, ... as one coded column (version 3)."""
    tokens = _tokens(values[offset::stride])
    ns = [n for n, _ in tokens]

    def bits_at(k: int) -> int:  # the tokens' codes at order k (the runs' do not depend on k)
        base = 1 << k
        return 2 * sum(map(int.bit_length, [n + base for n in ns])) - (k + 1) * len(ns)

    k = min(range(min(max(ns).bit_length(), MAX_ORDER) + 1), key=bits_at)
    bits = "".join(
        _exp_golomb(n, k) + (_exp_golomb(run - 1, 0) if run else "") for n, run in tokens
    )
    out = bytearray()
    _varint(out, (stride - 1) << _ORDER_BITS | k)
    if stride > 1:
        _varint(out, offset)
    if bits:
        bits += "0" * (-len(bits) % 8)
        out += int(bits, 2).to_bytes(len(bits) // 8, "big")
    return bytes(out)


def _code_column(values: list[int | None]) -> bytes | None:
    """The column as version 3 writes it; None when every value is absent. On a grid when
    the present values lie on one (the gcd of their gaps), if that is shorter."""
    present = [i for i, v in enumerate(values) if v is not None]
    if not present:
        return None
    best = _code_grid(values, 1, 0)
    stride = math.gcd(*(b - a for a, b in pairwise(present))) if len(present) > 1 else 0
    stride = stride or len(values)  # one value: a grid of one entry
    if stride > 1:
        grid = _code_grid(values, stride, present[0] % stride)
        if len(grid) < len(best):
            best = grid
    return best


def _read_varint(data: bytes, i: int, where: str) -> tuple[int, int]:
    n = shift = 0
    for k in range(MAX_VARINT_BYTES):
        if i + k >= len(data):
            _bad(f"a varint runs past the end at byte {i}", where)
        byte = data[i + k]
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return n, i + k + 1
        shift += 7
    _bad(f"a varint longer than {MAX_VARINT_BYTES} bytes at byte {i}", where)


def _unpack_column(data: bytes, count: int, lo: int, hi: int, where: str) -> list[int | None]:
    """Version 2's column: varint tokens."""
    out: list[int | None] = []
    previous = 0
    i = 0
    while i < len(data):
        token, i = _read_varint(data, i, where)
        if token == 0:
            run, i = _read_varint(data, i, where)
            if not 1 <= run <= count - len(out):
                _bad(f"a run of {run} absent values past the {count} times", where)
            out.extend([None] * run)
            continue
        zigzag = token - 1
        previous += zigzag >> 1 ^ -(zigzag & 1)
        if not lo <= previous <= hi:
            _bad(f"{_show(previous)} outside {lo}..{hi}", f"{where}[{len(out)}]")
        out.append(previous)
        if len(out) > count:
            _bad(f"more entries than the {count} times", where)
    if len(out) != count:
        _bad(f"{len(out)} entries for {count} times", where)
    return out


def _read_code(bits: str, pos: int, order: int, where: str) -> tuple[int, int]:
    """The order-`order` Exp-Golomb code at bit `pos` of `bits` ('0'/'1' text): its value
    and the position after it."""
    one = bits.find("1", pos)
    width = one - pos + order + 1  # the value part: as many bits as zeros, plus order + 1
    if one < 0 or one + width > len(bits):
        _bad(f"a code runs past the end at bit {pos}", where)
    if width > MAX_CODE_VALUE_BITS:
        _bad(f"a code wider than {MAX_CODE_VALUE_BITS} bits at bit {pos}", where)
    return int(bits[one : one + width], 2) - (1 << order), one + width


def _uncode_entries(bits: str, k: int, entries: int, values: list[int | None], where: str) -> int:
    """Version 3's tokens of `entries` entries from `bits` ('0'/'1' text) into `values`;
    returns the bit position after them. The ingest decodes every sample: `_read_code` is
    inlined, a run of repeats at order 0 (a run of 1 bits) taken at once, and the values'
    range checked after, by the caller."""
    size = len(bits)
    append, find, base, k1 = values.append, bits.find, 1 << k, k + 1
    previous = pos = n = 0
    while n < entries:
        one = find("1", pos)
        end = 2 * one - pos + k1
        if one < 0 or end > size or end - one > MAX_CODE_VALUE_BITS:
            _read_code(bits, pos, k, where)  # raises what is wrong
        token = int(bits[one:end], 2) - base
        pos = end
        if token > 1:  # a delta of zigzag⁻¹(token - 1)
            previous += token >> 1 if token & 1 else -(token >> 1)
        elif not token and k == 0:  # "1", a repeat: the 1s that follow are repeats too
            same = find("0", pos)
            same = min((size if same < 0 else same) - pos, entries - n - 1)
            values.extend([previous] * (same + 1))
            n += same + 1
            pos += same
            continue
        elif token == 1:
            run, pos = _read_code(bits, pos, 0, where)
            if run >= entries - n:
                _bad(f"a run of {run + 1} absent values past the {entries} entries", where)
            values.extend([None] * (run + 1))
            n += run + 1
            continue
        append(previous)
        n += 1
    return pos


def _check_column_range(
    values: list[int | None], lo: int, hi: int, where: str, offset: int, stride: int
) -> None:
    present = [v for v in values if v is not None]
    if present and (min(present) < lo or max(present) > hi):
        index, bad = next(
            (i, v) for i, v in enumerate(values) if v is not None and not lo <= v <= hi
        )
        _bad(f"{_show(bad)} outside {lo}..{hi}", f"{where}[{offset + index * stride}]")


def _uncode_column(data: bytes, count: int, lo: int, hi: int, where: str) -> list[int | None]:
    """Version 3's column: a header, then Exp-Golomb tokens of the grid's entries."""
    header, i = _read_varint(data, 0, where)
    k, stride = header & MAX_ORDER, (header >> _ORDER_BITS) + 1
    offset = 0
    if stride > 1:
        offset, i = _read_varint(data, i, where)
    if stride > count or offset >= stride:
        _bad(f"a grid of every {stride} from {offset} does not fit {count} times", where)
    entries = -(-(count - offset) // stride)
    size = 8 * (len(data) - i)
    bits = format(int.from_bytes(data[i:], "big"), f"0{size}b") if size else ""
    values: list[int | None] = []
    try:
        pos = _uncode_entries(bits, k, entries, values, where)
    except WireDecodeError:
        _check_column_range(values, lo, hi, where, offset, stride)  # the earlier fault first
        raise
    _check_column_range(values, lo, hi, where, offset, stride)
    if size - pos >= 8 or "1" in bits[pos:]:
        _bad(f"{size - pos} bits after the {entries} entries", where)
    if stride == 1:
        return values
    out: list[int | None] = [None] * count
    out[offset::stride] = values
    return out


def _undelta_column(
    column: Any, count: int, lo: int, hi: int, where: str, version: int
) -> list[int | None]:
    """Any column of any version: null, an array of deltas (version 1's, read in any
    version), or a byte string (version 2: varints; 3: coded)."""
    if column is None:
        return [None] * count
    if type(column) is bytes:
        unpack = _unpack_column if version <= 2 else _uncode_column
        return unpack(column, count, lo, hi, where)
    if type(column) is not list:
        _bad(f"expected an array or null, got {_kind(column)}", where)
    out: list[int | None] = []
    previous = 0
    for i, delta in enumerate(column):
        if delta is None:
            out.append(None)
        elif type(delta) is list:  # a run of Nones, [k]
            if len(delta) != 1 or type(delta[0]) is not int or not 2 <= delta[0] <= count:
                _bad("expected a run of nulls [k], 2 <= k <= the sample count", f"{where}[{i}]")
            out.extend([None] * delta[0])
        elif type(delta) is not int:
            _bad(f"expected an integer, null or [k], got {_kind(delta)}", f"{where}[{i}]")
        else:
            previous += delta
            if not lo <= previous <= hi:
                _bad(f"{_show(previous)} outside {lo}..{hi}", f"{where}[{i}]")
            out.append(previous)
        if len(out) > count:
            _bad(f"more entries than the {count} times", where)
    if len(out) != count:
        _bad(f"{len(out)} entries for {count} times", where)
    return out


# -- message ⇄ wire fields ----------------------------------------------------------------


def _batch_to_wire(m: ReadingsBatch) -> list[Any]:
    instant = None
    if m.instant:
        times = [s.at_s for s in m.instant]
        step = _common_step(times)
        instant = [
            times[0],
            step,
            _compress_times(times, step),
            _code_column([s.power_w for s in m.instant]),
            _code_column([s.current_r_da for s in m.instant]),
            _code_column([s.current_t_da for s in m.instant]),
        ]
    fixed = None
    if m.fixed:
        sources = [int(v.source) for v in m.fixed]
        fixed = [
            m.fixed[0].slot_start_s,
            _compress_times([v.slot_start_s // SLOT_S for v in m.fixed], 1),
            _delta_column([v.normal_raw for v in m.fixed]),
            _delta_column([v.reverse_raw for v in m.fixed]),
            sources if any(sources) else None,
        ]
    scale = None
    if m.scale is not None:
        scale = [m.scale.coefficient, int(m.scale.unit_code), m.scale.digits]
    return [m.seq, m.meter, instant, fixed, scale]


def _batch_from_wire(f: list[Any], version: int) -> ReadingsBatch:
    seq, meter, instant, fixed, scale = f
    samples: tuple[InstantSample, ...] = ()
    if instant is not None:
        t0, step, deviations, power, r, t = _fields(instant, 6, "ReadingsBatch.instant")
        _DECODING.time(t0, "ReadingsBatch.instant.t0_s")
        _DECODING.int_in(step, 0, MAX_STEP_S, "ReadingsBatch.instant.step_s")
        times = _expand_times(t0, step, deviations, MIN_TIME_S, MAX_TIME_S,
                              MAX_INSTANT_SAMPLES, "ReadingsBatch.instant.times")  # fmt: skip
        n = len(times)
        samples = tuple(map(InstantSample, times,
            _undelta_column(power, n, POWER_W_MIN, POWER_W_MAX,
                            "ReadingsBatch.instant.power_w", version),
            _undelta_column(r, n, CURRENT_DA_MIN, CURRENT_DA_MAX,
                            "ReadingsBatch.instant.current_r_da", version),
            _undelta_column(t, n, CURRENT_DA_MIN, CURRENT_DA_MAX,
                            "ReadingsBatch.instant.current_t_da", version),
        ))  # fmt: skip
    values: tuple[FixedTimeValue, ...] = ()
    if fixed is not None:
        slot0, deviations, normal, reverse, source = _fields(fixed, 5, "ReadingsBatch.fixed")
        if _DECODING.time(slot0, "ReadingsBatch.fixed.slot0_s") % SLOT_S:
            _bad("not on a half hour (a multiple of 1800 s)", "ReadingsBatch.fixed.slot0_s")
        slots = _expand_times(slot0 // SLOT_S, 1, deviations, -(-MIN_TIME_S // SLOT_S),
                              MAX_TIME_S // SLOT_S, MAX_FIXED_VALUES,
                              "ReadingsBatch.fixed.slots")  # fmt: skip
        n = len(slots)
        sources = [ValueSource.MEASURED] * n
        if source is not None:
            if type(source) is not list or len(source) != n:
                _bad(f"expected {n} source codes or null", "ReadingsBatch.fixed.source")
            for i, code in enumerate(source):
                if type(code) is not int or code not in _SOURCE_BY_CODE:
                    _bad("not a source code (0 measured, 1 refilled)",
                         f"ReadingsBatch.fixed.source[{i}]")  # fmt: skip
                sources[i] = _SOURCE_BY_CODE[code]
        values = tuple(map(FixedTimeValue, [u * SLOT_S for u in slots],
            _undelta_column(normal, n, 0, RAW_MAX, "ReadingsBatch.fixed.normal_raw", version),
            _undelta_column(reverse, n, 0, RAW_MAX, "ReadingsBatch.fixed.reverse_raw", version),
            sources,
        ))  # fmt: skip
    meter_scale = None
    if scale is not None:
        coefficient, unit_code, digits = _fields(scale, 3, "ReadingsBatch.scale")
        meter_scale = MeterScale(coefficient, unit_code, digits)
    return ReadingsBatch(seq, meter, samples, values, meter_scale)


def _status_to_wire(m: Status) -> list[Any]:
    return [m.at_s, str(m.agent_version), m.uptime_s, LINK_STATE_CODES[m.link], m.lqi,
            m.queue_depth, m.last_good_read_s, m.settings_version,
            _to_plain(m.errors)]  # fmt: skip


def _status_from_wire(f: list[Any], _wire_version: int) -> Status:
    at_s, version, uptime, link, lqi, depth, last_read, settings, errors = f
    state = _LINK_STATE_BY_CODE.get(link) if type(link) is int else None
    if state is None:
        _bad(f"not a link state code (0..{max(_LINK_STATE_BY_CODE)})", "Status.link")
    return Status(at_s, version, uptime, state, lqi, depth, last_read, settings, errors)


def _event_to_wire(m: Event) -> list[Any]:
    return [str(m.code), m.at_s, _to_plain(m.detail)]


def _result_to_wire(m: CommandResult) -> list[Any]:
    return [m.id, m.ok, _to_plain(m.result), None if m.error is None else str(m.error)]


def _command_to_wire(m: Command) -> list[Any]:
    return [m.id, str(m.name), m.expires_s, _to_plain(m.args)]


def _settings_to_wire(m: Settings) -> list[Any]:
    return [m.version, m.issued_s, _to_plain(m.values)]


def _to_plain(value: Any) -> Any:
    """A checked JSON-like value as CBOR takes it: Mappings as dicts, tuples as lists,
    enum members as their plain values."""
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    if type(value) is not bool and _is_int(value) and type(value) is not int:
        return int(value)
    if isinstance(value, str) and type(value) is not str:
        return str(value)
    return value


class _Spec(NamedTuple):
    cls: type
    check: Callable[[Any, _Check], None]
    to_wire: Callable[[Any], list[Any]]
    from_wire: Callable[[list[Any], int], Any]  # the fields, the payload's version
    field_count: int  # what this version reads; a newer peer may send more


_CODECS: dict[int, _Spec] = {
    ReadingsBatch.TYPE_CODE: _Spec(
        ReadingsBatch, _check_batch, _batch_to_wire, _batch_from_wire, 5
    ),
    Status.TYPE_CODE: _Spec(Status, _check_status, _status_to_wire, _status_from_wire, 9),
    Event.TYPE_CODE: _Spec(Event, _check_event, _event_to_wire, lambda f, _: Event(*f), 3),
    CommandResult.TYPE_CODE: _Spec(
        CommandResult, _check_result, _result_to_wire, lambda f, _: CommandResult(*f), 4
    ),
    Command.TYPE_CODE: _Spec(
        Command, _check_command, _command_to_wire, lambda f, _: Command(*f), 4
    ),
    Settings.TYPE_CODE: _Spec(
        Settings, _check_settings, _settings_to_wire, lambda f, _: Settings(*f), 3
    ),
}
_CODE_BY_CLASS = {spec.cls: code for code, spec in _CODECS.items()}


def _fields(value: Any, count: int, where: str) -> list[Any]:
    """The first `count` fields of a fixed-layout array (later ones are a newer peer's)."""
    if type(value) is not list:
        _bad(f"expected an array, got {_kind(value)}", where)
    if len(value) < count:
        _bad(f"{len(value)} fields, need {count}", where)
    return value[:count]


def _bad(reason: str, where: str) -> NoReturn:
    raise WireDecodeError(reason, where=where)


# -- the public API --------------------------------------------------------------------------


def encode(message: Message) -> bytes:
    """The payload of `message`: canonical CBOR. Raises `WireEncodeError` for a field of
    the wrong type or out of range, `WireLimitError` for anything over a limit."""
    code = _CODE_BY_CLASS.get(type(message))
    if code is None:
        raise WireEncodeError(f"not a wire message: {_kind(message)}")
    spec = _CODECS[code]
    spec.check(message, _ENCODING)
    payload = cbor2.dumps([code, WIRE_VERSION, *spec.to_wire(message)], canonical=True)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireLimitError(
            f"payload of {len(payload)} bytes, at most {MAX_PAYLOAD_BYTES}", where=spec.cls.__name__
        )
    return payload


def decode(payload: bytes, *, expect: type | None = None) -> Message:
    """The message in `payload`, checked field by field. With `expect` (a message class,
    usually the topic's), any other type is refused. Raises only `WireError`:
    `WireLimitError` over a limit, `WireVersionError` for a newer protocol version,
    `WireDecodeError` for everything else."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise WireDecodeError(f"a payload is bytes, got {_kind(payload)}")
    size = len(payload)
    if size > MAX_PAYLOAD_BYTES:
        raise WireLimitError(f"payload of {size} bytes, at most {MAX_PAYLOAD_BYTES}")
    if not size:
        raise WireDecodeError("empty payload")
    stream = io.BytesIO(payload)
    try:
        decoder = cbor2.CBORDecoder(
            stream, max_depth=_CBOR_MAX_DEPTH, allow_duplicate_keys=False, str_errors="strict"
        )
        body = decoder.decode()
    except Exception as err:  # cbor2's own errors, or whatever its tag decoders raise
        reason = str(err)[:120] or type(err).__name__
        raise WireDecodeError(f"not well-formed CBOR: {reason}", where="payload") from None
    if stream.tell() != size:
        raise WireDecodeError(
            f"{size - stream.tell()} bytes after the message", where=f"offset {stream.tell()}"
        )
    if type(body) is not list or len(body) < 2:
        raise WireDecodeError("a message is an array [type, version, fields...]", where="envelope")
    code, version = body[0], body[1]
    if type(version) is not int:
        raise WireDecodeError(f"expected an integer, got {_kind(version)}", where="version")
    if version > WIRE_VERSION:
        raise WireVersionError(
            f"protocol version {_show(version)} is newer than this decoder's {WIRE_VERSION}",
            where="version",
        )
    if version < 1:
        raise WireDecodeError(f"no protocol version {version}", where="version")
    spec = _CODECS.get(code) if type(code) is int else None
    if spec is None:
        raise WireDecodeError("unknown message type", where="type")
    name = spec.cls.__name__
    if expect is not None and spec.cls is not expect:
        wanted = getattr(expect, "__name__", repr(expect))
        raise WireDecodeError(f"expected {wanted}, got {name}", where="type")
    fields = body[2 : 2 + spec.field_count]
    if len(fields) < spec.field_count:
        raise WireDecodeError(f"{len(fields)} fields, need {spec.field_count}", where=name)
    message = spec.from_wire(fields, version)
    spec.check(message, _DECODING)
    return message


def encode_publish(message: Message, gateway_id: str) -> tuple[str, bytes]:
    """(topic, payload) for `message` from or to one gateway."""
    return topic_for(message.KIND, gateway_id), encode(message)


def decode_publish(topic: str, payload: bytes) -> tuple[str, Message]:
    """(gateway id, message) of a received PUBLISH: the topic must be one of ours and the
    message of the type that topic carries. Raises only `WireError`."""
    kind, gateway_id = parse_topic(topic)
    return gateway_id, decode(payload, expect=MESSAGE_FOR_KIND[kind])


# -- debugging -------------------------------------------------------------------------------

_TIME_FIELDS = frozenset({"at_s", "slot_start_s", "last_good_read_s", "expires_s", "issued_s"})
_UNIT_NAMES = {
    0x00: "1 kWh", 0x01: "0.1 kWh", 0x02: "0.01 kWh", 0x03: "0.001 kWh", 0x04: "0.0001 kWh",
    0x0A: "10 kWh", 0x0B: "100 kWh", 0x0C: "1000 kWh", 0x0D: "10000 kWh",
}  # fmt: skip


def to_json(message: Message, *, indent: int | None = 2) -> str:
    """`message` as JSON for people: field names, ISO times in JST, enum names, and every
    secret masked. Not a wire format: nothing parses it back."""
    body = {"type": type(message).__name__, "wire_version": WIRE_VERSION, **_jsonable(message)}
    return json.dumps(body, indent=indent, ensure_ascii=False, default=repr)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.name in _TIME_FIELDS and item is not None:
                out[f.name.removesuffix("_s")] = _iso(item)
            elif f.name == "unit_code":
                out[f.name] = _jsonable(item)
                out["unit"] = _UNIT_NAMES.get(item, repr(item))
            else:
                out[f.name] = _jsonable(item)
        return out
    if isinstance(value, ValueSource):
        return value.name.lower()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in mask_secrets(value).items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _iso(epoch_s: Any) -> Any:
    try:
        return datetime.fromtimestamp(epoch_s, JST).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return epoch_s
