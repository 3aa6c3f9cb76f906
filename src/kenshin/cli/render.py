"""How typed values look on a terminal and in --json output."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from kenshin.echonet.edt import EnergyUnit
from kenshin.echonet.jsonable import to_jsonable

__all__ = ["to_jsonable", "to_text"]


def to_text(value: Any, unit: str = "") -> str:
    """One line for a human."""
    if value is None:
        return "no data"
    if isinstance(value, frozenset | set):
        return " ".join(f"{v:02X}" for v in sorted(value))
    if isinstance(value, tuple) and len(value) > 6:
        present = [v for v in value if v is not None]
        latest = present[-1] if present else "-"
        return f"{len(value)} values, {len(present)} with data, latest {latest}"
    if isinstance(value, EnergyUnit):
        return f"{value.kwh.normalize():f} kWh per count"
    if isinstance(value, Enum):
        return value.name.lower()
    if isinstance(value, bytes):
        return value.hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        parts = [f"{f.name}={to_text(getattr(value, f.name))}" for f in dataclasses.fields(value)]
        return ", ".join(parts) + (f" [{unit}]" if unit else "")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int | Decimal) and not isinstance(value, bool) and unit:
        return f"{value:,} {unit}"  # exact, grouped: 4,504,700 Wh
    return f"{value} {unit}".rstrip()
