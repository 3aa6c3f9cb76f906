"""30-minute slot energy from fixed-time register values, exact, never interpolated.

A slot [t, t+30 min) holds the energy between the register values at its two boundaries.
Registers count in units of E1 × D3 and wrap at 10^D7; one slot's advance is taken modulo
that (a meter cannot wrap twice in half an hour). Energy is kept as integer mWh (every unit
is a whole number of them) and reported as integer Wh by differencing the floor of the
running total, so that a day's, a month's or a year's Wh is the sum of its slots' Wh
exactly, even for the 0.1 Wh unit.

Each slot says where it came from: `measured` when both boundaries were read at their half
hour, `refilled` when either came from the meter's history afterwards, `missing` when
either boundary is unknown — then there is no number, never an interpolated one. Late or
backfilled values change only the slots next to them: recompute those with `affected`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from kenshin.jst import SLOT_S
from kenshin.wire import MeterScale


class SlotStatus(StrEnum):
    MEASURED = "measured"
    REFILLED = "refilled"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Boundary:
    """The register at a half-hour boundary."""

    raw: int
    refilled: bool = False


@dataclass(frozen=True, slots=True)
class SlotEnergy:
    slot_start: int  # epoch seconds, a JST half hour
    status: SlotStatus
    milliwatt_hours: int | None = None
    wh: int | None = None


def slot_energies(
    boundaries: Mapping[int, Boundary], scale: MeterScale, first_slot: int, last_slot: int
) -> list[SlotEnergy]:
    """One `SlotEnergy` per slot from `first_slot` to `last_slot` (epoch s, inclusive)."""
    if first_slot % SLOT_S or last_slot % SLOT_S:
        raise ValueError("slots start on half hours (multiples of 1800 s)")
    out = []
    for start in range(first_slot, last_slot + 1, SLOT_S):
        before, after = boundaries.get(start), boundaries.get(start + SLOT_S)
        if before is None or after is None:
            out.append(SlotEnergy(start, SlotStatus.MISSING))
            continue
        per_count = scale.milliwatt_hours_per_count
        counts = (after.raw - before.raw) % scale.modulus
        mwh = counts * per_count
        # Differences of floor(register in Wh): consecutive slots telescope (10^digits
        # counts are a whole number of Wh), so sums of slot Wh equal the register's advance.
        start_mwh = before.raw * per_count
        wh = (start_mwh + mwh) // 1000 - start_mwh // 1000
        refilled = before.refilled or after.refilled
        status = SlotStatus.REFILLED if refilled else SlotStatus.MEASURED
        out.append(SlotEnergy(start, status, mwh, wh))
    return out


def affected(changed_boundaries: Iterable[int]) -> set[int]:
    """The slots whose energy a new or changed boundary value alters: the one it ends and
    the one it starts."""
    slots: set[int] = set()
    for boundary in changed_boundaries:
        slots.update((boundary - SLOT_S, boundary))
    return slots
