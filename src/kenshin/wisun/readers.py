"""One line of a dongle's output, already cut and known printable, read into an item.

`read_line` looks at the first word and hands the rest to that line's reader; the EPANDESC
block's indented lines are read by `pan_descriptor`, and an ERXUDP header (whose data the
parser reads by its length) by `udp_header`. Every reader checks each field's form for the
dialect and raises `Bad` with the reason, which the parser turns into a `Garbled` item in
the stream. Kept apart from `lines.py`, which decides where lines and counted payloads
begin and end and never looks inside a field: the two change for different reasons (a new
line format; a new way bytes arrive).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .items import (
    MAX_UDP_PAYLOAD,
    AppVersion,
    Dialect,
    Echo,
    Event,
    EventCode,
    Fail,
    Info,
    Item,
    LinkLocal,
    Ok,
    PanDescriptor,
    ReceivedUdp,
    Unknown,
    Version,
)

_PAN_KEYS = ("Channel", "Channel Page", "Pan ID", "Addr", "LQI")
MAX_BLOCK_LINES = 16


class Bad(Exception):
    """Internal: the line being read is malformed. Never leaves the parser (`lines.py`
    turns it into a `Garbled` item)."""

    def __init__(self, reason: str, line: bytes | None = None):
        self.reason = reason
        self.line = line


_HEX = re.compile(r"[0-9A-Fa-f]+")
_IP6 = re.compile(r"[0-9A-Fa-f]{4}(?::[0-9A-Fa-f]{4}){7}")
_FAIL = re.compile(r"ER([0-9]{2})")
_PRINTABLE = bytes(range(0x20, 0x7F))


def _hex(token: str, digits: int, what: str) -> int:
    if len(token) != digits or not _HEX.fullmatch(token):
        raise Bad(f"{what} is not {digits} hex digits: {token!r}")
    return int(token, 16)


def _hex_text(token: str, digits: int, what: str) -> str:
    _hex(token, digits, what)
    return token


def _ip6(token: str, what: str) -> str:
    if not _IP6.fullmatch(token):
        raise Bad(f"{what} is not a long-form IPv6 address: {token!r}")
    return token


def _fields(rest: str, what: str) -> list[str]:
    fields = rest.rstrip(" ").split(" ")
    if "" in fields:
        raise Bad(f"{what}: empty field (missing, or two spaces)")
    return fields


def non_printable(raw: bytes) -> str | None:
    bad = raw.translate(None, _PRINTABLE)
    if not bad:
        return None
    return f"non-printable byte 0x{bad[0]:02X} at column {raw.index(bad[0])}"


def read_line(text: str, dialect: Dialect, hex_data: bool | None) -> Item:
    """One printable line (without its line end) as an item; `Bad` if malformed."""
    head, _, rest = text.partition(" ")
    reader = _READERS.get(head)
    if reader is not None:
        return reader(rest, dialect, hex_data)
    if text.startswith(("SK", "WOPT", "ROPT")):
        return Echo(text)
    if _IP6.fullmatch(text):
        return LinkLocal(text)
    return Unknown(text)


def _ok(rest: str, dialect: Dialect, hex_data: bool | None) -> Item:
    detail = rest.strip(" ")
    return Ok(detail or None)


def _fail(rest: str, dialect: Dialect, hex_data: bool | None) -> Item:
    fields = _fields(rest, "FAIL")
    match = _FAIL.fullmatch(fields[0])
    if len(fields) != 1 or not match:
        raise Bad(f"FAIL is not followed by one ERxx code: {rest!r}")
    return Fail(int(match.group(1)))


def _event(rest: str, dialect: Dialect, hex_data: bool | None) -> Item:
    fields = _fields(rest, "EVENT")
    code = _hex(fields[0], 2, "EVENT number")
    if code == EventCode.WAKEUP and len(fields) == 1:
        return Event(code, "")
    side = param = None
    if dialect.has_side:  # number, address, side [, param]
        if len(fields) not in (3, 4):
            raise Bad(f"EVENT has {len(fields)} fields; {dialect.value} sends 3 or 4")
        side = _hex(fields[2], 1, "EVENT side")
    elif len(fields) not in (2, 3):  # number, address [, param]
        raise Bad(f"EVENT has {len(fields)} fields; {dialect.value} sends 2 or 3")
    if len(fields) == (4 if dialect.has_side else 3):
        param = _hex(fields[-1], 2, "EVENT parameter")
    return Event(code, _ip6(fields[1], "EVENT address"), side, param)


def _epandesc(rest: str, dialect: Dialect, hex_data: bool | None) -> Item:
    raise Bad("EPANDESC followed by text on its line")


def udp_header(rest: str, dialect: Dialect) -> tuple[tuple, int]:
    """The fields of an ERXUDP up to its length (without data), and the length."""
    fields = rest.split(" ")
    if "" in fields:
        raise Bad("ERXUDP: empty field (missing, or two spaces)")
    side_dialect = dialect.has_side
    counts = (8, 9) if side_dialect else (7,)
    if len(fields) not in counts:
        sends = " or ".join(map(str, counts))
        raise Bad(f"ERXUDP header has {len(fields)} fields; {dialect.value} sends {sends}")
    lqi = side = None
    if side_dialect and len(fields) == 9:  # with LQI: register SA2 is 1
        lqi = _hex(fields[5], 2, "ERXUDP LQI")
        sec, side_token, length_token = fields[6], fields[7], fields[8]
        side = _hex(side_token, 1, "ERXUDP side")
    elif side_dialect:  # without LQI: register SA2 is 0
        sec, side_token, length_token = fields[5], fields[6], fields[7]
        side = _hex(side_token, 1, "ERXUDP side")
    else:
        sec, length_token = fields[5], fields[6]
    if sec not in ("0", "1"):
        raise Bad(f"ERXUDP secured flag is not 0 or 1: {sec!r}")
    length = _hex(length_token, 4, "ERXUDP length")
    if length > MAX_UDP_PAYLOAD:
        raise Bad(f"ERXUDP length {length} exceeds {MAX_UDP_PAYLOAD}")
    header = (
        _ip6(fields[0], "ERXUDP source"),
        _ip6(fields[1], "ERXUDP destination"),
        _hex(fields[2], 4, "ERXUDP source port"),
        _hex(fields[3], 4, "ERXUDP destination port"),
        _hex_text(fields[4], 16, "ERXUDP source MAC"),
        lqi,
        sec == "1",
        side,
    )
    return header, length


def _erxudp(rest: str, dialect: Dialect, hex_data: bool | None) -> Item:
    """An ERXUDP read as one line: hex data, or a binary one that went wrong."""
    count = 7
    if dialect.has_side:  # 9 fields with LQI (2 hex digits, the sixth), 8 without
        sixth = rest.split(" ", 6)[5:6]
        count = 8 if sixth and len(sixth[0]) == 1 else 9
    parts = rest.split(" ", count)
    header, length = udp_header(" ".join(parts[:count]), dialect)
    data = parts[count] if len(parts) > count else ""
    if hex_data is False:
        raise Bad(f"ERXUDP payload of {length} bytes is not followed by CR LF")
    if len(data) != 2 * length or (data and not _HEX.fullmatch(data)):
        also = f" nor {length} raw bytes then CR LF" if hex_data is None else ""
        raise Bad(f"ERXUDP data is not {2 * length} hex digits{also}")
    return ReceivedUdp(*header, bytes.fromhex(data))


def _ever(rest: str, dialect: Dialect, hex_data: bool | None) -> Item:
    text = rest.strip(" ")
    if not text:
        raise Bad("EVER without a version")
    return Version(text)


def _eappver(rest: str, dialect: Dialect, hex_data: bool | None) -> Item:
    text = rest.strip(" ")
    if not text:
        raise Bad("EAPPVER without a version")
    return AppVersion(text)


def _einfo(rest: str, dialect: Dialect, hex_data: bool | None) -> Item:
    # Both forms in either dialect: SKINFO is how a driver tells the dialects apart.
    fields = _fields(rest, "EINFO")
    if len(fields) not in (5, 6):
        raise Bad(f"EINFO has {len(fields)} fields, not 5 (BP35A1) or 6 (BP35C2)")
    if len(fields) == 6:
        addr16 = _hex(fields[4], 4, "EINFO short address")
        side = _hex(fields[5], 1, "EINFO side")
    elif len(fields[4]) == 4:
        addr16, side = _hex(fields[4], 4, "EINFO short address"), None  # BP35A1: FFFE
    else:
        addr16, side = None, _hex(fields[4], 1, "EINFO side")
    return Info(
        _ip6(fields[0], "EINFO address"),
        _hex_text(fields[1], 16, "EINFO MAC"),
        _hex(fields[2], 2, "EINFO channel"),
        _hex(fields[3], 4, "EINFO PAN ID"),
        addr16,
        side,
    )


def pan_descriptor(lines: list[bytes], dialect: Dialect) -> PanDescriptor:
    """The indented lines of one EPANDESC block as a `PanDescriptor`; `Bad` if malformed."""
    if len(lines) > MAX_BLOCK_LINES:
        raise Bad(f"EPANDESC block longer than {MAX_BLOCK_LINES} lines")
    values: dict[str, tuple[str, bytes]] = {}
    for raw in lines:
        problem = non_printable(raw)
        if problem:
            raise Bad(f"EPANDESC: {problem}", raw)
        key, sep, value = raw.decode("ascii").partition(":")
        key = key.strip(" ")
        if not sep:
            raise Bad("EPANDESC line is not Key:Value", raw)
        if key in values:
            raise Bad(f"EPANDESC repeats {key}", raw)
        values[key] = (value.strip(" "), raw)
    wanted = (*_PAN_KEYS, "Side") if dialect.has_side else _PAN_KEYS
    for key in wanted:
        if key not in values:
            raise Bad(f"EPANDESC block lacks {key}")
    if "Side" in values and not dialect.has_side:
        raise Bad(f"EPANDESC has a Side line; {dialect.value} sends none")

    def read(key: str, digits: int) -> int:
        value, raw = values[key]
        try:
            return _hex(value, digits, f"EPANDESC {key}")
        except Bad as bad:
            raise Bad(bad.reason, raw) from None

    mac, raw = values["Addr"]
    if len(mac) != 16 or not _HEX.fullmatch(mac):
        raise Bad(f"EPANDESC Addr is not 16 hex digits: {mac!r}", raw)
    pair_id = None
    if "PairID" in values:
        pair_id, raw = values["PairID"]
        # The last 8 characters of the B-route ID: hex in practice, but any printable
        # ID is the power company's to choose, so only the length is checked.
        if len(pair_id) != 8 or not pair_id.isprintable() or " " in pair_id:
            raise Bad(f"EPANDESC PairID is not 8 characters: {pair_id!r}", raw)
    return PanDescriptor(
        channel=read("Channel", 2),
        channel_page=read("Channel Page", 2),
        pan_id=read("Pan ID", 4),
        mac=mac,
        lqi=read("LQI", 2),
        side=read("Side", 1) if dialect.has_side else None,
        pair_id=pair_id,
    )


_READERS: dict[str, Callable[[str, Dialect, bool | None], Item]] = {
    "OK": _ok,
    "FAIL": _fail,
    "EVENT": _event,
    "EPANDESC": _epandesc,
    "ERXUDP": _erxudp,
    "EVER": _ever,
    "EAPPVER": _eappver,
    "EINFO": _einfo,
}
