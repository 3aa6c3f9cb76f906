"""SKSTACK IP commands as the bytes the host writes to the dongle. No I/O.

Each builder checks its arguments and raises `ValueError` naming the bad one, so nothing
malformed reaches the wire (where it would cost a round trip and a `FAIL ER05`/`ER06`).
Numbers are upper-case hex, addresses the long IPv6 form, lines end in CR LF
(docs/skstack.md). Two exceptions to the line end:

- SKSENDTO ends with its raw payload: no CR LF follows it (the dongle counts the bytes).
- ROPT/WOPT: the BP35A1 reference has these product-configuration commands end in CR alone;
  docs/skstack.md says CR LF (the emulator takes either). `cr_only=True` gives the
  reference's form, for real BP35A1 hardware.

Never log a command as bytes: `redact()` renders one with the B-route ID and password
masked, and the SKSENDTO payload as hex.
"""

from __future__ import annotations

import re

from .errors import _escape, _redact_text
from .lines import MAX_UDP_PAYLOAD, Dialect

CRLF = b"\r\n"

_IP6 = re.compile(r"[0-9A-Fa-f]{4}(?::[0-9A-Fa-f]{4}){7}")
_MAC = re.compile(r"[0-9A-Fa-f]{16}")
_REGISTER = re.compile(r"S[0-9A-F]{1,2}")
_VISIBLE = re.compile(r"[\x21-\x7e]+")  # printable ASCII without space
# Hex digits and range of the registers a B-route client sets: channel 33..60 (0x21..0x3C,
# ARIB STD-T108), PAN ID, and the flags (echo, B-route use, ...).
_REGISTERS = {
    "S2": (2, 0x21, 0x3C),
    "S02": (2, 0x21, 0x3C),
    "S3": (4, 0, 0xFFFF),
    "S03": (4, 0, 0xFFFF),
    "SFE": (1, 0, 1),
    "SA2": (1, 0, 1),
    "SFB": (1, 0, 1),
}


def _line(text: str) -> bytes:
    return text.encode("ascii") + CRLF


def _ip6(ip6: str) -> str:
    if not isinstance(ip6, str) or not _IP6.fullmatch(ip6):
        raise ValueError(f"not a long-form IPv6 address (8 groups of 4 hex digits): {ip6!r}")
    return ip6.upper()


def _int(value: int, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer {low}..{high}, got {value!r}")
    return value


def _side(side: int, dialect: Dialect) -> int:
    if dialect.has_side:
        return _int(side, "side", 0, 1)
    if side != 0:
        raise ValueError(f"{dialect.value} has no side field; side must be 0, got {side!r}")
    return 0


def reset() -> bytes:
    return _line("SKRESET")


def version() -> bytes:
    return _line("SKVER")


def app_version() -> bytes:
    return _line("SKAPPVER")


def info() -> bytes:
    return _line("SKINFO")


def terminate() -> bytes:
    return _line("SKTERM")


def set_register(reg: str, value: int | str) -> bytes:
    """`SKSREG <reg> <value>`, e.g. ("S2", 0x21) channel, ("S3", 0x8888) PAN ID, ("SFE", 0)
    echo off, ("SA2", 1) B-route use on dual-side firmware. An int is written in hex,
    padded to the register's width where known; a str is written as given."""
    if not isinstance(reg, str) or not _REGISTER.fullmatch(reg):
        raise ValueError(f"register must be S followed by 1-2 upper-case hex digits: {reg!r}")
    if isinstance(value, str):
        if not _VISIBLE.fullmatch(value) or len(value) > 64:
            raise ValueError(f"register value must be 1..64 printable characters: {value!r}")
        text = value
    else:
        digits, low, high = _REGISTERS.get(reg, (1, 0, 0xFFFFFFFF))
        text = f"{_int(value, f'value of {reg}', low, high):0{digits}X}"
    return _line(f"SKSREG {reg} {text}")


def set_route_b_id(route_b_id: str) -> bytes:
    """`SKSETRBID <id>`: the 32-character B-route ID from the power company. Secret."""
    if (
        not isinstance(route_b_id, str)
        or len(route_b_id) != 32
        or not _VISIBLE.fullmatch(route_b_id)
    ):
        raise ValueError("B-route ID must be 32 printable ASCII characters without spaces")
    return _line(f"SKSETRBID {route_b_id}")


def set_password(password: str) -> bytes:
    """`SKSETPWD <len hex> <password>` (12 characters in practice: `SKSETPWD C ...`). Secret."""
    if not isinstance(password, str) or not 1 <= len(password) <= 32:
        raise ValueError("B-route password must be 1..32 characters")
    if not _VISIBLE.fullmatch(password):
        raise ValueError("B-route password must be printable ASCII without spaces")
    return _line(f"SKSETPWD {len(password):X} {password}")


def scan(
    duration: int,
    dialect: Dialect,
    *,
    side: int = 0,
    mode: int = 2,
    channel_mask: int = 0xFFFFFFFF,
) -> bytes:
    """`SKSCAN <mode> <mask> <duration> [side]`. Mode 2 is the active scan with the pairing
    ID IE that B-route meters answer; duration 0..14, each step doubles the time per channel
    (6 ≈ 17 s over all channels)."""
    _int(duration, "scan duration", 0, 14)
    _int(mode, "scan mode", 0, 3)
    _int(channel_mask, "channel mask", 0, 0xFFFFFFFF)
    side = _side(side, dialect)
    text = f"SKSCAN {mode:X} {channel_mask:08X} {duration:X}"
    return _line(f"{text} {side}" if dialect.has_side else text)


def link_local(mac: str) -> bytes:
    """`SKLL64 <mac>`: the dongle answers the meter's link-local IPv6 address."""
    if not isinstance(mac, str) or not _MAC.fullmatch(mac):
        raise ValueError(f"MAC address must be 16 hex digits: {mac!r}")
    return _line(f"SKLL64 {mac.upper()}")


def join(ip6: str) -> bytes:
    """`SKJOIN <ip6>`: PANA authentication; EVENT 25 (ok) or 24 (failed) follows."""
    return _line(f"SKJOIN {_ip6(ip6)}")


def send_to(
    handle: int,
    ip6: str,
    port: int,
    data: bytes,
    dialect: Dialect,
    secured: bool = True,
    side: int = 0,
) -> bytes:
    """`SKSENDTO <handle> <ip6> <port> <sec> [side] <len> ` then the raw payload, nothing
    after it. Handle 1..6 (the dongle's UDP handles; 1 is port 3610 by default)."""
    _int(handle, "UDP handle", 1, 6)
    _int(port, "port", 0, 0xFFFF)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"payload must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not 1 <= len(data) <= MAX_UDP_PAYLOAD:
        raise ValueError(f"payload must be 1..{MAX_UDP_PAYLOAD} bytes, got {len(data)}")
    fields = [f"SKSENDTO {handle:X} {_ip6(ip6)} {port:04X} {1 if secured else 0}"]
    side = _side(side, dialect)
    if dialect.has_side:
        fields.append(str(side))
    fields.append(f"{len(data):04X} ")
    return " ".join(fields).encode("ascii") + data


def read_option(*, cr_only: bool = False) -> bytes:
    """`ROPT`: answers `OK 01` when ERXUDP data comes as hex. FAIL ER04 on old firmware."""
    return b"ROPT" + (b"\r" if cr_only else CRLF)


def write_option(value: int, *, cr_only: bool = False) -> bytes:
    """`WOPT <value>` (01: ERXUDP data as hex). Writes flash, which wears: read first."""
    _int(value, "option value", 0, 0xFF)
    return f"WOPT {value:02X}".encode("ascii") + (b"\r" if cr_only else CRLF)


def redact(command: bytes) -> str:
    """A command as it may be logged: B-route ID and password masked, line end dropped,
    control bytes escaped, an SKSENDTO payload shown as `<n bytes: hex>`."""
    command = bytes(command)
    if command.startswith(b"SKSENDTO "):
        shown = _sendto(command)
        if shown is not None:
            return shown
    text = command.decode("latin-1")
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\r"):
        text = text[:-1]
    return _escape(_redact_text(text))


def _sendto(command: bytes) -> str | None:
    """Header text and payload of an SKSENDTO, if its length field matches the payload."""
    for spaces in (6, 7):  # BP35A1, BP35C2
        parts = command.split(b" ", spaces)
        if len(parts) <= spaces:
            return None
        length = parts[spaces - 1]
        payload = parts[spaces]
        if re.fullmatch(rb"[0-9A-Fa-f]{4}", length) and int(length, 16) == len(payload):
            header = b" ".join(parts[:spaces]).decode("latin-1")
            return f"{_escape(header)} <{len(payload)} bytes: {payload.hex().upper()}>"
    return None
