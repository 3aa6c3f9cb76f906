"""The metering room's HTTP face (so far): one meter's 30-minute slots for a JST day, as
JSON or as CSV that Excel opens right (UTF-8 with a BOM)."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import select

from kenshin.echonet.edt import JST

from .. import schema as s
from ..deps import Conn, Principal, TenantId, require_role
from ..devices.registry import get_meter
from ..problems import Problem
from .slots import SLOT_S

router = APIRouter(tags=["metering"])
Viewer = Annotated[Principal, Depends(require_role("viewer"))]
DIRECTIONS = {"normal": 0, "reverse": 1}


class Slot(BaseModel):
    start: datetime  # JST
    status: Literal["measured", "refilled", "missing"]
    wh: int | None


class DaySlots(BaseModel):
    meter_id: int
    day: date
    direction: Literal["normal", "reverse"]
    total_wh: int
    complete: bool  # every slot of the day has a value
    slots: list[Slot]


def _day_slots(conn, meter_id: int, day: date, direction: str) -> DaySlots:
    start = datetime.combine(day, time(0), JST)
    rows = conn.execute(
        select(s.slot_energy).where(
            s.slot_energy.c.meter_id == meter_id,
            s.slot_energy.c.direction == DIRECTIONS[direction],
            s.slot_energy.c.slot_start >= start,
            s.slot_energy.c.slot_start < start + timedelta(days=1),
        )
    ).all()
    stored = {int(r.slot_start.timestamp()): r for r in rows}
    slots = []
    for i in range(48):  # a JST day has 48 half hours (no DST in Japan)
        at = start + timedelta(seconds=i * SLOT_S)
        row = stored.get(int(at.timestamp()))
        if row is None:
            slots.append(Slot(start=at, status="missing", wh=None))
        else:
            slots.append(Slot(start=at, status=row.status, wh=row.wh))
    return DaySlots(
        meter_id=meter_id,
        day=day,
        direction=direction,
        total_wh=sum(x.wh or 0 for x in slots),
        complete=all(x.wh is not None for x in slots),
        slots=slots,
    )


@router.get("/meters/{meter_id}/slots", summary="A meter's 30-minute energy for a JST day")
def meter_slots(
    meter_id: int,
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    day: Annotated[date, Query(description="The JST calendar day, YYYY-MM-DD")],
    direction: Annotated[Literal["normal", "reverse"], Query()] = "normal",
    format: Annotated[Literal["json", "csv"], Query()] = "json",
):
    if get_meter(conn, meter_id, tenant_id) is None:
        raise Problem(404, "no such meter")
    result = _day_slots(conn, meter_id, day, direction)
    if format == "json":
        return result
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["meter_id", "slot_start_jst", "direction", "status", "wh"])
    for slot in result.slots:
        writer.writerow(
            [
                meter_id,
                slot.start.isoformat(),
                direction,
                slot.status,
                "" if slot.wh is None else slot.wh,
            ]
        )
    name = f"meter-{meter_id}-{day.isoformat()}-{direction}.csv"
    return Response(
        "\ufeff" + out.getvalue(),  # the BOM: Excel then reads UTF-8 (Japanese text) right
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
