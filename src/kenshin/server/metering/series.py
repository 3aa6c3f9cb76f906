"""Series queries: energy per slot/hour/day/month, instant power (raw or in buckets), for
one meter or a whole tenant (peaks: `peaks.py`), with JST boundaries and gaps shown as gaps.

Every period of the asked range is present in the answer: one the database has no row
for has no energy (None) and no slots, never a made-up zero. Energy periods say how many
30-minute values they hold against how many they should (48 a JST day per meter, no DST
in Japan), so "complete" is a fact, not a guess.

Every query reads the rollup tables or the raw tables through their primary keys
(owner, [period, direction,] time): a range costs the rows it returns, whatever the
fleet's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from typing import Literal

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    Select,
    Subquery,
    and_,
    bindparam,
    cast,
    func,
    select,
    type_coerce,
)

from kenshin.jst import JST, SLOT, jst_midnight

from ..devices import queries as devices
from . import tables as t

__all__ = [
    "MAX_DAYS",
    "MAX_POWER_DAYS",
    "MAX_POWER_POINTS",
    "MAX_TENANT_CSV_DAYS",
    "EnergyPoint",
    "MeterOfTenant",
    "Period",
    "PowerPoint",
    "energy_series",
    "instant_power",
    "jst_midnight",
    "meters_slots",
    "period_starts",
    "slot_grid",
    "tenant_meter_count",
    "tenant_slot_grid",
]

Period = Literal["slot", "hour", "day", "month"]
MISSING = ("missing", None)
# What one request may ask for (a 400 problem beyond): JST days, inclusive, per period...
MAX_DAYS: dict[str, int] = {"slot": 93, "hour": 93, "day": 3660, "month": 3660}
# ...instant power: a range and the points of the answer...
MAX_POWER_DAYS = 31
MAX_POWER_POINTS = 5000
# ...and the whole tenant's slot CSV (meters x 48 rows a day: streamed, but not endless).
MAX_TENANT_CSV_DAYS = 31
# Bucket widths (s) for downsampled power: each divides a day, so buckets from a round
# start stay on round clock times.
BUCKET_WIDTHS = (10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)


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


# The points are slotted dataclasses whose fields are in the order of the API's models
# (metering.api): the JSON answer is serialized from them directly (see jsonout).
@dataclass(slots=True)
class EnergyPoint:
    start: datetime  # JST
    wh: int | None
    slots: int  # 30-minute values summed (meter-slots for a tenant)
    expected_slots: int
    complete: bool  # slots >= expected_slots
    refilled: int
    status: str | None = None  # one meter's slots only: measured | refilled | missing


def tenant_meter_count(conn: Connection, tenant_id: int) -> int:
    return devices.meter_count(conn, tenant_id)


# The series' statements are built once, their values bound at each request: building a
# select() and its comparisons cost more Python than executing it (issue 21). Each reads
# from one row outer-joined to the stored periods: the meter's (the devices room's
# `tenant_meter`: no row, not the tenant's, not found) in the same round trip, or the
# tenant's meter count; an owner without values in the range is one row of NULLs.
def _in_range(c, at):
    return and_(c.direction == bindparam("direction"), at >= bindparam("lo"), at < bindparam("hi"))


@cache
def _energy_statement(owner: Literal["meter_slot", "meter", "tenant"]) -> Select:
    tenant_id = bindparam("tenant_id")
    if owner == "tenant":
        return _tenant_energy_statement(tenant_id)
    meter = devices.tenant_meter(bindparam("meter_id"), tenant_id).subquery()
    if owner == "meter_slot":
        e = t.slot_energy.c
        return (
            select(e.slot_start, e.wh, e.status)
            .select_from(meter)
            .outerjoin(t.slot_energy, and_(e.meter_id == meter.c.id, _in_range(e, e.slot_start)))
        )
    c = t.meter_energy.c
    return (
        select(c.start, c.wh, c.slots, c.refilled)
        .select_from(meter)
        .outerjoin(t.meter_energy, and_(c.meter_id == meter.c.id, _periods_in_range(c)))
    )


def _periods_in_range(c):
    return and_(c.period == bindparam("period"), _in_range(c, c.start))


def _tenant_energy_statement(tenant_id) -> Select:
    """A tenant's stored periods, each row with its meter count; no period: one row of
    NULLs with the count. (The tenant exists: the request's `TenantId` checked it.)"""
    c = t.tenant_energy.c
    # One row, counted once (not once a period), the periods outer-joined to it.
    ids = devices.tenant_meter_ids(tenant_id).subquery()
    meters = select(func.count().label("n")).select_from(ids).subquery()
    return (
        select(c.start, c.wh, c.slots, c.refilled, meters.c.n)
        .select_from(meters)
        .outerjoin(t.tenant_energy, and_(c.tenant_id == tenant_id, _periods_in_range(c)))
    )


@lru_cache(maxsize=256)
def _spans(period: Period, first: date, last: date) -> tuple[tuple[datetime, datetime, int], ...]:
    """period_starts with each period's 30-minute slots: the same few ranges are asked
    again and again (today, the last 90 days), each costing a loop of date arithmetic."""
    return tuple((a, b, int((b - a) / SLOT)) for a, b in period_starts(period, first, last))


def energy_series(
    conn: Connection,
    *,
    period: Period,
    direction: int,
    first: date,
    last: date,
    tenant_id: int,
    meter_id: int | None = None,
) -> tuple[int, list[EnergyPoint]] | None:
    """One meter's (meter_id, of tenant `tenant_id`) or one tenant's energy per period, and
    how many meters it is of; None when the tenant has no such meter. A tenant's period is
    complete when every one of its meters (as registered now) has every slot of it."""
    spans = _spans(period, first, last)  # never empty: first <= last
    per_slot = meter_id is not None and period == "slot"
    owner = "meter_slot" if per_slot else "meter" if meter_id is not None else "tenant"
    rows = conn.execute(
        _energy_statement(owner),
        {"meter_id": meter_id, "tenant_id": tenant_id, "period": period,
         "direction": direction, "lo": spans[0][0], "hi": spans[-1][1]},
    ).all()  # fmt: skip
    if not rows:
        return None
    meters = rows[0][4] if owner == "tenant" else 1
    # Keyed by the stored (UTC) times: an aware datetime hashes and compares by its
    # instant, so the JST starts find them as they are. Rows unpacked as tuples.
    stored: dict[datetime, tuple[int | None, int, int, str | None]] = {}
    if per_slot:
        for at, wh, status in rows:
            stored[at] = (wh, int(wh is not None), int(status == "refilled"), status)
    else:
        for at, wh, slots, refilled, *_ in rows:
            stored[at] = (wh, slots, refilled, None)
    gap = (None, 0, 0, "missing" if per_slot else None)
    out = []
    for start, _, slots_in in spans:  # the starts are JST already (period_starts)
        wh, slots, refilled, status = stored.get(start, gap)
        expected = meters * slots_in
        if status is None and gap[3]:
            status = gap[3]  # a row without a status: the same gap to the reader
        out.append(
            EnergyPoint(start, wh if slots else None, slots, expected, slots >= expected,
                        refilled, status)
        )  # fmt: skip
    return meters, out


@dataclass(slots=True)  # not frozen: a day of raw readings builds 1,440 of them
class PowerPoint:
    at: datetime  # JST; a bucket's start
    mean_w: float
    min_w: int
    max_w: int
    count: int


def bucket_width(span: timedelta, max_points: int) -> int:
    """The narrowest width from BUCKET_WIDTHS (else whole days) giving <= max_points."""
    need = span.total_seconds() / max_points
    for width in BUCKET_WIDTHS:
        if width >= need:
            return width
    return -(-int(need) // 86400) * 86400


@cache
def _raw_power(dialect: str) -> Select:
    """A meter's readings in a range, in time order, at most `n`, if the meter is the
    tenant's (an uncorrelated EXISTS: checked once, in the same round trip)."""
    i = t.readings_instant.c
    # On PostgreSQL the driver's own aware datetimes (the session is UTC): UTCDateTime's
    # check, a Python call per row, cost more than the rest of a day of readings.
    at = type_coerce(i.at, DateTime(timezone=True)) if dialect == "postgresql" else i.at
    owned = devices.tenant_meter(bindparam("meter_id"), bindparam("tenant_id")).exists()
    in_range = and_(i.meter_id == bindparam("meter_id"), i.at >= bindparam("lo"),
                    i.at < bindparam("hi"))  # fmt: skip
    return select(at, i.power_w).where(in_range, owned).order_by(i.at).limit(bindparam("n"))


def instant_power(
    conn: Connection,
    meter_id: int,
    start: datetime,
    end: datetime,
    max_points: int,
    tenant_id: int,
) -> tuple[int, list[PowerPoint]] | None:
    """Readings in [start, end): as they are when at most `max_points`, else grouped in
    equal buckets from `start` (mean, min, max, count; computed by the database, so a
    month of readings never crosses the wire) so that there are at most `max_points`.
    Returns the bucket width in seconds (0: raw) and the points; None when the tenant has
    no such meter."""
    i = t.readings_instant.c
    in_range = and_(i.meter_id == meter_id, i.at >= start, i.at < end)
    # One more than allowed tells "too many" without counting them all.
    rows = conn.execute(
        _raw_power(conn.dialect.name),
        {"meter_id": meter_id, "tenant_id": tenant_id, "lo": start, "hi": end,
         "n": max_points + 1},
    ).all()  # fmt: skip
    if not rows and not devices.has_meter(conn, tenant_id, meter_id):  # or not the tenant's?
        return None
    if len(rows) <= max_points:
        # Unpacked as tuples: named access on 1,440 rows cost more than the query.
        # mean_w a float, as the API's model holds it (the JSON shows 523.0).
        return 0, [PowerPoint(at.astimezone(JST), float(w), w, w, 1) for at, w in rows]
    width = bucket_width(end - start, max_points)
    origin = int(start.timestamp())  # whole seconds: integer arithmetic on SQLite
    if conn.dialect.name == "postgresql":
        seconds = func.date_part("epoch", i.at, type_=Float)
    else:  # stored as UTC text
        seconds = cast(func.strftime("%s", i.at), Integer)
    bucket = (seconds - origin) // width  # floor division, rendered per backend
    inner = select(bucket.label("k"), i.power_w).where(in_range).subquery()
    grouped = conn.execute(
        select(
            inner.c.k,
            func.avg(inner.c.power_w),
            func.min(inner.c.power_w),
            func.max(inner.c.power_w),
            func.count(),
        )
        .group_by(inner.c.k)
        .order_by(inner.c.k)
    )
    points = [
        PowerPoint(
            datetime.fromtimestamp(origin + int(k) * width, JST), round(float(mean), 1), lo, hi, n
        )
        for k, mean, lo, hi, n in grouped
    ]
    return width, points


@dataclass(frozen=True, slots=True)
class MeterOfTenant:
    """Who a meter's rows in an export are of."""

    meter_id: int
    service_code: str
    customer_id: str
    supply_point: str | None


def meters_slots(
    engine: Engine,
    tenant_id: int,
    directions: Sequence[int],
    first: date,
    last: date,
    meters: Subquery | None = None,
    chunk: int = 2000,
) -> Iterator[tuple[MeterOfTenant, dict[tuple[int, datetime], tuple[str | None, int | None]]]]:
    """Every meter of the tenant (by id; `meters`: the devices room's `export_meters`, the
    tenant's by default, to ask fewer) with its stored slots of the days in `directions`,
    keyed (direction, UTC start) -> (status, wh); a slot not in it has no value. One
    meter's slots at a time: rows are read in chunks (a server-side cursor on PostgreSQL)
    on a connection of its own, for a streamed response, so memory stays flat however many
    meters."""
    lo, hi = jst_midnight(first), jst_midnight(last + timedelta(days=1))
    e = t.slot_energy.c
    meters = devices.export_meters(tenant_id) if meters is None else meters
    m = meters.c
    # Outer join: a meter without any row in the range is there, with no slots.
    query = (
        select(m.meter_id, m.service_code, m.customer_id, m.supply_point, e.direction,
               e.slot_start, e.status, e.wh)
        .select_from(meters)
        .outerjoin(
            t.slot_energy,
            and_(e.meter_id == m.meter_id, e.direction.in_(directions), e.slot_start >= lo,
                 e.slot_start < hi),
        )
        .order_by(m.meter_id, e.slot_start)
    )  # fmt: skip
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=chunk).execute(query)
        current, stored = None, {}
        for part in result.partitions():
            for meter, code, customer, point, direction, at, status, wh in part:
                if current is not None and current.meter_id != meter:
                    yield current, stored
                    stored = {}
                if current is None or current.meter_id != meter:
                    current = MeterOfTenant(meter, code, customer, point)
                if at is not None:
                    stored[direction, at] = (status, wh)
        if current is not None:
            yield current, stored


def slot_grid(first: date, last: date, label: Callable[[datetime], object] = lambda at: at):
    """Every slot of the JST days as (UTC start, as `meters_slots` keys it; `label(start)`),
    the label computed once per slot of the range rather than once per row."""
    return [
        (start.astimezone(UTC), label(start)) for start, _ in period_starts("slot", first, last)
    ]


def tenant_slot_grid(
    engine: Engine,
    tenant_id: int,
    direction: int,
    first: date,
    last: date,
    label: Callable[[datetime], object] = lambda at: at,
    chunk: int = 2000,
) -> Iterator[tuple]:
    """(meter_id, service_code, customer_id, slot, status, wh) for every meter of the
    tenant and every 30-minute slot of the days, by meter then time; a slot without a value
    is there as `missing`. `slot` is `label(slot_start)`; streamed (`meters_slots`)."""
    grid = slot_grid(first, last, label)
    for meter, stored in meters_slots(engine, tenant_id, (direction,), first, last, chunk=chunk):
        for at, shown in grid:
            status, wh = stored.get((direction, at), MISSING)
            yield meter.meter_id, meter.service_code, meter.customer_id, shown, status, wh
