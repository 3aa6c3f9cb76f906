"""Analytics over HTTP: forecasts, the procured plan and the day's projected imbalance,
plant prices and sales estimates, weather beside production."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import delete, insert, select

from kenshin.jst import JST

from .. import accounts, listing, schema_base
from ..bounds import ApiDate, ApiDateTime
from ..deps import Conn, Principal, RowId, TenantId, require_role
from ..devices.registry import get_meter, get_site
from ..problems import Problem
from ..times import JstDateTime, jst_text
from . import generation, retail
from . import tables as t
from .store import read_tenant_forecast

router = APIRouter(tags=["analytics"])
Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Operator = Annotated[Principal, Depends(require_role("operator"))]
Day = Annotated[ApiDate, Query(description="A JST calendar day, YYYY-MM-DD")]
MAX_SALES_DAYS = 400


def _today() -> date:
    return datetime.now(JST).date()


# -- forecasts and the retailer's day ---------------------------------------------------------


class ForecastSlot(BaseModel):
    start: JstDateTime
    low_wh: int
    mid_wh: int
    high_wh: int


@router.get("/forecast", summary="The tenant's 30-minute demand forecast with its 80 % band")
def tenant_forecast(
    conn: Conn, _: Viewer, tenant_id: TenantId, day: Day | None = None
) -> listing.Page[ForecastSlot]:
    rows = read_tenant_forecast(conn, tenant_id, day or _today())
    return listing.one_page(
        [
            ForecastSlot(start=at.astimezone(JST), low_wh=low, mid_wh=mid, high_wh=high)
            for at, low, mid, high in rows
        ]
    )


class PlanSlot(BaseModel):
    slot_start: ApiDateTime = Field(description="The half hour's start (ISO 8601; no offset: JST)")
    wh: int = Field(ge=0, le=10**12)


class PlanStored(BaseModel):
    slots: int


def _store_plan(conn, tenant_id: RowId, plan: dict[datetime, int], principal: Principal):
    count = retail.store_plan(conn, tenant_id, plan, principal.actor)
    accounts.audit(
        conn,
        principal.actor,
        "plan.upload",
        tenant_id=tenant_id,
        detail={"slots": count, "first": jst_text(min(plan)), "last": jst_text(max(plan))},
    )
    return PlanStored(slots=count)


@router.put("/procurement-plan", summary="Store procured energy per slot (JSON)")
def put_plan(
    conn: Conn,
    principal: Operator,
    tenant_id: TenantId,
    slots: Annotated[list[PlanSlot], Body(max_length=retail.MAX_PLAN_ROWS, min_length=1)],
) -> PlanStored:
    plan: dict[datetime, int] = {}
    for slot in slots:
        at = slot.slot_start if slot.slot_start.tzinfo else slot.slot_start.replace(tzinfo=JST)
        if at.minute % 30 or at.second or at.microsecond:
            raise Problem(422, f"{slot.slot_start.isoformat()} is not the start of a half hour")
        plan[at.astimezone(UTC)] = slot.wh
    return _store_plan(conn, tenant_id, plan, principal)


@router.put(
    "/procurement-plan.csv",
    summary="Store procured energy per slot (CSV upload)",
    description=retail.__doc__,
    openapi_extra={
        "requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}
    },
)
async def put_plan_csv(
    request: Request, conn: Conn, principal: Operator, tenant_id: TenantId
) -> PlanStored:
    raw = await request.body()  # at most max_upload_bytes (bodylimit.BodyLimit): else 413
    try:
        plan = retail.parse_plan_csv(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise Problem(400, "the CSV must be UTF-8 (with or without a BOM)") from None
    except retail.PlanError as err:
        raise Problem(400, str(err)) from None
    return _store_plan(conn, tenant_id, plan, principal)


class Outlook(BaseModel):
    start: JstDateTime
    plan_wh: int | None
    actual_wh: int | None
    low_wh: int | None
    mid_wh: int | None
    high_wh: int | None
    projected_wh: int | None
    imbalance_wh: int | None
    deviation_pct: float | None
    at_risk: bool


class DayOutlook(BaseModel):
    day: date
    threshold_pct: float
    slots: list[Outlook]


@router.get("/imbalance", summary="Plan, forecast band, actual and projected imbalance")
def imbalance(conn: Conn, _: Viewer, tenant_id: TenantId, day: Day | None = None) -> DayOutlook:
    day = day or _today()
    limit = retail.threshold_pct(conn, tenant_id)
    rows = retail.day_outlook(conn, tenant_id, day, datetime.now(UTC), limit)
    return DayOutlook(
        day=day,
        threshold_pct=limit if limit != float("inf") else 0,
        slots=[Outlook(**{**o.__dict__, "start": o.start.astimezone(JST)}) for o in rows],
    )


# -- the generator pack --------------------------------------------------------------------


class PriceIn(BaseModel):
    yen_per_kwh: float = Field(gt=0, le=1000, description="Sale price, yen per kWh")
    valid_from: ApiDate
    valid_to: ApiDate | None = Field(None, description="Inclusive; none: open-ended")

    @model_validator(mode="after")
    def _ordered(self) -> PriceIn:
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        return self


class PriceOut(BaseModel):
    id: int
    meter_id: RowId
    yen_per_kwh: float
    valid_from: ApiDate
    valid_to: date | None


def _plant(conn, meter_id: RowId, tenant_id: RowId):
    meter = get_meter(conn, meter_id, tenant_id)
    if meter is None:
        raise Problem(404, "no such meter")
    return meter


def _price_out(row) -> PriceOut:
    return PriceOut(
        id=row.id,
        meter_id=row.meter_id,
        yen_per_kwh=row.yen_per_kwh_milli / 1000,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
    )


@router.post("/meters/{meter_id}/prices", status_code=201, summary="Add a plant's sale price")
def add_price(
    meter_id: RowId, body: PriceIn, conn: Conn, principal: Operator, tenant_id: TenantId
) -> PriceOut:
    _plant(conn, meter_id, tenant_id)
    row = conn.execute(
        insert(t.plant_prices)
        .values(
            tenant_id=tenant_id,
            meter_id=meter_id,
            yen_per_kwh_milli=round(body.yen_per_kwh * 1000),
            valid_from=body.valid_from,
            valid_to=body.valid_to,
            created_at=schema_base.utcnow(),
        )
        .returning(t.plant_prices)
    ).one()
    accounts.audit(
        conn,
        principal.actor,
        "price.add",
        target=f"meter:{meter_id}",
        tenant_id=tenant_id,
        detail=body.model_dump(mode="json"),
    )
    return _price_out(row)


@router.get("/meters/{meter_id}/prices", summary="A plant's sale prices")
def list_prices(
    meter_id: RowId, conn: Conn, _: Viewer, tenant_id: TenantId
) -> listing.Page[PriceOut]:
    _plant(conn, meter_id, tenant_id)
    p = t.plant_prices.c
    rows = conn.execute(
        select(t.plant_prices).where(p.meter_id == meter_id).order_by(p.valid_from, p.id)
    )
    return listing.one_page([_price_out(r) for r in rows])


@router.delete(
    "/meters/{meter_id}/prices/{price_id}", status_code=204, summary="Remove a sale price"
)
def delete_price(
    meter_id: RowId, price_id: RowId, conn: Conn, principal: Operator, tenant_id: TenantId
) -> None:
    _plant(conn, meter_id, tenant_id)
    p = t.plant_prices.c
    gone = conn.execute(
        delete(t.plant_prices).where(p.id == price_id, p.meter_id == meter_id)
    ).rowcount
    if not gone:
        raise Problem(404, "no such price")
    accounts.audit(
        conn, principal.actor, "price.delete", target=f"price:{price_id}", tenant_id=tenant_id
    )


class SalesDay(BaseModel):
    day: date
    sold_wh: int
    yen_per_kwh: float | None
    yen: float | None


class Sales(BaseModel):
    meter_id: RowId
    days: list[SalesDay]
    sold_wh: int
    yen: float
    unpriced_days: int = Field(description="days with sold energy but no valid price")


@router.get("/meters/{meter_id}/sales", summary="A plant's sold energy and its estimated value")
def sales(
    meter_id: RowId,
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    first: Annotated[ApiDate, Query(alias="from", description="First JST day")],
    last: Annotated[ApiDate, Query(alias="to", description="Last JST day (inclusive)")],
) -> Sales:
    _plant(conn, meter_id, tenant_id)
    if last < first or (last - first).days >= MAX_SALES_DAYS:
        raise Problem(400, f"from ≤ to, at most {MAX_SALES_DAYS} days")
    days = generation.daily_sales(conn, meter_id, first, last)
    return Sales(
        meter_id=meter_id,
        days=[
            SalesDay(
                day=d.day,
                sold_wh=d.sold_wh,
                yen_per_kwh=None if d.yen_per_kwh_milli is None else d.yen_per_kwh_milli / 1000,
                yen=d.yen,
            )
            for d in days
        ],
        sold_wh=sum(d.sold_wh for d in days),
        yen=round(sum(d.yen or 0 for d in days), 2),
        unpriced_days=sum(1 for d in days if d.yen is None and d.sold_wh),
    )


class WeatherHour(BaseModel):
    at: JstDateTime
    irradiance_w_m2: float | None
    temperature_c: float | None


@router.get("/sites/{site_id}/weather", summary="Hourly weather at a site for a JST day")
def weather(
    site_id: RowId,
    request: Request,
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    day: Day | None = None,
) -> listing.Page[WeatherHour]:
    if get_site(conn, site_id, tenant_id) is None:
        raise Problem(404, "no such site")
    provider: generation.WeatherProvider | None = getattr(request.app.state, "weather", None)
    if provider is None:
        raise Problem(404, "no weather source is configured (settings: weather_csv)")
    start = datetime.combine(day or _today(), datetime.min.time(), JST)
    try:
        hours = provider.hourly(site_id, start, start + timedelta(days=1))
    except generation.WeatherError as err:
        raise Problem(503, f"the weather source cannot be read: {err}") from None
    return listing.one_page([WeatherHour(**h.__dict__) for h in hours])
