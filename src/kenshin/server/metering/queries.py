"""The metering room's doors for other rooms' reads: the stored values as selectables
with named columns (to execute, or to join to a caller's query) and per-meter
expressions correlated to a caller's meter id column (the analytics room's anomaly rules
evaluate a tenant's meters in one query). The tables' shapes stay in this room.

Times are UTC-aware datetimes, ranges half-open [lo, hi); direction 0 is bought
(normal), 1 sold (reverse).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, Exists, ScalarSelect, Select, exists, func, select

from . import tables as t

__all__ = [
    "meter_days",
    "meter_slots",
    "newest_fixed_slot",
    "newest_reading_at",
    "power_stat",
    "sells",
    "slot_stat",
    "sold_since",
    "tenant_slots",
]

Aggregate = Callable[[ColumnElement], ColumnElement]


def tenant_slots(tenant_id: int, direction: int, lo: datetime, hi: datetime) -> Select:
    """The tenant's 30-minute totals: `start`, `wh`, `slots` (meters counted in it)."""
    c = t.tenant_energy.c
    return select(c.start, c.wh, c.slots).where(
        c.tenant_id == tenant_id, c.period == "slot", c.direction == direction,
        c.start >= lo, c.start < hi,
    )  # fmt: skip


def meter_slots(direction: int, lo: datetime, hi: datetime, meter_id: int | None = None) -> Select:
    """The stored 30-minute values with a value (`meter_id`, `slot_start`, `wh`): one
    meter's, or every meter's when joined to the caller's meters (as a subquery, which the
    planner takes into the join)."""
    e = t.slot_energy.c
    mine = [] if meter_id is None else [e.meter_id == meter_id]
    return select(e.meter_id, e.slot_start, e.wh).where(
        *mine, e.direction == direction, e.wh.is_not(None), e.slot_start >= lo, e.slot_start < hi
    )


def meter_days(meter_id: int, direction: int, lo: datetime, hi: datetime) -> Select:
    """The meter's JST days: `start`, `wh`."""
    d = t.meter_energy.c
    return select(d.start, d.wh).where(
        d.meter_id == meter_id, d.period == "day", d.direction == direction,
        d.start >= lo, d.start < hi,
    )  # fmt: skip


def newest_reading_at(conn: Connection, meter_ids: Select) -> datetime | None:
    """When the newest instant reading of any of the meters (`meter_ids`: a select of
    ids) was taken, however old; None: none ever."""
    latest = t.meter_latest.c
    return conn.execute(select(func.max(latest.at)).where(latest.meter_id.in_(meter_ids))).scalar()


# -- per meter, correlated to the caller's meter id column ---------------------------------


def newest_fixed_slot(meter_id: ColumnElement, since: datetime) -> ScalarSelect:
    """The newest slot start of the meter's register reads since `since` (NULL: none)."""
    f = t.readings_fixed.c
    return (
        select(func.max(f.slot_start))
        .where(f.meter_id == meter_id, f.slot_start >= since)
        .scalar_subquery()
    )


def slot_stat(
    agg: Aggregate, meter_id: ColumnElement, lo: datetime, hi: datetime,
    direction: int | None = None,
) -> ScalarSelect:  # fmt: skip
    """`agg` over the Wh of the meter's slots in [lo, hi) (of one direction, or both)."""
    e = t.slot_energy.c
    way = [] if direction is None else [e.direction == direction]
    return (
        select(agg(e.wh))
        .where(e.meter_id == meter_id, *way, e.slot_start >= lo, e.slot_start < hi)
        .scalar_subquery()
    )


def power_stat(agg: Aggregate, meter_id: ColumnElement, lo: datetime, hi: datetime) -> ScalarSelect:
    """`agg` over the meter's instant power (W) read in [lo, hi)."""
    i = t.readings_instant.c
    return (
        select(agg(i.power_w))
        .where(i.meter_id == meter_id, i.at >= lo, i.at < hi)
        .scalar_subquery()
    )


def sells(meter_id: ColumnElement) -> Exists:
    """Whether the meter has ever given a reverse (sold) register read."""
    f = t.readings_fixed.c
    return exists().where(f.meter_id == meter_id, f.direction == 1)


def sold_since(meter_id: ColumnElement, since: datetime) -> Exists:
    """Whether the meter sold something on a JST day starting at or after `since`."""
    d = t.meter_energy.c
    return exists().where(
        d.meter_id == meter_id, d.period == "day", d.direction == 1, d.wh > 0, d.start >= since
    )
