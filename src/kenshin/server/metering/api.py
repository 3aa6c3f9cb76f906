"""The metering room's HTTP face: series of one meter or a whole tenant, as JSON or as CSV
that Excel opens right (UTF-8 with a BOM), every range in JST calendar days.

One convention for CSV everywhere: `format=csv` (JSON by default). Limits (a 400 problem
beyond them) live in `series` and are stated in each route's OpenAPI description.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from kenshin.jst import JST

from .. import accounts, listing, schema_base
from ..bounds import ApiDate, ApiDateTime
from ..deps import Conn, Principal, RowId, TenantId, require_role
from ..devices.queries import has_meter
from ..jsonout import json_response
from ..problems import Problem
from ..times import JstDateTime
from . import current, peaks, series
from .csvout import CSV_RESPONSE, CsvStream, csv_response, jst_text
from .series import MAX_DAYS, MAX_POWER_DAYS, MAX_POWER_POINTS, MAX_TENANT_CSV_DAYS

Viewer = Annotated[Principal, Depends(require_role("viewer"))]


def _exported(request: Request, conn, principal: Principal, tenant_id: int) -> None:
    """A CSV export goes in the audit log (who took which data out): in the request's
    transaction, once its checks passed, so a refused export is not logged.

    Called where each route answers CSV, not as the router's dependency: that one made
    FastAPI solve the connection, principal and tenant dependencies over again for every
    request, JSON included (issue 21)."""
    meter_id = request.path_params.get("meter_id")
    accounts.audit(
        conn, principal.actor, "export.csv", target=f"meter:{meter_id}" if meter_id else None,
        tenant_id=tenant_id, detail={"path": request.url.path, "query": dict(request.query_params)},
    )  # fmt: skip


router = APIRouter(tags=["metering"])
DIRECTIONS = {"normal": 0, "reverse": 1}
Direction = Annotated[
    Literal["normal", "reverse"], Query(description="normal: bought; reverse: sold")
]
Format = Annotated[
    Literal["json", "csv"],
    Query(description="csv: UTF-8 with a BOM, CRLF, a header row, times in JST, streamed"),
]
First = Annotated[ApiDate, Query(alias="from", description="first JST day, YYYY-MM-DD")]
Last = Annotated[ApiDate, Query(alias="to", description="last JST day (inclusive)")]
ENERGY_LIMITS = (
    f"At most {MAX_DAYS['slot']:,} JST days per request for slots and hours, "
    f"{MAX_DAYS['day']:,} for days and months (400 problem beyond). Every period of the "
    "range is in the answer: one without a value has `wh: null`, never an interpolated "
    "number."
)


def _meter(conn, meter_id: RowId, tenant_id: RowId) -> None:
    """404 unless the tenant has the meter (its id only: the row is not needed here)."""
    if not has_meter(conn, tenant_id, meter_id):
        raise Problem(404, "no such meter")


def _check_range(first: date, last: date, limit: int, what: str) -> None:
    if last < first:
        raise Problem(400, "'to' is before 'from'")
    if (last - first).days + 1 > limit:
        raise Problem(400, f"{what}: at most {limit:,} days in one request")


# -- energy ----------------------------------------------------------------------------------


class EnergyValue(BaseModel):
    start: JstDateTime = Field(description="the period's start, JST")
    wh: int | None = Field(description="null: no 30-minute value in it")
    slots: int = Field(description="30-minute values summed (a tenant's: meter-slots)")
    expected_slots: int = Field(description="the period's slots × the meters it is of")
    complete: bool
    refilled: int = Field(description="of the slots, how many came from the meter's history")
    status: Literal["measured", "refilled", "missing"] | None = Field(
        None, description="one meter's per-slot series only"
    )


class EnergySeries(BaseModel):
    meter_id: RowId | None = Field(None, description="null: the whole tenant")
    meters: int = Field(description="1 for a meter; the tenant's meters (registered now)")
    period: Literal["slot", "hour", "day", "month"]
    direction: Literal["normal", "reverse"]
    first: date
    last: date
    total_wh: int
    complete: bool
    values: list[EnergyValue]


@dataclass(slots=True)
class EnergyAnswer:
    """An EnergySeries as it is written (jsonout): its fields, in its order."""

    meter_id: int | None
    meters: int
    period: str
    direction: str
    first: date
    last: date
    total_wh: int
    complete: bool
    values: list[series.EnergyPoint]


@dataclass
class EnergyQuery:
    """What an energy series is asked for (the query parameters of every energy route)."""

    first: date
    last: date
    period: Literal["slot", "hour", "day", "month"] = "slot"
    direction: Literal["normal", "reverse"] = "normal"
    format: Literal["json", "csv"] = "json"


async def _energy_query(
    first: First,
    last: Last,
    period: Literal["slot", "hour", "day", "month"] = "slot",
    direction: Direction = "normal",
    format: Format = "json",
) -> EnergyQuery:
    # A coroutine, not the dataclass as its own dependency: that was one more trip
    # through the thread pool for every request.
    return EnergyQuery(first, last, period, direction, format)


EnergyAsk = Annotated[EnergyQuery, Depends(_energy_query)]


@dataclass
class _Asker:
    """Who asks and where: what an export's audit entry names."""

    request: Request
    principal: Principal
    tenant_id: int


def _answer(conn, asker: _Asker, ask: EnergyQuery, name: str, meter_id: int | None = None):
    """The series of the meter (checked to be the tenant's in the same query), else of the
    tenant, as JSON or CSV."""
    _check_range(ask.first, ask.last, MAX_DAYS[ask.period], f"{ask.period} energy")
    found = series.energy_series(
        conn, period=ask.period, direction=DIRECTIONS[ask.direction], first=ask.first,
        last=ask.last, tenant_id=asker.tenant_id, meter_id=meter_id,
    )  # fmt: skip
    if found is None:
        raise Problem(404, "no such meter" if meter_id is not None else "no such tenant")
    meters, points = found
    if ask.format == "json":  # an EnergySeries, written without building one (jsonout)
        return json_response(
            EnergyAnswer(
                meter_id, meters, ask.period, ask.direction, ask.first, ask.last,
                sum(p.wh or 0 for p in points), all(p.complete for p in points), points,
            )
        )  # fmt: skip
    _exported(asker.request, conn, asker.principal, asker.tenant_id)
    return csv_response(
        f"{name}-{ask.period}-{ask.first}-{ask.last}-{ask.direction}.csv",
        ["start_jst", "direction", "wh", "slots", "expected_slots", "refilled", "status"],
        (
            [jst_text(p.start), ask.direction, p.wh, p.slots, p.expected_slots, p.refilled,
             p.status]
            for p in points
        ),
    )  # fmt: skip


@router.get(
    "/meters/{meter_id}/energy",
    summary="A meter's energy per slot, hour, day or month",
    description=ENERGY_LIMITS,
    response_model=EnergySeries,
    responses=CSV_RESPONSE,
)
def meter_energy(
    request: Request,
    meter_id: RowId,
    conn: Conn,
    principal: Viewer,
    tenant_id: TenantId,
    ask: EnergyAsk,
):
    asker = _Asker(request, principal, tenant_id)
    return _answer(conn, asker, ask, f"meter-{meter_id}", meter_id=meter_id)


@router.get(
    "/meters/{meter_id}/slots",
    summary="A meter's 30-minute energy for a JST day",
    description="The same as `/energy?period=slot` for one day.",
    response_model=EnergySeries,
    responses=CSV_RESPONSE,
)
def meter_slots(
    request: Request,
    meter_id: RowId,
    conn: Conn,
    principal: Viewer,
    tenant_id: TenantId,
    day: Annotated[ApiDate, Query(description="The JST calendar day, YYYY-MM-DD")],
    direction: Direction = "normal",
    format: Format = "json",
):
    ask = EnergyQuery(first=day, last=day, period="slot", direction=direction, format=format)
    return meter_energy(request, meter_id, conn, principal, tenant_id, ask)


@router.get(
    "/energy",
    summary="The tenant's energy, all meters, per slot, hour, day or month",
    description=ENERGY_LIMITS + " `slots` counts the meter-slots summed; a period is "
    "complete when every meter of the tenant has every slot of it.",
    response_model=EnergySeries,
    responses=CSV_RESPONSE,
)
def tenant_energy(
    request: Request, conn: Conn, principal: Viewer, tenant_id: TenantId, ask: EnergyAsk
):
    asker = _Asker(request, principal, tenant_id)
    return _answer(conn, asker, ask, f"tenant-{tenant_id}")


class SlotPeak(BaseModel):
    start: JstDateTime = Field(description="the half hour's start, JST")
    wh: int = Field(description="the tenant's energy in that half hour")
    average_w: int = Field(description="the slot's energy as a 30-minute average power")
    slots: int = Field(description="meter-slots summed in it")


@router.get(
    "/energy/peak",
    summary="The tenant's highest 30-minute demand of a JST day",
    description="null when the day has no value yet; the earliest half hour on a tie.",
)
def tenant_peak(
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    day: Annotated[ApiDate, Query(description="The JST day")],
    direction: Direction = "normal",
) -> SlotPeak | None:
    _, points = series.energy_series(  # type: ignore[misc]  # a tenant's: never None
        conn, period="slot", direction=DIRECTIONS[direction], first=day, last=day,
        tenant_id=tenant_id,
    )  # fmt: skip
    valued = [p for p in points if p.wh is not None]
    if not valued:
        return None
    top = max(valued, key=lambda p: (p.wh, -p.start.timestamp()))
    return SlotPeak(start=top.start, wh=top.wh, average_w=top.wh * 2, slots=top.slots)


@router.get(
    "/energy/meters.csv",
    summary="Every meter's 30-minute slots, the whole tenant (CSV)",
    description=f"At most {MAX_TENANT_CSV_DAYS} JST days per request. One row per meter "
    "and slot (a slot without a value: status `missing`, empty `wh`), ordered by meter "
    "then time, with the site's service code and customer ID; streamed.",
    response_class=CsvStream,
    responses=CSV_RESPONSE,
)
def tenant_slots_csv(
    request: Request,
    conn: Conn,
    principal: Viewer,
    tenant_id: TenantId,
    first: First,
    last: Last,
    direction: Direction = "normal",
):
    _check_range(first, last, MAX_TENANT_CSV_DAYS, "the tenant's slot CSV")
    _exported(request, conn, principal, tenant_id)
    rows = series.tenant_slot_grid(
        request.app.state.engine, tenant_id, DIRECTIONS[direction], first, last, label=jst_text
    )
    return csv_response(
        f"tenant-{tenant_id}-slots-{first}-{last}-{direction}.csv",
        ["meter_id", "service_code", "customer_id", "slot_start_jst", "direction", "status", "wh"],
        (
            [meter_id, code, customer, at, direction, status, wh]
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
    at: JstDateTime | None = Field(description="the newest reading's time, however old")
    today: date
    today_bought_wh: int | None
    today_sold_wh: int | None


@router.get("/meters/{meter_id}/current", summary="A meter now: power and today's energy")
def meter_current(meter_id: RowId, conn: Conn, _: Viewer, tenant_id: TenantId) -> MeterNow:
    _meter(conn, meter_id, tenant_id)
    return MeterNow(**current.meter_now(conn, meter_id, schema_base.utcnow()))


class PowerValue(BaseModel):
    at: JstDateTime = Field(description="JST; a bucket's start when downsampled")
    mean_w: float
    min_w: int
    max_w: int
    count: int = Field(description="readings in the bucket (1: a raw reading)")


class PowerSeries(BaseModel):
    meter_id: RowId
    start: JstDateTime
    end: JstDateTime
    bucket_s: int = Field(description="0: every reading as it came")
    values: list[PowerValue]


@dataclass(slots=True)
class PowerAnswer:
    """A PowerSeries as it is written (jsonout): its fields, in its order."""

    meter_id: int
    start: JstDateTime
    end: JstDateTime
    bucket_s: int
    values: list[series.PowerPoint]


@router.get(
    "/meters/{meter_id}/power",
    summary="A meter's instant power over a time range",
    description=f"At most {MAX_POWER_DAYS} days per request (400 problem beyond). Every "
    "reading as it came when there are at most `max_points` of them; else buckets from "
    f"`start` (mean, min, max, count) of the narrowest width among "
    f"{', '.join(map(str, series.BUCKET_WIDTHS))} s (whole days beyond) that gives at "
    f"most `max_points` (≤ {MAX_POWER_POINTS:,}). Buckets without readings are left out.",
    response_model=PowerSeries,
    responses=CSV_RESPONSE,
)
def meter_power(
    request: Request,
    meter_id: RowId,
    conn: Conn,
    principal: Viewer,
    tenant_id: TenantId,
    start: Annotated[ApiDateTime, Query(description="ISO 8601; no offset: JST")],
    end: Annotated[ApiDateTime, Query(description="exclusive")],
    max_points: Annotated[int, Query(ge=10, le=MAX_POWER_POINTS)] = 1000,
    format: Format = "json",
):
    start, end = (t if t.tzinfo else t.replace(tzinfo=JST) for t in (start, end))
    if end <= start:
        raise Problem(400, "'end' must be after 'start'")
    if end - start > timedelta(days=MAX_POWER_DAYS):
        raise Problem(400, f"instant power: at most {MAX_POWER_DAYS} days in one request")
    found = series.instant_power(conn, meter_id, start, end, max_points, tenant_id)
    if found is None:
        raise Problem(404, "no such meter")
    width, points = found
    if format == "json":  # a PowerSeries, written without building one (jsonout)
        return json_response(
            PowerAnswer(meter_id, start.astimezone(JST), end.astimezone(JST), width, points)
        )
    _exported(request, conn, principal, tenant_id)
    return csv_response(
        f"meter-{meter_id}-power-{start.astimezone(JST):%Y%m%dT%H%M}.csv",
        ["at_jst", "mean_w", "min_w", "max_w", "count"],
        ([jst_text(p.at), p.mean_w, p.min_w, p.max_w, p.count] for p in points),
    )


class DailyPeak(BaseModel):
    day: date = Field(description="the JST day")
    import_w: int | None = Field(description="the highest bought power; null: no reading")
    import_at: JstDateTime | None
    export_w: int | None = Field(description="the highest sold power (positive W)")
    export_at: JstDateTime | None


@router.get(
    "/meters/{meter_id}/peaks",
    summary="A meter's daily peaks, bought and sold",
    description=f"Every JST day of the range, at most {MAX_DAYS['day']:,} (400 problem "
    "beyond); a day without readings has nulls.",
    response_model=listing.Page[DailyPeak],
    responses=CSV_RESPONSE,
)
def meter_peaks(
    request: Request,
    meter_id: RowId,
    conn: Conn,
    principal: Viewer,
    tenant_id: TenantId,
    first: First,
    last: Last,
    format: Format = "json",
):
    _meter(conn, meter_id, tenant_id)
    _check_range(first, last, MAX_DAYS["day"], "peaks")
    days = peaks.daily_peaks(conn, meter_id, first, last)
    if format == "json":  # a Page[DailyPeak] (every day: one page), written as jsonout does
        return json_response({"items": days, "next_cursor": None})
    _exported(request, conn, principal, tenant_id)
    return csv_response(
        f"meter-{meter_id}-peaks-{first}-{last}.csv",
        ["day", "import_w", "import_at_jst", "export_w", "export_at_jst"],
        (
            [p.day, p.import_w, jst_text(p.import_at), p.export_w, jst_text(p.export_at)]
            for p in days
        ),
    )
