"""The emulated dongle's vocabulary: models, faults, limits and argument parsing.

Separate from the state machine (`core.py`) and the command handlers (`commands.py`)
because both use them and neither should import the other just for a constant; nothing
here holds state or does I/O.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import Enum

ECHONET_UDP_PORT = 0x0E1A
PANA_UDP_PORT = 0x02CC
MULTICAST_ALL_NODES = ipaddress.IPv6Address("ff02::1")
MAX_LINE = 1024  # longest command line the dongle buffers before giving up (FAIL ER09)
MAX_PAYLOAD = 1232  # the IPv6 minimum MTU less headers: SKSENDTO refuses longer data
CHANNELS = range(33, 61)  # 920 MHz band logical channels 33..60 (0x21..0x3C)


class DongleModel(Enum):
    BP35A1 = "BP35A1"  # also RL7023 Stick-D/IPS: no side fields
    BP35C2 = "BP35C2"  # also BP35C0, RL7023 Stick-D/DSS, RATOC RS-WSUHA-P: side fields

    @property
    def has_side(self) -> bool:
        return self is DongleModel.BP35C2


VERSIONS = {DongleModel.BP35A1: "1.2.10", DongleModel.BP35C2: "1.5.2"}
APP_VERSIONS = {DongleModel.BP35A1: "rev26e", DongleModel.BP35C2: "rev1.0.3"}


@dataclass
class DongleFaults:
    """Misbehaviour on request; change the fields while the emulator runs."""

    drop_rate: float = 0.0  # probability a radio frame (either way) is lost
    delay_s: float = 0.0  # extra real seconds before the meter's answers arrive
    hidden_from_scan: bool = False  # scans find nothing
    scan_misses: int = 0  # the next N scans find nothing
    garble_next: int = 0  # the next N output lines get random bytes (CRLF kept)
    silent: bool = False  # hung firmware: reads nothing, writes nothing (see the package doc)
    join_failures: int = 0  # the next N SKJOINs end in EVENT 24 whatever the credentials


class State(Enum):
    IDLE = "idle"
    JOINING = "joining"
    JOINED = "joined"
    REAUTH = "reauthenticating"


class Fail(Exception):
    """A command's `FAIL ERxx` answer; raised by handlers, caught by the core's dispatcher,
    never seen outside the package."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


_REDACT = (
    (re.compile(rb"^(SKSETRBID )\S+"), rb"\1********"),
    (re.compile(rb"^(SKSETPWD \S+ )\S+"), rb"\1********"),
    (re.compile(rb"^(  PairID:)\S+"), rb"\1********"),  # the end of the B-route ID
)


def redact(line: bytes) -> str:
    """A line as it may be logged: the B-route ID and password starred out."""
    for pattern, replacement in _REDACT:
        line = pattern.sub(replacement, line)
    return line.decode("latin-1")


def long_ip(address: ipaddress.IPv6Address) -> str:
    return address.exploded.upper()


def link_local(mac: int) -> ipaddress.IPv6Address:
    """fe80::/64 with the interface ID from a 64-bit MAC (universal/local bit flipped)."""
    return ipaddress.IPv6Address((0xFE80 << 112) | (mac ^ (0x02 << 56)))


def parse_hex(text: str, *, digits: int | None = None, max_digits: int | None = None) -> int:
    """Parse an upper- or lower-case hex argument; FAIL ER06 if it is not one."""
    if not text or not all(c in "0123456789abcdefABCDEF" for c in text):
        raise Fail("ER06")
    if digits is not None and len(text) != digits:
        raise Fail("ER06")
    if max_digits is not None and len(text) > max_digits:
        raise Fail("ER06")
    return int(text, 16)


def parse_ip(text: str) -> ipaddress.IPv6Address:
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        raise Fail("ER06") from None


def nargs(args: list[str], *counts: int) -> None:
    """FAIL ER05 unless the command got one of these numbers of arguments."""
    if len(args) not in counts:
        raise Fail("ER05")
