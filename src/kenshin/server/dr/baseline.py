"""The standard baseline of the ERAB guideline (資源エネルギー庁「エネルギー・リソース・
アグリゲーション・ビジネスに関するガイドライン」, chapter 2 「ベースライン」, section 3
「ベースラインの設定方法」): what a home would have drawn in each 30-minute slot of a DR
event had there been none. Pure: no database, no clock; the caller hands in the home's
slot energy. docs/dr.md ("Baseline and measured reduction") has the rules, their sources
and every choice made where the sources are silent; in short:

- **Like days.** An event on a weekday (Monday to Friday, not a public holiday) is compared
  with the 5 most recent weekdays before it and keeps the 4 with the most energy over the
  event's slots (High 4 of 5); an event on a Saturday, Sunday or public holiday with the 3
  most recent such days, keeping 2 (High 2 of 3). The event day itself is never a like
  day.
- **Excluded days**, each replaced by the next older day of the same kind, up to 30 days
  back: DR days, days without a value in every slot the computation reads, and low days,
  whose energy over the event's slots is under 25 % of the candidates' mean (repeated
  until no candidate is low). Of equal days, the one furthest back is dropped first.
- **Baseline per slot**: the mean of the kept days' energy in the same slot of their day.
- **Same-day adjustment (当日調整)**: over the 3 hours ending 1 hour before the event
  starts, the event day's mean slot energy minus the kept days' mean in the same slots is
  added to every slot's baseline (optionally capped to a share of it: `Rules.cap`).

Energy is whole Wh a slot, keyed by the slot's start (aware datetimes: UTC or JST alike).
Means and the adjustment are exact fractions; each slot's final baseline is rounded once,
half up, to whole Wh, after being floored at 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Literal

import jpholiday

from kenshin.jst import JST, SLOT, SLOT_S

__all__ = [
    "STANDARD",
    "Adjustment",
    "Baseline",
    "DayKind",
    "Excluded",
    "NoBaseline",
    "Reason",
    "Rules",
    "compute_baseline",
    "day_kind",
    "round_wh",
]

DayKind = Literal["weekday", "holiday"]
Energy = Mapping[datetime, int]
HolidayCalendar = Callable[[date], bool]


@dataclass(frozen=True)
class Rules:
    """A baseline's parameters; `STANDARD` is the guideline's standard method."""

    weekday_keep: int = 4  # High 4 ...
    weekday_days: int = 5  # ... of 5
    holiday_keep: int = 2  # High 2 ...
    holiday_days: int = 3  # ... of 3
    low_day_share: Fraction = Fraction(1, 4)  # under 25 % of the candidates' mean: excluded
    lookback_days: int = 30  # how far back like days are looked for
    adjustment_gap: timedelta = timedelta(hours=1)  # the window ends this long before the event
    adjustment_span: timedelta = timedelta(hours=3)  # and lasts this long (0: no adjustment)
    cap: Fraction | None = None  # |adjustment| <= cap x the slot's unadjusted baseline

    def __post_init__(self) -> None:
        if not (0 < self.weekday_keep <= self.weekday_days):
            raise ValueError("weekday_keep must be within 1..weekday_days")
        if not (0 < self.holiday_keep <= self.holiday_days):
            raise ValueError("holiday_keep must be within 1..holiday_days")
        if self.lookback_days < max(self.weekday_days, self.holiday_days):
            raise ValueError("lookback_days is shorter than the days it must find")
        for name in ("adjustment_gap", "adjustment_span"):
            value: timedelta = getattr(self, name)
            if value < timedelta(0) or value % SLOT:
                raise ValueError(f"{name} must be a non-negative whole number of slots")
        if self.cap is not None and self.cap < 0:
            raise ValueError("cap must be non-negative")

    def pick(self, kind: DayKind) -> tuple[int, int]:
        """(days kept, candidate days) for an event on a day of `kind`."""
        if kind == "weekday":
            return self.weekday_keep, self.weekday_days
        return self.holiday_keep, self.holiday_days


STANDARD = Rules()


class Reason(StrEnum):
    """Why a day of the event's kind, within the window searched, is not a like day."""

    DR_DAY = "dr_day"  # a DR event took place that day
    MISSING_DATA = "missing_data"  # a slot the baseline reads has no value
    LOW_DAY = "low_day"  # under the low-day share of the candidates' mean
    NOT_HIGH = "not_high"  # a candidate, but among the lowest (the "of 5" left out)


@dataclass(frozen=True)
class Excluded:
    day: date
    reason: Reason
    event_wh: int | None  # its energy over the event's slots, when it has it all


@dataclass(frozen=True)
class Adjustment:
    """The same-day adjustment: its window (slot starts on the event day, all before the
    event), the event day's energy there, the kept days' mean there, and the Wh added to
    each slot before any cap (`per_slot`); `capped`: the cap bound at least one slot."""

    window: tuple[datetime, ...]
    actual_wh: tuple[int, ...]
    like_days_mean_wh: Fraction
    per_slot: Fraction
    capped: bool


@dataclass(frozen=True)
class Baseline:
    """A home's baseline for one event: Wh per event slot, and how it was found."""

    event_day: date
    kind: DayKind
    slots: Mapping[datetime, int]  # event slot start -> baseline Wh (adjusted, rounded)
    unadjusted: Mapping[datetime, Fraction]  # the kept days' exact mean per slot
    like_days: tuple[date, ...]  # kept, newest first
    candidates: tuple[date, ...]  # the "of 5" (or 3), newest first
    excluded: tuple[Excluded, ...]  # newest first; days of the other kind are not listed
    adjustment: Adjustment | None  # None: the rules have none, or `adjustment_skipped`
    adjustment_skipped: str | None = None

    @property
    def total_wh(self) -> int:
        return sum(self.slots.values())


@dataclass(frozen=True)
class NoBaseline:
    """Not enough like days within the lookback: no baseline rather than a guessed one."""

    event_day: date
    kind: DayKind
    reason: str
    found: tuple[date, ...] = ()
    excluded: tuple[Excluded, ...] = field(default=())


def day_kind(day: date, is_holiday: HolidayCalendar = jpholiday.is_holiday) -> DayKind:
    """ "holiday" for Saturdays, Sundays and days the calendar calls holidays; else
    "weekday". The default calendar is Japan's national holidays (振替休日 and 国民の休日
    included), from jpholiday."""
    return "holiday" if day.weekday() >= 5 or is_holiday(day) else "weekday"


def round_wh(value: Fraction) -> int:
    """Half up to whole Wh (for the non-negative values it is given)."""
    return math.floor(value + Fraction(1, 2))


def compute_baseline(
    energy: Energy,
    event_slots: Sequence[datetime],
    *,
    dr_days: Collection[date] = (),
    is_holiday: HolidayCalendar = jpholiday.is_holiday,
    rules: Rules = STANDARD,
) -> Baseline | NoBaseline:
    """The baseline of the event whose slots (their starts, in order) are `event_slots`,
    from the home's `energy` before it. `dr_days` are the JST days of the home's earlier DR
    events; the event's day is the JST day its first slot starts on."""
    slots = _checked(event_slots)
    event_day = slots[0].astimezone(JST).date()
    kind = day_kind(event_day, is_holiday)
    keep, of = rules.pick(kind)
    window = _adjustment_window(slots[0], rules)

    def on(day: date, slot: datetime) -> datetime:
        return slot - (event_day - day)  # JST keeps no daylight saving: days are 24 h

    def event_total(day: date) -> int:
        return sum(energy[on(day, s)] for s in slots)

    usable: list[date] = []
    skipped: list[Excluded] = []
    for back in range(1, rules.lookback_days + 1):
        day = event_day - timedelta(days=back)
        if day_kind(day, is_holiday) != kind:
            continue
        if day in dr_days:
            skipped.append(Excluded(day, Reason.DR_DAY, None))
        elif any(on(day, s) not in energy for s in (*slots, *window)):
            skipped.append(Excluded(day, Reason.MISSING_DATA, None))
        else:
            usable.append(day)

    low: list[date] = []
    while True:
        candidates = [d for d in usable if d not in low][:of]
        if len(candidates) < of:
            return NoBaseline(
                event_day, kind,
                f"{len(candidates)} usable {kind}s in {rules.lookback_days} days, {of} needed",
                tuple(candidates), _sorted(skipped, low, event_total),
            )  # fmt: skip
        mean = Fraction(sum(event_total(d) for d in candidates), of)
        newly = [d for d in candidates if event_total(d) < rules.low_day_share * mean]
        if not newly:
            break
        low.extend(newly)

    # Most energy first; of equal days the newer first, so the one furthest back drops.
    ranked = sorted(candidates, key=lambda d: (-event_total(d), event_day - d))
    kept = sorted(ranked[:keep], reverse=True)
    oldest = candidates[-1]
    excluded = [e for e in skipped if e.day > oldest]
    excluded += [Excluded(d, Reason.NOT_HIGH, event_total(d)) for d in ranked[keep:]]

    def mean_of_kept(slot: datetime) -> Fraction:
        return Fraction(sum(energy[on(d, slot)] for d in kept), keep)

    unadjusted = {s: mean_of_kept(s) for s in slots}
    adjustment, why_not = _adjust(energy, window, mean_of_kept)
    final: dict[datetime, int] = {}
    capped = False
    for s, base in unadjusted.items():
        added = Fraction(0) if adjustment is None else adjustment.per_slot
        if rules.cap is not None and abs(added) > rules.cap * base:
            added = rules.cap * base if added > 0 else -rules.cap * base
            capped = True
        final[s] = round_wh(max(base + added, Fraction(0)))
    if adjustment is not None and capped:
        adjustment = Adjustment(
            adjustment.window, adjustment.actual_wh, adjustment.like_days_mean_wh,
            adjustment.per_slot, capped=True,
        )  # fmt: skip
    return Baseline(
        event_day=event_day,
        kind=kind,
        slots=final,
        unadjusted=unadjusted,
        like_days=tuple(kept),
        candidates=tuple(candidates),
        excluded=_sorted(excluded, low, event_total),
        adjustment=adjustment,
        adjustment_skipped=why_not,
    )


def _checked(event_slots: Sequence[datetime]) -> list[datetime]:
    slots = list(event_slots)
    if not slots:
        raise ValueError("an event has at least one slot")
    for s in slots:
        if s.tzinfo is None or s.timestamp() % SLOT_S:
            raise ValueError(f"{s!r} is not an aware slot start")
    if any(b <= a for a, b in itertools.pairwise(slots)):
        raise ValueError("event slots must be in increasing order, each once")
    return slots


def _adjustment_window(start: datetime, rules: Rules) -> tuple[datetime, ...]:
    first = start - rules.adjustment_gap - rules.adjustment_span
    return tuple(first + i * SLOT for i in range(rules.adjustment_span // SLOT))


def _adjust(
    energy: Energy, window: tuple[datetime, ...], mean_of_kept: Callable[[datetime], Fraction]
) -> tuple[Adjustment | None, str | None]:
    if not window:
        return None, None
    if any(s not in energy for s in window):
        return None, "the event day has no value in every slot of the adjustment window"
    actual = tuple(energy[s] for s in window)
    like = sum((mean_of_kept(s) for s in window), Fraction(0)) / len(window)
    per_slot = Fraction(sum(actual), len(window)) - like
    return Adjustment(window, actual, like, per_slot, capped=False), None


def _sorted(
    skipped: list[Excluded], low: list[date], event_total: Callable[[date], int]
) -> tuple[Excluded, ...]:
    both = [*skipped, *(Excluded(d, Reason.LOW_DAY, event_total(d)) for d in low)]
    return tuple(sorted(both, key=lambda e: e.day, reverse=True))
