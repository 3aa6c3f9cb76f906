"""Fuzz: random, mutated and structurally damaged payloads through `decode`. Only
`WireError` may ever come out; whatever decodes is a valid message, so it encodes again
and decodes to itself."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kenshin.wire import (
    MAX_TIME_S,
    MIN_TIME_S,
    Command,
    CommandName,
    CommandResult,
    DrAck,
    DrAckState,
    DrDeviceReport,
    DrEvent,
    DrReport,
    DrSet,
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
    WireDecodeError,
    WireError,
    WireLimitError,
    WireVersionError,
    decode,
    encode,
)

from .test_messages import messages

pytestmark = pytest.mark.slow  # fuzzing: many generated examples

VOLUME = 100_000
T0 = 1_717_210_800

# -- a corpus of valid payloads, from a seeded generator --------------------------------------


def json_value(rng: random.Random, level: int) -> Any:
    roll = rng.random()
    if level <= 4 and roll < 0.15:
        return [json_value(rng, level + 1) for _ in range(rng.randrange(4))]
    if level <= 4 and roll < 0.3:
        return json_map(rng, level + 1, 3)
    return rng.choice([
        None, True, False, rng.randrange(-(2**63), 2**63), rng.randrange(100), rng.random() * 1e3,
        "", "wisun", "ja: 検針", "x" * rng.randrange(60),
    ])  # fmt: skip


def json_map(rng: random.Random, level: int = 2, size: int = 6) -> dict[str, Any]:
    keys = ["instant_interval_s", "broute_id", "broute_password", "meter", "epc", "k"]
    return {rng.choice(keys) + str(i): json_value(rng, level) for i in range(rng.randrange(size))}


def random_batch(rng: random.Random) -> ReadingsBatch:
    step = rng.choice([1, 10, 60, 60, 60, 300])
    start = rng.randrange(MIN_TIME_S, MAX_TIME_S - 10**7)
    three_wire = rng.random() < 0.8
    samples = []
    for i in range(rng.choice([0, 1, 5, 30, 30, 30, 120])):
        if rng.random() < 0.05:
            continue  # a missed read
        power = None if rng.random() < 0.03 else rng.randrange(-6000, 12000)
        r = None if power is None else power // 20
        t = power // 25 if three_wire and power is not None else None
        samples.append(InstantSample(start + i * step + rng.randrange(3), power, r, t))
    fixed = []
    slot = start // 1800 * 1800
    raw = rng.randrange(10**8)
    for k in range(rng.choice([0, 1, 1, 1, 2, 48])):
        raw = (raw + rng.randrange(40)) % 10**8
        reverse = rng.choice([None, rng.randrange(10**6)])
        source = ValueSource.REFILLED if k and rng.random() < 0.5 else ValueSource.MEASURED
        fixed.append(FixedTimeValue(slot + 1800 * k, raw, reverse, source))
    scale = MeterScale(rng.choice([1, 1, 40, 999_999]), rng.choice([0, 1, 2, 4, 0x0D]),
                       rng.randrange(1, 9))  # fmt: skip
    if not fixed and rng.random() < 0.5:
        scale = None
    meter = rng.choice(["0", "1", "AB12345678"])
    return ReadingsBatch(rng.randrange(10**6), meter, tuple(samples), tuple(fixed), scale)


def random_message(rng: random.Random) -> Message:
    at = rng.randrange(MIN_TIME_S, MAX_TIME_S)
    kind = rng.randrange(11)
    if kind < 3:
        return random_batch(rng)
    if kind == 3:
        return Status(at, "0.1.0", rng.randrange(10**7), rng.choice(list(LinkState)),
                      rng.choice([None, rng.randrange(256)]), rng.randrange(10**5),
                      rng.choice([None, at - 30]), rng.choice([None, rng.randrange(100)]),
                      rng.choice([{}, {"instant": rng.randrange(9), "fixed": 1}]))  # fmt: skip
    if kind == 4:
        return Event(rng.choice(["meter_swapped", "clock_drift", "x"]), at, json_map(rng))
    if kind == 5:
        return Command(rng.randrange(10**9), rng.choice(list(CommandName)), at, json_map(rng))
    if kind == 6:
        ok = rng.random() < 0.5
        return CommandResult(rng.randrange(10**9), ok, json_map(rng), None if ok else "timeout")
    if kind >= 8:
        return random_dr_message(rng, kind)
    return Settings(rng.randrange(1000), at, json_map(rng))


def random_dr_message(rng: random.Random, kind: int) -> Message:
    event_id = rng.randrange(10**9)
    if kind == 8:
        start = rng.randrange(MIN_TIME_S, MAX_TIME_S - 86_400) // 1800 * 1800
        slots = rng.choice([1, 2, 4, 6, 48])
        targets = tuple((start + 1800 * i, rng.randrange(1, 5000)) for i in range(slots)
                        if rng.random() < 0.8)  # fmt: skip
        shed = None if targets else rng.randrange(1, 4)
        price = tuple((start + 1800 * i, rng.randrange(5000)) for i in range(slots))
        return DrEvent(event_id, start, start + 1800 * slots, targets, shed,
                       price if rng.random() < 0.5 else (), rng.choice([None, start]),
                       rng.random() < 0.2)  # fmt: skip
    if kind == 9:
        state = rng.choice(list(DrAckState))
        devices = {DrAckState.ACCEPTED: 4, DrAckState.NO_DEVICES: 0}.get(state, 1)
        return DrAck(event_id, state, devices, rng.choice([None, "policy invalid"]))
    edt = rng.randbytes(rng.randrange(1, 5))
    sets = tuple(DrSet(rng.randrange(0x80, 0x100), edt, rng.random() < 0.9,
                       rng.choice([None, edt]), rng.random() < 0.5)
                 for _ in range(rng.randrange(4)))  # fmt: skip
    devices = tuple(DrDeviceReport(rng.randrange(2**24), sets, rng.randrange(-3000, 3000),
                                   rng.choice([None, 0]), rng.randrange(3000))
                    for _ in range(rng.randrange(5)))  # fmt: skip
    return DrReport(event_id, devices, rng.random() < 0.5)


# -- mutations -------------------------------------------------------------------------------

INTERESTING = [0x00, 0x17, 0x18, 0x1B, 0x1F, 0x3B, 0x5B, 0x5F, 0x7B, 0x7F, 0x80, 0x9B, 0x9F,
               0xA0, 0xBB, 0xBF, 0xC1, 0xC2, 0xD8, 0xF4, 0xF6, 0xF7, 0xF9, 0xFB, 0xFF]  # fmt: skip
NASTY: list[Any] = [
    0, -1, 1, 23, 24, 1800, 2**31, 2**32, 2**63, 2**64 - 1, -(2**64), 2**100, T0, T0 + 1,
    MIN_TIME_S - 1, MAX_TIME_S + 1, 10**8, 1.5, float("nan"), float("inf"), -0.0, "", "0",
    "x" * 40, "y" * 2000, "a\nb", "\u3042", b"", b"\xff", None, True, False, [], [0], [[0]],
    [[3]], [[10**9]], [None], {}, {"k": 1}, {1: 2}, [[[[[[1]]]]]],
    cbor2.CBORTag(1, 0), cbor2.CBORTag(99, 0), cbor2.CBORTag(2, b"\x01" * 40),
    cbor2.CBORSimpleValue(0), cbor2.undefined,
]  # fmt: skip


def nodes(value: Any, path: tuple = ()) -> list[tuple]:
    """Every path into a decoded CBOR value (list indexes and map keys), not too deep:
    a shared reference can make a value contain itself."""
    out = [path]
    if len(path) > 12:
        return out
    if isinstance(value, list):
        for i, item in enumerate(value):
            out += nodes(item, (*path, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            out += nodes(item, (*path, key))
    return out


def structural(data: bytes, rng: random.Random) -> bytes:
    """Decode the CBOR, damage one node so the result is still well-formed, re-encode:
    this is what reaches the field checks rather than stopping at cbor2."""
    body = cbor2.loads(data)
    paths = nodes(body)[1:]
    if not paths:
        return cbor2.dumps([body, rng.choice(NASTY)])
    path = rng.choice(paths)
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    target = parent[last]
    how = rng.randrange(6)
    if how == 0:
        replacement = rng.choice(NASTY)
    elif how == 1 and isinstance(target, int) and not isinstance(target, bool):
        replacement = target + rng.choice([-1, 1, -1800, 1800, 2**32, -(2**40)])
    elif how == 2 and isinstance(target, list):
        replacement = target[:-1] if target and rng.random() < 0.5 else [*target, rng.choice(NASTY)]
    elif how == 3 and isinstance(target, list) and len(target) > 1:
        replacement = target[:]
        rng.shuffle(replacement)
    elif how == 4 and isinstance(target, dict):
        replacement = {**target, rng.choice(["k", "broute_password", 7]): rng.choice(NASTY)}
    else:
        replacement = rng.choice(NASTY)
    parent[last] = replacement
    try:
        return cbor2.dumps(body, canonical=rng.random() < 0.5)
    except Exception:  # a value that contains itself: keep the bytes as they were
        return data


def mutate(data: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    buf = bytearray(data)
    n = len(buf)
    kind = rng.randrange(10)
    if kind == 0 and n:  # bit flip
        buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif kind == 1:  # insert an interesting byte
        buf.insert(rng.randrange(n + 1), rng.choice(INTERESTING))
    elif kind == 2 and n:  # overwrite with one
        buf[rng.randrange(n)] = rng.choice(INTERESTING)
    elif kind == 3 and n:  # delete
        del buf[rng.randrange(n)]
    elif kind == 4:  # truncate
        del buf[rng.randrange(n + 1) :]
    elif kind == 5 and n:  # duplicate a slice
        start = rng.randrange(n)
        buf[start:start] = buf[start : start + 1 + rng.randrange(16)]
    elif kind == 6:  # splice two payloads
        other = rng.choice(corpus)
        buf = buf[: rng.randrange(n + 1)] + other[rng.randrange(len(other) + 1) :]
    else:  # kinds 7-9: well-formed CBOR, wrong content
        return structural(bytes(buf), rng) if _is_cbor(bytes(buf)) else bytes(buf)
    return bytes(buf)


def _is_cbor(data: bytes) -> bool:
    try:
        cbor2.loads(data)
    except Exception:
        return False
    return True


def check(data: bytes, counts: Counter[str]) -> None:
    try:
        message = decode(data)
    except WireVersionError:
        counts["version"] += 1
    except WireLimitError:
        counts["limit"] += 1
    except WireDecodeError as err:
        assert err.reason, data.hex()
        counts["decode"] += 1
    else:
        payload = encode(message)  # decoded, hence valid, hence encodable
        assert decode(payload) == message, data.hex()
        counts["decoded"] += 1


def corpus(rng: random.Random) -> list[bytes]:
    return [encode(random_message(rng)) for _ in range(300)]


@pytest.mark.slow
def test_fuzz_volume() -> None:
    rng = random.Random(20240601)
    payloads = corpus(rng)
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    for i in range(VOLUME):
        roll = rng.random()
        if roll < 0.04:
            data = rng.randbytes(rng.randrange(80))
        elif roll < 0.08:  # random bytes behind a plausible envelope head
            data = bytes([0x80 | rng.randrange(3, 10), rng.randrange(1, 8), 1])
            data += rng.randbytes(rng.randrange(60))
        else:
            data = rng.choice(payloads)
            for _ in range(1 + (rng.random() < 0.3) + (rng.random() < 0.1)):
                data = mutate(data, rng, payloads)
        try:
            check(data, counts)
        except AssertionError:
            raise
        except Exception as exc:  # anything but a WireError is a bug
            pytest.fail(f"input #{i} {data.hex()} raised {type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - started
    assert sum(counts.values()) == VOLUME
    assert counts["decode"] > VOLUME // 3  # the mutations do break payloads
    assert counts["decoded"] > VOLUME // 20  # and some still decode (and re-encode)
    assert counts["limit"] > 50
    assert counts["version"] > 50
    assert elapsed < 60, f"fuzz took {elapsed:.1f} s"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.integers(0, 2**32), st.integers(1, 4))
def test_fuzz_mutations_of_any_message(message: Message, seed: int, rounds: int) -> None:
    rng = random.Random(seed)
    data = encode(message)
    for _ in range(rounds):
        data = mutate(data, rng, [data])
    check(data, Counter())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100), st.sampled_from([b"", b"\x87\x01\x01", b"\x85\x06\x01", b"\x9f"]))
def test_fuzz_random_bytes(tail: bytes, head: bytes) -> None:
    check(head + tail, Counter())


def test_only_wire_errors_for_odd_inputs() -> None:
    for data in (None, 5, [1, 1], bytearray(b"\x80"), memoryview(b"\xf6")):
        with pytest.raises(WireError):
            decode(data)  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([2, 3]),
    st.lists(st.one_of(st.none(), st.integers(-6000, 12000)), min_size=1, max_size=40),
    st.sampled_from([3, 4, 5]),
    st.one_of(st.binary(max_size=40), st.lists(st.integers(0, 8 * 40), max_size=4)),
)
def test_fuzz_packed_and_coded_columns(version: int, values: list, index: int, damage) -> None:
    """A column's bytes, version 2's varints or version 3's codes: random, or a valid
    column with bits flipped. Only WireError, or a batch that encodes back to itself."""
    samples = tuple(InstantSample(T0 + 60 * i, v, v, v) for i, v in enumerate(values))
    body = cbor2.loads(encode(ReadingsBatch(1, "0", samples)))
    body[1] = version
    column = body[4][index]
    if isinstance(damage, bytes) or column is None:
        column = damage if isinstance(damage, bytes) else b""
    else:
        flipped = bytearray(column)
        for bit in damage:
            if bit < 8 * len(flipped):
                flipped[bit // 8] ^= 0x80 >> bit % 8
        column = bytes(flipped)
    body[4][index] = column
    check(cbor2.dumps(body), Counter())
