"""Properties of the SKSTACK IP parser.

(a) Any sequence of valid items, rendered to bytes in either dialect and data mode and fed in
    any chunks, parses back to the same items.
(b) Fuzz: random and mutated byte streams. The parser returns items and nothing else (no
    exception at all: bad lines are `Garbled` items); its output does not depend on how the
    bytes were chunked; its buffer stays bounded; and garbage followed by CR LF and a valid
    line never hides that line. The one exception the design allows (lines.py docstring): a
    well-formed binary ERXUDP header in the garbage claims the next len bytes, so the line is
    either read after len+1 more bytes or legitimately carried inside that payload.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kenshin.wisun import (
    MAX_LINE,
    AppVersion,
    Dialect,
    Echo,
    Event,
    Fail,
    Garbled,
    Info,
    LinkLocal,
    Ok,
    PanDescriptor,
    ReceivedUdp,
    SkstackParseError,
    SkstackParser,
    Unknown,
    Version,
)

pytestmark = pytest.mark.slow  # fuzzing: many generated examples

ITEM_TYPES = (
    Echo, Ok, Fail, Event, PanDescriptor, ReceivedUdp, Version, AppVersion, Info, LinkLocal,
    Unknown, Garbled,
)  # fmt: skip
DIALECTS = [Dialect.BP35A1, Dialect.BP35C2]
CRLF = b"\r\n"
HEADS = {"OK", "FAIL", "EVENT", "EPANDESC", "ERXUDP", "EVER", "EAPPVER", "EINFO"}


# -- rendering: items back to what a dongle prints ---------------------------------------


def render(item: object, dialect: Dialect, *, hex_data: bool, glue_echo: bool = False) -> bytes:
    """The bytes a dongle prints for `item` (docs/skstack.md). `glue_echo`: an SKSENDTO echo
    without CR LF after it, as the contract allows."""
    side = dialect is Dialect.BP35C2
    if isinstance(item, Echo):
        text = item.text.encode()
        return text if glue_echo and item.text.startswith("SKSENDTO ") else text + CRLF
    if isinstance(item, Ok):
        return b"OK" + (b" " + item.detail.encode() if item.detail is not None else b"") + CRLF
    if isinstance(item, Fail):
        return b"FAIL ER%02d\r\n" % item.code
    if isinstance(item, Event):
        parts = [b"EVENT %02X" % item.code]
        if item.address:
            parts.append(item.address.encode())
        if item.side is not None:
            parts.append(b"%X" % item.side)
        if item.param is not None:
            parts.append(b"%02X" % item.param)
        return b" ".join(parts) + CRLF
    if isinstance(item, PanDescriptor):
        lines = [
            b"EPANDESC",
            b"  Channel:%02X" % item.channel,
            b"  Channel Page:%02X" % item.channel_page,
            b"  Pan ID:%04X" % item.pan_id,
            b"  Addr:" + item.mac.encode(),
            b"  LQI:%02X" % item.lqi,
        ]
        if item.side is not None:
            lines.append(b"  Side:%X" % item.side)
        if item.pair_id is not None:
            lines.append(b"  PairID:" + item.pair_id.encode())
        return b"".join(line + CRLF for line in lines)
    if isinstance(item, ReceivedUdp):
        parts = [b"ERXUDP", item.source.encode(), item.destination.encode()]
        parts += [b"%04X" % item.source_port, b"%04X" % item.dest_port, item.source_mac.encode()]
        if side and item.lqi is not None:  # BP35C2 without LQI: register SA2 is 0
            parts.append(b"%02X" % item.lqi)
        parts.append(b"1" if item.secured else b"0")
        if side:
            parts.append(b"%X" % item.side)  # type: ignore[str-format]
        parts.append(b"%04X" % len(item.data))
        data = item.data.hex().upper().encode() if hex_data else item.data
        return b" ".join(parts) + b" " + data + CRLF
    if isinstance(item, Version):
        return b"EVER " + item.text.encode() + CRLF
    if isinstance(item, AppVersion):
        return b"EAPPVER " + item.text.encode() + CRLF
    if isinstance(item, Info):
        parts = [b"EINFO", item.ip6.encode(), item.mac.encode()]
        parts += [b"%02X" % item.channel, b"%04X" % item.pan_id, b"%04X" % item.addr16]
        if item.side is not None:
            parts.append(b"%X" % item.side)
        return b" ".join(parts) + CRLF
    if isinstance(item, LinkLocal):
        return item.ip6.encode() + CRLF
    if isinstance(item, Unknown):
        return item.text.encode() + CRLF
    raise TypeError(item)


def is_unknown_text(text: str) -> bool:
    """A line the parser must report as Unknown (no known head, not an echo, not an IPv6)."""
    head = text.split(" ", 1)[0]
    return (
        bool(text)
        and not text.startswith((" ", "SK", "WOPT", "ROPT"))
        and head not in HEADS
        and not (len(text) == 39 and text.count(":") == 7)
    )


# -- strategies --------------------------------------------------------------------------

HEX = "0123456789ABCDEF"
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def hexstr(n: int) -> st.SearchStrategy[str]:
    return st.text(HEX, min_size=n, max_size=n)


ip6s = st.lists(hexstr(4), min_size=8, max_size=8).map(":".join)
macs = hexstr(16)
words = st.text(PRINTABLE, min_size=1, max_size=24).filter(lambda t: t == t.strip(" "))


def items(dialect: Dialect) -> st.SearchStrategy[object]:
    side = dialect is Dialect.BP35C2
    sides = st.integers(0, 1) if side else st.none()
    sendto_echo = st.builds(
        lambda h, ip, sec, s, n: Echo(
            f"SKSENDTO {h} {ip} 0E1A {sec}" + (f" {s}" if side else "") + f" {n:04X} "
        ),
        st.integers(1, 6), ip6s, st.integers(0, 1), st.integers(0, 1), st.integers(1, 1232),
    )  # fmt: skip
    echoes = st.one_of(
        st.sampled_from(["SKVER", "SKINFO", "SKSREG SFE 0", "ROPT", "WOPT 01", "SKTERM"]),
        st.from_regex(r"SK[A-Z0-9]{0,10}( [0-9A-F]{1,8}){0,3}", fullmatch=True).filter(
            lambda t: not t.startswith("SKSENDTO ")
        ),
    ).map(Echo)
    udp_data = st.one_of(
        st.binary(max_size=48),
        st.builds(lambda a, b: a + CRLF + b, st.binary(max_size=16), st.binary(max_size=16)),
        st.sampled_from([b"\r", b"\n", b"\r\n", b"\r\r\n\n", b"ERXUDP \r\n"]),
    )
    return st.one_of(
        echoes,
        sendto_echo,
        st.builds(Ok, st.one_of(st.none(), st.sampled_from(["00", "01"]), words)),
        st.builds(Fail, st.integers(0, 99)),
        st.builds(
            Event, st.integers(0, 255), ip6s, sides, st.one_of(st.none(), st.integers(0, 255))
        ),
        st.builds(
            PanDescriptor,
            st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF), macs,
            st.integers(0, 255), sides, st.one_of(st.none(), hexstr(8)),
        ),
        st.builds(
            ReceivedUdp,
            ip6s, ip6s, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), macs,
            st.one_of(st.none(), st.integers(0, 255)) if side else st.none(), st.booleans(),
            sides, udp_data,
        ),
        st.builds(Version, words),
        st.builds(AppVersion, words),
        st.builds(
            Info,
            ip6s, macs, st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
            st.one_of(st.none(), st.integers(0, 1)),
        ),
        st.builds(LinkLocal, ip6s),
        st.builds(Unknown, st.text(PRINTABLE, min_size=1, max_size=40).filter(is_unknown_text)),
    )  # fmt: skip


def feed_in_pieces(parser: SkstackParser, data: bytes, cuts: list[int]) -> list[object]:
    out: list[object] = []
    start = 0
    for cut in sorted(set(cuts)):
        out += parser.feed(data[start:cut])
        start = cut
    out += parser.feed(data[start:])
    return out + parser.flush()


# -- (a) round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.value)
@pytest.mark.parametrize("hex_data", [True, False], ids=["hex", "binary"])
@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_in_any_chunks(dialect: Dialect, hex_data: bool, data: st.DataObject) -> None:
    told = data.draw(st.booleans(), label="parser told the data mode")  # else auto-detects
    sequence = data.draw(st.lists(items(dialect), max_size=12), label="items")
    glue = data.draw(st.lists(st.booleans(), min_size=len(sequence), max_size=len(sequence)))
    wire = b"".join(
        render(item, dialect, hex_data=hex_data, glue_echo=glue[i] and i + 1 < len(sequence))
        for i, item in enumerate(sequence)
    )
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=16), label="cuts")
    parser = SkstackParser(dialect, hex_data=hex_data if told else None)
    assert feed_in_pieces(parser, wire, cuts) == sequence


# -- (b) fuzz ----------------------------------------------------------------------------

VOLUME = 100_000
SENTINEL_ADDRESS = "FE80:0000:0000:0000:5E17:0000:0000:CAFE"
SENTINEL_TEXT = b"EVENT 25 " + SENTINEL_ADDRESS.encode()


def random_ip6(rng: random.Random) -> str:
    return ":".join(f"{rng.getrandbits(16):04X}" for _ in range(8))


def random_item(rng: random.Random, dialect: Dialect) -> object:
    """A valid item, weighted towards what a dongle prints most."""
    side = dialect is Dialect.BP35C2
    s = rng.randrange(2) if side else None
    kind = rng.randrange(12)
    if kind == 0:
        return Echo(rng.choice(["SKVER", "SKINFO", "SKSCAN 2 FFFFFFFF 6", "ROPT", "SKSREG S2 21"]))
    if kind == 1:
        return Echo(f"SKSENDTO 1 {random_ip6(rng)} 0E1A 1" + (" 0" if side else "") + " 000E ")
    if kind == 2:
        return Ok(rng.choice([None, None, "01"]))
    if kind == 3:
        return Fail(rng.choice([4, 5, 6, 9, 10]))
    if kind in (4, 5):
        param = rng.choice([None, 0, 2]) if rng.random() < 0.3 else None
        return Event(rng.choice([0x20, 0x21, 0x22, 0x24, 0x25, 0x29]), random_ip6(rng), s, param)
    if kind == 6:
        pair = rng.choice([None, f"{rng.getrandbits(32):08X}"])
        mac = f"{rng.getrandbits(64):016X}"
        return PanDescriptor(rng.randrange(0x21, 0x3D), 9, rng.getrandbits(16), mac, 0xE1, s, pair)
    if kind in (7, 8):
        size = rng.choice([0, 4, 14, 18, rng.randrange(64)])
        payload = bytearray(rng.randbytes(size))
        if payload and rng.random() < 0.5:
            payload[rng.randrange(len(payload))] = 0x0D  # line ends inside binary payloads
        return ReceivedUdp(
            random_ip6(rng), random_ip6(rng), 0x0E1A, 0x0E1A, f"{rng.getrandbits(64):016X}",
            rng.choice([rng.randrange(256), None]) if side else None, rng.random() < 0.8, s,
            bytes(payload),
        )  # fmt: skip
    if kind == 9:
        return rng.choice([Version("1.2.10"), AppVersion("rev26e"), Unknown("EPORT")])
    if kind == 10:
        addr16 = 0xFFFE if not side else rng.getrandbits(16)
        return Info(random_ip6(rng), f"{rng.getrandbits(64):016X}", 0x21, 0x8888, addr16, s)
    return LinkLocal(random_ip6(rng))


def base_streams(rng: random.Random, count: int) -> list[tuple[Dialect, bool, bytes]]:
    pool = []
    for _ in range(count):
        dialect = rng.choice(DIALECTS)
        hex_data = rng.random() < 0.5
        stream = b"".join(
            render(random_item(rng, dialect), dialect, hex_data=hex_data)
            for _ in range(rng.randrange(1, 6))
        )
        pool.append((dialect, hex_data, stream))
    return pool


NOISE = b"\r\n \r\n:0123456789ABCDEF" + b"ERXUDP EVENT EPANDESC SKSENDTO OK FAIL ER"


def mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(12)
    n = len(buf)
    if kind == 0 and n:  # bit flips
        for _ in range(rng.randrange(1, 4)):
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif kind == 1:  # insertion of random bytes
        at = rng.randrange(n + 1)
        buf[at:at] = rng.randbytes(rng.randrange(1, 8))
    elif kind == 2 and n:  # deletion
        at = rng.randrange(n)
        del buf[at : at + rng.randrange(1, 12)]
    elif kind == 3 and n:  # truncation
        del buf[rng.randrange(n) :]
    elif kind == 4:  # line-end injection
        at = rng.randrange(n + 1)
        buf[at:at] = rng.choice([b"\r\n", b"\r", b"\n", b"\n\r"])
    elif kind == 5 and n:  # duplicated slice
        at = rng.randrange(n)
        piece = buf[at : at + rng.randrange(1, 40)]
        at2 = rng.randrange(n + 1)
        buf[at2:at2] = piece
    elif kind == 6 and n:  # one byte replaced by a meaningful one
        buf[rng.randrange(n)] = rng.choice(NOISE)
    elif kind == 7:  # splice of two streams
        buf = buf[: rng.randrange(n + 1)] + other[rng.randrange(len(other) + 1) :]
    elif kind == 8:  # a field's digit changed (lengths, counts)
        digits = [i for i, b in enumerate(buf) if b in b"0123456789ABCDEF"]
        if digits:
            buf[rng.choice(digits)] = rng.choice(b"0123456789ABCDEFG ")
    elif kind == 9:  # pure random bytes
        buf = bytearray(rng.randbytes(rng.randrange(300)))
    elif kind == 10:  # random bytes from a line-ish alphabet
        buf = bytearray(rng.choice(NOISE) for _ in range(rng.randrange(300)))
    elif kind == 11 and rng.random() < 0.05:  # an over-long line
        at = rng.randrange(n + 1)
        buf[at:at] = b"X" * rng.randrange(MAX_LINE - 2, MAX_LINE + 300)
    return bytes(buf)


def chunks(rng: random.Random, data: bytes) -> list[bytes]:
    pieces = []
    at = 0
    while at < len(data):
        size = rng.choice([1, 2, 7, 32, 200, len(data)])
        pieces.append(data[at : at + size])
        at += size
    return pieces


@pytest.mark.slow
def test_fuzz_items_only_chunking_irrelevant_and_resync() -> None:
    rng = random.Random(0x5C57AC)
    pool = base_streams(rng, 400)
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    for n in range(VOLUME):
        dialect, _, base = pool[rng.randrange(len(pool))]
        data = base
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            data = mutate(rng, data, pool[rng.randrange(len(pool))][2])
        told = rng.choice([None, True, False])
        parser = SkstackParser(dialect, hex_data=told)
        got: list[object] = []
        try:
            for piece in chunks(rng, data):
                got += parser.feed(piece)
                assert parser.buffered <= MAX_LINE + 1
            if n % 4 == 0:  # the same bytes in one piece give the same items
                whole = SkstackParser(dialect, hex_data=told)
                flushed = [*got, *parser.flush()]
                assert whole.feed(data) + whole.flush() == flushed, data
                counts["chunking_checked"] += 1
                continue
            # Resync: CR LF, then a valid line.
            side = b" 0" if dialect is Dialect.BP35C2 else b""
            sentinel = Event(0x25, SENTINEL_ADDRESS, 0 if side else None)
            after = parser.feed(CRLF + SENTINEL_TEXT + side + CRLF)
        except SkstackParseError:
            counts["parse_errors"] += 1  # allowed by the contract; this parser never raises
            continue
        assert all(isinstance(item, ITEM_TYPES) for item in got + after)
        counts["garbled"] += sum(isinstance(item, Garbled) for item in got + after)
        if after and after[-1] == sentinel:
            counts["resynced"] += 1
            continue
        if any(isinstance(item, ReceivedUdp) and SENTINEL_TEXT in item.data for item in after):
            # A binary ERXUDP header claimed bytes, and the sentinel ended them exactly.
            counts["carried_in_payload"] += 1
            continue
        # Only a binary ERXUDP header may delay it: it claimed bytes that are still coming.
        assert told is not True and parser.pending_payload > 0, (data, after)
        after += parser.feed(CRLF * (parser.pending_payload // 2 + 2)) + parser.flush()
        if sentinel in after:
            counts["resynced_after_payload"] += 1
        else:
            assert any(
                isinstance(item, ReceivedUdp) and SENTINEL_TEXT in item.data for item in after
            ), (data, after)
            counts["carried_in_payload"] += 1
    elapsed = time.perf_counter() - started
    assert counts["parse_errors"] == 0  # Garbled items, never exceptions
    assert counts["chunking_checked"] >= VOLUME // 4
    assert counts["garbled"] > VOLUME // 10  # the mutations do break lines
    resynced = counts["resynced"] + counts["resynced_after_payload"]
    assert counts["carried_in_payload"] < resynced // 100, counts
    assert elapsed < 60, elapsed
