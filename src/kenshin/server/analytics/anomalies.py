"""Anomaly checks: each a named rule with typed parameters, evaluated set-wise in SQL.

`RULES[name].evaluate(conn, tenant_id, now, params)` returns the tenant's current
findings: a finding is a subject ("meter:12", "gateway:3", "tenant") that breaks the rule
now. The alerts engine turns a new finding into an open alert and a finding that went
away into a resolved one, so rules only say what is wrong at `now`, never remember.

| rule             | finds                                                              |
|------------------|--------------------------------------------------------------------|
| no_data          | a meter with no 30-minute value for `slots` half hours             |
| meter_stuck      | a meter whose register stands still `slots` half hours while its   |
|                  | instant power averages over `min_power_w`                          |
| impossible_value | power over `max_power_w`, power sold by a meter that does not sell |
|                  | (no reverse register), or a slot holding more than `max_power_w`   |
|                  | for half an hour could (a jump past what the wrap rule allows)     |
| pv_zero_midday   | a selling meter that sold nothing 10:00–14:00 JST while at least   |
|                  | `min_share` of the tenant's other selling meters sold              |
| outside_band     | the tenant's (and each meter's) last `slots` half hours all outside |
|                  | the forecast band                                                  |
| queue_growing    | a gateway whose queue depth rose over its last `reports` reports   |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Select, Subquery, and_, case, func, or_, select

from kenshin.jst import JST, SLOT

from ..devices import queries as devices
from ..metering import queries as metering
from ..times import jst_text
from . import tables as t

__all__ = ["RULES", "Finding", "Rule", "floor_slot"]


@dataclass(frozen=True)
class Finding:
    subject: str
    meter_id: int | None = None
    gateway_id: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Rule:
    name: str
    params: type[Params]
    evaluate: Callable[[Connection, int, datetime, Any], list[Finding]]
    summary: str
    severity: str = "warning"


def floor_slot(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(minute=at.minute - at.minute % 30, second=0, microsecond=0)


def _meter_finding(row, **detail: Any) -> Finding:
    return Finding(f"meter:{row.id}", row.id, row.gateway_id, detail)


def _meters_with(meters: Subquery, *columns) -> Select:
    """The meters' `id` and `gateway_id` (what a finding names), and `columns`."""
    return select(meters.c.id, meters.c.gateway_id, *columns)


# -- no_data -------------------------------------------------------------------------------


class NoData(Params):
    slots: int = Field(4, ge=1, le=480, description="half hours without a value")


def no_data(conn: Connection, tenant_id: int, now: datetime, p: NoData) -> list[Finding]:
    cutoff = floor_slot(now) - p.slots * SLOT
    meters = devices.tenant_meters(tenant_id)
    m = meters.c
    latest = metering.newest_fixed_slot(m.id, cutoff)
    rows = conn.execute(
        _meters_with(meters).where(
            m.gateway_id.is_not(None), m.created_at < cutoff, latest.is_(None)
        )
    )
    return [_meter_finding(r, slots=p.slots, since=jst_text(cutoff)) for r in rows]


# -- meter_stuck ---------------------------------------------------------------------------


class MeterStuck(Params):
    slots: int = Field(4, ge=2, le=96)
    min_power_w: int = Field(100, ge=1)


def meter_stuck(conn: Connection, tenant_id: int, now: datetime, p: MeterStuck) -> list[Finding]:
    end = floor_slot(now)
    start = end - p.slots * SLOT
    meters = devices.tenant_meters(tenant_id)
    zero_slots = metering.slot_stat(_count_zero, meters.c.id, start, end, direction=0)
    mean_power = metering.power_stat(func.avg, meters.c.id, start, end)
    rows = conn.execute(
        _meters_with(meters, mean_power.label("mean_w")).where(
            zero_slots == p.slots, mean_power > p.min_power_w
        )
    )
    return [_meter_finding(r, slots=p.slots, mean_power_w=round(r.mean_w)) for r in rows]


def _count_zero(wh):
    return func.count(case((wh == 0, 1)))


# -- impossible_value ----------------------------------------------------------------------


class ImpossibleValue(Params):
    max_power_w: int = Field(12_000, ge=100, description="contract current × voltage")
    window_slots: int = Field(2, ge=1, le=48)


def impossible_value(
    conn: Connection, tenant_id: int, now: datetime, p: ImpossibleValue
) -> list[Finding]:
    end = floor_slot(now) + SLOT
    start = end - (p.window_slots + 1) * SLOT
    meters = devices.tenant_meters(tenant_id)
    m = meters.c
    sells = metering.sells(m.id)
    highest = metering.power_stat(func.max, m.id, start, end)
    lowest = metering.power_stat(func.min, m.id, start, end)
    biggest_slot = metering.slot_stat(func.max, m.id, start, end)
    rows = conn.execute(
        _meters_with(
            meters,
            highest.label("highest"),
            lowest.label("lowest"),
            biggest_slot.label("biggest"),
            sells.label("sells"),
        ).where(
            or_(
                highest > p.max_power_w,
                lowest < -p.max_power_w,
                and_(lowest < 0, ~sells),
                biggest_slot > p.max_power_w // 2,
            )
        )
    )
    findings = []
    for r in rows:
        what = []
        if r.highest is not None and r.highest > p.max_power_w:
            what.append(f"power {r.highest} W over {p.max_power_w} W")
        if r.lowest is not None and (r.lowest < -p.max_power_w or (r.lowest < 0 and not r.sells)):
            what.append(
                f"power {r.lowest} W sold" + ("" if r.sells else " by a meter that does not sell")
            )
        if r.biggest is not None and r.biggest > p.max_power_w // 2:
            what.append(f"slot of {r.biggest} Wh: more than {p.max_power_w} W could give")
        findings.append(_meter_finding(r, problems=what))
    return findings


# -- pv_zero_midday --------------------------------------------------------------------------


class PvZeroMidday(Params):
    min_share: float = Field(0.5, gt=0, le=1, description="of other selling meters that sold")


def _sum_or_zero(wh):
    return func.coalesce(func.sum(wh), 0)


def _last_midday(now: datetime) -> tuple[datetime, datetime]:
    local = now.astimezone(JST)
    day = local.date() if local.time() >= time(14) else local.date() - timedelta(days=1)
    start = datetime.combine(day, time(10), JST)
    return start, start + timedelta(hours=4)


def pv_zero_midday(
    conn: Connection, tenant_id: int, now: datetime, p: PvZeroMidday
) -> list[Finding]:
    start, end = _last_midday(now)
    meters = devices.tenant_meters(tenant_id)
    m = meters.c
    sold_lately = metering.sold_since(m.id, start - timedelta(days=7))
    midday = metering.slot_stat(_sum_or_zero, m.id, start, end, direction=1)
    known = metering.slot_stat(func.count, m.id, start, end, direction=1)  # count(wh): not NULL
    plants = conn.execute(
        _meters_with(meters, midday.label("sold"), known.label("known")).where(sold_lately)
    ).all()
    measured = [r for r in plants if r.known == 8]  # all eight midday slots have values
    findings = []
    for r in measured:
        others = [x for x in measured if x.id != r.id]
        if r.sold == 0 and others:
            share = sum(1 for x in others if x.sold > 0) / len(others)
            if share >= p.min_share:
                findings.append(
                    _meter_finding(r, day=start.date().isoformat(), others_selling=share)
                )
    return findings


# -- outside_band ----------------------------------------------------------------------------


class OutsideBand(Params):
    slots: int = Field(3, ge=1, le=48, description="consecutive half hours outside the band")


def outside_band(conn: Connection, tenant_id: int, now: datetime, p: OutsideBand) -> list[Finding]:
    end = floor_slot(now)
    start = end - p.slots * SLOT
    findings = []
    if _tenant_outside(conn, tenant_id, start, end, p.slots):
        findings.append(Finding("tenant", detail={"slots": p.slots, "since": jst_text(start)}))
    meters = devices.tenant_meters(tenant_id)
    e = metering.meter_slots(0, start, end).subquery()
    mf = t.meter_forecast.c
    per_meter = conn.execute(
        _meters_with(meters)
        .join_from(meters, e, e.c.meter_id == meters.c.id)
        .join(
            t.meter_forecast,
            and_(mf.meter_id == e.c.meter_id, mf.slot_start == e.c.slot_start, mf.direction == 0),
        )
        .group_by(meters.c.id, meters.c.gateway_id)
        .having(and_(func.count() == p.slots, _outside(e.c.wh, mf) == p.slots))
    )
    findings += [_meter_finding(r, slots=p.slots) for r in per_meter]
    return findings


def _outside(wh, band):
    """How many of the values are outside their forecast's band."""
    return func.sum(case((or_(wh < band.low_wh, wh > band.high_wh), 1), else_=0))


def _tenant_outside(
    conn: Connection, tenant_id: int, start: datetime, end: datetime, slots: int
) -> bool:
    """Whether the tenant's `slots` half hours from `start` are all outside the band."""
    e = metering.tenant_slots(tenant_id, 0, start, end).subquery()
    tf = t.tenant_forecast.c
    row = conn.execute(
        select(_outside(e.c.wh, tf).label("outside"), func.count().label("n")).join_from(
            e,
            t.tenant_forecast,
            and_(tf.tenant_id == tenant_id, tf.direction == 0, tf.slot_start == e.c.start),
        )
    ).one()
    return row.n == slots and row.outside == slots


# -- queue_growing ---------------------------------------------------------------------------


class QueueGrowing(Params):
    reports: int = Field(3, ge=2, le=20, description="consecutive reports, each deeper")


def queue_growing(
    conn: Connection, tenant_id: int, now: datetime, p: QueueGrowing
) -> list[Finding]:
    depths = devices.queue_depths(conn, tenant_id, now - timedelta(days=2), p.reports)
    return [
        Finding(f"gateway:{gateway_id}", gateway_id=gateway_id, detail={"queue_depths": d})
        for gateway_id, d in sorted(depths.items())
        if len(d) == p.reports and all(a < b for a, b in pairwise(d))
    ]


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule("no_data", NoData, no_data, "no 30-minute value for `slots` half hours"),
        Rule(
            "meter_stuck",
            MeterStuck,
            meter_stuck,
            "register still for `slots` half hours while power averages over `min_power_w`",
        ),
        Rule(
            "impossible_value",
            ImpossibleValue,
            impossible_value,
            "power past `max_power_w`, selling without a reverse register, or a slot too big",
            "error",
        ),
        Rule(
            "pv_zero_midday",
            PvZeroMidday,
            pv_zero_midday,
            "a plant sold nothing 10:00-14:00 JST while `min_share` of the others sold",
        ),
        Rule(
            "outside_band",
            OutsideBand,
            outside_band,
            "`slots` half hours in a row outside the forecast band",
            "info",
        ),
        Rule(
            "queue_growing",
            QueueGrowing,
            queue_growing,
            "a gateway's queue deeper at each of its last `reports` reports",
        ),
    )
}
