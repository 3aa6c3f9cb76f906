"""Column coding of a readings batch: lists of integers to compact fields and back.

A readings batch goes as columns because each column's neighbours are close (docs/wire.md,
"The instant block" and "The fixed block"). Kept apart from the message layout because it
is the one part of the codec that is arithmetic on bits, and the part the ingest spends
its time in: every sample of every batch is decoded here. It knows nothing of messages;
every reader checks what it reads and raises only `WireDecodeError` / `WireLimitError`.

- Times: a base, a common step and each gap's deviation from it, runs of zeros as `[n]`.
- Version 1 values (still read, and the fixed block's in every version): an array of
  deltas from the previous present value; a lone absent value `null`, a run of k ≥ 2 `[k]`.
- Version 2 instant columns (read only): a byte string of varint tokens.
- Version 3 instant columns (written): a header varint, then order-k Exp-Golomb codes of
  the tokens, packed most significant bit first.

The Exp-Golomb codes are built and read as integers through a window of at most a few
machine words, never as text of '0' and '1': a code's leading zeros are the window's width
less its `bit_length()`, its value a shift and a mask.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import pairwise
from typing import Any, NoReturn

from .checks import MAX_STEP_S, bad, kind, show
from .errors import WireDecodeError, WireLimitError

# -- times: a base, a step and deviations ------------------------------------------------------


def compress_times(units: list[int], step: int) -> list[Any]:
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


def common_step(times: list[int]) -> int:
    """The commonest gap between samples (the smallest of equals), within 0..MAX_STEP_S."""
    gaps = Counter(b - a for a, b in pairwise(times))
    usable = [(count, -gap) for gap, count in gaps.items() if 0 <= gap <= MAX_STEP_S]
    return -max(usable)[1] if usable else 0


def expand_times(
    base: int, step: int, deviations: Any, lo: int, hi: int, limit: int, where: str
) -> list[int]:
    """The inverse of `compress_times`, checking every time and the count as it goes."""
    if type(deviations) is not list:
        bad(f"expected an array of deviations, got {kind(deviations)}", where)
    out = [base]
    t = base
    for i, item in enumerate(deviations):
        if type(item) is int:
            t += step + item
            out.append(t)
        elif type(item) is list and len(item) == 1 and type(item[0]) is int:
            run = item[0]
            if run < 1:
                bad(f"a run of zeros counts 1 or more, not {show(run)}", f"{where}[{i}]")
            if len(out) + run > limit:
                raise WireLimitError(f"more than {limit} entries", where=f"{where}[{i}]")
            if step:
                out.extend(range(t + step, t + step * run + 1, step))
            else:
                out.extend([t] * run)
            t = out[-1]
        else:
            bad(f"expected an integer or a [run], got {kind(item)}", f"{where}[{i}]")
        if not lo <= t <= hi:
            bad(f"time {show(t)} outside {lo}..{hi}", f"{where}[{i}]")
        if len(out) > limit:
            raise WireLimitError(f"more than {limit} entries", where=f"{where}[{i}]")
    return out


# -- version 1: arrays of deltas ---------------------------------------------------------------


def delta_column(values: list[int | None]) -> list[Any] | None:
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


def undelta_column(column: list[Any], count: int, lo: int, hi: int, where: str) -> list[int | None]:
    """Version 1's column (an array of deltas), checked."""
    out: list[int | None] = []
    previous = 0
    for i, delta in enumerate(column):
        if delta is None:
            out.append(None)
        elif type(delta) is list:  # a run of Nones, [k]
            if len(delta) != 1 or type(delta[0]) is not int or not 2 <= delta[0] <= count:
                bad("expected a run of nulls [k], 2 <= k <= the sample count", f"{where}[{i}]")
            out.extend([None] * delta[0])
        elif type(delta) is not int:
            bad(f"expected an integer, null or [k], got {kind(delta)}", f"{where}[{i}]")
        else:
            previous += delta
            if not lo <= previous <= hi:
                bad(f"{show(previous)} outside {lo}..{hi}", f"{where}[{i}]")
            out.append(previous)
        if len(out) > count:
            bad(f"more entries than the {count} times", where)
    if len(out) != count:
        bad(f"{len(out)} entries for {count} times", where)
    return out


# -- version 2: varint tokens ------------------------------------------------------------------

MAX_VARINT_BYTES = 5  # 2^35: far beyond any power, current or run length


def _varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)


def _read_varint(data: bytes, i: int, where: str) -> tuple[int, int]:
    n = shift = 0
    for k in range(MAX_VARINT_BYTES):
        if i + k >= len(data):
            bad(f"a varint runs past the end at byte {i}", where)
        byte = data[i + k]
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return n, i + k + 1
        shift += 7
    bad(f"a varint longer than {MAX_VARINT_BYTES} bytes at byte {i}", where)


def unpack_column(data: bytes, count: int, lo: int, hi: int, where: str) -> list[int | None]:
    """Version 2's column: a varint a token, n ≥ 1 a value zigzag⁻¹(n − 1) from the
    previous, 0 then a varint k for k absent values."""
    out: list[int | None] = []
    previous = 0
    i = 0
    while i < len(data):
        token, i = _read_varint(data, i, where)
        if token == 0:
            run, i = _read_varint(data, i, where)
            if not 1 <= run <= count - len(out):
                bad(f"a run of {run} absent values past the {count} times", where)
            out.extend([None] * run)
            continue
        zigzag = token - 1
        previous += zigzag >> 1 ^ -(zigzag & 1)
        if not lo <= previous <= hi:
            bad(f"{show(previous)} outside {lo}..{hi}", f"{where}[{len(out)}]")
        out.append(previous)
        if len(out) > count:
            bad(f"more entries than the {count} times", where)
    if len(out) != count:
        bad(f"{len(out)} entries for {count} times", where)
    return out


# -- version 3: Exp-Golomb codes on a grid -----------------------------------------------------
#
# A header varint `(stride - 1) << 5 | k`, `offset` as a varint when stride > 1, then
# order-k Exp-Golomb codes of the tokens of only the samples offset, offset + stride, ...
# (the others are absent: currents read every fifth sample cost nothing for the four
# between). Household power moves by tens to hundreds of watts a minute: about 10 bits a
# sample where a varint takes 16.

MAX_CODE_VALUE_BITS = 40  # a code's value part (after its zeros); a token needs at most 34
_ORDER_BITS = 5  # the header varint: (stride - 1) << 5 | k
MAX_ORDER = (1 << _ORDER_BITS) - 1
# A code is at most 39 zeros and 40 value bits: a window this wide holds any valid one.
_WINDOW_BITS = 2 * MAX_CODE_VALUE_BITS
_REFILL_BYTES = 16


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


def _code_grid(values: list[int | None], stride: int, offset: int) -> bytes:
    """The entries at offset, offset + stride, ... as one coded column."""
    tokens = _tokens(values[offset::stride])
    ns = [n for n, _ in tokens]

    def bits_at(k: int) -> int:  # the tokens' codes at order k (the runs' do not depend on k)
        base = 1 << k
        return 2 * sum(map(int.bit_length, [n + base for n in ns])) - (k + 1) * len(ns)

    k = min(range(min(max(ns).bit_length(), MAX_ORDER) + 1), key=bits_at)
    out = bytearray()
    _varint(out, (stride - 1) << _ORDER_BITS | k)
    if stride > 1:
        _varint(out, offset)
    # The order-k code of n is x = n + 2^k written in 2·len(x) − k − 1 bits (that many
    # leading zeros, then x); a run of r absent values is followed by r − 1 at order 0.
    # Codes go into `acc` and whole bytes leave it once it holds 64 bits or more.
    base = 1 << k
    acc = width = 0
    for n, run in tokens:
        x = n + base
        size = 2 * x.bit_length() - k - 1
        acc, width = acc << size | x, width + size
        if run:
            size = 2 * run.bit_length() - 1
            acc, width = acc << size | run, width + size
        if width >= 64:
            keep = width & 7
            out += (acc >> keep).to_bytes(width >> 3, "big")
            acc &= (1 << keep) - 1
            width = keep
    if width:
        pad = -width % 8
        out += (acc << pad).to_bytes((width + pad) >> 3, "big")
    return bytes(out)


def code_column(values: list[int | None]) -> bytes | None:
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


def _code_fault(data: bytes, start: int, pos: int, order: int, where: str) -> NoReturn:
    """Raise what is wrong with the code at bit `pos` of `data[start:]` (the slow path,
    over the whole remainder, so that the message does not depend on the window)."""
    size = 8 * (len(data) - start)
    rest = int.from_bytes(data[start:], "big") & ((1 << (size - pos)) - 1)
    one = size - rest.bit_length()  # the first 1 bit at or after pos
    width = one - pos + order + 1  # the value part: as many bits as zeros, plus order + 1
    if not rest or one + width > size:
        bad(f"a code runs past the end at bit {pos}", where)
    if width > MAX_CODE_VALUE_BITS:
        bad(f"a code wider than {MAX_CODE_VALUE_BITS} bits at bit {pos}", where)
    bad(f"no fault in the code at bit {pos}", where)  # not reached: callers found one


def _uncode_entries(
    data: bytes, start: int, k: int, entries: int, values: list[int | None], where: str
) -> tuple[int, bool]:
    """Version 3's tokens of `entries` entries from `data[start:]` into `values`; returns
    how many bits are left after them, and whether any of those is a 1. The ingest
    decodes every sample: the bits go through a window `acc` of `width` bits refilled 16
    bytes at a time, a run of repeats at order 0 (a run of 1 bits) is taken at once, and
    the values' range is checked after, by the caller."""
    end = len(data)
    j = start
    acc = width = 0
    base = 1 << k
    from_bytes, append = int.from_bytes, values.append
    previous = n = 0
    run_next = False  # the code after a token 1 is its run length, at order 0
    while n < entries:
        if width < _WINDOW_BITS and j < end:
            chunk = data[j : j + _REFILL_BYTES]
            j += len(chunk)
            acc = acc << 8 * len(chunk) | from_bytes(chunk, "big")
            width += 8 * len(chunk)
        top = acc.bit_length()  # the window's leading zeros are width - top
        order = 0 if run_next else k
        size = width - top + order + 1  # the code's value part
        if not top or size > top or size > MAX_CODE_VALUE_BITS:
            _code_fault(data, start, 8 * (j - start) - width, order, where)
        width = top - size
        code = acc >> width
        acc &= (1 << width) - 1
        if run_next:  # code is run + 1: `run` + 1 absent values
            run_next = False
            if code > entries - n:
                bad(f"a run of {code} absent values past the {entries} entries", where)
            values.extend([None] * code)
            n += code
            continue
        token = code - base
        if token > 1:  # a delta of zigzag⁻¹(token - 1)
            previous += token >> 1 if token & 1 else -(token >> 1)
        elif not token and k == 0:  # "1", a repeat: the 1s that follow are repeats too
            ones = width - (acc ^ ((1 << width) - 1)).bit_length()
            same = min(ones, entries - n - 1)
            values.extend([previous] * (same + 1))
            n += same + 1
            width -= same
            acc &= (1 << width) - 1
            continue
        elif token == 1:
            run_next = True
            continue
        append(previous)
        n += 1
    return width + 8 * (end - j), acc != 0


def _check_column_range(
    values: list[int | None], lo: int, hi: int, where: str, offset: int, stride: int
) -> None:
    present = [v for v in values if v is not None]
    if present and (min(present) < lo or max(present) > hi):
        index, wrong = next(
            (i, v) for i, v in enumerate(values) if v is not None and not lo <= v <= hi
        )
        bad(f"{show(wrong)} outside {lo}..{hi}", f"{where}[{offset + index * stride}]")


def uncode_column(data: bytes, count: int, lo: int, hi: int, where: str) -> list[int | None]:
    """Version 3's column: a header, then Exp-Golomb tokens of the grid's entries."""
    header, i = _read_varint(data, 0, where)
    k, stride = header & MAX_ORDER, (header >> _ORDER_BITS) + 1
    offset = 0
    if stride > 1:
        offset, i = _read_varint(data, i, where)
    if stride > count or offset >= stride:
        bad(f"a grid of every {stride} from {offset} does not fit {count} times", where)
    entries = -(-(count - offset) // stride)
    values: list[int | None] = []
    try:
        left, ones = _uncode_entries(data, i, k, entries, values, where)
    except WireDecodeError:
        _check_column_range(values, lo, hi, where, offset, stride)  # the earlier fault first
        raise
    _check_column_range(values, lo, hi, where, offset, stride)
    if left >= 8 or ones:  # padding is fewer than 8 bits, all 0
        bad(f"{left} bits after the {entries} entries", where)
    if stride == 1:
        return values
    out: list[int | None] = [None] * count
    out[offset::stride] = values
    return out
