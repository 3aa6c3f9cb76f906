"""A meter's peaks: each JST day's highest instant power (the ingest keeps them in
`meter_daily_peak`), each day's highest 30-minute demand (from the slots), and a range's
highest instant power with the span its readings cover.

Apart from `series.py` because a peak is a different question from a series: one figure
a day, or one for the range, stated with the time it is of.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, func, select

from kenshin.jst import JST, jst_midnight

from . import tables as t

__all__ = ["DayPeak", "DemandPeak", "InstantPeak", "daily_peaks", "demand_peaks", "instant_peak"]


@dataclass(slots=True)
class DayPeak:
    day: date  # JST
    import_w: int | None
    import_at: datetime | None  # JST
    export_w: int | None
    export_at: datetime | None


def daily_peaks(conn: Connection, meter_id: int, first: date, last: date) -> list[DayPeak]:
    """Every JST day of the range; a day without readings has no peaks (None)."""
    p = t.meter_daily_peak.c
    rows = conn.execute(
        select(t.meter_daily_peak).where(
            p.meter_id == meter_id,
            p.day >= jst_midnight(first),
            p.day < jst_midnight(last + timedelta(days=1)),
        )
    )
    by_day = {r.day.astimezone(JST).date(): r for r in rows}

    def jst(at: datetime | None) -> datetime | None:
        return at.astimezone(JST) if at else None

    out = []
    for n in range((last - first).days + 1):
        day = first + timedelta(days=n)
        r = by_day.get(day)
        out.append(
            DayPeak(day, r.import_w, jst(r.import_at), r.export_w, jst(r.export_at))
            if r
            else DayPeak(day, None, None, None, None)
        )
    return out


@dataclass(slots=True)
class DemandPeak:
    """A JST day's highest 30-minute demand: its slot's energy as an average power."""

    day: date  # JST
    start: datetime | None  # the slot's start, JST; None: no slot of the day has a value
    wh: int | None

    @property
    def demand_w(self) -> int | None:
        return None if self.wh is None else self.wh * 2  # Wh in half an hour, as W


def demand_peaks(
    conn: Connection, meter_id: int, direction: int, first: date, last: date
) -> list[DemandPeak]:
    """Every JST day of the range with its highest slot (the earliest on a tie), from the
    slots themselves: there whenever the 30-minute values are, whether or not the gateway
    sent instant readings then. A year is 17,520 slots of one meter: read through the
    primary key and reduced here."""
    e = t.slot_energy.c
    best: dict[date, tuple[int, datetime]] = {}
    rows = conn.execute(
        select(e.slot_start, e.wh)
        .where(
            e.meter_id == meter_id,
            e.direction == direction,
            e.slot_start >= jst_midnight(first),
            e.slot_start < jst_midnight(last + timedelta(days=1)),
            e.wh.is_not(None),
        )
        .order_by(e.slot_start)
    )
    for at, wh in rows:
        at = at.astimezone(JST)
        top = best.get(at.date())
        if top is None or wh > top[0]:  # by time: the earliest of equals stays
            best[at.date()] = (wh, at)
    out = []
    for n in range((last - first).days + 1):
        day = first + timedelta(days=n)
        wh, at = best.get(day, (None, None))
        out.append(DemandPeak(day, at, wh))
    return out


@dataclass(slots=True)
class InstantPeak:
    """The highest instant (60-s) power of a range and the span its readings cover."""

    power_w: int
    at: datetime  # JST
    covers_from: datetime  # the range's first and last instant readings, JST
    covers_to: datetime
    days: int  # JST days of the range with readings on this side


def instant_peak(
    conn: Connection, meter_id: int, direction: int, first: date, last: date
) -> InstantPeak | None:
    """From the daily peaks the ingest keeps, and the first and last raw reading of the
    range (two probes of the readings' primary key): a figure stated with the time it is
    of, since the gateway may have sent instant readings for only part of the range."""
    side = "export" if direction else "import"
    days = [
        d for d in daily_peaks(conn, meter_id, first, last) if getattr(d, f"{side}_w") is not None
    ]
    if not days:
        return None
    top = max(days, key=lambda d: (getattr(d, f"{side}_w"), -getattr(d, f"{side}_at").timestamp()))
    i = t.readings_instant.c
    lo, hi = conn.execute(
        select(func.min(i.at), func.max(i.at)).where(
            i.meter_id == meter_id,
            i.at >= jst_midnight(first),
            i.at < jst_midnight(last + timedelta(days=1)),
        )
    ).one()
    at = getattr(top, f"{side}_at")
    # Retention may have dropped the raw readings before the daily peaks' rows.
    lo, hi = (lo or at).astimezone(JST), (hi or at).astimezone(JST)
    return InstantPeak(getattr(top, f"{side}_w"), at, min(lo, at), max(hi, at), len(days))
