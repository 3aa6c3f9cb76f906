"""Errors of the SKSTACK IP core.

Two kinds, as in `kenshin.echonet`: the dongle sent a line we cannot read
(`SkstackParseError`), or it refused a command (`CommandFailed`, its `FAIL ERxx`). Builders
reject bad arguments with plain `ValueError` before anything reaches the wire. The serial
driver adds its own (timeouts, a dongle that stopped answering) on the same base class.

Messages never carry the B-route ID or password: anything that renders a command or a line
of the dongle's goes through `_redact_text` first.
"""

from __future__ import annotations

import re

# What the vendors' command references say each code means.
ERROR_CODES: dict[int, str] = {
    4: "unsupported command",
    5: "bad argument",
    6: "bad syntax or value out of range",
    9: "serial input error",
    10: "failed to execute",
}

_SHOWN = 80  # bytes of an offending line quoted in a message
_SECRET = re.compile(r"(SKSETRBID|SKSETPWD)([^\r\n]*)")
_PWD_LEN = re.compile(r" +([0-9A-Fa-f]{1,2}) ")
MASK = "********"


def _mask(match: re.Match[str]) -> str:
    command, rest = match.group(1), match.group(2)
    if not rest.strip(" "):
        return match.group(0)
    if command == "SKSETPWD":
        # Keep the length field: it is what tells "password too short" apart in a log.
        length = _PWD_LEN.match(rest)
        if length:
            return f"{command} {length.group(1)} {MASK}"
    return f"{command} {MASK}"


def _escape(text: str) -> str:
    """Control and non-ASCII characters as escapes, so a log line stays one printable line."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text)


def _redact_text(text: str) -> str:
    """`text` with everything after SKSETRBID / SKSETPWD (to the end of its line) masked."""
    if "SKSET" not in text:
        return text
    return _SECRET.sub(_mask, text)


class SkstackError(Exception):
    """Base of every error raised by `kenshin.wisun`."""


class SkstackParseError(SkstackError):
    """A line the dongle sent that does not read as what it claims to be.

    `what` says what was wrong, `line` holds the offending bytes (without the line end);
    the message quotes at most the first 80 of them, secrets masked."""

    def __init__(self, what: str, line: bytes):
        self.what = what
        self.line = bytes(line)
        shown = _redact_text(self.line[:_SHOWN].decode("latin-1"))
        more = f" (+{len(self.line) - _SHOWN} bytes)" if len(self.line) > _SHOWN else ""
        super().__init__(f"{what}: {shown.encode('latin-1')!r}{more}")


class CommandFailed(SkstackError):
    """The dongle answered `FAIL ERxx` to a command.

    `code` is the number (4, 5, 6, 9, 10), `explanation` e.g. "ER04 unsupported command",
    `command` the command as it may be logged (secrets masked), when the caller knows it."""

    def __init__(self, code: int, command: bytes | str | None = None):
        self.code = code
        meaning = ERROR_CODES.get(code, "reserved error code")
        self.explanation = f"ER{code:02d} {meaning}"
        if isinstance(command, bytes | bytearray):
            command = bytes(command).decode("latin-1")
        if command is not None:
            command = _escape(_redact_text(command.rstrip("\r\n")))
        self.command = command
        where = f" (answer to {self.command})" if self.command else ""
        super().__init__(f"{self.explanation}{where}")
