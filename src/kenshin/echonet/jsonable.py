"""Typed ECHONET Lite values as plain JSON data, for --json output and command results."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any

from .frame import EOJ


def to_jsonable(value: Any) -> Any:
    """Typed protocol values as plain JSON data (datetimes ISO 8601, enums by name)."""
    if isinstance(value, Enum):
        return value.name.lower()
    if isinstance(value, EOJ):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, frozenset | set):
        return [f"0x{v:02X}" for v in sorted(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Exception):
        return {"error": str(value)}
    if isinstance(value, Decimal):  # exact Wh in 0.1 steps: the shortest float repr keeps it
        return int(value) if value == value.to_integral_value() else float(value)
    return value
