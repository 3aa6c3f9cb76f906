"""Protocol versions: which one is written, which are read, and how they differ.

`WIRE_VERSION` is the protocol's major version, the second element of every payload. A
payload of a newer version is refused with `WireVersionError`; every older one is still
read, so the cloud can be updated before the fleet. Inside one version the protocol only
grows at the end (a newer peer may append fields to any fixed-layout array, the decoder
ignores them); anything else bumps the version. Kept apart so that the one place that
knows the history is short, and a version bump touches it and `columns.py` only.

| version | instant columns (power, currents) |
|---|---|
| 1 | arrays of deltas (`columns.undelta_column`; the fixed block's columns in every version) |
| 2 | byte strings of varint tokens (`columns.unpack_column`) |
| 3 | byte strings of Exp-Golomb codes on a grid (`columns.uncode_column`), written now |
"""

from __future__ import annotations

from typing import Any

from .checks import bad, kind, show
from .columns import uncode_column, undelta_column, unpack_column
from .errors import WireDecodeError, WireVersionError

WIRE_VERSION = 3


def check_version(version: Any) -> int:
    """The envelope's version, if this decoder reads it."""
    if type(version) is not int:
        raise WireDecodeError(f"expected an integer, got {kind(version)}", where="version")
    if version > WIRE_VERSION:
        raise WireVersionError(
            f"protocol version {show(version)} is newer than this decoder's {WIRE_VERSION}",
            where="version",
        )
    if version < 1:
        raise WireDecodeError(f"no protocol version {version}", where="version")
    return version


def read_column(
    column: Any, count: int, lo: int, hi: int, where: str, version: int
) -> list[int | None]:
    """Any column of any version: null, an array of deltas (version 1's, read in any
    version), or a byte string (version 2: varints; 3: coded)."""
    if column is None:
        return [None] * count
    if type(column) is bytes:
        unpack = unpack_column if version <= 2 else uncode_column
        return unpack(column, count, lo, hi, where)
    if type(column) is not list:
        bad(f"expected an array or null, got {kind(column)}", where)
    return undelta_column(column, count, lo, hi, where)
