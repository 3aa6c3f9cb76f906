"""SKSTACK IP command builders: exact bytes per dialect, argument checks, redaction."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kenshin.wisun import CommandFailed, Dialect, SkstackParser, commands
from kenshin.wisun.lines import Echo

A1 = Dialect.BP35A1
C2 = Dialect.BP35C2
METER = "FE80:0000:0000:0000:021D:1290:1234:5678"
MAC = "001D129012345678"
ROUTE_B_ID = "00112233445566778899AABBCCDDEEFF"
PASSWORD = "0123456789AB"
FRAME = bytes.fromhex("1081000105FF010288016201E700")


def test_simple_commands() -> None:
    assert commands.reset() == b"SKRESET\r\n"
    assert commands.version() == b"SKVER\r\n"
    assert commands.app_version() == b"SKAPPVER\r\n"
    assert commands.info() == b"SKINFO\r\n"
    assert commands.terminate() == b"SKTERM\r\n"
    assert commands.link_local(MAC) == b"SKLL64 001D129012345678\r\n"
    assert commands.link_local(MAC.lower()) == b"SKLL64 001D129012345678\r\n"
    assert commands.join(METER) == b"SKJOIN " + METER.encode() + b"\r\n"
    assert commands.join(METER.lower()) == b"SKJOIN " + METER.encode() + b"\r\n"


def test_registers() -> None:
    assert commands.set_register("S2", 0x21) == b"SKSREG S2 21\r\n"
    assert commands.set_register("S3", 0x8888) == b"SKSREG S3 8888\r\n"
    assert commands.set_register("S3", 0x12) == b"SKSREG S3 0012\r\n"
    assert commands.set_register("SFE", 0) == b"SKSREG SFE 0\r\n"
    assert commands.set_register("SA2", 1) == b"SKSREG SA2 1\r\n"
    assert commands.set_register("S16", 0x1C20) == b"SKSREG S16 1C20\r\n"
    assert commands.set_register("S2", "21") == b"SKSREG S2 21\r\n"  # as given


def test_credentials() -> None:
    assert commands.set_route_b_id(ROUTE_B_ID) == b"SKSETRBID " + ROUTE_B_ID.encode() + b"\r\n"
    assert commands.set_password(PASSWORD) == b"SKSETPWD C 0123456789AB\r\n"
    assert commands.set_password("x" * 32) == b"SKSETPWD 20 " + b"x" * 32 + b"\r\n"
    assert commands.set_password("p") == b"SKSETPWD 1 p\r\n"


def test_scan_per_dialect() -> None:
    assert commands.scan(6, A1) == b"SKSCAN 2 FFFFFFFF 6\r\n"
    assert commands.scan(6, C2) == b"SKSCAN 2 FFFFFFFF 6 0\r\n"
    assert commands.scan(14, A1) == b"SKSCAN 2 FFFFFFFF E\r\n"  # numbers are hex
    assert commands.scan(3, C2, side=1) == b"SKSCAN 2 FFFFFFFF 3 1\r\n"
    assert commands.scan(4, A1, channel_mask=0x3FFF0) == b"SKSCAN 2 0003FFF0 4\r\n"


def test_send_to_per_dialect() -> None:
    # The payload is raw and nothing follows it: no CR LF (the dongle counts the bytes).
    a1 = commands.send_to(1, METER, 0x0E1A, FRAME, A1)
    assert a1 == b"SKSENDTO 1 " + METER.encode() + b" 0E1A 1 000E " + FRAME
    c2 = commands.send_to(1, METER, 3610, FRAME, C2)
    assert c2 == b"SKSENDTO 1 " + METER.encode() + b" 0E1A 1 0 000E " + FRAME
    plain = commands.send_to(2, METER, 3610, b"\r\n", C2, secured=False, side=1)
    assert plain == b"SKSENDTO 2 " + METER.encode() + b" 0E1A 0 1 0002 \r\n"
    biggest = commands.send_to(6, METER, 3610, bytes(1232), A1)
    assert biggest.endswith(b" 04D0 " + bytes(1232))


def test_send_to_echo_reads_back_as_one_echo() -> None:
    # What the dongle echoes (docs/skstack.md): the text up to the length and its space.
    for dialect in (A1, C2):
        wire = commands.send_to(1, METER, 3610, FRAME, dialect)
        echo = wire[: -len(FRAME)]
        parser = SkstackParser(dialect)
        assert parser.feed(echo + b"OK\r\n")[0] == Echo(echo.decode())


def test_options() -> None:
    assert commands.read_option() == b"ROPT\r\n"
    assert commands.write_option(1) == b"WOPT 01\r\n"
    assert commands.write_option(0) == b"WOPT 00\r\n"
    # The BP35A1 reference's form: product-configuration commands end in CR alone.
    assert commands.read_option(cr_only=True) == b"ROPT\r"
    assert commands.write_option(1, cr_only=True) == b"WOPT 01\r"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: commands.set_register("s2", 1), "register"),
        (lambda: commands.set_register("X2", 1), "register"),
        (lambda: commands.set_register("S123", 1), "register"),
        (lambda: commands.set_register("S2", 0x100), "value of S2"),
        (lambda: commands.set_register("S2", 0x20), "value of S2"),
        (lambda: commands.set_register("SFE", 2), "value of SFE"),
        (lambda: commands.set_register("S3", -1), "value of S3"),
        (lambda: commands.set_register("S2", "2 1"), "printable"),
        (lambda: commands.set_register("S2", ""), "printable"),
        (lambda: commands.set_route_b_id(ROUTE_B_ID[:-1]), "32"),
        (lambda: commands.set_route_b_id(ROUTE_B_ID + "0"), "32"),
        (lambda: commands.set_route_b_id(" " * 32), "32"),
        (lambda: commands.set_route_b_id("é" * 32), "32"),
        (lambda: commands.set_password(""), "1..32"),
        (lambda: commands.set_password("x" * 33), "1..32"),
        (lambda: commands.set_password("pass word"), "printable"),
        (lambda: commands.set_password("pass\r\nSKTERM"), "printable"),
        (lambda: commands.scan(15, A1), "duration"),
        (lambda: commands.scan(-1, C2), "duration"),
        (lambda: commands.scan(6, A1, side=1), "side"),
        (lambda: commands.scan(6, C2, side=2), "side"),
        (lambda: commands.scan(6, A1, mode=4), "mode"),
        (lambda: commands.scan(6, A1, channel_mask=1 << 32), "channel mask"),
        (lambda: commands.link_local("001D1290"), "MAC"),
        (lambda: commands.link_local("001D12901234567G"), "MAC"),
        (lambda: commands.join("FE80::1"), "IPv6"),
        (lambda: commands.join(METER + " "), "IPv6"),
        (lambda: commands.send_to(0, METER, 3610, FRAME, A1), "handle"),
        (lambda: commands.send_to(7, METER, 3610, FRAME, A1), "handle"),
        (lambda: commands.send_to(1, METER, 0x10000, FRAME, A1), "port"),
        (lambda: commands.send_to(1, METER, 3610, b"", A1), "1..1232"),
        (lambda: commands.send_to(1, METER, 3610, bytes(1233), C2), "1..1232"),
        (lambda: commands.send_to(1, METER, 3610, "text", A1), "bytes"),  # type: ignore[arg-type]
        (lambda: commands.send_to(1, METER, 3610, FRAME, A1, side=1), "side"),
        (lambda: commands.send_to(1, METER, 3610, FRAME, C2, side=2), "side"),
        (lambda: commands.send_to(True, METER, 3610, FRAME, C2), "handle"),
        (lambda: commands.write_option(256), "option"),
    ],
)
def test_invalid_arguments(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


# -- redaction ---------------------------------------------------------------------------


def test_redact_masks_credentials() -> None:
    assert commands.redact(commands.set_route_b_id(ROUTE_B_ID)) == "SKSETRBID ********"
    assert commands.redact(commands.set_password(PASSWORD)) == "SKSETPWD C ********"
    for text in (commands.redact(commands.set_route_b_id(ROUTE_B_ID)), str(CommandFailed(5))):
        assert ROUTE_B_ID not in text


def test_redact_other_commands() -> None:
    assert commands.redact(commands.scan(6, C2)) == "SKSCAN 2 FFFFFFFF 6 0"
    assert commands.redact(commands.read_option(cr_only=True)) == "ROPT"
    assert commands.redact(b"SKVER\x00\r\n") == "SKVER\\x00"
    shown = commands.redact(commands.send_to(1, METER, 3610, b"\x10\x81\r\n", C2))
    assert shown == f"SKSENDTO 1 {METER} 0E1A 1 0 0004 <4 bytes: 10810D0A>"
    shown = commands.redact(commands.send_to(1, METER, 3610, b"\x10 \x81", A1))
    assert shown == f"SKSENDTO 1 {METER} 0E1A 1 0003 <3 bytes: 102081>"


def test_command_failed_masks_the_command() -> None:
    err = CommandFailed(10, commands.set_password(PASSWORD))
    assert PASSWORD not in str(err)
    assert err.command == "SKSETPWD C ********"


SECRET_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)


@given(st.text(SECRET_CHARS, min_size=32, max_size=32))
def test_redacted_route_b_id_never_shows(route_b_id: str) -> None:
    shown = commands.redact(commands.set_route_b_id(route_b_id))
    assert shown == "SKSETRBID ********"
    assert route_b_id not in shown
    assert route_b_id not in repr(Echo(commands.set_route_b_id(route_b_id).decode().strip()))


@given(st.text(SECRET_CHARS, min_size=1, max_size=32))
def test_redacted_password_never_shows(password: str) -> None:
    shown = commands.redact(commands.set_password(password))
    expected = f"SKSETPWD {len(password):X} ********"
    assert shown == expected
    assume(password not in expected)  # "S", "*", "SKSET", ...: in the mask by coincidence
    assert password not in shown
    assert str(CommandFailed(5, commands.set_password(password))) == (
        f"ER05 bad argument (answer to {expected})"
    )
