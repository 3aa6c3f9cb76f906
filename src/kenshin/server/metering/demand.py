"""A meter's peaks over a range of JST days, as an operator should read them: the highest
30-minute demand (a slot's energy × 2, the figure a retailer's contract and settlement
know), always there when the slots are, with each day's; and beside it, labelled as what
it is, the highest instant (60-s) power with the span of time its readings cover.

A route of its own beside `metering.api` (whose series it reuses), not a change to
`/peaks`, whose answer stays the daily instant peaks it has always been.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ..deps import Conn, Principal, RowId, TenantId, require_role
from ..times import JstDateTime
from . import peaks
from .api import DIRECTIONS, Direction, First, Last, _check_range, _meter

__all__ = ["MAX_DEMAND_DAYS", "router"]

router = APIRouter(tags=["metering"])
MAX_DEMAND_DAYS = 366  # a year view of one meter: 17,568 slots at most
Viewer = Annotated[Principal, Depends(require_role("viewer"))]


class DemandDay(BaseModel):
    day: date = Field(description="the JST day")
    start: JstDateTime | None = Field(description="its highest slot's start, JST; null: no value")
    wh: int | None = Field(description="that slot's energy")
    demand_w: int | None = Field(description="the slot's energy as a 30-minute average: Wh × 2")


class InstantMax(BaseModel):
    power_w: int = Field(description="the highest instant reading (bought or sold, positive)")
    at: JstDateTime
    covers_from: JstDateTime = Field(description="the range's first instant reading, JST")
    covers_to: JstDateTime = Field(description="its last instant reading")
    days: int = Field(description="JST days of the range with instant readings")


class Demand(BaseModel):
    meter_id: RowId
    direction: str
    first: date
    last: date
    peak: DemandDay | None = Field(description="the range's highest slot (earliest on a tie)")
    days: list[DemandDay]
    instant: InstantMax | None = Field(description="null: no instant reading in the range")


@router.get(
    "/meters/{meter_id}/demand",
    summary="A meter's highest 30-minute demand over a range, and its highest instant power",
    description=f"At most {MAX_DEMAND_DAYS} JST days (400 problem beyond). `peak` and `days` "
    "come from the 30-minute slots (demand_w = Wh × 2); `instant` from the 60-s readings, "
    "with the time they cover, which may be less than the range.",
)
def meter_demand(
    meter_id: RowId,
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    first: First,
    last: Last,
    direction: Direction = "normal",
) -> Demand:
    _meter(conn, meter_id, tenant_id)
    _check_range(first, last, MAX_DEMAND_DAYS, "demand")
    sense = DIRECTIONS[direction]
    days = [
        DemandDay(day=d.day, start=d.start, wh=d.wh, demand_w=d.demand_w)
        for d in peaks.demand_peaks(conn, meter_id, sense, first, last)
    ]
    valued = [d for d in days if d.wh is not None]
    peak = max(valued, key=lambda d: (d.wh, -d.start.timestamp())) if valued else None
    instant = peaks.instant_peak(conn, meter_id, sense, first, last)
    return Demand(
        meter_id=meter_id,
        direction=direction,
        first=first,
        last=last,
        peak=peak,
        days=days,
        instant=InstantMax(
            power_w=instant.power_w, at=instant.at, covers_from=instant.covers_from,
            covers_to=instant.covers_to, days=instant.days,
        ) if instant else None,
    )  # fmt: skip
