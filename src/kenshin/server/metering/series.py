"""Series queries: energy per slot/hour/day/month, daily peaks, instant power (raw or in
buckets), for one meter or a whole tenant, with JST boundaries and gaps shown as gaps.

Every period of the asked range is present in the answer: one the database has no row
for has no energy (None) and no slots, never a made-up zero. Energy periods say how many
30-minute values they hold against how many they should (48 a JST day, no DST in Japan),
so "complete" is a fact, not a guess.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from sqlalchemy import Connection, Engine, select

from kenshin.echonet.edt import JST

from .. import schema as s

__all__ = [
    "MAX_DAYS",
    "EnergyPoint",
    "Period",
    "PowerPoint",
    "energy_series",
    "instant_power",
    "jst_midnight",
    "period_starts",
    "tenant_slot_rows",
]

Period = Literal["slot", "hour", "day", "month"]
SLOT = timedelta(minutes=30)
# The longest range per period (JST days, inclusive): what one response may carry.
MAX_DAYS: dict[str, int] = {"slot": 93, "hour": 93, "day": 3660, "month": 3660}


def jst_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), JST)


def _month_after(at: datetime) -> datetime:
    local = at.astimezone(JST)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return local.replace(year=year, month=month)


def period_starts(period: Period, first: date, last: date) -> list[tuple[datetime, datetime]]:
    """(start, end) of every period from the one holding `first` to the one holding `last`."""
    start = jst_midnight(first)
    end = jst_midnight(last + timedelta(days=1))
    if period == "month":
        start = start.replace(day=1)
    out = []
    at = start
    while at < end:
        if period == "slot":
            after = at + SLOT
        elif period == "hour":
            after = at + timedelta(hours=1)
        elif period == "day":
            after = jst_midnight(at.astimezone(JST).date() + timedelta(days=1))
        else:
            after = _month_after(at)
        out.append((at, after))
        at = after
    return out


@dataclass(frozen=True)
class EnergyPoint:
    start: datetime  # JST
    wh: int | None
    slots: int  # 30-minute values summed
    expected_slots: int
    refilled: int
    status: str | None = None  # slots only: measured | refilled | missing

    @property
    def complete(self) -> bool:
        return self.slots == self.expected_slots


def energy_series(
    conn: Connection,
    *,
    period: Period,
    direction: int,
    first: date,
    last: date,
    meter_id: int | None = None,
    tenant_id: int | None = None,
) -> list[EnergyPoint]:
    """One meter's (meter_id) or one tenant's (tenant_id) energy per period."""
    spans = period_starts(period, first, last)
    if not spans:
        return []
    lo, hi = spans[0][0], spans[-1][1]
    stored: dict[datetime, tuple[int | None, int, int, str | None]] = {}
    if meter_id is not None and period == "slot":
        e = s.slot_energy.c
        for r in conn.execute(
            select(e.slot_start, e.wh, e.status).where(
                e.meter_id == meter_id, e.direction == direction, e.slot_start >= lo,
                e.slot_start < hi,
            )
        ):  # fmt: skip
            counted = r.wh is not None
            stored[r.slot_start] = (r.wh, int(counted), int(r.status == "refilled"), r.status)
    else:
        table = s.meter_energy if meter_id is not None else s.tenant_energy
        c = table.c
        owner = c.meter_id == meter_id if meter_id is not None else c.tenant_id == tenant_id
        for r in conn.execute(
            select(c.start, c.wh, c.slots, c.refilled).where(
                owner, c.period == period, c.direction == direction, c.start >= lo, c.start < hi
            )
        ):
            stored[r.start] = (r.wh, r.slots, r.refilled, None)
    out = []
    for start, end in spans:
        expected = int((end - start) / SLOT)
        wh, slots, refilled, status = stored.get(start.astimezone(UTC), (None, 0, 0, None))
        if period == "slot" and meter_id is not None and status is None:
            status = "missing"
        if meter_id is None:  # a tenant's period holds meter-slots: no fixed expectation
            expected = slots
        out.append(
            EnergyPoint(start.astimezone(JST), wh if slots else None, slots, expected, refilled,
                        status)
        )  # fmt: skip
    return out


@dataclass(frozen=True)
class PowerPoint:
    at: datetime  # JST; a bucket's start
    mean_w: float
    min_w: int
    max_w: int
    count: int


def instant_power(
    conn: Connection, meter_id: int, start: datetime, end: datetime, max_points: int
) -> tuple[int, list[PowerPoint]]:
    """Readings in [start, end): as they are when at most `max_points`, else averaged in
    equal buckets (a multiple of 10 s) so that there are at most `max_points`. Returns the
    bucket width in seconds (0: raw) and the points."""
    i = s.readings_instant.c
    rows = conn.execute(
        select(i.at, i.power_w)
        .where(i.meter_id == meter_id, i.at >= start, i.at < end)
        .order_by(i.at)
    ).all()
    if len(rows) <= max_points:
        return 0, [
            PowerPoint(r.at.astimezone(JST), r.power_w, r.power_w, r.power_w, 1) for r in rows
        ]
    span = (end - start).total_seconds()
    width = max(10, -(-int(span / max_points) // 10) * 10)
    buckets: dict[int, list[int]] = {}
    origin = start.timestamp()
    for r in rows:
        buckets.setdefault(int((r.at.timestamp() - origin) // width), []).append(r.power_w)
    points = [
        PowerPoint(
            datetime.fromtimestamp(origin + k * width, JST),
            round(sum(v) / len(v), 1),
            min(v),
            max(v),
            len(v),
        )
        for k, v in sorted(buckets.items())
    ]
    return width, points


def tenant_slot_rows(
    engine: Engine, tenant_id: int, direction: int, first: date, last: date, chunk: int = 5000
) -> Iterator[tuple]:
    """Every meter's 30-minute slots of a tenant over the days, ordered by site and time,
    read in chunks on a connection of its own (for a streamed response)."""
    e, m, site = s.slot_energy.c, s.meters.c, s.sites.c
    query = (
        select(
            m.id, site.service_code, site.customer_id, e.slot_start, e.status, e.wh,
        )
        .join_from(s.slot_energy, s.meters, m.id == e.meter_id)
        .join(s.sites, site.id == m.site_id)
        .where(
            m.tenant_id == tenant_id,
            e.direction == direction,
            e.slot_start >= jst_midnight(first),
            e.slot_start < jst_midnight(last + timedelta(days=1)),
        )
        .order_by(m.id, e.slot_start)
    )  # fmt: skip
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=chunk).execute(query)
        yield from result
