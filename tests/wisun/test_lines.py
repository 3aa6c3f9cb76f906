"""The SKSTACK IP line parser on worked examples: every item kind in both dialects, in the
exact line formats of docs/skstack.md; the traps of docs/protocol.md §4; and how it recovers."""

from __future__ import annotations

import pytest

from kenshin.wisun import (
    MAX_LINE,
    AppVersion,
    CommandFailed,
    Dialect,
    Echo,
    Event,
    EventCode,
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
    parse_strict,
)

A1 = Dialect.BP35A1
C2 = Dialect.BP35C2
METER = "FE80:0000:0000:0000:021D:1290:1234:5678"
OURS = "FE80:0000:0000:0000:021D:1290:0003:C890"
MAC = "001D129012345678"
MTR = METER.encode()
OUR = OURS.encode()

# An ECHONET Lite Get_Res of E7 (instantaneous power, 1,000 W): the payload of most ERXUDPs.
FRAME = bytes.fromhex("1081000102880105FF017201E704000003E8")


def parse(data: bytes, dialect: Dialect, **kw: object) -> list[object]:
    return parse_strict(data, dialect, **kw)  # type: ignore[arg-type]


def bytewise(data: bytes, dialect: Dialect, **kw: object) -> list[object]:
    parser = SkstackParser(dialect, **kw)  # type: ignore[arg-type]
    items: list[object] = []
    for i in range(len(data)):
        items += parser.feed(data[i : i + 1])
    return items + parser.flush()


def lenient(data: bytes, dialect: Dialect, **kw: object) -> list[object]:
    parser = SkstackParser(dialect, **kw)  # type: ignore[arg-type]
    return parser.feed(data) + parser.flush()


def erxudp(dialect: Dialect, data: bytes, *, hex_data: bool, lqi: int | None = 0xE1) -> bytes:
    head = b"ERXUDP " + MTR + b" " + OUR + b" 0E1A 0E1A " + MAC.encode() + b" "
    if dialect is C2 and lqi is None:
        head += b"1 0 "  # BP35C2 with register SA2 0: no LQI field
    elif dialect is C2:
        head += b"%02X 1 0 " % lqi
    else:
        head += b"1 "
    head += b"%04X " % len(data)
    return head + (data.hex().upper().encode() if hex_data else data) + b"\r\n"


def received(dialect: Dialect, data: bytes, lqi: int | None = 0xE1) -> ReceivedUdp:
    side = dialect is C2
    return ReceivedUdp(
        METER, OURS, 0x0E1A, 0x0E1A, MAC, lqi if side else None, True, 0 if side else None, data
    )


# -- every item kind ---------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [A1, C2])
def test_echo_ok_fail(dialect: Dialect) -> None:
    data = (
        b"SKVER\r\nOK\r\n"
        b"SKSREG SFE 0\r\nOK\r\n"
        b"ROPT\r\nOK 01\r\n"
        b"WOPT 01\r\nOK\r\n"
        b"SKSREG SA2 1\r\nFAIL ER04\r\n"
        b"SKJOIN 1\r\nFAIL ER05\r\nFAIL ER06\r\nFAIL ER09\r\nFAIL ER10\r\n"
    )
    assert parse(data, dialect) == [
        Echo("SKVER"), Ok(),
        Echo("SKSREG SFE 0"), Ok(),
        Echo("ROPT"), Ok("01"),
        Echo("WOPT 01"), Ok(),
        Echo("SKSREG SA2 1"), Fail(4),
        Echo("SKJOIN 1"), Fail(5), Fail(6), Fail(9), Fail(10),
    ]  # fmt: skip


def test_fail_explains_itself() -> None:
    err = Fail(4).error(b"SKSREG SA2 1\r\n")
    assert isinstance(err, CommandFailed)
    assert err.code == 4
    assert err.explanation == "ER04 unsupported command"
    assert str(err) == "ER04 unsupported command (answer to SKSREG SA2 1)"
    assert str(CommandFailed(10)) == "ER10 failed to execute"
    assert "reserved" in str(CommandFailed(1))


def test_echo_of_credentials_is_masked_when_shown() -> None:
    (echo,) = parse(b"SKSETPWD C 0123456789AB\r\n", A1)
    assert echo == Echo("SKSETPWD C 0123456789AB")  # the value is there for whoever needs it
    assert "0123456789AB" not in repr(echo)
    assert repr(echo) == "Echo(text='SKSETPWD C ********')"
    (echo,) = parse(b"SKSETRBID 00112233445566778899AABBCCDDEEFF\r\n", A1)
    assert "0011" not in repr(echo)


def test_ropt_answer_ended_by_cr_alone() -> None:
    # BP35A1's product-configuration commands end their lines with CR only.
    assert parse(b"ROPT\rOK 01\rSKINFO\r\n", A1) == [Echo("ROPT"), Ok("01"), Echo("SKINFO")]
    # Nothing after the CR yet: the answer is complete all the same.
    parser = SkstackParser(A1)
    assert parser.feed(b"OK 00\r") == [Ok("00")]
    assert parser.feed(b"\nOK\r\n") == [Ok()]  # that LF belonged to the CR before it


def test_versions() -> None:
    data = b"SKVER\r\nEVER 1.2.10\r\nOK\r\nSKAPPVER\r\nEAPPVER rev26e\r\nOK\r\n"
    assert parse(data, A1) == [
        Echo("SKVER"), Version("1.2.10"), Ok(), Echo("SKAPPVER"), AppVersion("rev26e"), Ok()
    ]  # fmt: skip
    assert parse(b"EVER 1.5.2\r\n", C2) == [Version("1.5.2")]


def test_einfo_both_forms_in_either_dialect() -> None:
    a1 = b"EINFO " + OUR + b" " + MAC.encode() + b" 21 8888 FFFE\r\n"
    c2 = b"EINFO " + OUR + b" " + MAC.encode() + b" 21 8888 0001 0\r\n"
    c2_five = b"EINFO " + OUR + b" " + MAC.encode() + b" 21 8888 0\r\n"  # what BP35C2s print
    info_a1 = Info(OURS, MAC, 0x21, 0x8888, 0xFFFE, None)
    info_c2 = Info(OURS, MAC, 0x21, 0x8888, 0x0001, 0)
    for dialect in (A1, C2):  # SKINFO is the probe: it must read before the dialect is known
        assert parse(a1, dialect) == [info_a1]
        assert parse(c2, dialect) == [info_c2]
        assert parse(c2_five, dialect) == [Info(OURS, MAC, 0x21, 0x8888, None, 0)]


def test_link_local_answer_to_skll64() -> None:
    data = b"SKLL64 " + MAC.encode() + b"\r\n" + MTR + b"\r\n"
    assert parse(data, A1) == [Echo("SKLL64 " + MAC), LinkLocal(METER)]


def test_events_bp35a1() -> None:
    data = (
        b"EVENT 20 " + MTR + b"\r\n"
        b"EVENT 21 " + MTR + b" 00\r\n"
        b"EVENT 21 " + MTR + b" 02\r\n"
        b"EVENT 02 " + MTR + b"\r\n"
        b"EVENT 24 " + MTR + b"\r\n"
        b"EVENT 25 " + MTR + b"\r\n"
        b"EVENT 29 " + MTR + b"\r\n"
        b"EVENT 32 " + OUR + b"\r\n"
    )
    assert parse(data, A1) == [
        Event(0x20, METER),
        Event(0x21, METER, None, 0),
        Event(0x21, METER, None, 2),
        Event(0x02, METER),
        Event(EventCode.PANA_FAILED, METER),
        Event(EventCode.PANA_CONNECTED, METER),
        Event(EventCode.SESSION_EXPIRED, METER),
        Event(EventCode.TX_LIMIT_REACHED, OURS),
    ]


def test_events_bp35c2_carry_side() -> None:
    data = b"EVENT 22 " + MTR + b" 0\r\nEVENT 21 " + MTR + b" 0 00\r\nEVENT 25 " + MTR + b" 1\r\n"
    assert parse(data, C2) == [
        Event(0x22, METER, 0),
        Event(0x21, METER, 0, 0),
        Event(0x25, METER, 1),
    ]


def test_wakeup_event_has_no_address() -> None:
    assert parse(b"EVENT C0\r\n", A1) == [Event(EventCode.WAKEUP, "")]


@pytest.mark.parametrize(
    ("dialect", "line"),
    [
        (A1, b"EVENT 21 " + MTR + b" 0 00"),  # a BP35C2 line on a BP35A1 parser
        (C2, b"EVENT 25 " + MTR),  # no side
        (C2, b"EVENT 21 " + MTR + b" 0 00 7"),
        (A1, b"EVENT 2 " + MTR),  # one digit
        (A1, b"EVENT 25 FE80::1"),  # short form: the dongle never prints it
        (A1, b"EVENT 25  " + MTR),  # two spaces
        (A1, b"EVENT"),
        (A1, b"FAIL ER4"),
        (A1, b"FAIL"),
        (A1, b"FAIL ER04 x"),
        (A1, b"EVER"),
        (A1, b"EAPPVER "),
        (A1, b"EPANDESC x"),
        (A1, b"EINFO " + OUR + b" " + MAC.encode() + b" 21 8888"),
        (A1, b"EINFO " + OUR + b" 001D1290123456 21 8888 FFFE"),
        (C2, b"EINFO " + OUR + b" " + MAC.encode() + b" 21 8888 0001 G"),
        (A1, b"OK \xff"),
        (A1, b"SKVER\x00"),
        (A1, b"\x10\x81\x00\x01"),
        (A1, b"EVENT 25 " + MTR + b"\n"),  # a lone LF is not a line end
    ],
)
def test_malformed_lines_are_garbled(dialect: Dialect, line: bytes) -> None:
    items = lenient(line + b"\r\nOK\r\n", dialect)
    assert len(items) == 2
    assert isinstance(items[0], Garbled)
    assert items[0].line == line
    assert items[0].reason
    assert items[1] == Ok()  # the next line reads


def test_unknown_but_printable_lines_are_kept() -> None:
    data = b"EPORT\r\n3610\r\n0\r\nEADDR\r\n  indented outside a block\r\nOKAY\r\n"
    assert parse(data, A1) == [
        Unknown("EPORT"),
        Unknown("3610"),
        Unknown("0"),
        Unknown("EADDR"),
        Unknown("  indented outside a block"),
        Unknown("OKAY"),
    ]


def test_empty_lines_are_skipped() -> None:
    # [BP35A1 1.2.10] EEDSCAN and EPORT answers end with an extra CR LF.
    assert parse(b"\r\nOK\r\n\r\n\r\n", A1) == [Ok()]


# -- EPANDESC ----------------------------------------------------------------------------

PAN_A1 = (
    b"EPANDESC\r\n"
    b"  Channel:21\r\n"
    b"  Channel Page:09\r\n"
    b"  Pan ID:8888\r\n"
    b"  Addr:001D129012345678\r\n"
    b"  LQI:E1\r\n"
    b"  PairID:0012ABCD\r\n"
)
PAN_C2 = (
    b"EPANDESC\r\n"
    b"  Channel:3B\r\n"
    b"  Channel Page:09\r\n"
    b"  Pan ID:1234\r\n"
    b"  Addr:001D129012345678\r\n"
    b"  LQI:5A\r\n"
    b"  Side:0\r\n"
    b"  PairID:0012ABCD\r\n"
)


def test_scan_bp35a1_block_then_event_22() -> None:
    data = (
        b"SKSCAN 2 FFFFFFFF 6\r\nOK\r\n"
        b"EVENT 20 " + MTR + b"\r\n" + PAN_A1 + b"EVENT 22 " + OUR + b"\r\n"
    )
    assert parse(data, A1) == [
        Echo("SKSCAN 2 FFFFFFFF 6"),
        Ok(),
        Event(0x20, METER),
        PanDescriptor(0x21, 0x09, 0x8888, MAC, 0xE1, None, "0012ABCD"),
        Event(0x22, OURS),
    ]


def test_scan_bp35c2_block_with_side() -> None:
    data = b"EVENT 20 " + MTR + b" 0\r\n" + PAN_C2 + b"EVENT 22 " + OUR + b" 0\r\n"
    assert parse(data, C2) == [
        Event(0x20, METER, 0),
        PanDescriptor(0x3B, 0x09, 0x1234, MAC, 0x5A, 0, "0012ABCD"),
        Event(0x22, OURS, 0),
    ]


def test_block_is_emitted_when_the_next_line_starts() -> None:
    parser = SkstackParser(A1)
    assert parser.feed(PAN_A1) == []  # another indented line may still come
    assert parser.feed(b"EVENT 22 " + OUR + b"\r\n") == [
        PanDescriptor(0x21, 0x09, 0x8888, MAC, 0xE1, None, "0012ABCD"),
        Event(0x22, OURS),
    ]
    assert parser.feed(PAN_A1) == []
    assert parser.flush() == [PanDescriptor(0x21, 0x09, 0x8888, MAC, 0xE1, None, "0012ABCD")]


def test_block_without_pair_id_and_with_extra_keys() -> None:
    data = PAN_A1.replace(b"  PairID:0012ABCD\r\n", b"  Beacon Order:0F\r\n") + b"OK\r\n"
    assert parse(data, A1) == [PanDescriptor(0x21, 0x09, 0x8888, MAC, 0xE1, None, None), Ok()]


@pytest.mark.parametrize(
    ("dialect", "block", "offending"),
    [
        (A1, PAN_A1.replace(b"  LQI:E1\r\n", b""), None),  # lacks LQI
        (C2, PAN_A1, None),  # lacks Side
        (A1, PAN_C2, None),  # has Side
        (A1, PAN_A1.replace(b"Pan ID:8888", b"Pan ID:88G8"), b"  Pan ID:88G8"),
        (A1, PAN_A1.replace(b"Addr:001D129012345678", b"Addr:001D1290"), b"  Addr:001D1290"),
        (A1, PAN_A1.replace(b"PairID:0012ABCD", b"PairID:12"), b"  PairID:12"),
        (A1, PAN_A1.replace(b"  LQI:E1", b"  LQI E1"), b"  LQI E1"),
        (A1, PAN_A1.replace(b"  LQI:E1", b"  LQI:\xe1"), b"  LQI:\xe1"),
        (A1, PAN_A1 + b"  Channel:22\r\n", b"  Channel:22"),
        (A1, PAN_A1 + b"  X:1\r\n" * 20, None),
    ],
)
def test_bad_block_is_one_garbled_item(
    dialect: Dialect, block: bytes, offending: bytes | None
) -> None:
    items = lenient(
        block + b"EVENT 22 " + OUR + (b" 0" if dialect is C2 else b"") + b"\r\n", dialect
    )
    assert len(items) == 2
    assert isinstance(items[0], Garbled)
    if offending is not None:
        assert items[0].line == offending
    else:
        assert items[0].line.startswith(b"EPANDESC\r\n  Channel:")
    assert isinstance(items[1], Event)


# -- ERXUDP ------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [A1, C2])
@pytest.mark.parametrize("hex_data", [True, False, None])
def test_erxudp_in_its_mode(dialect: Dialect, hex_data: bool | None) -> None:
    wire = erxudp(dialect, FRAME, hex_data=hex_data is not False)
    assert parse(wire, dialect, hex_data=hex_data) == [received(dialect, FRAME)]


@pytest.mark.parametrize("hex_data", [True, False, None])
@pytest.mark.parametrize(
    "data",
    [FRAME, b"", b"\r\n", b"1 0 0012 \r\n", b"E1 1 0 0012 ", bytes(range(256))[:200]],
    ids=["frame", "empty", "crlf", "header-like", "lqi-like", "all-bytes"],
)
def test_bp35c2_erxudp_without_lqi(hex_data: bool | None, data: bytes) -> None:
    # Issue 17 item 7.2: a BP35C2 with register SA2 0 (SKSREG SA2 1 refused or never sent)
    # prints ERXUDP one field shorter, without LQI. Both forms are read, whatever the data.
    for lqi in (None, 0xE1):
        wire = erxudp(C2, data, hex_data=hex_data is not False, lqi=lqi)
        assert parse(wire, C2, hex_data=hex_data) == [received(C2, data, lqi=lqi)]
        assert bytewise(wire, C2, hex_data=hex_data) == [received(C2, data, lqi=lqi)]


def test_bp35c2_erxudp_without_lqi_exact_line() -> None:
    line = (
        b"ERXUDP " + MTR + b" " + OUR + b" 0E1A 0E1A 001D129012345678 1 0 0012 " + FRAME + b"\r\n"
    )
    hex_line = (
        b"ERXUDP " + MTR + b" " + OUR + b" 0E1A 0E1A 001D129012345678 1 0 0012 "
        b"1081000102880105FF017201E704000003E8\r\n"
    )
    assert parse(line + hex_line + b"OK\r\n", C2) == [
        received(C2, FRAME, lqi=None), received(C2, FRAME, lqi=None), Ok()
    ]  # fmt: skip


@pytest.mark.parametrize(
    "fields",
    [
        b"E1 1 0012 ",  # LQI but no side
        b"1 0 12 ",  # length not 4 hex digits
        b"1 0 0 0012 ",  # one field too many for the short form
        b"E1 1 0 0 0012 ",  # one too many for the long form
        b"E1X 1 0 0012 ",  # LQI of 3 characters
    ],
)
def test_bp35c2_erxudp_of_neither_form_is_garbled(fields: bytes) -> None:
    head = b"ERXUDP " + MTR + b" " + OUR + b" 0E1A 0E1A " + MAC.encode() + b" " + fields
    items = lenient(head + FRAME.hex().upper().encode() + b"\r\nOK\r\n", C2)
    assert isinstance(items[0], Garbled) and items[-1] == Ok()


def test_erxudp_exact_lines() -> None:
    a1_hex = (
        b"ERXUDP " + MTR + b" " + OUR + b" 0E1A 0E1A 001D129012345678 1 0012 "
        b"1081000102880105FF017201E704000003E8\r\n"
    )
    c2_bin = (
        b"ERXUDP "
        + MTR
        + b" "
        + OUR
        + b" 0E1A 0E1A 001D129012345678 E1 1 0 0012 "
        + FRAME
        + b"\r\n"
    )
    assert parse(a1_hex, A1) == [received(A1, FRAME)]
    assert parse(c2_bin, C2) == [received(C2, FRAME)]


@pytest.mark.parametrize("dialect", [A1, C2])
@pytest.mark.parametrize("hex_data", [False, None])
def test_binary_payload_holding_line_ends(dialect: Dialect, hex_data: bool | None) -> None:
    payload = b"\r\nOK\r\n" + FRAME + b"\r\rEVENT 25 \n\x00\xff\r\n"
    wire = erxudp(dialect, payload, hex_data=False) + b"OK\r\n"
    expected = [received(dialect, payload), Ok()]
    assert parse(wire, dialect, hex_data=hex_data) == expected
    assert bytewise(wire, dialect, hex_data=hex_data) == expected


def test_auto_mode_tells_each_line_apart() -> None:
    # All hex digits as raw bytes: still binary, because a CR follows len bytes.
    tricky = b"0D0A"
    wire = (
        erxudp(A1, tricky, hex_data=False)
        + erxudp(A1, tricky, hex_data=True)
        + erxudp(A1, b"", hex_data=True)
    )
    assert parse(wire, A1) == [received(A1, tricky), received(A1, tricky), received(A1, b"")]


@pytest.mark.parametrize("dialect", [A1, C2])
def test_erxudp_wrong_mode_is_garbled_and_the_next_line_reads(dialect: Dialect) -> None:
    bin_wire = erxudp(dialect, FRAME, hex_data=False)
    hex_wire = erxudp(dialect, FRAME, hex_data=True)
    items = lenient(hex_wire + b"OK\r\n", dialect, hex_data=False)
    assert [type(x) for x in items] == [Garbled, Ok]
    assert "not followed by CR LF" in items[0].reason  # type: ignore[attr-defined]
    items = lenient(bin_wire + b"OK\r\n", dialect, hex_data=True)
    assert [type(x) for x in items] == [Garbled, Ok]
    assert "non-printable" in items[0].reason  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda w: w.replace(b" 0012 ", b" 0013 "),  # length one more than the data
        lambda w: w.replace(b" 0012 ", b" 0011 "),  # one less
        lambda w: w.replace(b" 0012 ", b" 04D1 "),  # more than any UDP payload
        lambda w: w.replace(b" 0E1A 0E1A ", b" 0E1A 0E1 "),
        lambda w: w.replace(b"001D129012345678", b"001D12901234567"),
        lambda w: w.replace(b" 1 0012 ", b" 2 0012 "),  # secured flag
        lambda w: w.replace(b"1081", b"10G1"),  # bad hex
        lambda w: w.replace(b"0E1A 0E1A", b"0E1A  0E1A"),
    ],
)
@pytest.mark.parametrize("hex_data", [True, None])
def test_malformed_erxudp(mutate: object, hex_data: bool | None) -> None:
    wire = mutate(erxudp(A1, FRAME, hex_data=True))  # type: ignore[operator]
    items = lenient(wire + b"EVENT 25 " + MTR + b"\r\n", A1, hex_data=hex_data)
    assert [type(x) for x in items] == [Garbled, Event], items
    assert items[0].line == wire[:-2]  # type: ignore[attr-defined]


def test_truncated_binary_payload_loses_no_line() -> None:
    # The dongle reset in the middle of a payload: its next lines must not be swallowed.
    wire = erxudp(A1, FRAME, hex_data=False)
    cut = wire[: len(wire) - 10]
    follow = b"\r\nEVER 1.2.10\r\nOK\r\n" + b"EVENT 25 " + MTR + b"\r\n"
    parser = SkstackParser(A1, hex_data=False)
    items = parser.feed(cut + follow)
    # The header claimed 18 bytes; they arrived, and no CR followed: read as lines again.
    assert [type(x) for x in items] == [Garbled, Version, Ok, Event]
    assert items[0].line == cut  # type: ignore[attr-defined]


def test_claimed_payload_is_released_by_flush() -> None:
    wire = erxudp(A1, bytes(200), hex_data=False)
    parser = SkstackParser(A1)
    cut = wire.index(b" 00C8 ") + 6 + 20  # the header and 20 of the 200 bytes
    assert parser.feed(wire[:cut] + b"\r\nOK\r\n") == []
    assert parser.pending_payload > 0
    items = parser.flush()
    assert [type(x) for x in items] == [Garbled, Ok]


def test_pending_payload_counts_down() -> None:
    wire = erxudp(C2, FRAME, hex_data=False)
    parser = SkstackParser(C2, hex_data=False)
    head = wire.index(b" 0012 ") + 6
    assert parser.feed(wire[:head]) == []
    assert parser.pending_payload == len(FRAME) + 1
    assert parser.feed(wire[head : head + 5]) == []
    assert parser.pending_payload == len(FRAME) + 1 - 5
    assert parser.feed(wire[head + 5 :]) == [received(C2, FRAME)]
    assert parser.pending_payload == 0


# -- unsolicited lines inside a command's answer (docs/protocol.md §4) ------------------------


@pytest.mark.parametrize("dialect", [A1, C2])
@pytest.mark.parametrize("hex_data", [True, False])
def test_event_and_erxudp_between_echo_and_ok(dialect: Dialect, hex_data: bool) -> None:
    side = b" 0" if dialect is C2 else b""
    data = (
        b"SKINFO\r\n"
        + b"EVENT 29 " + MTR + side + b"\r\n"
        + erxudp(dialect, FRAME, hex_data=hex_data)
        + b"EINFO " + OUR + b" " + MAC.encode() + b" 21 8888 FFFE\r\n"
        + b"EVENT 25 " + MTR + side + b"\r\n"
        + b"OK\r\n"
    )  # fmt: skip
    s = 0 if dialect is C2 else None
    expected = [
        Echo("SKINFO"),
        Event(0x29, METER, s),
        received(dialect, FRAME),
        Info(OURS, MAC, 0x21, 0x8888, 0xFFFE),
        Event(0x25, METER, s),
        Ok(),
    ]
    assert parse(data, dialect, hex_data=hex_data) == expected
    assert parse(data, dialect) == expected


@pytest.mark.parametrize("dialect", [A1, C2])
def test_sendto_echo_with_or_without_line_end(dialect: Dialect) -> None:
    # The echo stops at the space after the length; the payload is not echoed.
    side = b" 0" if dialect is C2 else b""
    echo = b"SKSENDTO 1 " + MTR + b" 0E1A 1" + side + b" 0012 "
    event = b"EVENT 21 " + MTR + side + b" 00\r\n"
    expected = [Echo(echo.decode()), Event(0x21, METER, 0 if side else None, 0), Ok()]
    for glue in (b"", b"\r\n"):
        data = echo + glue + event + b"OK\r\n"
        assert parse(data, dialect) == expected
        assert bytewise(data, dialect) == expected


# -- chunking ----------------------------------------------------------------------------


def transcript(dialect: Dialect, *, hex_data: bool) -> bytes:
    side = b" 0" if dialect is C2 else b""
    pan = PAN_C2 if dialect is C2 else PAN_A1
    return (
        b"SKVER\r\nEVER 1.2.10\r\nOK\r\n"
        + b"SKSCAN 2 FFFFFFFF 6" + side + b"\r\nOK\r\n"
        + b"EVENT 20 " + MTR + side + b"\r\n" + pan + b"EVENT 22 " + OUR + side + b"\r\n"
        + b"SKLL64 " + MAC.encode() + b"\r\n" + MTR + b"\r\n"
        + b"SKJOIN " + MTR + b"\r\nOK\r\nEVENT 21 " + MTR + side + b" 02\r\n"
        + b"EVENT 25 " + MTR + side + b"\r\n"
        + b"SKSENDTO 1 " + MTR + b" 0E1A 1" + side + b" 0012 "
        + erxudp(dialect, FRAME, hex_data=hex_data)
        + b"EVENT 21 " + MTR + side + b" 00\r\nOK\r\n"
        + erxudp(dialect, b"\r\n\r\n" + FRAME, hex_data=hex_data)
        + b"ROPT\rOK 01\r"
        + b"FAIL ER10\r\n"
    )  # fmt: skip


@pytest.mark.parametrize("dialect", [A1, C2])
@pytest.mark.parametrize("hex_data", [True, False])
def test_every_split_point_gives_the_same_items(dialect: Dialect, hex_data: bool) -> None:
    data = transcript(dialect, hex_data=hex_data)
    whole = parse(data, dialect)
    assert len(whole) == 22
    assert not any(isinstance(x, Garbled) for x in whole)
    assert bytewise(data, dialect) == whole
    for cut in range(1, len(data)):
        parser = SkstackParser(dialect)
        items = parser.feed(data[:cut]) + parser.feed(data[cut:]) + parser.flush()
        assert items == whole, cut


# -- resynchronisation -------------------------------------------------------------------


def test_overlong_line_is_reported_once_and_skipped() -> None:
    junk = b"X" * (MAX_LINE * 3)
    parser = SkstackParser(A1)
    items = []
    for i in range(0, len(junk), 1000):
        items += parser.feed(junk[i : i + 1000])
        assert parser.buffered <= MAX_LINE
    items += parser.feed(b"\r\nOK\r\n")
    assert items == [Garbled(b"X" * MAX_LINE, "line longer than 4096 bytes"), Ok()]


def test_longest_line_is_accepted() -> None:
    text = "Z" * MAX_LINE
    assert parse(text.encode() + b"\r\n", A1) == [Unknown(text)]


def test_garbage_then_line_end_then_a_good_line() -> None:
    for junk in (b"\x00\xff\x10\x81", b"ERXUDP ", b"SKSENDTO 1 2 3 4 5 ", b"EPANDESC", b"\n"):
        items = lenient(junk + b"\r\nEVENT 25 " + MTR + b"\r\n", A1)
        assert items[-1] == Event(0x25, METER), junk


def test_strict_helper_raises_parse_error() -> None:
    with pytest.raises(SkstackParseError) as caught:
        parse(b"OK\r\nEVENT 2G " + MTR + b"\r\n", A1)
    assert caught.value.line == b"EVENT 2G " + MTR
    assert "EVENT number" in caught.value.what
    with pytest.raises(SkstackParseError, match="cut off"):
        parse(b"OK\r\nEVENT 25", A1)


def test_parse_error_message_is_truncated_and_masked() -> None:
    line = b"SKSETPWD C SECRET\x00" + b"x" * 200
    err = Garbled(line, "non-printable byte").error()
    assert err.line == line
    assert "SECRET" not in str(err)
    assert "(+138 bytes)" in str(err)
    assert "SECRET" not in repr(Garbled(line, "x"))


def test_dialect_can_change_between_feeds() -> None:
    parser = SkstackParser(A1)
    assert parser.feed(b"EINFO " + OUR + b" " + MAC.encode() + b" 21 8888 0001 0\r\n") == [
        Info(OURS, MAC, 0x21, 0x8888, 1, 0)
    ]
    parser.dialect = C2
    assert parser.feed(b"EVENT 25 " + MTR + b" 0\r\n") == [Event(0x25, METER, 0)]


def test_reset_forgets_a_partial_line() -> None:
    parser = SkstackParser(A1)
    assert parser.feed(b"EVENT 25 FE80") == []
    parser.reset()
    assert parser.buffered == 0
    assert parser.feed(b"OK\r\n") == [Ok()]
