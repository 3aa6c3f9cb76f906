"""Measured reduction of a DR event: baseline minus actual energy, per home and slot, summed
per home over the event's slots and over a tenant's homes. Pure, like `baseline.py`.

- Whole Wh throughout: the baseline is already rounded (baseline.py), actual energy is the
  metering room's whole Wh, so every sum is exact.
- Signed: a home drawing more than its baseline has a negative reduction, and it counts
  so in the tenant's total. Whether a program pays for less than nothing is the program's
  business, not the measurement's (docs/dr.md).
- A home without a baseline (`NoBaseline`) or without an actual value in every event slot
  is *missing*: it is listed with the reason, never counted as zero, and it is in no sum.
- Opted-out homes (the customer declined this event) are measured like the others but
  kept apart: their reduction is not the tenant's delivered reduction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .baseline import Baseline, NoBaseline

__all__ = [
    "EventReduction",
    "HomeReduction",
    "Missing",
    "SlotReduction",
    "event_reduction",
    "home_reduction",
]

Home = int  # a home's id (its site in the devices room)


@dataclass(frozen=True)
class SlotReduction:
    slot: datetime
    baseline_wh: int
    actual_wh: int

    @property
    def reduction_wh(self) -> int:
        return self.baseline_wh - self.actual_wh


@dataclass(frozen=True)
class HomeReduction:
    home: Home
    slots: tuple[SlotReduction, ...]
    baseline: Baseline

    @property
    def baseline_wh(self) -> int:
        return sum(s.baseline_wh for s in self.slots)

    @property
    def actual_wh(self) -> int:
        return sum(s.actual_wh for s in self.slots)

    @property
    def reduction_wh(self) -> int:
        return self.baseline_wh - self.actual_wh


@dataclass(frozen=True)
class Missing:
    """A home that could not be measured, and why."""

    home: Home
    reason: Literal["no_baseline", "missing_actual"]
    detail: str
    missing_slots: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class EventReduction:
    """One event's reduction over a tenant's homes."""

    slots: tuple[datetime, ...]
    homes: tuple[HomeReduction, ...]  # taking part and measured
    missing: tuple[Missing, ...]  # taking part, not measured
    opted_out: tuple[HomeReduction | Missing, ...]  # apart from every total below

    @property
    def reduction_wh(self) -> int:
        """The tenant's reduction: the sum over the measured homes taking part."""
        return sum(h.reduction_wh for h in self.homes)

    @property
    def baseline_wh(self) -> int:
        return sum(h.baseline_wh for h in self.homes)

    @property
    def actual_wh(self) -> int:
        return sum(h.actual_wh for h in self.homes)

    @property
    def slot_reduction_wh(self) -> dict[datetime, int]:
        """The tenant's reduction in each slot (the measured homes taking part)."""
        totals = dict.fromkeys(self.slots, 0)
        for home in self.homes:
            for s in home.slots:
                totals[s.slot] += s.reduction_wh
        return totals

    @property
    def opted_out_reduction_wh(self) -> int:
        """What the measured opted-out homes reduced anyway (not the tenant's delivery)."""
        return sum(h.reduction_wh for h in self.opted_out if isinstance(h, HomeReduction))


def home_reduction(
    home: Home, baseline: Baseline | NoBaseline, actual: Mapping[datetime, int]
) -> HomeReduction | Missing:
    """The home's reduction in each slot of its baseline (the event's slots)."""
    if isinstance(baseline, NoBaseline):
        return Missing(home, "no_baseline", baseline.reason)
    absent = tuple(s for s in baseline.slots if s not in actual)
    if absent:
        return Missing(home, "missing_actual", f"{len(absent)} of the event's slots", absent)
    return HomeReduction(
        home,
        tuple(SlotReduction(s, wh, actual[s]) for s, wh in baseline.slots.items()),
        baseline,
    )


def event_reduction(
    event_slots: Sequence[datetime],
    homes: Iterable[tuple[Home, Baseline | NoBaseline, Mapping[datetime, int]]],
    *,
    opted_out: Collection[Home] = (),
) -> EventReduction:
    """The event's reduction over `homes` (each with its baseline for this event and its
    actual energy); those in `opted_out` are measured but kept apart. Homes come out in
    the order given."""
    slots = tuple(event_slots)
    taking_part: list[HomeReduction] = []
    missing: list[Missing] = []
    apart: list[HomeReduction | Missing] = []
    for home, baseline, actual in homes:
        if isinstance(baseline, Baseline) and tuple(baseline.slots) != slots:
            raise ValueError(f"home {home}'s baseline is not for this event's slots")
        result = home_reduction(home, baseline, actual)
        if home in opted_out:
            apart.append(result)
        elif isinstance(result, Missing):
            missing.append(result)
        else:
            taking_part.append(result)
    return EventReduction(slots, tuple(taking_part), tuple(missing), tuple(apart))
