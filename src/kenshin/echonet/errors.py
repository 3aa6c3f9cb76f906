"""Errors of the ECHONET Lite core.

Like h11, two kinds: the peer sent something we cannot accept (`EchonetDecodeError`), or
our own caller asked for something that cannot be put on the wire (`EchonetEncodeError`).
The asyncio endpoint adds its own (timeouts, refused properties) on the same base class.
"""

from __future__ import annotations


class EchonetError(Exception):
    """Base of every error raised by `kenshin.echonet`."""


class EchonetDecodeError(EchonetError):
    """Malformed input: says what was wrong and where (byte offset, and EPC if known)."""

    def __init__(self, reason: str, *, offset: int | None = None, epc: int | None = None):
        self.reason = reason
        self.offset = offset
        self.epc = epc
        where = []
        if epc is not None:
            where.append(f"EPC 0x{epc:02X}")
        if offset is not None:
            where.append(f"offset {offset}")
        super().__init__(f"{reason} ({', '.join(where)})" if where else reason)


class EchonetEncodeError(EchonetError, ValueError):
    """A value that cannot be encoded (out of range, wrong shape)."""
