"""Forecasts of 30-minute energy with a band: pure functions over a history of JST days.

A history maps each JST calendar day to its 48 slot values in Wh (None where missing).
Three methods share one signature, `method(history, day) -> list[float | None]`, so the
bench and the server compare them on the same footing:

- `same_slot_last_week`: the value seven days earlier (the industry's simplest baseline);
- `mean_of_four_weekdays`: the mean of the same slot on the last four same weekdays;
- `kenshin`: what this module recommends, below.

Kenshin's method separates *how much* a day uses from *how it spreads* that over the day:

1. Shape. Each past day's slots are divided by its own total; the shape for the target
   day is the recency-weighted mean (half-life three and a half days) of those of its own
   day type (weekday, or weekend/holiday) over the last two weeks. Every same-type day
   counts, not only the same weekday, so more of the day-to-day weather averages out.
2. Level. The day's total comes from a least-squares line through the logarithms of the
   last four weeks' daily totals, with a separate offset per day type, extrapolated to
   the target day: the seasonal drift (heating coming on in autumn) is followed instead of
   lagging two weeks behind as a four-week mean does, and four weeks of days keep one
   cold or warm day from swinging it.
3. Band. The method is replayed on each of the previous three weeks' days; the log of
   actual ÷ forecast per slot (pooled over those days, by quarter of the day) gives a
   centre and a spread, and the band is the central 80 % of that normal, widened a little
   for the few days it learnt from. (Sample percentiles of three weeks were too jumpy:
   a day's slots err together, so there are ~21 samples, not ~250.)
4. Intraday. Once part of today is known, `update_intraday` scales the remaining slots by
   how today runs so far, shrunk towards 1 while little is known.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import jpholiday

SLOTS = 48
Day = Sequence[float | None]
History = Mapping[date, Day]
Method = Callable[[History, date], list[float | None]]

__all__ = [
    "SLOTS",
    "Band",
    "day_type",
    "forecast_with_band",
    "kenshin",
    "mean_of_four_weekdays",
    "same_slot_last_week",
    "update_intraday",
]

# Japanese public holidays, substitute holidays (振替休日) and the days between two holidays
# (国民の休日), from jpholiday, which derives them by the law's rules (the equinoxes
# included) for any year: demand on them looks like a Sunday's.


def day_type(day: date, *, holidays: bool = True) -> str:
    """ "weekday" or "holiday" (weekends and, unless told otherwise, public holidays)."""
    if day.weekday() >= 5 or (holidays and jpholiday.is_holiday(day)):
        return "holiday"
    return "weekday"


def _complete(history: History, day: date) -> Day | None:
    values = history.get(day)
    if values is None or len(values) != SLOTS or any(v is None for v in values):
        return None
    return values


def same_slot_last_week(history: History, day: date) -> list[float | None]:
    values = history.get(day - timedelta(days=7))
    return list(values) if values is not None else [None] * SLOTS


def mean_of_four_weekdays(history: History, day: date) -> list[float | None]:
    weeks = [history.get(day - timedelta(days=7 * k)) for k in range(1, 5)]
    out: list[float | None] = []
    for slot in range(SLOTS):
        known = [w[slot] for w in weeks if w is not None and w[slot] is not None]
        out.append(sum(known) / len(known) if known else None)
    return out


@dataclass(frozen=True)
class _Tuning:
    shape_days: int = 14  # how far back the shape looks
    half_life_days: float = 3.5
    level_days: int = 28  # the level's regression window
    band_days: int = 21  # days replayed to learn the band


TUNING = _Tuning()
Z_80 = 1.2816  # the standard normal's 90th percentile: a central 80 % band


def _shape(history: History, day: date, holidays: bool) -> list[float] | None:
    kind = day_type(day, holidays=holidays)
    sums = [0.0] * SLOTS
    weight_total = 0.0
    for age in range(1, TUNING.shape_days + 1):
        past = day - timedelta(days=age)
        values = _complete(history, past)
        if values is None or day_type(past, holidays=holidays) != kind:
            continue
        total = sum(values)
        if total <= 0:
            continue
        weight = 0.5 ** (age / TUNING.half_life_days)
        weight_total += weight
        for slot, value in enumerate(values):
            sums[slot] += weight * value / total
    if not weight_total:
        return None
    return [x / weight_total for x in sums]


def _level(history: History, day: date, holidays: bool) -> float | None:
    """The day's expected total: log-linear trend with an offset per day type."""
    xs: list[float] = []
    types: list[float] = []
    ys: list[float] = []
    for age in range(1, TUNING.level_days + 1):
        past = day - timedelta(days=age)
        values = _complete(history, past)
        if values is None or sum(values) <= 0:
            continue
        xs.append(-age)
        types.append(1.0 if day_type(past, holidays=holidays) == "holiday" else 0.0)
        ys.append(math.log(sum(values)))
    if len(ys) < 3:
        return None
    target_type = 1.0 if day_type(day, holidays=holidays) == "holiday" else 0.0
    if len(set(types)) == 1:  # one day type only: a plain line (or mean)
        if target_type != types[0]:
            return None
        return math.exp(_line(xs, ys, 0.0))
    # y = a + b·x + c·type, by ordinary least squares on the 3×3 normal equations.
    rows = [(1.0, x, t) for x, t in zip(xs, types, strict=True)]
    coef = _least_squares(rows, ys)
    return math.exp(coef[0] + coef[2] * target_type)


def _line(xs: list[float], ys: list[float], at: float) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0
    return my + slope * (at - mx)


def _least_squares(rows: list[tuple[float, ...]], ys: list[float]) -> list[float]:
    k = len(rows[0])
    a = [[sum(r[i] * r[j] for r in rows) for j in range(k)] for i in range(k)]
    b = [sum(r[i] * y for r, y in zip(rows, ys, strict=True)) for i in range(k)]
    for col in range(k):  # Gauss-Jordan with partial pivoting; k is 3
        pivot = max(range(col, k), key=lambda r: abs(a[r][col]))
        a[col], a[pivot], b[col], b[pivot] = a[pivot], a[col], b[pivot], b[col]
        if abs(a[col][col]) < 1e-12:
            raise ValueError("singular")
        for r in range(k):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col], strict=True)]
                b[r] -= f * b[col]
    return [b[i] / a[i][i] for i in range(k)]


def kenshin(history: History, day: date, *, holidays: bool = True) -> list[float | None]:
    shape = _shape(history, day, holidays)
    level = _level(history, day, holidays) if shape is not None else None
    if shape is None or level is None:
        return mean_of_four_weekdays(history, day)  # too little history: the baseline
    return [level * share for share in shape]


@dataclass(frozen=True)
class Band:
    low: list[float | None]
    mid: list[float | None]
    high: list[float | None]


def forecast_with_band(history: History, day: date, method: Method = kenshin) -> Band:
    """The forecast for `day` and its band from the method's own recent errors."""
    mid = method(history, day)
    ratios: list[list[float]] = [[] for _ in range(4)]  # by quarter of the day
    for age in range(1, TUNING.band_days + 1):
        past = day - timedelta(days=age)
        actual = _complete(history, past)
        if actual is None:
            continue
        replay = method(history, past)
        for slot, (a, f) in enumerate(zip(actual, replay, strict=True)):
            if f is not None and f > 0:
                ratios[slot // 12].append(a / f)
    low: list[float | None] = []
    high: list[float | None] = []
    for slot, value in enumerate(mid):
        group = [math.log(r) for r in ratios[slot // 12] if r > 0]
        if value is None or len(group) < 12:
            low.append(None)
            high.append(None)
            continue
        # A normal spread of log errors: with three weeks of days (whose slots err
        # together) the sample quantiles are too jumpy; widened for the days' small number.
        centre = sum(group) / len(group)
        spread = math.sqrt(sum((x - centre) ** 2 for x in group) / (len(group) - 1))
        spread *= math.sqrt(1 + 1 / TUNING.band_days)
        low.append(min(value, value * math.exp(centre - Z_80 * spread)))
        high.append(max(value, value * math.exp(centre + Z_80 * spread)))
    return Band(low, mid, high)


def update_intraday(band: Band, actual_so_far: Sequence[float | None], k: float = 8.0) -> Band:
    """Scale the rest of today by how it has run so far: the ratio of actual to forecast
    over the known slots, shrunk towards 1 by k / (k + slots known)."""
    known = [
        (a, f)
        for a, f in zip(actual_so_far, band.mid, strict=False)
        if a is not None and f is not None
    ]
    if not known or sum(f for _, f in known) <= 0:
        return band
    ratio = sum(a for a, _ in known) / sum(f for _, f in known)
    ratio = 1 + (ratio - 1) * len(known) / (len(known) + k)
    start = len(actual_so_far)

    def scaled(values: list[float | None]) -> list[float | None]:
        return [v if i < start or v is None else v * ratio for i, v in enumerate(values)]

    return Band(scaled(band.low), scaled(band.mid), scaled(band.high))
