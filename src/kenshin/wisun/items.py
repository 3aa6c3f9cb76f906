"""What a dongle's output lines mean, as values: the dialects, the EVENT numbers and one
dataclass per kind of line (`Item`). No parsing here: `lines.py` cuts the bytes and
`readers.py` reads each line into one of these. Kept apart so that the driver, the
session and the tests can name what comes out without the parser's machinery, and so the
vocabulary is one short file to read beside docs/skstack.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TypeAlias

from .errors import CommandFailed, SkstackParseError, _redact_text

MAX_LINE = 4096  # bytes kept before a line end
MAX_UDP_PAYLOAD = 1232  # 1280 (IPv6 minimum MTU) - 40 (IPv6) - 8 (UDP); SKSENDTO's limit too


class Dialect(Enum):
    """The two SKSTACK IP families (see docs/skstack.md)."""

    BP35A1 = "BP35A1"  # also RL7023 Stick-D/IPS: no side field anywhere
    BP35C2 = "BP35C2"  # also BP35C0, RL7023 Stick-D/DSS, RATOC RS-WSUHA-P: side, LQI

    @property
    def has_side(self) -> bool:
        return self is Dialect.BP35C2


class EventCode(IntEnum):
    """`EVENT` numbers. `Event.code` is a plain int: compare it with these."""

    NS_RECEIVED = 0x01
    NA_RECEIVED = 0x02
    ECHO_REQUEST_RECEIVED = 0x05
    ED_SCAN_DONE = 0x1F
    BEACON_RECEIVED = 0x20
    UDP_SENT = 0x21  # param: 00 sent, 01 failed, 02 neighbour solicitation first
    SCAN_DONE = 0x22
    PANA_FAILED = 0x24
    PANA_CONNECTED = 0x25
    SESSION_END_REQUESTED = 0x26  # the meter asked to end the session
    SESSION_ENDED = 0x27
    SESSION_END_TIMEOUT = 0x28  # SKTERM got no answer (docs/skstack.md: no session)
    SESSION_EXPIRED = 0x29  # PANA lifetime; the dongle re-authenticates by itself
    TX_LIMIT_REACHED = 0x32  # ARIB STD-T108: 360 s of transmission per hour
    TX_LIMIT_RELEASED = 0x33
    WAKEUP = 0xC0  # carries no address


# -- items -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Echo:
    """The dongle repeating a command line (register SFE=1). Shown with secrets masked."""

    text: str

    def __repr__(self) -> str:
        return f"Echo(text={_redact_text(self.text)!r})"


@dataclass(frozen=True, slots=True)
class Ok:
    """`OK`, or `OK <detail>` (ROPT answers `OK 01`)."""

    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    """`FAIL ERxx`: the command was refused."""

    code: int

    def error(self, command: bytes | str | None = None) -> CommandFailed:
        return CommandFailed(self.code, command)


@dataclass(frozen=True, slots=True)
class Event:
    """`EVENT <code> <address> [side] [param]` (side on BP35C2 only)."""

    code: int
    address: str
    side: int | None = None
    param: int | None = None


@dataclass(frozen=True, slots=True)
class PanDescriptor:
    """One `EPANDESC` block: a PAN found by an active scan."""

    channel: int
    channel_page: int
    pan_id: int
    mac: str  # 16 hex digits
    lqi: int
    side: int | None = None
    pair_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReceivedUdp:
    """`ERXUDP`: a datagram for us. `side` on BP35C2 only; `lqi` too, and only when its
    register SA2 is 1."""

    source: str
    destination: str
    source_port: int
    dest_port: int
    source_mac: str
    lqi: int | None
    secured: bool
    side: int | None
    data: bytes


@dataclass(frozen=True, slots=True)
class Version:
    """`EVER x.y.z`, the SKSTACK IP version."""

    text: str


@dataclass(frozen=True, slots=True)
class AppVersion:
    """`EAPPVER ...`, the application firmware version."""

    text: str


@dataclass(frozen=True, slots=True)
class Info:
    """`EINFO`. The fifth field is FFFE on the BP35A1 (no sides: `side` None) and the side
    (0 or 1) on the BP35C series, which is how a host tells them apart; a six-field form
    (short address, then side) is accepted too."""

    ip6: str
    mac: str
    channel: int
    pan_id: int
    addr16: int | None
    side: int | None = None


@dataclass(frozen=True, slots=True)
class LinkLocal:
    """A bare IPv6 address line: the answer to SKLL64."""

    ip6: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """Any other printable line: firmware prints things no reference lists."""

    text: str


@dataclass(frozen=True, slots=True, repr=False)
class Garbled:
    """A line that could not be read: the bytes (no line end) and why."""

    line: bytes
    reason: str

    def error(self) -> SkstackParseError:
        return SkstackParseError(self.reason, self.line)

    def __repr__(self) -> str:
        shown = _redact_text(self.line.decode("latin-1"))
        line = shown.encode("latin-1") if shown != self.line.decode("latin-1") else self.line
        return f"Garbled(line={line!r}, reason={self.reason!r})"


Item: TypeAlias = (
    Echo
    | Ok
    | Fail
    | Event
    | PanDescriptor
    | ReceivedUdp
    | Version
    | AppVersion
    | Info
    | LinkLocal
    | Unknown
    | Garbled
)
