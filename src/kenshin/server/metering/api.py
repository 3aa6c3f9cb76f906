"""The metering room's HTTP face: series of one meter or a whole tenant, as JSON or as CSV
that Excel opens right (UTF-8 with a BOM), every range in JST calendar days.

Limits (a 400 problem beyond them): energy per slot or hour over at most 93 days, per day
or month over at most 3,660; instant power over at most 31 days and 5,000 points (longer
ranges come in buckets with mean, min and max); the whole tenant's slot CSV over at most
31 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from kenshin.echonet.edt import JST

from .. import schema as s
from ..deps import Conn, Principal, RowId, TenantId, require_role
from ..devices.registry import get_meter
from ..problems import Problem
from . import current, series
from .csvout import CSV_RESPONSE, csv_response

router = APIRouter(tags=["metering"])
Viewer = Annotated[Principal, Depends(require_role("viewer"))]
DIRECTIONS = {"normal": 0, "reverse": 1}
Direction = Annotated[
    Literal["normal", "reverse"], Query(description="normal: bought; reverse: sold")
]
Format = Annotated[Literal["json", "csv"], Query(description="csv: UTF-8 with a BOM")]
First = Annotated[date, Query(alias="from", description="first JST day, YYYY-MM-DD")]
Last = Annotated[date, Query(alias="to", description="last JST day (inclusive)")]
MAX_POWER_DAYS = 31
MAX_POWER_POINTS = 5000
MAX_TENANT_CSV_DAYS = 31


def _meter(conn, meter_id: RowId, tenant_id: RowId):
    meter = get_meter(conn, meter_id, tenant_id)
    if meter is None:
        raise Problem(404, "no such meter")
    return meter


def _check_range(first: date, last: date, limit: int, what: str) -> None:
    if last < first:
        raise Problem(400, "'to' is before 'from'")
    if (last - first).days + 1 > limit:
        raise Problem(400, f"{what}: at most {limit} days in one request")


# -- energy ----------------------------------------------------------------------------------


class EnergyValue(BaseModel):
    start: datetime = Field(description="the period's start, JST")
    wh: int | None = Field(description="null: no 30-minute value in it")
    slots: int = Field(description="30-minute values summed")
    expected_slots: int
    complete: bool
    refilled: int = Field(description="of the slots, how many came from the meter's history")
    status: Literal["measured", "refilled", "missing"] | None = Field(
        None, description="per-slot series only"
    )


class EnergySeries(BaseModel):
    meter_id: RowId | None = None
    period: Literal["slot", "hour", "day", "month"]
    direction: Literal["normal", "reverse"]
    first: date
    last: date
    total_wh: int
    complete: bool
    values: list[EnergyValue]


def _energy(conn, period, direction, first, last, **owner) -> EnergySeries:
    _check_range(first, last, series.MAX_DAYS[period], f"{period} energy")
    points = series.energy_series(
        conn, period=period, direction=DIRECTIONS[direction], first=first, last=last, **owner
    )
    return EnergySeries(
        meter_id=owner.get("meter_id"),
        period=period,
        direction=direction,
        first=first,
        last=last,
        total_wh=sum(p.wh or 0 for p in points),
        complete=all(p.complete for p in points),
        values=[EnergyValue(**p.__dict__, complete=p.complete) for p in points],
    )


def _energy_csv(result: EnergySeries, name: str):
    return csv_response(
        f"{name}-{result.period}-{result.first}-{result.last}-{result.direction}.csv",
        ["start_jst", "direction", "wh", "slots", "expected_slots", "refilled", "status"],
        (
            [v.start.isoformat(), result.direction, v.wh, v.slots, v.expected_slots,
             v.refilled, v.status or ""]
            for v in result.values
        ),
    )  # fmt: skip


@dataclass
class EnergyQuery:
    """What an energy series is asked for (the query parameters of every energy route)."""

    first: First
    last: Last
    period: Literal["slot", "hour", "day", "month"] = "slot"
    direction: Direction = "normal"
    format: Format = "json"


EnergyAsk = Annotated[EnergyQuery, Depends()]


def _answer(conn, ask: EnergyQuery, name: str, **owner):
    result = _energy(conn, ask.period, ask.direction, ask.first, ask.last, **owner)
    return _energy_csv(result, name) if ask.format == "csv" else result


@router.get(
    "/meters/{meter_id}/energy",
    summary="A meter's energy per slot, hour, day or month",
    responses=CSV_RESPONSE,
)
def meter_energy(meter_id: RowId, conn: Conn, _: Viewer, tenant_id: TenantId, ask: EnergyAsk):
    _meter(conn, meter_id, tenant_id)
    return _answer(conn, ask, f"meter-{meter_id}", meter_id=meter_id)


@router.get(
    "/meters/{meter_id}/slots",
    summary="A meter's 30-minute energy for a JST day",
    responses=CSV_RESPONSE,
)
def meter_slots(
    meter_id: RowId,
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    day: Annotated[date, Query(description="The JST calendar day, YYYY-MM-DD")],
    direction: Direction = "normal",
    format: Format = "json",
):
    ask = EnergyQuery(first=day, last=day, period="slot", direction=direction, format=format)
    return meter_energy(meter_id, conn, _, tenant_id, ask)


@router.get(
    "/energy",
    summary="The tenant's energy, all meters, per slot, hour, day or month",
    responses=CSV_RESPONSE,
)
def tenant_energy(conn: Conn, _: Viewer, tenant_id: TenantId, ask: EnergyAsk):
    return _answer(conn, ask, f"tenant-{tenant_id}", tenant_id=tenant_id)


class SlotPeak(BaseModel):
    start: datetime
    wh: int
    average_w: int = Field(description="the slot's energy as a 30-minute average power")


@router.get("/energy/peak", summary="The tenant's highest 30-minute demand of a JST day")
def tenant_peak(
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    day: Annotated[date, Query(description="The JST day")],
    direction: Direction = "normal",
) -> SlotPeak | None:
    points = series.energy_series(
        conn, period="slot", direction=DIRECTIONS[direction], first=day, last=day,
        tenant_id=tenant_id,
    )  # fmt: skip
    valued = [p for p in points if p.wh is not None]
    if not valued:
        return None
    top = max(valued, key=lambda p: (p.wh, -p.start.timestamp()))
    return SlotPeak(start=top.start, wh=top.wh, average_w=top.wh * 2)


@router.get(
    "/energy/meters.csv",
    summary="Every meter's 30-minute slots, the whole tenant (CSV)",
    responses=CSV_RESPONSE,
)
def tenant_slots_csv(
    request: Request,
    _: Viewer,
    tenant_id: TenantId,
    first: First,
    last: Last,
    direction: Direction = "normal",
):
    _check_range(first, last, MAX_TENANT_CSV_DAYS, "the tenant's slot CSV")
    rows = series.tenant_slot_rows(
        request.app.state.engine, tenant_id, DIRECTIONS[direction], first, last
    )
    return csv_response(
        f"tenant-{tenant_id}-slots-{first}-{last}-{direction}.csv",
        ["meter_id", "service_code", "customer_id", "slot_start_jst", "direction", "status", "wh"],
        (
            [meter_id, code, customer, at.astimezone(JST).isoformat(), direction, status, wh]
            for meter_id, code, customer, at, status, wh in rows
        ),
    )


# -- now, power and peaks ---------------------------------------------------------------------


class MeterNow(BaseModel):
    meter_id: RowId
    measured: bool = Field(description="a reading in the last ten minutes; else 未計測")
    power_w: int | None
    current_r_da: int | None
    current_t_da: int | None
    at: datetime | None = Field(description="the newest reading's time, however old")
    today: date
    today_bought_wh: int | None
    today_sold_wh: int | None


@router.get("/meters/{meter_id}/current", summary="A meter now: power and today's energy")
def meter_current(meter_id: RowId, conn: Conn, _: Viewer, tenant_id: TenantId) -> MeterNow:
    _meter(conn, meter_id, tenant_id)
    return MeterNow(**current.meter_now(conn, meter_id, s.utcnow()))


class PowerValue(BaseModel):
    at: datetime = Field(description="JST; a bucket's start when downsampled")
    mean_w: float
    min_w: int
    max_w: int
    count: int


class PowerSeries(BaseModel):
    meter_id: RowId
    start: datetime
    end: datetime
    bucket_s: int = Field(description="0: every reading as it came")
    values: list[PowerValue]


@router.get(
    "/meters/{meter_id}/power",
    summary="A meter's instant power over a time range",
    responses=CSV_RESPONSE,
)
def meter_power(
    meter_id: RowId,
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    start: Annotated[datetime, Query(description="ISO 8601; no offset: JST")],
    end: Annotated[datetime, Query(description="exclusive")],
    max_points: Annotated[int, Query(ge=10, le=MAX_POWER_POINTS)] = 1000,
    format: Format = "json",
):
    _meter(conn, meter_id, tenant_id)
    start, end = (t if t.tzinfo else t.replace(tzinfo=JST) for t in (start, end))
    if end <= start:
        raise Problem(400, "'end' must be after 'start'")
    if end - start > timedelta(days=MAX_POWER_DAYS):
        raise Problem(400, f"instant power: at most {MAX_POWER_DAYS} days in one request")
    width, points = series.instant_power(conn, meter_id, start, end, max_points)
    result = PowerSeries(
        meter_id=meter_id,
        start=start.astimezone(JST),
        end=end.astimezone(JST),
        bucket_s=width,
        values=[PowerValue(**p.__dict__) for p in points],
    )
    if format == "json":
        return result
    return csv_response(
        f"meter-{meter_id}-power-{start:%Y%m%dT%H%M}.csv",
        ["at_jst", "mean_w", "min_w", "max_w", "count"],
        ([v.at.isoformat(), v.mean_w, v.min_w, v.max_w, v.count] for v in result.values),
    )


class DailyPeak(BaseModel):
    day: date
    import_w: int | None = Field(description="the highest bought power")
    import_at: datetime | None
    export_w: int | None = Field(description="the highest sold power")
    export_at: datetime | None


@router.get(
    "/meters/{meter_id}/peaks",
    summary="A meter's daily peaks, bought and sold",
    responses=CSV_RESPONSE,
)
def meter_peaks(
    meter_id: RowId,
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    first: First,
    last: Last,
    format: Format = "json",
):
    _meter(conn, meter_id, tenant_id)
    _check_range(first, last, series.MAX_DAYS["day"], "peaks")
    p = s.meter_daily_peak.c
    rows = conn.execute(
        select(s.meter_daily_peak)
        .where(
            p.meter_id == meter_id,
            p.day >= series.jst_midnight(first),
            p.day < series.jst_midnight(last + timedelta(days=1)),
        )
        .order_by(p.day)
    )
    peaks = [
        DailyPeak(
            day=r.day.astimezone(JST).date(),
            import_w=r.import_w,
            import_at=r.import_at.astimezone(JST) if r.import_at else None,
            export_w=r.export_w,
            export_at=r.export_at.astimezone(JST) if r.export_at else None,
        )
        for r in rows
    ]
    if format == "json":
        return peaks
    return csv_response(
        f"meter-{meter_id}-peaks-{first}-{last}.csv",
        ["day", "import_w", "import_at_jst", "export_w", "export_at_jst"],
        (
            [x.day, x.import_w, x.import_at and x.import_at.isoformat(), x.export_w,
             x.export_at and x.export_at.isoformat()]
            for x in peaks
        ),
    )  # fmt: skip
