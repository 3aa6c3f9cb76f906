"""What a retailer settles on, for many meters at once: the 30-minute kWh of a range of JST
days as a CSV Excel opens as it is, and the report of the slots that are missing (欠測).

The export is the same slots as `GET /meters/{id}/energy?period=slot` (read from the same
table), laid out as the caller asks: one row per meter and slot (`long`) or one row per
meter, day and direction with a column per slot (`wide`); headers in Japanese or English
(the panel's own terms, from its catalogue); times as `2026/12/05 00:30` in JST, which
Excel takes for dates (an ISO 8601 time with an offset it keeps as text). kWh are written
exactly (Wh / 1000, three decimals): the file's values are the API's, digit for digit.
Streamed meter by meter (`series.meters_slots`): a month of 10,000 meters never sits in
memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import Engine, Subquery

from kenshin.jst import JST, SLOT

from .. import listing, schema_base
from ..bounds import ApiDate
from ..deps import Conn, Principal, RowId, TenantId, require_role
from ..devices.queries import export_meters
from ..jsonout import json_response
from ..times import JstDateTime
from ..web.i18n import translator
from . import series
from .api import DIRECTIONS, First, Last, _check_range, _exported
from .csvout import CSV_RESPONSE, CsvStream, csv_response

__all__ = [
    "MAX_SETTLEMENT_DAYS",
    "MeterMissing",
    "missing_report",
    "router",
    "settlement_rows",
]

router = APIRouter(tags=["metering"])
Viewer = Annotated[Principal, Depends(require_role("viewer"))]
MAX_SETTLEMENT_DAYS = series.MAX_DAYS["slot"]  # 93: a quarter, as the slot series
Layout = Literal["long", "wide"]
Lang = Literal["ja", "en"]
Directions = Literal["both", "normal", "reverse"]
SiteIds = Annotated[
    list[RowId] | None, Query(description="only the meters of these sites (repeatable)")
]
Search = listing.search_parameter(
    "only the meters found by this text: serial, supply point number (hyphens ignored), "
    "their site's customer ID or service code"
)


def excel_time(at: datetime) -> str:
    """JST wall-clock time as Excel reads a date and time (no offset: it would be text)."""
    return f"{at.astimezone(JST):%Y/%m/%d %H:%M}"


def kwh(wh: int | None) -> Decimal | None:
    """Wh as exact kWh with three decimals (1500 -> 1.500); None stays an empty cell."""
    return None if wh is None else Decimal(wh).scaleb(-3)


def meter_filters(tenant_id: int, site_ids: Sequence[int] | None, q: str | None) -> Subquery:
    """The meters asked for (on the sites `site_ids`, found by `q`), as
    `series.meters_slots` takes them: the devices room's door."""
    return export_meters(tenant_id, site_ids, q)


def settlement_rows(
    engine: Engine,
    tenant_id: int,
    first: date,
    last: date,
    *,
    layout: Layout,
    lang: Lang,
    directions: Sequence[int],
    meters: Subquery | None = None,
) -> tuple[list[str], Iterator[list]]:
    """The export's header and its rows (lazily, meter by meter)."""
    t = translator(lang)
    who = [t(f"settle.col.{c}") for c in ("service_code", "customer_id", "supply_point")]
    who.append(t("settle.col.meter_id"))
    kwh_column = {0: t("settle.col.bought_kwh"), 1: t("settle.col.sold_kwh")}
    grid = series.slot_grid(first, last, lambda at: (excel_time(at), excel_time(at + SLOT)))
    slots = series.meters_slots(engine, tenant_id, directions, first, last, meters)

    def ids(meter: series.MeterOfTenant) -> list:
        return [meter.service_code, meter.customer_id, meter.supply_point, meter.meter_id]

    def wh(stored, direction: int, at: datetime) -> int | None:
        return stored.get((direction, at), series.MISSING)[1]

    if layout == "long":
        header = [*who, t("settle.col.slot_start"), t("settle.col.slot_end")]
        header += [kwh_column[d] for d in directions]

        def long() -> Iterator[list]:
            for meter, stored in slots:
                mine = ids(meter)
                for at, (start, end) in grid:
                    yield [*mine, start, end, *(kwh(wh(stored, d, at)) for d in directions)]

        return header, long()

    header = [*who, t("settle.col.day"), t("settle.col.direction"), t("settle.col.missing")]
    header += [  # JST has no DST: every day has these 48 slots
        f"{n // 2:02d}:{n % 2 * 30:02d}-{(n + 1) // 2:02d}:{(n + 1) % 2 * 30:02d}"
        for n in range(48)
    ]
    days = [grid[n : n + 48] for n in range(0, len(grid), 48)]
    label = {d: t(f"settle.direction.{name}") for name, d in DIRECTIONS.items()}

    def wide() -> Iterator[list]:
        for meter, stored in slots:
            mine = ids(meter)
            for day in days:
                shown = day[0][1][0][:10]  # the day of its first slot's start, 2026/12/05
                for d in directions:
                    values = [kwh(wh(stored, d, at)) for at, _ in day]
                    missing = sum(v is None for v in values)
                    yield [*mine, shown, label[d], missing, *values]

    return header, wide()


@router.get(
    "/settlement.csv",
    summary="30-minute kWh of many meters for settlement (CSV)",
    description=f"At most {MAX_SETTLEMENT_DAYS} JST days (400 problem beyond). Every meter "
    "of the tenant, or those of `site_id`s and/or found by `q`, in meter id order. "
    "`layout=long`: a row per meter and slot with its start and end and a kWh column per "
    "direction; `wide`: a row per meter, day and direction with the count of missing slots "
    "and 48 slot columns. Headers in `lang`; times JST as `YYYY/MM/DD HH:MM` (Excel reads "
    "them as dates); kWh with three decimals, exactly the slot series' Wh / 1000; a "
    "missing slot is an empty cell, never 0. UTF-8 with a BOM, CRLF, streamed.",
    response_class=CsvStream,
    responses=CSV_RESPONSE,
)
def settlement_csv(
    request: Request,
    conn: Conn,
    principal: Viewer,
    tenant_id: TenantId,
    first: First,
    last: Last,
    layout: Layout = "long",
    lang: Annotated[Lang, Query(description="the headers' language")] = "ja",
    direction: Annotated[
        Directions, Query(description="both (default): bought and sold; normal; reverse")
    ] = "both",
    site_id: SiteIds = None,
    q: Search = None,
):
    _check_range(first, last, MAX_SETTLEMENT_DAYS, "settlement export")
    _exported(request, conn, principal, tenant_id)
    directions = (0, 1) if direction == "both" else (DIRECTIONS[direction],)
    header, rows = settlement_rows(
        request.app.state.engine, tenant_id, first, last, layout=layout, lang=lang,
        directions=directions, meters=meter_filters(tenant_id, site_id, q),
    )  # fmt: skip
    return csv_response(f"settlement-{first}-{last}-{layout}-{lang}.csv", header, rows)


# -- missing slots (欠測) -----------------------------------------------------------------


class MissingRange(BaseModel):
    start: JstDateTime = Field(description="the first missing slot's start, JST")
    end: JstDateTime = Field(description="the last missing slot's end")
    slots: int


class MeterMissing(BaseModel):
    meter_id: RowId
    service_code: str
    customer_id: str
    supply_point: str | None
    missing: int = Field(description="of `expected_slots`, how many have no value")
    ranges: list[MissingRange] = Field(description="runs of consecutive missing slots")


class MissingReport(BaseModel):
    first: date
    last: date
    direction: Literal["normal", "reverse"]
    expected_slots: int = Field(description="the range's slots that have ended, per meter")
    meters: list[MeterMissing]


@dataclass(slots=True)
class Gap:
    start: datetime  # JST
    end: datetime
    slots: int


def missing_report(
    engine: Engine,
    tenant_id: int,
    first: date,
    last: date,
    direction: int,
    now: datetime,
    meters: Subquery | None = None,
) -> tuple[int, Iterator[tuple[series.MeterOfTenant, list[Gap]]]]:
    """How many slots of the range have ended by `now` (a slot still running, or to come,
    is not missing yet), and every meter asked for with its runs of missing slots."""
    grid = [(at, start) for at, start in series.slot_grid(first, last) if start + SLOT <= now]

    def gaps() -> Iterator[tuple[series.MeterOfTenant, list[Gap]]]:
        for meter, stored in series.meters_slots(
            engine, tenant_id, (direction,), first, last, meters
        ):
            runs: list[Gap] = []
            for at, start in grid:
                if stored.get((direction, at), series.MISSING)[1] is not None:
                    continue
                if runs and runs[-1].end == start:
                    runs[-1].end, runs[-1].slots = start + SLOT, runs[-1].slots + 1
                else:
                    runs.append(Gap(start, start + SLOT, 1))
            yield meter, runs

    return len(grid), gaps()


def yesterday() -> date:
    return datetime.now(JST).date() - timedelta(days=1)


@router.get(
    "/missing-slots",
    summary="Missing 30-minute slots (欠測) per meter",
    description=f"Yesterday (JST) unless `from`/`to` say otherwise; at most "
    f"{MAX_SETTLEMENT_DAYS} days (400 problem beyond). Every meter of the tenant (or of "
    "`site_id`s, found by `q`) with how many of the slots that have ended have no value, "
    "and their runs. `format=csv`: a row per run (a meter without any: one row, 0).",
    response_model=MissingReport,
    responses=CSV_RESPONSE,
)
def missing_slots(
    request: Request,
    conn: Conn,
    principal: Viewer,
    tenant_id: TenantId,
    first: Annotated[ApiDate | None, Query(alias="from", description="default: yesterday")] = None,
    last: Annotated[ApiDate | None, Query(alias="to", description="default: `from`")] = None,
    direction: Annotated[
        Literal["normal", "reverse"], Query(description="normal: bought; reverse: sold")
    ] = "normal",
    site_id: SiteIds = None,
    q: Search = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    lang: Annotated[Lang, Query(description="CSV headers' language")] = "ja",
):
    first = first or (last if last else yesterday())
    last = last or first
    _check_range(first, last, MAX_SETTLEMENT_DAYS, "missing slots")
    expected, meters = missing_report(
        request.app.state.engine, tenant_id, first, last, DIRECTIONS[direction],
        schema_base.utcnow(), meter_filters(tenant_id, site_id, q),
    )  # fmt: skip
    if format == "json":  # a MissingReport, written without building one (jsonout)
        return json_response(
            {
                "first": first,
                "last": last,
                "direction": direction,
                "expected_slots": expected,
                "meters": [
                    {
                        "meter_id": m.meter_id,
                        "service_code": m.service_code,
                        "customer_id": m.customer_id,
                        "supply_point": m.supply_point,
                        "missing": sum(g.slots for g in gaps),
                        "ranges": gaps,
                    }
                    for m, gaps in meters
                ],
            }
        )
    _exported(request, conn, principal, tenant_id)
    t = translator(lang)
    header = [
        t(f"settle.col.{c}")
        for c in ("service_code", "customer_id", "supply_point", "meter_id", "expected")
    ]
    header += [t("settle.col.missing"), t("settle.col.slot_start"), t("settle.col.slot_end")]

    def rows() -> Iterator[list]:
        for m, gaps in meters:
            mine = [m.service_code, m.customer_id, m.supply_point, m.meter_id, expected]
            total = sum(g.slots for g in gaps)
            for g in gaps or [None]:
                yield [*mine, total, *((excel_time(g.start), excel_time(g.end)) if g else ())]

    return csv_response(f"missing-{first}-{last}-{direction}.csv", header, rows())
