"""What an SKSTACK IP dongle prints: bytes in, typed items out. No I/O.

`SkstackParser.feed()` takes whatever the serial port delivered (one byte or a kilobyte) and
returns the items completed by it, in order. docs/skstack.md is the contract for the line
formats of both dialects; the choices below are about what the contract leaves open.
This module cuts the bytes into lines, counted payloads and blocks; the items are defined
in `items.py` and each line is read into one by `readers.py` (re-exported from here).

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

from .errors import SkstackParseError
from .items import (
    MAX_LINE,
    MAX_UDP_PAYLOAD,
    AppVersion,
    Dialect,
    Echo,
    Event,
    EventCode,
    Fail,
    Garbled,
    Info,
    Item,
    LinkLocal,
    Ok,
    PanDescriptor,
    ReceivedUdp,
    Unknown,
    Version,
)
from .readers import MAX_BLOCK_LINES, Bad, non_printable, pan_descriptor, read_line, udp_header

# The items are defined in items.py; they are imported from here as they always were.
__all__ = [
    "MAX_LINE",
    "MAX_UDP_PAYLOAD",
    "AppVersion",
    "Dialect",
    "Echo",
    "Event",
    "EventCode",
    "Fail",
    "Garbled",
    "Info",
    "Item",
    "LinkLocal",
    "Ok",
    "PanDescriptor",
    "ReceivedUdp",
    "SkstackParseError",
    "SkstackParser",
    "Unknown",
    "Version",
    "parse_strict",
]

# -- the parser --------------------------------------------------------------------------

_CR = 0x0D
_LF = 0x0A
_ERXUDP = b"ERXUDP "
_SKSENDTO = b"SKSENDTO "
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
            if non_printable(header):
                raise Bad("non-printable header")
            fields, length = udp_header(header.decode("ascii")[len(_ERXUDP) :], self.dialect)
        except Bad:
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
            if len(self._block) <= MAX_BLOCK_LINES:  # one over marks the overflow
                self._block.append(raw)
            return
        self._close_block(out)
        if not raw:
            return
        if raw.rstrip(b" ") == b"EPANDESC":
            self._block = []
            return
        problem = non_printable(raw)
        if problem:
            out.append(Garbled(raw, problem))
            return
        try:
            item = read_line(raw.decode("ascii"), self.dialect, self.hex_data)
        except Bad as bad:
            item = Garbled(raw, bad.reason)
        out.append(item)

    # -- EPANDESC ------------------------------------------------------------------------
    def _close_block(self, out: list[Item]) -> None:
        lines = self._block
        if lines is None:
            return
        self._block = None
        try:
            out.append(pan_descriptor(lines, self.dialect))
        except Bad as bad:
            whole = b"EPANDESC" + b"".join(b"\r\n" + line for line in lines)
            out.append(Garbled(bad.line if bad.line is not None else whole, bad.reason))


def parse_strict(data: bytes, dialect: Dialect, *, hex_data: bool | None = None) -> list[Item]:
    """Parse a complete capture in one go: every line must be well formed and the last one
    ended. Raises `SkstackParseError` for the first that is not. For tests and logs."""
    parser = SkstackParser(dialect, hex_data=hex_data)
    items = parser.feed(data) + parser.flush()
    for item in items:
        if isinstance(item, Garbled):
            raise item.error()
    return items
