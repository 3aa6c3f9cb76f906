"""What an SKSTACK IP dongle prints: bytes in, typed items out. No I/O.

`SkstackParser.feed()` takes whatever the serial port delivered (one byte or a kilobyte) and
returns the items completed by it, in order. docs/skstack.md is the contract for the line
formats of both dialects; the choices below are about what the contract leaves open.

Lines. A line ends at CR LF. A lone CR also ends one (BP35A1's product-configuration
commands ROPT/WOPT answer `OK 01` with CR alone, per the vendor reference), and an LF right
after a CR belongs to that CR even when it arrives in the next chunk. Empty lines are skipped
(some firmware prints an extra CR LF after multi-line answers). A line must be printable
ASCII; at most 4096 bytes are kept before a line end, so memory stays bounded.

Counted payloads. ERXUDP data is either 2×len hex digits (WOPT 01) or len raw bytes, which
may hold CR, LF, anything. With `hex_data=None` each ERXUDP decides: once its header (up to
`<len> `) is in, the parser looks at the byte len positions further on: a CR there means
binary, since in hex mode that byte is a digit of the data. The SKSENDTO echo ends at the
space after its length field (the payload is not echoed), so it is one Echo whether a CR LF
follows it or the next line starts right away. A BP35C2 prints ERXUDP with LQI when its
register SA2 is 1 and one field shorter without it when SA2 is 0; the sixth field tells
them apart (LQI is 2 hex digits, the secured flag in its place 1), and the length field
must then be 4 hex digits where that form puts it.

Blocks. `EPANDESC` and its indented `  Key:Value` lines become one `PanDescriptor`, emitted
when the first non-indented line arrives (that line is then read as usual) or at `flush()`.

Errors are items, never exceptions. A malformed line becomes `Garbled(line, reason)` in its
place in the stream and parsing goes on at the next line. Why: the parser sits under a
driver that must keep routing what follows a corrupted line (the OK it waits for, an EVENT
25), and an exception out of `feed()` would either lose the items already parsed from the
same chunk or make every caller catch and re-feed. Whoever wants an exception asks for it:
`Garbled.error()`, or `parse_strict()` for tests and captured logs. What a line costs:

- a bad line costs that line only (an EPANDESC block counts as one line);
- a line longer than 4096 bytes is reported once, with its first 4096 bytes, and skipped;
- a well-formed binary ERXUDP header claims the next len bytes (len ≤ 1232, the largest UDP
  payload of the IPv6 minimum MTU); if no CR follows them the parser rewinds and reads them
  as lines again, so nothing is lost, only delayed until len+1 bytes have arrived;
- the parser's decisions depend on the bytes only, never on how they were chunked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TypeAlias

from .errors import CommandFailed, SkstackParseError, _redact_text

MAX_LINE = 4096  # bytes kept before a line end
MAX_UDP_PAYLOAD = 1232  # 1280 (IPv6 minimum MTU) - 40 (IPv6) - 8 (UDP); SKSENDTO's limit too
_CR = 0x0D
_LF = 0x0A


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

# -- field readers -----------------------------------------------------------------------


class _Bad(Exception):
    """Internal: the line being read is malformed. Never leaves this module."""

    def __init__(self, reason: str, line: bytes | None = None):
        self.reason = reason
        self.line = line


_HEX = re.compile(r"[0-9A-Fa-f]+")
_IP6 = re.compile(r"[0-9A-Fa-f]{4}(?::[0-9A-Fa-f]{4}){7}")
_FAIL = re.compile(r"ER([0-9]{2})")
_PRINTABLE = bytes(range(0x20, 0x7F))


def _hex(token: str, digits: int, what: str) -> int:
    if len(token) != digits or not _HEX.fullmatch(token):
        raise _Bad(f"{what} is not {digits} hex digits: {token!r}")
    return int(token, 16)


def _hex_text(token: str, digits: int, what: str) -> str:
    _hex(token, digits, what)
    return token


def _ip6(token: str, what: str) -> str:
    if not _IP6.fullmatch(token):
        raise _Bad(f"{what} is not a long-form IPv6 address: {token!r}")
    return token


def _fields(rest: str, what: str) -> list[str]:
    fields = rest.rstrip(" ").split(" ")
    if "" in fields:
        raise _Bad(f"{what}: empty field (missing, or two spaces)")
    return fields


def _non_printable(raw: bytes) -> str | None:
    bad = raw.translate(None, _PRINTABLE)
    if not bad:
        return None
    return f"non-printable byte 0x{bad[0]:02X} at column {raw.index(bad[0])}"


# -- the parser --------------------------------------------------------------------------

_ERXUDP = b"ERXUDP "
_SKSENDTO = b"SKSENDTO "
_PAN_KEYS = ("Channel", "Channel Page", "Pan ID", "Addr", "LQI")
_MAX_BLOCK_LINES = 16
# A BP35C2 ERXUDP's sixth field (LQI or secured flag) ends within this many bytes:
# "ERXUDP " + 2 addresses of 39 + 2 ports of 4 + a MAC of 16 + 2, with their spaces is 117.
_C2_PEEK = 128


class SkstackParser:
    """Incremental parser of a dongle's output. See the module docstring for the rules.

    `hex_data`: True if ERXUDP data is hex (WOPT 01), False if raw binary, None to tell per
    line. `dialect` may be changed between feeds (after probing with SKVER/SKINFO)."""

    def __init__(self, dialect: Dialect, *, hex_data: bool | None = None):
        self.dialect = dialect
        self.hex_data = hex_data
        self._buf = bytearray()
        self.reset()

    def reset(self) -> None:
        """Forget everything buffered (the port was reopened, the dongle reset)."""
        self._buf.clear()
        self._pos = 0  # start of the current line in _buf
        self._scan = 0  # no CR in _buf[_pos:_scan]
        self._skip_lf = False  # the last line ended at a CR: an LF next is part of it
        self._discard = False  # inside an over-long line, already reported
        self._plain = False  # the current line is read up to its CR, whatever it starts with
        self._spaces = 0  # spaces counted in the current line's header ...
        self._space_scan = 0  # ... up to here
        self._udp: tuple[tuple, int, int] | None = None  # ERXUDP header, data start, length
        self._block: list[bytes] | None = None  # the indented lines of an open EPANDESC

    @property
    def pending_payload(self) -> int:
        """Raw ERXUDP payload bytes (and its CR) still awaited; 0 when reading lines."""
        if self._udp is None:
            return 0
        _, start, length = self._udp
        return max(0, start + length + 1 - len(self._buf))

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished line (at most about MAX_LINE between feeds)."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> list[Item]:
        """Add bytes; return the items they completed, in order. Never raises on content."""
        out: list[Item] = []
        if not data:
            return out
        self._buf += data
        while self._step(out):
            pass
        self._compact()
        return out

    def flush(self) -> list[Item]:
        """End of input: finish an open EPANDESC block, read any claimed ERXUDP payload as
        lines, report a line cut off without its end as Garbled; then start afresh."""
        out: list[Item] = []
        while True:
            while self._step(out):
                pass
            if self._udp is None:
                break
            self._udp = None  # no CR will come after the claimed payload: read it as lines
            self._plain = True
        if self._skip_lf and self._pos < len(self._buf) and self._buf[self._pos] == _LF:
            self._pos += 1
        rest = bytes(self._buf[self._pos :])
        if rest and not self._discard:
            self._emit(Garbled(rest[:MAX_LINE], "line cut off by the end of input"), out)
        self._close_block(out)
        self.reset()
        return out

    # -- scanning ------------------------------------------------------------------------

    def _compact(self) -> None:
        pos = self._pos
        if pos:
            del self._buf[:pos]
            self._pos = 0
            self._scan -= pos
            self._space_scan = max(0, self._space_scan - pos)
            if self._udp is not None:
                header, start, length = self._udp
                self._udp = (header, start - pos, length)

    def _end_line(self, nxt: int) -> None:
        """The current line ends just before `nxt`; the next one starts there."""
        self._skip_lf = self._buf[nxt - 1] == _CR
        self._pos = self._scan = self._space_scan = nxt
        self._plain = False
        self._spaces = 0

    def _step(self, out: list[Item]) -> bool:
        """Make progress on the buffered bytes; False when more input is needed."""
        buf = self._buf
        pos = self._pos
        end = len(buf)
        if pos >= end:
            return False
        if self._skip_lf:
            self._skip_lf = False
            if buf[pos] == _LF:
                pos += 1
                self._pos = self._scan = self._space_scan = pos
                if pos >= end:
                    return False
        if self._discard:
            cr = buf.find(b"\r", pos)
            if cr < 0:
                # Keep nothing of a line already reported.
                self._pos = self._scan = self._space_scan = end
                return False
            self._discard = False
            self._end_line(cr + 1)
            return True
        if self._udp is not None:
            return self._udp_payload(out)

        limit = min(end, pos + MAX_LINE + 1)
        cr = buf.find(b"\r", self._scan, limit)
        if not self._plain:
            spaces = self._counted_header(pos, end)
            if spaces is None and cr < 0:
                self._scan = limit
                return False  # too short to tell whether a counted header starts here
            if spaces:
                head_end = self._header_end(pos, spaces, cr if cr >= 0 else limit)
                if head_end >= 0:
                    return self._counted(pos, head_end, out)
                if cr < 0 and limit == end:
                    self._scan = limit
                    return False  # the header is still arriving
            self._plain = True
        if cr < 0:
            if limit == end:
                self._scan = limit
                return False
            # MAX_LINE + 1 bytes and no CR: report the line once, skip the rest of it.
            too_long = Garbled(bytes(buf[pos : pos + MAX_LINE]), "line longer than 4096 bytes")
            self._emit(too_long, out)
            self._discard = True
            self._pos = self._scan = self._space_scan = pos + MAX_LINE
            self._plain = False
            self._spaces = 0
            return True
        line = bytes(buf[pos:cr])
        self._end_line(cr + 1)
        self._line(line, out)
        return True

    def _counted_header(self, pos: int, end: int) -> int | None:
        """How many spaces end the header of a line with a counted part starting at `pos`:
        0 if it is not such a line, None if too few bytes are in to tell."""
        dialect_c = self.dialect.has_side
        for prefix, spaces in (
            (_ERXUDP, 10 if dialect_c else 8),
            (_SKSENDTO, 7 if dialect_c else 6),
        ):
            if prefix is _ERXUDP and self.hex_data:
                continue  # hex data has no CR in it: the line end is the line end
            have = end - pos
            if have >= len(prefix):
                if self._buf.startswith(prefix, pos):
                    if prefix is _ERXUDP and dialect_c:
                        return self._erxudp_c2_spaces(pos, end)
                    return spaces
            elif self._buf[pos:end] == prefix[:have]:
                return None
        return 0

    def _erxudp_c2_spaces(self, pos: int, end: int) -> int | None:
        """A BP35C2 ERXUDP header ends at its 10th space with LQI (register SA2 1), at its
        9th without. The sixth field tells: LQI is 2 hex digits, the secured flag that takes
        its place 1. None while that field is not all in; 10 (read as a line, which reports
        why) if it cannot be a header. Looks at most `_C2_PEEK` bytes, so byte-wise feeding
        stays linear."""
        stop = min(end, pos + _C2_PEEK)
        window = bytes(self._buf[pos:stop])
        parts = window.split(b" ", 7)
        if len(parts) < 8:
            return None if stop == end and stop < pos + _C2_PEEK else 10
        return 9 if len(parts[6]) == 1 else 10

    def _header_end(self, pos: int, spaces: int, stop: int) -> int:
        """Offset just after the `spaces`-th space of the line at `pos`, or -1 if it is not
        before `stop`. Remembers how far it counted, so byte-wise feeding stays linear."""
        buf = self._buf
        at = max(self._space_scan, pos)
        count = self._spaces
        while count < spaces:
            sp = buf.find(b" ", at, stop)
            if sp < 0:
                self._spaces, self._space_scan = count, max(at, stop)
                return -1
            count += 1
            at = sp + 1
        self._spaces, self._space_scan = count, at
        return at

    def _counted(self, pos: int, head_end: int, out: list[Item]) -> bool:
        """The header of an ERXUDP or SKSENDTO echo is complete at `head_end`."""
        buf = self._buf
        if buf.startswith(_SKSENDTO, pos):
            if head_end >= len(buf):
                return False  # is a CR next (echo line ends) or the next line?
            nxt = head_end + 1 if buf[head_end] == _CR else head_end
            line = bytes(buf[pos:head_end])
            self._end_line(nxt)
            self._line(line, out)
            return True
        header = bytes(buf[pos : head_end - 1])
        try:
            if _non_printable(header):
                raise _Bad("non-printable header")
            fields, length = self._udp_header(header.decode("ascii")[len(_ERXUDP) :])
        except _Bad:
            self._plain = True  # read it as a line: that reports the reason
            return True
        self._udp = (fields, head_end, length)
        return True

    def _udp_payload(self, out: list[Item]) -> bool:
        fields, start, length = self._udp  # type: ignore[misc]
        stop = start + length
        if len(self._buf) <= stop:
            return False
        self._udp = None
        if self._buf[stop] == _CR:
            data = bytes(self._buf[start:stop])
            self._end_line(stop + 1)
            self._emit(ReceivedUdp(*fields, data), out)
        else:
            # Not len raw bytes then CR: hex data, or garbage. Rewind and read it as a line.
            self._plain = True
        return True

    # -- lines ---------------------------------------------------------------------------

    def _emit(self, item: Item, out: list[Item]) -> None:
        self._close_block(out)
        out.append(item)

    def _line(self, raw: bytes, out: list[Item]) -> None:
        """One complete line, without its line end."""
        if raw[:1] == b" " and self._block is not None:
            if len(self._block) <= _MAX_BLOCK_LINES:  # one over marks the overflow
                self._block.append(raw)
            return
        self._close_block(out)
        if not raw:
            return
        if raw.rstrip(b" ") == b"EPANDESC":
            self._block = []
            return
        problem = _non_printable(raw)
        if problem:
            out.append(Garbled(raw, problem))
            return
        try:
            item = self._parse(raw.decode("ascii"))
        except _Bad as bad:
            item = Garbled(raw, bad.reason)
        out.append(item)

    def _parse(self, text: str) -> Item:
        head, _, rest = text.partition(" ")
        reader = _READERS.get(head)
        if reader is not None:
            return reader(self, rest)
        if text.startswith(("SK", "WOPT", "ROPT")):
            return Echo(text)
        if _IP6.fullmatch(text):
            return LinkLocal(text)
        return Unknown(text)

    def _ok(self, rest: str) -> Item:
        detail = rest.strip(" ")
        return Ok(detail or None)

    def _fail(self, rest: str) -> Item:
        fields = _fields(rest, "FAIL")
        match = _FAIL.fullmatch(fields[0])
        if len(fields) != 1 or not match:
            raise _Bad(f"FAIL is not followed by one ERxx code: {rest!r}")
        return Fail(int(match.group(1)))

    def _event(self, rest: str) -> Item:
        fields = _fields(rest, "EVENT")
        code = _hex(fields[0], 2, "EVENT number")
        if code == EventCode.WAKEUP and len(fields) == 1:
            return Event(code, "")
        side = param = None
        if self.dialect.has_side:  # number, address, side [, param]
            if len(fields) not in (3, 4):
                raise _Bad(f"EVENT has {len(fields)} fields; {self.dialect.value} sends 3 or 4")
            side = _hex(fields[2], 1, "EVENT side")
        elif len(fields) not in (2, 3):  # number, address [, param]
            raise _Bad(f"EVENT has {len(fields)} fields; {self.dialect.value} sends 2 or 3")
        if len(fields) == (4 if self.dialect.has_side else 3):
            param = _hex(fields[-1], 2, "EVENT parameter")
        return Event(code, _ip6(fields[1], "EVENT address"), side, param)

    def _epandesc(self, rest: str) -> Item:
        raise _Bad("EPANDESC followed by text on its line")

    def _udp_header(self, rest: str) -> tuple[tuple, int]:
        """The fields of an ERXUDP up to its length (without data), and the length."""
        fields = rest.split(" ")
        if "" in fields:
            raise _Bad("ERXUDP: empty field (missing, or two spaces)")
        side_dialect = self.dialect.has_side
        counts = (8, 9) if side_dialect else (7,)
        if len(fields) not in counts:
            sends = " or ".join(map(str, counts))
            raise _Bad(
                f"ERXUDP header has {len(fields)} fields; {self.dialect.value} sends {sends}"
            )
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
            raise _Bad(f"ERXUDP secured flag is not 0 or 1: {sec!r}")
        length = _hex(length_token, 4, "ERXUDP length")
        if length > MAX_UDP_PAYLOAD:
            raise _Bad(f"ERXUDP length {length} exceeds {MAX_UDP_PAYLOAD}")
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

    def _erxudp(self, rest: str) -> Item:
        """An ERXUDP read as one line: hex data, or a binary one that went wrong."""
        count = 7
        if self.dialect.has_side:  # 9 fields with LQI (2 hex digits, the sixth), 8 without
            sixth = rest.split(" ", 6)[5:6]
            count = 8 if sixth and len(sixth[0]) == 1 else 9
        parts = rest.split(" ", count)
        header, length = self._udp_header(" ".join(parts[:count]))
        data = parts[count] if len(parts) > count else ""
        if self.hex_data is False:
            raise _Bad(f"ERXUDP payload of {length} bytes is not followed by CR LF")
        if len(data) != 2 * length or (data and not _HEX.fullmatch(data)):
            also = f" nor {length} raw bytes then CR LF" if self.hex_data is None else ""
            raise _Bad(f"ERXUDP data is not {2 * length} hex digits{also}")
        return ReceivedUdp(*header, bytes.fromhex(data))

    def _ever(self, rest: str) -> Item:
        text = rest.strip(" ")
        if not text:
            raise _Bad("EVER without a version")
        return Version(text)

    def _eappver(self, rest: str) -> Item:
        text = rest.strip(" ")
        if not text:
            raise _Bad("EAPPVER without a version")
        return AppVersion(text)

    def _einfo(self, rest: str) -> Item:
        # Both forms in either dialect: SKINFO is how a driver tells the dialects apart.
        fields = _fields(rest, "EINFO")
        if len(fields) not in (5, 6):
            raise _Bad(f"EINFO has {len(fields)} fields, not 5 (BP35A1) or 6 (BP35C2)")
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

    # -- EPANDESC ------------------------------------------------------------------------

    def _close_block(self, out: list[Item]) -> None:
        lines = self._block
        if lines is None:
            return
        self._block = None
        try:
            out.append(self._pan_descriptor(lines))
        except _Bad as bad:
            whole = b"EPANDESC" + b"".join(b"\r\n" + line for line in lines)
            out.append(Garbled(bad.line if bad.line is not None else whole, bad.reason))

    def _pan_descriptor(self, lines: list[bytes]) -> PanDescriptor:
        if len(lines) > _MAX_BLOCK_LINES:
            raise _Bad(f"EPANDESC block longer than {_MAX_BLOCK_LINES} lines")
        values: dict[str, tuple[str, bytes]] = {}
        for raw in lines:
            problem = _non_printable(raw)
            if problem:
                raise _Bad(f"EPANDESC: {problem}", raw)
            key, sep, value = raw.decode("ascii").partition(":")
            key = key.strip(" ")
            if not sep:
                raise _Bad("EPANDESC line is not Key:Value", raw)
            if key in values:
                raise _Bad(f"EPANDESC repeats {key}", raw)
            values[key] = (value.strip(" "), raw)
        wanted = (*_PAN_KEYS, "Side") if self.dialect.has_side else _PAN_KEYS
        for key in wanted:
            if key not in values:
                raise _Bad(f"EPANDESC block lacks {key}")
        if "Side" in values and not self.dialect.has_side:
            raise _Bad(f"EPANDESC has a Side line; {self.dialect.value} sends none")

        def read(key: str, digits: int) -> int:
            value, raw = values[key]
            try:
                return _hex(value, digits, f"EPANDESC {key}")
            except _Bad as bad:
                raise _Bad(bad.reason, raw) from None

        mac, raw = values["Addr"]
        if len(mac) != 16 or not _HEX.fullmatch(mac):
            raise _Bad(f"EPANDESC Addr is not 16 hex digits: {mac!r}", raw)
        pair_id = None
        if "PairID" in values:
            pair_id, raw = values["PairID"]
            # The last 8 characters of the B-route ID: hex in practice, but any printable
            # ID is the power company's to choose, so only the length is checked.
            if len(pair_id) != 8 or not pair_id.isprintable() or " " in pair_id:
                raise _Bad(f"EPANDESC PairID is not 8 characters: {pair_id!r}", raw)
        return PanDescriptor(
            channel=read("Channel", 2),
            channel_page=read("Channel Page", 2),
            pan_id=read("Pan ID", 4),
            mac=mac,
            lqi=read("LQI", 2),
            side=read("Side", 1) if self.dialect.has_side else None,
            pair_id=pair_id,
        )


_READERS = {
    "OK": SkstackParser._ok,
    "FAIL": SkstackParser._fail,
    "EVENT": SkstackParser._event,
    "EPANDESC": SkstackParser._epandesc,
    "ERXUDP": SkstackParser._erxudp,
    "EVER": SkstackParser._ever,
    "EAPPVER": SkstackParser._eappver,
    "EINFO": SkstackParser._einfo,
}


def parse_strict(data: bytes, dialect: Dialect, *, hex_data: bool | None = None) -> list[Item]:
    """Parse a complete capture in one go: every line must be well formed and the last one
    ended. Raises `SkstackParseError` for the first that is not. For tests and logs."""
    parser = SkstackParser(dialect, hex_data=hex_data)
    items = parser.feed(data) + parser.flush()
    for item in items:
        if isinstance(item, Garbled):
            raise item.error()
    return items
