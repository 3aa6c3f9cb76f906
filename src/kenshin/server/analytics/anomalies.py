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
from sqlalchemy import Connection, and_, case, exists, func, or_, select

from kenshin.jst import JST, SLOT

from .. import schema as s
from ..times import jst_text

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


def _tenant_meters(tenant_id: int):
    m = s.meters.c
    return select(m.id, m.gateway_id).where(m.tenant_id == tenant_id)


# -- no_data -------------------------------------------------------------------------------


class NoData(Params):
    slots: int = Field(4, ge=1, le=480, description="half hours without a value")


def no_data(conn: Connection, tenant_id: int, now: datetime, p: NoData) -> list[Finding]:
    cutoff = floor_slot(now) - p.slots * SLOT
    f, m = s.readings_fixed.c, s.meters.c
    latest = (
        select(func.max(f.slot_start))
        .where(f.meter_id == m.id, f.slot_start >= cutoff)
        .scalar_subquery()
    )
    rows = conn.execute(
        _tenant_meters(tenant_id).where(
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
    e, i, m = s.slot_energy.c, s.readings_instant.c, s.meters.c
    zero_slots = (
        select(func.count())
        .where(
            e.meter_id == m.id,
            e.direction == 0,
            e.slot_start >= start,
            e.slot_start < end,
            e.wh == 0,
        )
        .scalar_subquery()
    )
    mean_power = (
        select(func.avg(i.power_w))
        .where(i.meter_id == m.id, i.at >= start, i.at < end)
        .scalar_subquery()
    )
    rows = conn.execute(
        _tenant_meters(tenant_id)
        .add_columns(mean_power.label("mean_w"))
        .where(zero_slots == p.slots, mean_power > p.min_power_w)
    )
    return [_meter_finding(r, slots=p.slots, mean_power_w=round(r.mean_w)) for r in rows]


# -- impossible_value ----------------------------------------------------------------------


class ImpossibleValue(Params):
    max_power_w: int = Field(12_000, ge=100, description="contract current × voltage")
    window_slots: int = Field(2, ge=1, le=48)


def impossible_value(
    conn: Connection, tenant_id: int, now: datetime, p: ImpossibleValue
) -> list[Finding]:
    end = floor_slot(now) + SLOT
    start = end - (p.window_slots + 1) * SLOT
    i, e, f, m = s.readings_instant.c, s.slot_energy.c, s.readings_fixed.c, s.meters.c
    sells = exists().where(f.meter_id == m.id, f.direction == 1)
    highest = (
        select(func.max(i.power_w)).where(i.meter_id == m.id, i.at >= start, i.at < end)
    ).scalar_subquery()
    lowest = (
        select(func.min(i.power_w)).where(i.meter_id == m.id, i.at >= start, i.at < end)
    ).scalar_subquery()
    biggest_slot = (
        select(func.max(e.wh)).where(e.meter_id == m.id, e.slot_start >= start, e.slot_start < end)
    ).scalar_subquery()
    rows = conn.execute(
        _tenant_meters(tenant_id)
        .add_columns(
            highest.label("highest"),
            lowest.label("lowest"),
            biggest_slot.label("biggest"),
            sells.label("sells"),
        )
        .where(
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


def _last_midday(now: datetime) -> tuple[datetime, datetime]:
    local = now.astimezone(JST)
    day = local.date() if local.time() >= time(14) else local.date() - timedelta(days=1)
    start = datetime.combine(day, time(10), JST)
    return start, start + timedelta(hours=4)


def pv_zero_midday(
    conn: Connection, tenant_id: int, now: datetime, p: PvZeroMidday
) -> list[Finding]:
    start, end = _last_midday(now)
    e, d, m = s.slot_energy.c, s.meter_energy.c, s.meters.c
    sold_lately = exists().where(
        d.meter_id == m.id,
        d.period == "day",
        d.direction == 1,
        d.wh > 0,
        d.start >= start - timedelta(days=7),
    )
    midday = (
        select(func.coalesce(func.sum(e.wh), 0))
        .where(e.meter_id == m.id, e.direction == 1, e.slot_start >= start, e.slot_start < end)
        .scalar_subquery()
    )
    known = (
        select(func.count())
        .where(
            e.meter_id == m.id,
            e.direction == 1,
            e.slot_start >= start,
            e.slot_start < end,
            e.wh.is_not(None),
        )
        .scalar_subquery()
    )
    plants = conn.execute(
        _tenant_meters(tenant_id)
        .add_columns(midday.label("sold"), known.label("known"))
        .where(sold_lately)
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
    t, tf = s.tenant_energy.c, s.tenant_forecast.c
    outside = func.sum(case((or_(t.wh < tf.low_wh, t.wh > tf.high_wh), 1), else_=0))
    row = conn.execute(
        select(outside.label("outside"), func.count().label("n")).where(
            t.tenant_id == tenant_id,
            t.period == "slot",
            t.direction == 0,
            t.start >= start,
            t.start < end,
            tf.tenant_id == t.tenant_id,
            tf.direction == 0,
            tf.slot_start == t.start,
        )
    ).one()
    if row.n == p.slots and row.outside == p.slots:
        findings.append(Finding("tenant", detail={"slots": p.slots, "since": jst_text(start)}))
    e, mf, m = s.slot_energy.c, s.meter_forecast.c, s.meters.c
    per_meter = conn.execute(
        select(m.id, m.gateway_id)
        .join_from(s.meters, s.slot_energy, e.meter_id == m.id)
        .join(
            s.meter_forecast,
            and_(mf.meter_id == e.meter_id, mf.slot_start == e.slot_start, mf.direction == 0),
        )
        .where(
            m.tenant_id == tenant_id,
            e.direction == 0,
            e.slot_start >= start,
            e.slot_start < end,
            e.wh.is_not(None),
        )
        .group_by(m.id, m.gateway_id)
        .having(
            and_(
                func.count() == p.slots,
                func.sum(case((or_(e.wh < mf.low_wh, e.wh > mf.high_wh), 1), else_=0)) == p.slots,
            )
        )
    )
    findings += [_meter_finding(r, slots=p.slots) for r in per_meter]
    return findings


# -- queue_growing ---------------------------------------------------------------------------


class QueueGrowing(Params):
    reports: int = Field(3, ge=2, le=20, description="consecutive reports, each deeper")


def queue_growing(
    conn: Connection, tenant_id: int, now: datetime, p: QueueGrowing
) -> list[Finding]:
    r, g = s.gateway_reports.c, s.gateways.c
    ranked = (
        select(
            r.gateway_id,
            r.queue_depth,
            func.row_number().over(partition_by=r.gateway_id, order_by=r.at.desc()).label("n"),
        )
        .join_from(s.gateway_reports, s.gateways, g.id == r.gateway_id)
        .where(g.tenant_id == tenant_id, r.at >= now - timedelta(days=2))
        .subquery()
    )
    rows = conn.execute(
        select(ranked.c.gateway_id, ranked.c.n, ranked.c.queue_depth)
        .where(ranked.c.n <= p.reports)
        .order_by(ranked.c.gateway_id, ranked.c.n.desc())
    ).all()
    depths: dict[int, list[int]] = {}
    for gateway_id, _, depth in rows:
        depths.setdefault(gateway_id, []).append(depth)  # oldest first
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
