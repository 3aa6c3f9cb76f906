"""kenshin.wire: round trips of every message, the errors bad payloads and bad messages
get, versioning, secrets, topics and the device ACL helpers, and the docs' byte count."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kenshin.wire import (
    EVENT_FILTER,
    INGEST_FILTERS,
    MAX_COUNTERS,
    MAX_FIXED_VALUES,
    MAX_INSTANT_SAMPLES,
    MAX_MAP_DEPTH,
    MAX_MAP_ITEMS,
    MAX_NAME_LEN,
    MAX_PAYLOAD_BYTES,
    MAX_TEXT_LEN,
    MAX_TIME_S,
    MIN_TIME_S,
    READINGS_SHARED_FILTER,
    RESULT_FILTER,
    STATUS_FILTER,
    WIRE_VERSION,
    Command,
    CommandName,
    CommandResult,
    Event,
    FixedTimeValue,
    InstantSample,
    Kind,
    LinkState,
    MeterScale,
    ReadingsBatch,
    Settings,
    Status,
    ValueSource,
    WireDecodeError,
    WireEncodeError,
    WireError,
    WireLimitError,
    WireTopicError,
    WireVersionError,
    decode,
    decode_publish,
    device_may_publish,
    device_may_subscribe,
    device_subscriptions,
    encode,
    encode_publish,
    filter_matches,
    parse_topic,
    to_json,
    topic_for,
)
from kenshin.wire.codec import CURRENT_DA_MAX, CURRENT_DA_MIN, POWER_W_MAX, POWER_W_MIN, RAW_MAX
from kenshin.wire.messages import UNIT_MILLIWATT_HOURS

from .dr_strategies import dr_messages

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_717_210_800  # 2024-06-01T12:00:00+09:00, a half hour
INT64 = (-(2**63), 2**63 - 1)
UINT = (0, 2**63 - 1)

# -- strategies ------------------------------------------------------------------------------

printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
labels = st.text(printable, min_size=1, max_size=MAX_NAME_LEN)
names = st.text(string.ascii_letters + string.digits + "_.:-", min_size=1, max_size=MAX_NAME_LEN)
keys = st.text(st.characters(exclude_categories=("Cs", "Cc", "Cf", "Zl", "Zp", "Co", "Cn")),
               min_size=1, max_size=20).filter(str.isprintable)  # fmt: skip
free_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
times = st.integers(MIN_TIME_S, MAX_TIME_S)
uints = st.integers(*UINT)


def json_values(level: int) -> st.SearchStrategy[Any]:
    """A value at container level `level` (the map itself is level 1)."""
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(*INT64),
        st.floats(allow_nan=False, allow_infinity=False), free_text,
    )  # fmt: skip
    if level > MAX_MAP_DEPTH:
        return leaves
    inner = json_values(level + 1)
    return st.one_of(leaves, st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3))


value_maps = st.dictionaries(keys, json_values(2), max_size=6)  # at most 240 items


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


instant_samples = st.builds(
    InstantSample,
    times,
    optional(st.integers(POWER_W_MIN, POWER_W_MAX)),
    optional(st.integers(CURRENT_DA_MIN, CURRENT_DA_MAX)),
    optional(st.integers(CURRENT_DA_MIN, CURRENT_DA_MAX)),
)


@st.composite
def sample_series(draw: st.DrawFn) -> tuple[InstantSample, ...]:
    """What a poller produces: a tick, read delays, now and then a missed read."""
    step = draw(st.sampled_from([1, 5, 10, 30, 60, 300]))
    start = draw(st.integers(MIN_TIME_S, MAX_TIME_S - 10_000_000))
    count = draw(st.integers(1, 120))
    missed = draw(st.sets(st.integers(0, count - 1), max_size=count // 4))
    jitter = draw(st.lists(st.integers(0, 3), min_size=count, max_size=count))
    watts = draw(st.lists(st.integers(-6000, 12000), min_size=count, max_size=count))
    t_phase = draw(st.booleans())
    return tuple(
        InstantSample(start + i * step + jitter[i], watts[i], watts[i] // 20,
                      watts[i] // 25 if t_phase else None)
        for i in range(count) if i not in missed
    )  # fmt: skip


fixed_values = st.builds(
    FixedTimeValue,
    st.integers(-(-MIN_TIME_S // 1800), MAX_TIME_S // 1800).map(lambda k: k * 1800),
    optional(st.integers(0, RAW_MAX)),
    optional(st.integers(0, RAW_MAX)),
    st.sampled_from(ValueSource),
)
scales = st.builds(
    MeterScale, st.integers(1, 999_999), st.sampled_from(sorted(UNIT_MILLIWATT_HOURS)),
    st.integers(1, 8),
)  # fmt: skip


@st.composite
def batches(draw: st.DrawFn) -> ReadingsBatch:
    instant = draw(st.one_of(st.lists(instant_samples, max_size=40).map(tuple), sample_series()))
    fixed = tuple(draw(st.lists(fixed_values, max_size=30)))
    scale = draw(scales) if fixed else draw(optional(scales))
    return ReadingsBatch(draw(uints), draw(labels), instant, fixed, scale)


statuses = st.builds(
    Status, times, labels, uints, st.sampled_from(LinkState), optional(st.integers(0, 255)),
    uints, optional(times), optional(uints),
    st.dictionaries(st.text(printable, min_size=1, max_size=64), uints, max_size=8),
)  # fmt: skip
events = st.builds(Event, names, times, value_maps)
commands = st.builds(
    Command, uints, st.one_of(st.sampled_from(CommandName), names), times, value_maps
)
results = st.one_of(
    st.builds(CommandResult, uints, st.just(True), value_maps, st.none()),
    st.builds(CommandResult, uints, st.just(False), value_maps,
              st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=80)),
)  # fmt: skip
settings_messages = st.builds(Settings, uints, times, value_maps)
messages = st.one_of(batches(), statuses, events, commands, results, settings_messages, dr_messages)


# -- round trips -----------------------------------------------------------------------------


def round_trip(message: Any) -> None:
    payload = encode(message)
    assert len(payload) <= MAX_PAYLOAD_BYTES
    back = decode(payload, expect=type(message))
    assert back == message
    assert encode(back) == payload  # canonical: one message, one encoding
    assert json.loads(to_json(back))["type"] == type(message).__name__


@settings(max_examples=300, deadline=None)
@given(batches())
def test_readings_batch_round_trip(batch: ReadingsBatch) -> None:
    round_trip(batch)


@settings(max_examples=200, deadline=None)
@given(statuses)
def test_status_round_trip(status: Status) -> None:
    round_trip(status)


@settings(max_examples=200, deadline=None)
@given(events)
def test_event_round_trip(event: Event) -> None:
    round_trip(event)


@settings(max_examples=200, deadline=None)
@given(commands)
def test_command_round_trip(command: Command) -> None:
    round_trip(command)


@settings(max_examples=200, deadline=None)
@given(results)
def test_command_result_round_trip(result: CommandResult) -> None:
    round_trip(result)


@settings(max_examples=200, deadline=None)
@given(settings_messages)
def test_settings_round_trip(message: Settings) -> None:
    round_trip(message)


@settings(max_examples=100, deadline=None)
@given(messages, st.lists(st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=3))
def test_trailing_fields_of_a_newer_peer_are_ignored(message: Any, extra: list[Any]) -> None:
    body = cbor2.loads(encode(message))
    if isinstance(message, ReadingsBatch):  # blocks grow at their end too
        for index in (4, 5, 6):
            if body[index] is not None:
                body[index] = [*body[index], *extra]
    assert decode(cbor2.dumps([*body, *extra])) == message


def test_empty_batch_and_none_columns() -> None:
    round_trip(ReadingsBatch(0, "0"))
    round_trip(ReadingsBatch(1, "0", (InstantSample(T0, None),)))
    two_wire = tuple(InstantSample(T0 + 60 * i, 100 + i, 10) for i in range(10))
    payload = encode(ReadingsBatch(2, "m", two_wire))
    assert cbor2.loads(payload)[4][5] is None  # no T column at all on 2-wire service
    round_trip(ReadingsBatch(2, "m", two_wire))


def test_regular_times_cost_a_few_bytes() -> None:
    regular = tuple(InstantSample(T0 + 60 * i, 500) for i in range(30))
    instant = cbor2.loads(encode(ReadingsBatch(0, "0", regular)))[4]
    assert instant[:3] == [T0, 60, [[29]]]  # t0, step, one run of 29 on-step gaps
    # Header 0 (every sample, order 0); 500 is token zigzag(500) + 1 = 1001, coded as
    # 9 zeros and 1002 in binary; each repeat of it is token 0, one bit "1".
    bits = "0" * 9 + format(1002, "b") + "1" * 29
    assert instant[3] == b"\x00" + int(bits, 2).to_bytes(6, "big")


# A reference writer of version 2's varint columns, from docs/wire.md: an updated server
# must keep reading what gateways not yet updated send.
def v2_column(values: list[int | None]) -> bytes | None:
    def varint(n: int) -> bytes:
        out = bytearray()
        while n >= 0x80:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        return bytes([*out, n])

    out, previous, nones = b"", 0, 0
    for value in values:
        if value is None:
            nones += 1
            continue
        if nones:
            out += b"\x00" + varint(nones)
            nones = 0
        delta, previous = value - previous, value
        out += varint((2 * delta if delta >= 0 else -2 * delta - 1) + 1)
    if nones:
        out += b"\x00" + varint(nones)
    return out if any(v is not None for v in values) else None


def as_version_2(batch: ReadingsBatch) -> bytes:
    """`batch` as a version 2 gateway sends it: its columns as varints."""
    body = cbor2.loads(encode(batch))
    body[1] = 2
    if body[4] is not None:
        for i, name in ((3, "power_w"), (4, "current_r_da"), (5, "current_t_da")):
            body[4][i] = v2_column([getattr(s, name) for s in batch.instant])
    return cbor2.dumps(body, canonical=True)


def test_version_1_array_columns_still_read() -> None:
    """A gateway not yet updated sends its columns as CBOR arrays of deltas."""
    body = [1, 1, 4, "0", [T0, 60, [[2]], [500, -20, None], [[3]], None], None, None]
    batch = decode(cbor2.dumps(body))
    assert [(s.at_s, s.power_w, s.current_r_da) for s in batch.instant] == [
        (T0, 500, None), (T0 + 60, 480, None), (T0 + 120, None, None),
    ]  # fmt: skip


power_values = st.one_of(st.none(), st.integers(POWER_W_MIN, POWER_W_MAX),
                         st.sampled_from([POWER_W_MIN, POWER_W_MAX, 0, -1, 1]))  # fmt: skip


@given(st.lists(power_values, max_size=200))
def test_coded_columns_round_trip_any_values(values) -> None:
    samples = tuple(InstantSample(T0 + 60 * i, p) for i, p in enumerate(values))
    if samples:
        batch = ReadingsBatch(1, "0", samples)
        assert decode(encode(batch)) == batch
        assert decode(as_version_2(batch)) == batch  # version 2 still read


@pytest.mark.slow  # every value on a grid of columns
@given(
    st.integers(1, 300),
    st.integers(1, 12),
    st.integers(0, 11),
    st.sets(st.integers(0, 299), max_size=20),
    st.lists(st.integers(CURRENT_DA_MIN, CURRENT_DA_MAX), min_size=300, max_size=300),
)
def test_values_on_a_grid_round_trip(count, stride, offset, missed, currents) -> None:
    """Currents read every `stride`-th sample (now and then a read failed): the column
    takes the grid, and the samples between cost nothing."""
    samples = tuple(
        InstantSample(T0 + 60 * i, i,
                      currents[i] if i % stride == offset % stride and i not in missed else None)
        for i in range(count)
    )  # fmt: skip
    batch = ReadingsBatch(1, "0", samples)
    assert decode(encode(batch)) == batch
    assert decode(as_version_2(batch)) == batch


def test_samples_out_of_order_and_clock_steps_round_trip() -> None:
    """A gateway clock stepped back by NTP must not make a batch unsendable."""
    jumbled = tuple(InstantSample(t, 100) for t in (T0, T0 + 60, T0 - 3600, T0 - 3540, T0))
    round_trip(ReadingsBatch(5, "0", jumbled))
    refills = tuple(FixedTimeValue(T0 + k * 1800, 1000 + k, None, ValueSource.REFILLED)
                    for k in (5, 1, 2, 3, -40, 4))  # fmt: skip
    round_trip(ReadingsBatch(6, "0", (), refills, MeterScale()))
    same_second = tuple(InstantSample(T0, p) for p in range(6))  # step 0, a run of 5
    assert cbor2.loads(encode(ReadingsBatch(7, "0", same_second)))[4][1:3] == [0, [[5]]]
    round_trip(ReadingsBatch(7, "0", same_second))
    backwards = tuple(InstantSample(T0 - 60 * i, 100) for i in range(10))  # no usable step
    round_trip(ReadingsBatch(8, "0", backwards))


def test_worst_case_batch_fits_the_payload_limit() -> None:
    extremes = [MIN_TIME_S, MAX_TIME_S]
    power = (POWER_W_MIN, POWER_W_MAX)
    current = (CURRENT_DA_MIN, CURRENT_DA_MAX)
    samples = tuple(
        InstantSample(extremes[i % 2], power[i % 2], current[i % 2], current[1 - i % 2])
        for i in range(MAX_INSTANT_SAMPLES)
    )
    slots = [-(-MIN_TIME_S // 1800) * 1800, MAX_TIME_S // 1800 * 1800]
    fixed = tuple(
        FixedTimeValue(slots[i % 2], (0, RAW_MAX)[i % 2], (RAW_MAX, 0)[i % 2],
                       ValueSource(i % 2))
        for i in range(MAX_FIXED_VALUES)
    )  # fmt: skip
    batch = ReadingsBatch(
        2**63 - 1, "m" * MAX_NAME_LEN, samples, fixed, MeterScale(999_999, 0x0D, 8)
    )
    payload = encode(batch)
    assert len(payload) <= MAX_PAYLOAD_BYTES
    assert decode(payload) == batch


def test_scale_converts_exactly() -> None:
    scale = MeterScale(coefficient=40, unit_code=0x04, digits=6)  # 0.0001 kWh x 40 = 4 Wh
    assert scale.milliwatt_hours(25_649) == 102_596_000
    assert scale.delta_milliwatt_hours(999_990, 10) == 20 * 4_000  # across the wrap


# -- decode errors ---------------------------------------------------------------------------


def coded(header: int, bits: str, *, offset: int | None = None) -> bytes:
    """A version 3 column by hand: the header varint, the offset (< 128), the bits."""
    bits += "0" * (-len(bits) % 8)
    body = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    head = bytes([header]) if header < 0x80 else bytes([header & 0x7F | 0x80, header >> 7])
    return head + bytes([] if offset is None else [offset]) + body


def good_batch() -> ReadingsBatch:
    samples = tuple(InstantSample(T0 + 60 * i + i % 2, 1500 - 7 * i, 70, 80) for i in range(10))
    return ReadingsBatch(3, "0", samples, (FixedTimeValue(T0, 25_649, 21_433),), MeterScale())


def batch_body() -> list[Any]:
    return cbor2.loads(encode(good_batch()))


def with_change(path: tuple[int, ...], value: Any, *, version: int | None = None) -> bytes:
    body = batch_body()
    if version is not None:
        body[1] = version
    target = body
    for index in path[:-1]:
        target = target[index]
    target[path[-1]] = value
    return cbor2.dumps(body)


MALFORMED: list[tuple[str, Any, type[WireError], str]] = [
    ("empty", b"", WireDecodeError, "empty payload"),
    ("not CBOR", b"\xff\x00", WireDecodeError, "not well-formed CBOR"),
    ("text, not bytes", "hello", WireDecodeError, "a payload is bytes"),
    ("oversize", b"\x00" * (MAX_PAYLOAD_BYTES + 1), WireLimitError, "at most 65536"),
    ("trailing bytes", encode(good_batch()) + b"\x00", WireDecodeError, "1 bytes after"),
    ("a map", cbor2.dumps({"type": 1}), WireDecodeError, "envelope"),
    ("too short", cbor2.dumps([1]), WireDecodeError, "envelope"),
    ("unknown type", cbor2.dumps([99, 1, 0]), WireDecodeError, "unknown message type"),
    ("newer version", cbor2.dumps([1, 4, "whatever"]), WireVersionError, "newer"),
    ("version 0", cbor2.dumps([1, 0, 3, "0", None, None, None]), WireDecodeError, "version"),
    ("text version", cbor2.dumps([1, "1"]), WireDecodeError, "at version"),
    ("missing fields", cbor2.dumps([1, 1, 3, "0"]), WireDecodeError, "2 fields, need 5"),
    ("seq as text", with_change((2,), "3"), WireDecodeError, "ReadingsBatch.seq"),
    ("negative seq", with_change((2,), -1), WireDecodeError, "-1 outside"),
    ("seq a bignum", with_change((2,), 2**200), WireDecodeError, "an integer of 201 bits"),
    ("meter too long", with_change((3,), "x" * 33), WireLimitError, "ReadingsBatch.meter"),
    ("empty meter", with_change((3,), ""), WireDecodeError, "ReadingsBatch.meter"),
    ("meter with a newline", with_change((3,), "a\nb"), WireDecodeError, "printable"),
    ("instant not an array", with_change((4,), {"t0": 1}), WireDecodeError, "expected an array"),
    ("instant too short", with_change((4,), [T0, 60]), WireDecodeError, "2 fields, need 6"),
    ("t0 before 2000", with_change((4, 0), 12), WireDecodeError, "instant.t0_s"),
    ("negative step", with_change((4, 1), -60), WireDecodeError, "instant.step_s"),
    ("time overflows", with_change((4, 2, 0), 2**40), WireDecodeError, "instant.times[0]"),
    ("bad run", with_change((4, 2), [[0]]), WireDecodeError, "a run of zeros"),
    ("run of text", with_change((4, 2), [["9"]]), WireDecodeError, "an integer or a [run]"),
    ("run too long", with_change((4, 2), [[10**6]]), WireLimitError, "more than 2880"),
    ("column too short", with_change((4, 3), [1, 2]), WireDecodeError, "2 entries for 10 times"),
    # version 1's columns: CBOR arrays of deltas (still read)
    ("power a float", with_change((4, 3), [0] * 4 + [1.5] + [0] * 5), WireDecodeError,
     "power_w[4]"),
    ("power overflows", with_change((4, 3), [0, 0, 2**40] + [0] * 7), WireDecodeError,
     "power_w[2]"),
    ("current overflows", with_change((4, 4), [40_000] + [0] * 9), WireDecodeError,
     "current_r_da[0]"),
    # version 2's packed columns: varint tokens (still read)
    ("packed varint cut short", with_change((4, 3), b"\x03" * 9 + b"\x80", version=2),
     WireDecodeError, "runs past the end"),
    ("packed varint too long", with_change((4, 3), b"\xff" * 6, version=2), WireDecodeError,
     "longer than 5 bytes"),
    ("packed run too long", with_change((4, 3), b"\x00\x0b", version=2), WireDecodeError,
     "a run of 11"),
    ("packed power overflows", with_change((4, 3), b"\x03\xff\xff\xff\xff\x0f", version=2),
     WireDecodeError, "power_w[1]"),
    ("packed column too short", with_change((4, 3), b"\x01\x01", version=2), WireDecodeError,
     "2 entries for 10 times"),
    # version 3's coded columns: a header varint, Exp-Golomb codes (10 samples here)
    ("coded header too long", with_change((4, 3), b"\xff" * 6), WireDecodeError,
     "longer than 5 bytes"),
    ("coded, no header", with_change((4, 3), b""), WireDecodeError, "runs past the end"),
    ("coded code cut short", with_change((4, 3), coded(0, "11" + "0" * 14)), WireDecodeError,
     "a code runs past the end at bit 2"),
    ("coded code too wide", with_change((4, 3), coded(0, "0" * 41 + "1" + "0" * 41)),
     WireDecodeError, "wider than 40 bits"),
    ("coded grid wider than the times", with_change((4, 3), coded(10 << 5, "", offset=0)),
     WireDecodeError, "every 11 from 0 does not fit 10 times"),
    ("coded offset off the grid", with_change((4, 3), coded(1 << 5, "", offset=2)),
     WireDecodeError, "every 2 from 2"),
    ("coded run too long", with_change((4, 3), coded(0, "010" + "0001011")), WireDecodeError,
     "a run of 11 absent values past the 10 entries"),
    ("coded power overflows", with_change((4, 3), coded(0, "0" * 32 + format(2**32 + 2, "b"))),
     WireDecodeError, "power_w[0]"),
    ("coded current overflows on its grid",
     with_change((4, 4), coded(1 << 5 | 15, "0" + format(65_537 + 2**15, "b"), offset=1)),
     WireDecodeError, "current_r_da[1]"),
    ("coded bits after the entries", with_change((4, 3), coded(0, "1" * 10 + "0" * 6 + "1")),
     WireDecodeError, "bits after the 10 entries"),
    ("coded byte after the entries", with_change((4, 3), coded(0, "1" * 10 + "0" * 14)),
     WireDecodeError, "14 bits after"),
    ("slot off the half hour", with_change((5, 0), T0 + 60), WireDecodeError, "half hour"),
    ("raw beyond 8 digits", with_change((5, 2, 0), 10**8), WireDecodeError, "normal_raw[0]"),
    ("negative raw", with_change((5, 3, 0), -1), WireDecodeError, "reverse_raw[0]"),
    ("unknown source", with_change((5, 4), [7]), WireDecodeError, "source[0]"),
    ("source too short", with_change((5, 4), []), WireDecodeError, "source"),
    ("no scale", with_change((6,), None), WireDecodeError, "need the meter's scale"),
    ("bad unit", with_change((6, 1), 0x05), WireDecodeError, "E1 unit code"),
    ("zero coefficient", with_change((6, 0), 0), WireDecodeError, "scale.coefficient"),
    ("nine digits", with_change((6, 2), 9), WireDecodeError, "scale.digits"),
    ("duplicate map keys", bytes.fromhex("85060101 1a665a8eb0 a2 6161 01 6161 02"),
     WireDecodeError, "not well-formed"),
    ("status link code", cbor2.dumps([2, 1, T0, "1.0", 5, 42, None, 0, None, None, {}]),
     WireDecodeError, "Status.link"),
    ("status lqi", cbor2.dumps([2, 1, T0, "1.0", 5, 1, 300, 0, None, None, {}]),
     WireDecodeError, "Status.lqi"),
    ("status counters", cbor2.dumps([2, 1, T0, "1.0", 5, 1, 9, 0, None, None,
                                     {f"c{i}": i for i in range(MAX_COUNTERS + 1)}]),
     WireLimitError, "Status.errors"),
    ("event code with a space", cbor2.dumps([3, 1, "bad code", T0, {}]), WireDecodeError,
     "Event.code"),
    ("event detail a list", cbor2.dumps([3, 1, "x", T0, [1]]), WireDecodeError, "Event.detail"),
    ("ok with an error", cbor2.dumps([4, 1, 1, True, {}, "oops"]), WireDecodeError,
     "CommandResult.error"),
    ("failed without why", cbor2.dumps([4, 1, 1, False, {}, None]), WireDecodeError,
     "CommandResult.error"),
    ("failed with empty why", cbor2.dumps([4, 1, 1, False, {}, ""]), WireDecodeError,
     "CommandResult.error"),
    ("ok as 1", cbor2.dumps([4, 1, 1, 1, {}, None]), WireDecodeError, "CommandResult.ok"),
    ("error too long", cbor2.dumps([4, 1, 1, False, {}, "e" * (MAX_TEXT_LEN + 1)]),
     WireLimitError, "CommandResult.error"),
    ("command expiry", cbor2.dumps([5, 1, 1, "restart", -5, {}]), WireDecodeError,
     "Command.expires_s"),
    ("bytes in a map", cbor2.dumps([6, 1, 1, T0, {"k": b"\x00"}]), WireDecodeError,
     "a byte string is not a map value"),
    ("a number key", cbor2.dumps([6, 1, 1, T0, {1: 2}]), WireDecodeError, "Settings.values key"),
    ("NaN", cbor2.dumps([6, 1, 1, T0, {"k": float("nan")}]), WireDecodeError, "finite"),
    ("a datetime tag", bytes.fromhex("85060101 1a665a8eb0 a1 616b c1 1a5f000000"),
     WireDecodeError, "datetime is not a map value"),
    ("too deep", cbor2.dumps([6, 1, 1, T0, {"a": {"b": [[{"c": 1}]]}}]), WireLimitError,
     "nested deeper"),
    ("too many items", cbor2.dumps([6, 1, 1, T0, {"k": list(range(MAX_MAP_ITEMS))}]),
     WireLimitError, "more than 256 items"),
    ("shared self-reference", bytes.fromhex("85060101 1a665a8eb0 a1 6161 d81c 81 d81d 00"),
     WireLimitError, "nested deeper"),
    ("deep CBOR", b"\x81" * 5000, WireDecodeError, "not well-formed CBOR"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "error", "text"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_payloads_get_a_clear_wire_error(
    payload: Any, error: type[WireError], text: str
) -> None:
    with pytest.raises(error) as caught:
        decode(payload)
    assert text in str(caught.value)
    assert len(str(caught.value)) < 300


def test_every_truncation_is_a_decode_error() -> None:
    payload = encode(good_batch())
    for end in range(len(payload)):
        with pytest.raises(WireDecodeError):
            decode(payload[:end])


def test_expect_refuses_another_type() -> None:
    payload = encode(Event("x", T0))
    assert decode(payload, expect=Event) == Event("x", T0)
    with pytest.raises(WireDecodeError, match="expected Status, got Event"):
        decode(payload, expect=Status)


def test_version_check_comes_before_the_fields() -> None:
    """A newer payload may look like anything: the error must say "newer", not "malformed"."""
    with pytest.raises(WireVersionError, match=r"version 4 is newer than this decoder's 3"):
        decode(cbor2.dumps([42, 4, {"new": "layout"}]))
    assert issubclass(WireVersionError, WireDecodeError)
    assert WIRE_VERSION == 3


def test_errors_never_quote_a_secret() -> None:
    secret = "hunter2-hunter2-" * 80  # over MAX_TEXT_LEN
    bad = cbor2.dumps([6, 1, 1, T0, {"broute_password": secret}])
    with pytest.raises(WireLimitError) as caught:
        decode(bad)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(WireLimitError) as caught:
        encode(Settings(1, T0, {"broute_password": secret}))
    assert "hunter2" not in str(caught.value)
    with pytest.raises(WireDecodeError) as caught:  # a password where a number belongs
        decode(cbor2.dumps([1, 1, "hunter2", "0", None, None, None]))
    assert "hunter2" not in str(caught.value)


# -- encode errors ---------------------------------------------------------------------------

BAD_MESSAGES: list[tuple[str, Any, type[WireError], str]] = [
    ("not a message", {"seq": 1}, WireEncodeError, "not a wire message"),
    ("seq as text", ReadingsBatch("1", "0"), WireEncodeError, "ReadingsBatch.seq"),  # type: ignore[arg-type]
    ("bool seq", ReadingsBatch(True, "0"), WireEncodeError, "got a boolean"),
    ("sample as tuple", ReadingsBatch(1, "0", ((T0, 5),)), WireEncodeError, "InstantSample"),  # type: ignore[arg-type]
    ("time in ms", ReadingsBatch(1, "0", (InstantSample(T0 * 1000, 5),)), WireEncodeError,
     "instant[0].at_s"),
    ("power overflow", ReadingsBatch(1, "0", (InstantSample(T0, 2**31),)), WireEncodeError,
     "instant[0].power_w"),
    ("too many samples",
     ReadingsBatch(1, "0", (InstantSample(T0, 1),) * (MAX_INSTANT_SAMPLES + 1)),
     WireLimitError, "2881 samples"),
    ("too many values",
     ReadingsBatch(1, "0", (), (FixedTimeValue(T0, 1),) * (MAX_FIXED_VALUES + 1), MeterScale()),
     WireLimitError, "481 30-minute values"),
    ("fixed without scale", ReadingsBatch(1, "0", (), (FixedTimeValue(T0, 1),)),
     WireEncodeError, "scale"),
    ("float raw", ReadingsBatch(1, "0", (), (FixedTimeValue(T0, 1.5),), MeterScale()),  # type: ignore[arg-type]
     WireEncodeError, "fixed[0].normal_raw"),
    ("unknown link", Status(T0, "1", 1, "sleeping"), WireEncodeError, "Status.link"),  # type: ignore[arg-type]
    ("negative counter", Status(T0, "1", 1, LinkState.JOINED, errors={"x": -1}),
     WireEncodeError, "Status.errors['x']"),
    ("long version", Status(T0, "1" * 40, 1, LinkState.JOINED), WireLimitError,
     "Status.agent_version"),
    ("event code", Event("a b", T0), WireEncodeError, "Event.code"),
    ("set in detail", Event("x", T0, {"k": {1, 2}}), WireEncodeError, "set is not a map value"),
    ("surrogate", Event("x", T0, {"k": "\udc80"}), WireEncodeError, "not valid Unicode"),
    ("inf", Settings(1, T0, {"k": float("inf")}), WireEncodeError, "finite"),
    ("big int", Settings(1, T0, {"k": 2**64}), WireEncodeError, "64-bit"),
    ("ok and error", CommandResult(1, True, error="x"), WireEncodeError, "no error"),
    ("ok not bool", CommandResult(1, 1), WireEncodeError, "CommandResult.ok"),  # type: ignore[arg-type]
    ("name too long", Command(1, "x" * 33, T0), WireLimitError, "Command.name"),
    ("huge values",
     Settings(1, T0, {f"k{i}": "v" * MAX_TEXT_LEN for i in range(100)}),
     WireLimitError, "payload of"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("message", "error", "text"),
    [case[1:] for case in BAD_MESSAGES],
    ids=[case[0] for case in BAD_MESSAGES],
)
def test_bad_messages_do_not_encode(message: Any, error: type[WireError], text: str) -> None:
    with pytest.raises(error) as caught:
        encode(message)
    assert text in str(caught.value)


def test_enum_members_and_plain_values_encode_alike() -> None:
    a = Command(1, CommandName.REALTIME, T0, {"interval_s": 5})
    b = Command(1, "realtime", T0, {"interval_s": 5})
    assert encode(a) == encode(b)
    assert decode(encode(a)) == a
    assert encode(Status(T0, "1", 1, "joined")) == encode(Status(T0, "1", 1, LinkState.JOINED))  # type: ignore[arg-type]
    assert encode(Settings(1, T0, {"a": (1, 2)})) == encode(Settings(1, T0, {"a": [1, 2]}))


# -- secrets and the JSON rendering ---------------------------------------------------------


def test_settings_repr_masks_secrets() -> None:
    values = {"broute_id": "0123456789ABCDEF0123456789ABCDEF", "BRoute_Password": "pw-123456",
              "meter": {"link": "wisun", "broute_id": "again"}, "admin_password_hint": "x",
              "instant_interval_s": 60}  # fmt: skip
    message = Settings(4, T0, values)
    for shown in (repr(message), str(message), to_json(message), repr(decode(encode(message)))):
        assert "0123456789ABCDEF" not in shown
        assert "pw-123456" not in shown
        assert "again" not in shown
        assert "instant_interval_s" in shown
    assert message.values["broute_id"] == values["broute_id"]  # masked only when shown


def test_to_json_is_readable() -> None:
    from bench.wire_size import worked_batch

    rendered = json.loads(to_json(worked_batch()))
    assert rendered["type"] == "ReadingsBatch"
    assert rendered["instant"][0]["at"] == "2024-06-01T12:00:00+09:00"
    assert rendered["instant"][1]["current_r_da"] is None  # read with every fifth sample
    assert rendered["fixed"][0] == {"slot_start": "2024-06-01T12:00:00+09:00",
                                    "normal_raw": 25_649, "reverse_raw": 21_433,
                                    "source": "measured"}  # fmt: skip
    assert rendered["scale"]["unit"] == "0.1 kWh"
    status = json.loads(to_json(Status(T0, "0.1.0", 60, LinkState.AUTH_FAILED)))
    assert status["link"] == "auth_failed" and status["at"].endswith("+09:00")
    assert "last_good_read_s" in status and status["last_good_read_s"] is None


# -- the docs' worked example ---------------------------------------------------------------


def test_docs_state_the_encoders_byte_count() -> None:
    from bench.wire_size import mqtt_publish_bytes, worked_batch

    payload = encode(worked_batch())
    docs = (ROOT / "docs" / "wire.md").read_text()
    assert re.sub(r"\s+", "", payload.hex()) in re.sub(r"\s+", "", docs)
    assert f"**{len(payload)} bytes**" in docs
    publish = mqtt_publish_bytes("k/b827eb4f21c9/d", len(payload))
    assert f"**{publish} bytes**" in docs


# -- topics and the device ACL --------------------------------------------------------------

gateway_ids = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=32)


def test_topic_layout_is_fixed() -> None:
    assert [topic_for(k, "gw-1") for k in Kind] == [
        "k/gw-1/d", "k/gw-1/s", "k/gw-1/e", "k/gw-1/r", "k/gw-1/c", "k/gw-1/g",
    ]  # fmt: skip
    assert topic_for("d", "a") == "k/a/d"
    assert READINGS_SHARED_FILTER == "$share/ingest/k/+/d"
    assert (STATUS_FILTER, EVENT_FILTER, RESULT_FILTER) == ("k/+/s", "k/+/e", "k/+/r")
    assert device_subscriptions("gw") == ("k/gw/c", "k/gw/g")
    assert {
        m.KIND for m in (ReadingsBatch, Status, Event, CommandResult, Command, Settings)
    } == set(Kind)


@given(gateway_ids, st.sampled_from(Kind))
def test_parse_topic_inverts_topic_for(gateway_id: str, kind: Kind) -> None:
    assert parse_topic(topic_for(kind, gateway_id)) == (kind, gateway_id)


BAD_IDS = ["", "x" * 33, "a/b", "a+b", "a#", "#", "+", "$SYS", "gw 1", "gw\n", "é", "a\x00b", None]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_gateway_ids(bad: Any) -> None:
    with pytest.raises(WireTopicError):
        topic_for(Kind.READINGS, bad)
    assert not device_may_publish(bad, f"k/{bad}/d")
    assert not device_may_subscribe(bad, f"k/{bad}/c")


FOREIGN_TOPICS = ["", "k", "k/gw", "k/gw/", "k/gw/x", "k/gw/d/more", "x/gw/d", "K/gw/d",
                  "/k/gw/d", "k//d", "k/+/d", "k/#", "#", "$share/ingest/k/+/d", "k/gw/dd",
                  "k/a b/d"]  # fmt: skip


@pytest.mark.parametrize("topic", FOREIGN_TOPICS)
def test_foreign_topics_are_refused(topic: str) -> None:
    with pytest.raises(WireTopicError):
        parse_topic(topic)
    with pytest.raises(WireTopicError):
        decode_publish(topic, encode(Event("x", T0)))


def test_device_may_publish_only_its_own_uplink() -> None:
    for kind in ("d", "s", "e", "r"):
        assert device_may_publish("gw1", f"k/gw1/{kind}")
        assert not device_may_publish("gw2", f"k/gw1/{kind}")
    for topic in ["k/gw1/c", "k/gw1/g", "k/gw1", "k/gw1/d/x", "k/+/d", "k/gw1/#", "#", "k/GW1/d",
                  "$share/ingest/k/gw1/d", "k/gw10/d", "k/gw/d"]:  # fmt: skip
        assert not device_may_publish("gw1", topic), topic
    assert not device_may_publish("gw1", b"k/gw1/d")  # type: ignore[arg-type]


REFUSED_FILTERS = ["k/+/d", "k/+/c", "k/#", "#", "+/+/+", "+/gw1/c", "k/gw1/+", "k/gw1/#",
                   "$share/ingest/k/+/d", "$share/g/k/gw1/c", "k/gw2/c", "k/gw1/d", "k/gw1/s",
                   "k/gw1/c/#", "k/gw1", "k/+", "$SYS/#", "k/gw1/c ", ""]  # fmt: skip


def test_device_may_subscribe_only_its_own_downlink() -> None:
    assert device_may_subscribe("gw1", "k/gw1/c")
    assert device_may_subscribe("gw1", "k/gw1/g")
    for topic_filter in REFUSED_FILTERS:
        assert not device_may_subscribe("gw1", topic_filter), topic_filter
    for bad_id in ["gw1/+", "+", "#", "gw1/#", "a/b"]:
        assert not device_may_subscribe(bad_id, f"k/{bad_id}/c"), bad_id


@settings(max_examples=300)
@given(gateway_ids, gateway_ids, st.sampled_from([*REFUSED_FILTERS, "k/{a}/c", "k/{a}/g"]))
def test_no_filter_a_device_may_take_reaches_another_device(a: str, b: str, pattern: str) -> None:
    topic_filter = pattern.replace("{a}", a).replace("gw1", a)
    if not device_may_subscribe(a, topic_filter):
        return
    for kind in Kind:
        if filter_matches(topic_filter, topic_for(kind, a)):
            assert not kind.uplink  # its own downlink only: never its uplink echoed back
        if b != a:
            assert not filter_matches(topic_filter, topic_for(kind, b))


@given(gateway_ids)
def test_ingest_filters_take_every_uplink_and_no_downlink(gateway_id: str) -> None:
    for kind in Kind:
        topic = topic_for(kind, gateway_id)
        hits = [f for f in INGEST_FILTERS if filter_matches(f, topic)]
        assert len(hits) == (1 if kind.uplink else 0)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("#", "k/a/d", True), ("#", "$SYS/x", False), ("+/a/d", "$x/a/d", False),
        ("k/#", "k", True), ("k/#", "k/a/d", True), ("k/+", "k/a/d", False),
        ("k/+/d", "k/a/d", True), ("k/+/d", "k//d", True), ("k/a/d", "k/a/d", True),
        ("k/a/d", "k/a/s", False), ("k/#/d", "k/a/d", False), ("k/a+/d", "k/a+/d", False),
        ("$share/ingest/k/+/d", "k/a/d", True), ("$share//k/+/d", "k/a/d", False),
        ("$share/ingest", "k/a/d", False), ("k/+/d", "k/+/d", False),
    ],
)  # fmt: skip
def test_filter_matches_as_mqtt_does(topic_filter: str, topic: str, matches: bool) -> None:
    assert filter_matches(topic_filter, topic) is matches


def test_publish_helpers_pair_topic_and_type() -> None:
    topic, payload = encode_publish(Status(T0, "0.1.0", 5, LinkState.JOINED), "gw-7")
    assert topic == "k/gw-7/s"
    assert decode_publish(topic, payload) == ("gw-7", decode(payload))
    with pytest.raises(WireDecodeError, match="expected ReadingsBatch, got Status"):
        decode_publish("k/gw-7/d", payload)


def test_runs_of_missing_values_are_written_once():
    from kenshin.wire import InstantSample, ReadingsBatch, decode, encode

    every_fifth = tuple(
        InstantSample(
            1_780_000_000 + 60 * i, 500 + i, 30 if i % 5 == 0 else None, 20 if i % 5 == 0 else None
        )
        for i in range(30)
    )
    sparse = ReadingsBatch(1, "m1", every_fifth)
    assert decode(encode(sparse)) == sparse
    dense_nulls = 2 * (30 - 6)  # what one null per missing current would have cost
    assert (
        len(encode(sparse))
        < len(
            encode(
                ReadingsBatch(1, "m1", tuple(InstantSample(s.at_s, s.power_w) for s in every_fifth))
            )
        )
        + dense_nulls
    )
