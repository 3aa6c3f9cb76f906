"""What the host writes, cut into commands: bytes in, `Line` / `SendTo` / ... out.

Separate from the state machine because framing is the one part that depends on how the
bytes were chunked, and it is easier to trust (and fuzz) alone. SKSTACK's input has two
shapes: text lines ending at CR or LF, and `SKSENDTO` whose header ends at the space after
its 4-digit length and is followed by that many raw bytes (which may hold CR and LF) with
no line end. The framer never raises: a line too long is `TooLong`, a SKSENDTO header
whose length is not 4 hex digits is `BadSendTo`, and both cost only what they consumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from .defs import MAX_LINE, Fail, parse_hex

_SENDTO = b"SKSENDTO "
_EOL = (0x0D, 0x0A)


@dataclass(frozen=True)
class Line:
    raw: bytes  # without its line end; never empty


@dataclass(frozen=True)
class SendTo:
    header: bytes  # up to and including the space after the length (what is echoed)
    fields: list[str]  # handle, address, port, sec, [side,] length
    payload: bytes


@dataclass(frozen=True)
class BadSendTo:
    header: bytes  # its length field is not 4 hex digits: FAIL ER06, no payload read


@dataclass(frozen=True)
class TooLong:
    """More than MAX_LINE bytes without a line end: thrown away (FAIL ER09)."""


Command: TypeAlias = Line | SendTo | BadSendTo | TooLong


def _eol(buf: bytearray, start: int = 0) -> int:
    return next((i for i in range(start, len(buf)) if buf[i] in _EOL), -1)


class CommandFramer:
    """Buffers the host's bytes and hands out whole commands in order."""

    def __init__(self, sendto_fields: int):
        self.sendto_fields = sendto_fields  # 5, or 6 with the BP35C2's side field
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def clear(self) -> None:
        self._buf.clear()

    def next_command(self) -> Command | None:
        """The next complete command, or None until more bytes arrive."""
        buf = self._buf
        while buf and buf[0] in _EOL:  # end of the previous line, or an empty line
            del buf[0]
        if not buf:
            return None
        if buf.startswith(_SENDTO):
            taken = self._take_sendto()
            if taken is not False:
                return taken
            # The line ended before the header did: an ordinary line (FAIL ER05).
        end = _eol(buf)
        if end < 0:
            if len(buf) > MAX_LINE:
                buf.clear()
                return TooLong()
            return None
        line = bytes(buf[:end])
        del buf[: end + 1]
        return Line(line)

    def _take_sendto(self) -> Command | bool | None:
        """None: incomplete; False: a line end came before the header's end."""
        buf = self._buf
        pos = len(_SENDTO)
        fields: list[str] = []
        for _ in range(self.sendto_fields):
            space = buf.find(b" ", pos)
            eol = _eol(buf, pos)
            if eol >= 0 and (space < 0 or eol < space):
                return False
            if space < 0:
                if len(buf) > MAX_LINE:
                    buf.clear()
                    return TooLong()
                return None
            fields.append(buf[pos:space].decode("latin-1"))
            pos = space + 1
        header = bytes(buf[:pos])
        try:
            length = parse_hex(fields[-1], digits=4)
        except Fail:
            del buf[:pos]
            return BadSendTo(header)
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos : pos + length])
        del buf[: pos + length]
        return SendTo(header, fields, payload)
