"""Fuzz: random and mutated frames through `decode_frame`, then `decode_property` on every
property of what decodes. Only `EchonetDecodeError` may ever come out, with an offset
inside the input; whatever decodes re-encodes to exactly the same bytes."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kenshin.echonet import (
    CONTROLLER,
    EOJ,
    ESV,
    NODE_PROFILE,
    SMART_METER,
    EchonetDecodeError,
    Frame,
    OpaqueFrame,
    Property,
    decode_frame,
    decode_property,
    encode_frame,
)
from kenshin.echonet import edt as e
from kenshin.echonet.classes import all_classes
from kenshin.jst import JST

from ._strategies import sample_edt, typed_frames

pytestmark = pytest.mark.slow  # fuzzing: many generated examples

VOLUME = 200_000
MUTATION_KINDS = 12
ESV_CODES = [int(v) for v in ESV]
CLASS_EOJS = [EOJ(c.class_code >> 8, c.class_code & 0xFF, 1) for c in all_classes()]


def check(data: bytes, counts: Counter[str]) -> None:
    """Decode one datagram the way the endpoint does, and every property in it."""
    try:
        frame = decode_frame(data)
    except EchonetDecodeError as err:
        assert err.offset is not None and 0 <= err.offset <= len(data), (err, data.hex())
        counts["frame_errors"] += 1
        return
    if isinstance(frame, OpaqueFrame):
        counts["format2"] += 1
        return
    assert encode_frame(frame) == data, data.hex()
    counts["frames"] += 1
    class_code = frame.seoj.class_code
    for prop in frame.props + frame.props_get:
        try:
            decode_property(class_code, prop.epc, prop.edt)
        except EchonetDecodeError as err:
            assert err.epc == prop.epc, (err, data.hex())
            assert err.offset is None or 0 <= err.offset <= len(prop.edt), (err, data.hex())
            counts["property_errors"] += 1
        else:
            counts["properties"] += 1


# -- mutations: (kind, a, b) triples, so the loop and hypothesis share them -----------------


def _layout(data: bytes | bytearray) -> tuple[list[int], list[int]]:
    """Where the OPC and PDC bytes are, walking leniently as far as the bytes allow."""
    opcs: list[int] = []
    pdcs: list[int] = []
    pos, lists = 11, 2 if len(data) > 10 and data[10] in (0x6E, 0x7E, 0x5E) else 1
    for _ in range(lists):
        if pos >= len(data):
            break
        opcs.append(pos)
        opc, pos = data[pos], pos + 1
        for _ in range(opc):
            if pos + 1 >= len(data):
                return opcs, pdcs
            pdcs.append(pos + 1)
            pos += 2 + data[pos + 1]
    return opcs, pdcs


def _mutate_edt(data: bytearray, a: int, b: int) -> bytearray:
    """Change one property's EDT and re-encode: the frame stays well-formed, so the
    damage reaches the property codecs."""
    try:
        frame = decode_frame(bytes(data))
    except EchonetDecodeError:
        return data
    if isinstance(frame, OpaqueFrame):
        return data
    lists = [frame.props, frame.props_get]
    which = 1 if frame.props_get and (a & 1 or not frame.props) else 0
    props = list(lists[which])
    if not props:
        return data
    i = (a >> 1) % len(props)
    edt = bytearray(props[i].edt)
    how = b % 6
    if how == 0 and edt:
        edt[(b >> 3) % len(edt)] ^= (b >> 11) % 255 + 1
    elif how == 1 and edt:
        del edt[(b >> 3) % len(edt)]
    elif how == 2 and len(edt) < 255:
        edt.insert((b >> 3) % (len(edt) + 1), (b >> 8) & 0xFF)
    elif how == 3:
        edt = bytearray(random.Random(b).randbytes(len(edt)))
    elif how == 4 and edt:
        edt[(b >> 3) % len(edt)] = 0xFF
    else:
        edt = edt[: (b >> 3) % (len(edt) + 1)]
    props[i] = Property(props[i].epc, bytes(edt))
    lists[which] = tuple(props)
    return bytearray(encode_frame(frame._replace(props=lists[0], props_get=lists[1])))


def mutate(data: bytearray, kind: int, a: int, b: int) -> bytearray:
    n = len(data)
    kind %= MUTATION_KINDS
    if kind == 0 and n:  # bit flips
        data[a % n] ^= 1 << (b % 8)
    elif kind == 1:  # insert a byte
        data.insert(a % (n + 1), b & 0xFF)
    elif kind == 2 and n:  # delete a byte
        del data[a % n]
    elif kind == 3:  # truncate
        del data[a % (n + 1) :]
    elif kind == 4:  # tamper with a PDC
        pdcs = _layout(data)[1]
        if pdcs:
            data[pdcs[a % len(pdcs)]] = b & 0xFF
    elif kind == 5:  # tamper with OPC (or OPCGet): off by one, or anything
        opcs = _layout(data)[0]
        if opcs:
            at = opcs[a % len(opcs)]
            data[at] = b & 0xFF if a & 2 else (data[at] + (1 if b & 1 else -1)) & 0xFF
    elif kind == 6 and n > 10:  # another ESV (one-list frame read as SetGet, ...)
        data[10] = ESV_CODES[b % len(ESV_CODES)] if a & 1 else b & 0xFF
    elif kind == 7:  # damage inside an EDT, keeping the frame well-formed
        return _mutate_edt(data, a, b)
    elif kind == 8 and n > 6:  # another source class: EDTs read with the wrong codecs
        data[4:7] = bytes(CLASS_EOJS[b % len(CLASS_EOJS)])
    elif kind == 9 and n:  # duplicate a slice
        start = a % n
        data[start:start] = data[start : start + 1 + b % 16]
    elif kind == 10:  # random bytes, often behind a valid header
        rng = random.Random(a << 16 | b)
        head = bytes(data[:12]) if a & 1 else b""
        data = bytearray(head + rng.randbytes(rng.randrange(40)))
    elif kind == 11:  # another EPC: an EDT read with another property's codec
        pdcs = _layout(data)[1]
        if pdcs:
            data[pdcs[a % len(pdcs)] - 1] = b & 0xFF if a & 2 else 0x80 + b % 0x80
    return data


# -- the corpus: realistic frames plus one of every property of every class ----------------


def _ea(minute: int) -> bytes:
    return e.FixedTimeEnergyCodec().encode(
        e.FixedTimeEnergy(datetime(2024, 6, 1, 12, minute, tzinfo=JST), 5_000 + minute)
    )


def corpus(rng: random.Random) -> list[bytes]:
    meter_res = Frame(1, SMART_METER, CONTROLLER, ESV.GET_RES, (
        Property(0xE7, (-300).to_bytes(4, "big", signed=True)),
        Property(0xE8, bytes.fromhex("001E7FFE")),
        Property(0xEA, _ea(30)),
        Property(0xE0, (123_456).to_bytes(4, "big")),
    ))  # fmt: skip
    frames = [
        meter_res,
        Frame(2, SMART_METER, NODE_PROFILE, ESV.INF, (Property(0xEA, _ea(0)),)),
        Frame(3, NODE_PROFILE, NODE_PROFILE, ESV.INF, (Property(0xD5, bytes.fromhex("01028801")),)),
        Frame(4, SMART_METER, CONTROLLER, ESV.SETGET_RES, (Property(0xE5),),
              (Property(0xE2, sample_edt(e.History1Codec(), rng)),)),
        Frame(5, CONTROLLER, SMART_METER, ESV.GET, (Property(0xE7), Property(0xE8))),
        Frame(6, SMART_METER, CONTROLLER, ESV.GET_SNA, (Property(0xE7), Property(0xC0))),
        Frame(7, CONTROLLER, SMART_METER, ESV.SETGET, (), (Property(0xEC),)),
    ]  # fmt: skip
    for cls in all_classes():  # every property of every class, a few to a frame
        seoj = EOJ(cls.class_code >> 8, cls.class_code & 0xFF, 1)
        specs = sorted(cls.properties.values(), key=lambda s: s.epc)
        for _ in range(3):
            rng.shuffle(specs)
            for start in range(0, len(specs), 5):
                props = tuple(
                    Property(s.epc, sample_edt(s.codec, rng)) for s in specs[start : start + 5]
                )
                esv = rng.choice([ESV.GET_RES, ESV.INF, ESV.INFC, ESV.SETC])
                frames.append(Frame(rng.randrange(0x10000), seoj, CONTROLLER, esv, props))
    out = [encode_frame(f) for f in frames]
    out.append(OpaqueFrame(8, b"\x01\x02\x03").to_bytes())
    return out


def test_corpus_is_valid_and_covers_every_property() -> None:
    rng = random.Random(1)
    seen: set[tuple[int, int]] = set()
    for data in corpus(rng):
        frame = decode_frame(data)
        if isinstance(frame, Frame):
            for prop in frame.props + frame.props_get:
                if prop.edt:
                    decode_property(frame.seoj.class_code, prop.epc, prop.edt)
                    seen.add((frame.seoj.class_code, prop.epc))
    every = {(c.class_code, epc) for c in all_classes() for epc in c.properties}
    assert every <= seen


@pytest.mark.slow
def test_fuzz_volume() -> None:
    rng = random.Random(20240601)
    frames = corpus(rng)
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    for i in range(VOLUME):
        roll = rng.random()
        if roll < 0.05:
            data = rng.randbytes(rng.randrange(64))
        elif roll < 0.10:  # a splice of two frames
            x, y = rng.choice(frames), rng.choice(frames)
            data = x[: rng.randrange(len(x) + 1)] + y[rng.randrange(len(y) + 1) :]
        else:
            buf = bytearray(rng.choice(frames))
            for _ in range(1 + (rng.random() < 0.3) + (rng.random() < 0.1)):
                buf = mutate(
                    buf,
                    rng.randrange(MUTATION_KINDS),
                    rng.randrange(1 << 16),
                    rng.randrange(1 << 16),
                )
            data = bytes(buf)
        try:
            check(data, counts)
        except AssertionError:
            raise
        except Exception as exc:  # anything but EchonetDecodeError is a bug
            pytest.fail(f"input #{i} {data.hex()} raised {type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - started
    total = counts["frame_errors"] + counts["frames"] + counts["format2"]
    assert total == VOLUME
    assert counts["frame_errors"] > VOLUME // 5  # the mutations do break frames
    assert counts["frames"] > VOLUME // 5  # and many still reach the property codecs
    assert counts["properties"] > VOLUME // 2
    assert counts["property_errors"] > VOLUME // 20
    assert elapsed < 60, f"fuzz took {elapsed:.1f} s"


mutations = st.lists(
    st.tuples(st.integers(0, MUTATION_KINDS - 1), st.integers(0, 1 << 16), st.integers(0, 1 << 16)),
    min_size=1,
    max_size=4,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_frames(), mutations)
def test_fuzz_mutations_shrink(frame: Frame, ops: list[tuple[int, int, int]]) -> None:
    data = bytearray(encode_frame(frame))
    for kind, a, b in ops:
        data = mutate(data, kind, a, b)
    check(bytes(data), Counter())


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=80),
    st.sampled_from(
        [b"", b"\x10\x81", b"\x10\x82", b"\x10\x81\x00\x01\x02\x88\x01\x05\xff\x01\x72"]
    ),
)
def test_fuzz_random_bytes(tail: bytes, head: bytes) -> None:
    check(head + tail, Counter())
