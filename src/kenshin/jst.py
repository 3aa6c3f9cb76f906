"""Japan Standard Time and the half-hour slot: the one clock of the whole product.

A smart meter keeps JST (UTC+9, no daylight saving), fixes its cumulative energy on every
half hour of that clock, and the people reading the panel and the settlement files live on
it. Every package takes the zone and the slot from here, so there is one definition: the
protocol cores (ECHONET Lite's time properties), the wire format, the gateway, the
simulators and the server (day and month boundaries, 30-minute slots).

Slots are identified by the instant they start at. Because JST is a whole number of hours
from UTC, a JST half hour is also a UTC half hour: `slot_of` can work on Unix seconds.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

__all__ = [
    "JST",
    "JST_OFFSET_S",
    "SLOT",
    "SLOT_S",
    "jst_midnight",
    "slot_of",
    "slot_start",
]

JST = timezone(timedelta(hours=9), "JST")
JST_OFFSET_S = 9 * 3600  # for arithmetic on Unix seconds (a JST day starts at 15:00 UTC)
SLOT = timedelta(minutes=30)
SLOT_S = 1800


def jst_midnight(day: date) -> datetime:
    """The start of a JST calendar day, as an aware datetime."""
    return datetime.combine(day, time(0), JST)


def slot_of(unix_s: float) -> int:
    """The start (Unix seconds) of the half hour holding `unix_s`."""
    return int(unix_s) // SLOT_S * SLOT_S


def slot_start(at: datetime) -> datetime:
    """The start of the half hour holding the aware time `at`, in JST."""
    return datetime.fromtimestamp(slot_of(at.timestamp()), JST)
