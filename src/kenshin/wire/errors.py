"""Errors of the gateway↔cloud wire protocol.

One base, `WireError`, is all a receiving loop has to catch. Below it: the peer sent
something we cannot accept (`WireDecodeError`, and `WireVersionError` for a newer
protocol), our own caller asked for something that cannot be put on the wire
(`WireEncodeError`), something is over a stated limit on either side (`WireLimitError`),
or a topic is not ours (`WireTopicError`).

Every error says what was wrong (`reason`) and where (`where`: a path such as
`ReadingsBatch.instant[3].power_w`). Messages never quote a text value: text may be a
B-route password.
"""

from __future__ import annotations


class WireError(Exception):
    """Base of every error raised by `kenshin.wire`."""

    def __init__(self, reason: str, *, where: str | None = None):
        self.reason = reason
        self.where = where
        super().__init__(f"{reason} (at {where})" if where else reason)


class WireDecodeError(WireError):
    """A payload that is not a valid message: not CBOR, wrong shape, type or range."""


class WireVersionError(WireDecodeError):
    """A message of a protocol version this decoder does not know (a newer peer)."""


class WireEncodeError(WireError, ValueError):
    """A message that cannot be encoded: a field of the wrong type or out of range."""


class WireLimitError(WireError):
    """Over a stated limit (payload bytes, samples, string length, map size), whether
    found while decoding a peer's payload or while encoding our own message."""


class WireTopicError(WireError, ValueError):
    """A topic that is not one of ours, or a gateway id that cannot be part of one."""
