"""The generator pack: sold energy per plant, sold-power peaks, sales estimates, a
cross-plant list and comparison, weather beside production.

A plant is a meter of a generator tenant (its reverse direction is the energy sold). Only
generator tenants have these pages: for any other tenant, and for a meter that is not one
of the tenant's, the HTML 404 page. The cross-plant list is computed here in three queries
for the whole tenant (plants with their latest reading, the days' sold energy, the prices);
a plant's charts read the JSON API (energy, peaks, weather) with the page's session, and
a new price goes through the API's POST, which checks the role again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import Connection, and_, or_, select

from kenshin.jst import JST, jst_midnight

from .. import schema as s
from ..api import API_PREFIX
from ..bounds import ApiDate
from ..deps import Conn, RowId
from ..metering.current import CURRENT_WINDOW
from ..metering.rollups import day_start
from .i18n import Translator
from .rendering import Page, PageProblem, PageRoute, SignedIn, render

__all__ = ["PlantRow", "all_prices", "plant_rows", "router", "yen"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
View = Literal["hour", "day", "month"]


# -- formats -----------------------------------------------------------------------------


def yen(t: Translator, value: float | None) -> str:
    """Whole yen, ``¥1,234``, in both languages."""
    return t("common.none") if value is None else f"¥{t.number(value)}"


def price_text(t: Translator, yen_per_kwh_milli: int | None) -> str:
    if yen_per_kwh_milli is None:
        return t("plants.no_price")
    return t("plant.per_kwh", price=f"¥{t.number(yen_per_kwh_milli / 1000, 2)}")


def month_text(t: Translator, first: date) -> str:
    month = str(first.month) if t.lang == "ja" else _MONTHS[first.month - 1]
    return t("plants.month_format", month=month, year=first.year)


# -- dates -----------------------------------------------------------------------------------


def _month_bounds(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


def _parse_month(text: str | None, today: date) -> date:
    """``YYYY-MM`` → its first day; this month when absent. A malformed month is a page
    that does not exist."""
    if not text:
        return today.replace(day=1)
    try:
        year, month = (int(part) for part in text.split("-"))
        return date(year, month, 1)
    except ValueError:
        raise PageProblem(404, "error.not_found") from None


# -- queries ----------------------------------------------------------------------------------


@dataclass
class PlantRow:
    meter_id: int
    site_id: int
    service_code: str
    customer_id: str
    address: str | None
    power_w: int | None  # the newest reading within the window (negative: selling)
    power_at: datetime | None
    today_wh: int = 0
    days: dict[date, int] = field(default_factory=dict)  # sold Wh per day of the month
    month_wh: int = 0
    month_yen: float = 0.0
    unpriced_days: int = 0
    price_today_milli: int | None = None
    prices: list = field(default_factory=list)  # newest first, as the sales rule reads them

    @property
    def sold_w(self) -> int | None:
        """Power sold now (0 while buying); None: not measured."""
        return None if self.power_w is None else max(0, -self.power_w)

    @property
    def name(self) -> str:
        return self.service_code


def _price_for(prices: list, day: date) -> int | None:
    """The API's rule (analytics.generation): the newest price valid that day."""
    for price in prices:
        if price.valid_from <= day and (price.valid_to is None or day <= price.valid_to):
            return price.yen_per_kwh_milli
    return None


def plant_rows(
    conn: Connection,
    tenant_id: int,
    month: date,
    now: datetime,
    *,
    meter_id: int | None = None,
) -> list[PlantRow]:
    """The tenant's plants (or the one plant `meter_id`), each with its power now, today's
    and the month's sold energy, and the month's estimated sales: three queries."""
    m, site, latest = s.meters.c, s.sites.c, s.meter_latest.c
    of_tenant = [m.tenant_id == tenant_id] + ([m.id == meter_id] if meter_id is not None else [])
    plants = conn.execute(
        select(
            m.id,
            m.site_id,
            site.service_code,
            site.customer_id,
            site.address,
            latest.power_w,
            latest.at,
        )
        .join(s.sites, and_(site.id == m.site_id, site.tenant_id == m.tenant_id))
        .outerjoin(s.meter_latest, latest.meter_id == m.id)
        .where(*of_tenant)
        .order_by(site.service_code, m.id)
    ).all()
    rows = {
        p.id: PlantRow(
            p.id,
            p.site_id,
            p.service_code,
            p.customer_id,
            p.address,
            p.power_w if p.at is not None and now - p.at <= CURRENT_WINDOW else None,
            p.at,
        )
        for p in plants
    }
    if not rows:
        return []
    today = now.astimezone(JST).date()
    first, last = _month_bounds(month)
    low, high = min(first, today), max(last, today)

    e = s.meter_energy.c
    sold = conn.execute(
        select(e.meter_id, e.start, e.wh)
        .join(s.meters, m.id == e.meter_id)
        .where(
            *of_tenant,
            e.period == "day",
            e.direction == 1,
            e.start >= jst_midnight(low),
            e.start < jst_midnight(high + timedelta(days=1)),
        )
    ).all()
    p = s.plant_prices.c
    prices = conn.execute(
        select(p.meter_id, p.valid_from, p.valid_to, p.yen_per_kwh_milli)
        .where(
            p.tenant_id == tenant_id,
            p.meter_id.in_(list(rows)),
            p.valid_from <= high,
            or_(p.valid_to.is_(None), p.valid_to >= low),
        )
        .order_by(p.valid_from.desc(), p.id.desc())
    ).all()
    by_meter: dict[int, list] = defaultdict(list)
    for price in prices:
        by_meter[price.meter_id].append(price)

    today_start = day_start(now)
    for r in sold:
        row = rows[r.meter_id]
        day = r.start.astimezone(JST).date()
        if r.start == today_start:
            row.today_wh = r.wh
        if first <= day <= last:
            row.days[day] = r.wh
    for row in rows.values():
        row.prices = by_meter[row.meter_id]
        row.price_today_milli = _price_for(row.prices, today)
        row.month_wh = sum(row.days.values())
        for day, wh in row.days.items():
            price = _price_for(row.prices, day)
            if price is None:
                row.unpriced_days += 1 if wh else 0
            else:
                row.month_yen += wh * price / 1_000_000  # Wh × milli-yen/kWh
        row.month_yen = round(row.month_yen, 2)
    return list(rows.values())


def all_prices(conn: Connection, tenant_id: int, meter_id: int) -> list:
    """Every sale price of the plant, by validity."""
    p = s.plant_prices.c
    return list(
        conn.execute(
            select(p.id, p.yen_per_kwh_milli, p.valid_from, p.valid_to)
            .where(p.tenant_id == tenant_id, p.meter_id == meter_id)
            .order_by(p.valid_from, p.id)
        )
    )


def _generator(page: Page) -> None:
    if page.tenant_kind != "generator":  # no plants: the page does not exist for them
        raise PageProblem(404, "error.not_found")


# -- pages -----------------------------------------------------------------------------------


@router.get("/plants")
def plants_page(
    page: SignedIn,
    conn: Conn,
    month: Annotated[str | None, Query(max_length=7, description="YYYY-MM")] = None,
) -> Response:
    _generator(page)
    now = s.utcnow()
    today = now.astimezone(JST).date()
    first = _parse_month(month, today)
    _, last = _month_bounds(first)
    rows = plant_rows(conn, page.tenant_id, first, now)
    shown_last = min(last, today)
    days = [first + timedelta(days=n) for n in range((shown_last - first).days + 1)]
    compare = {
        "days": [d.isoformat() for d in days],
        "plants": [
            {"meter_id": r.meter_id, "name": r.name, "wh": [r.days.get(d, 0) for d in days]}
            for r in rows
        ],
        "today": today.isoformat(),
        "lang": page.t.lang,
        "messages": page.t.messages("plants."),
    }
    return render(
        page,
        "plants.html",
        rows=rows,
        month=first,
        month_label=month_text(page.t, first),
        prev_month=(first - timedelta(days=1)).replace(day=1),
        next_month=last + timedelta(days=1),
        this_month=today.replace(day=1),
        today=today,
        totals={
            "today_wh": sum(r.today_wh for r in rows),
            "month_wh": sum(r.month_wh for r in rows),
            "month_yen": sum(r.month_yen for r in rows),
        },
        compare=compare,
        yen=lambda value: yen(page.t, value),
        price_text=lambda milli: price_text(page.t, milli),
    )


def _view_range(view: View, anchor: date) -> tuple[date, date, date, date]:
    """The range shown (first, last) and the anchors of the previous and next ranges."""
    if view == "hour":
        return anchor, anchor, anchor - timedelta(days=1), anchor + timedelta(days=1)
    if view == "day":
        first, last = _month_bounds(anchor)
        return first, last, (first - timedelta(days=1)).replace(day=1), last + timedelta(days=1)
    first, last = date(anchor.year, 1, 1), date(anchor.year, 12, 31)
    return first, last, date(anchor.year - 1, 1, 1), date(anchor.year + 1, 1, 1)


@router.get("/plants/{meter_id}")
def plant_page(
    meter_id: RowId,
    page: SignedIn,
    conn: Conn,
    request: Request,
    view: View = "hour",
    day: Annotated[ApiDate | None, Query(description="JST day the view holds")] = None,
) -> Response:
    _generator(page)
    now = s.utcnow()
    today = now.astimezone(JST).date()
    found = plant_rows(conn, page.tenant_id, today.replace(day=1), now, meter_id=meter_id)
    if not found:  # another tenant's meter, or none at all: the same answer
        raise PageProblem(404, "error.not_found")
    plant = found[0]
    anchor = day or today
    first, last, prev_anchor, next_anchor = _view_range(view, anchor)
    month_first, _ = _month_bounds(today)
    peak_first, peak_last = _month_bounds(anchor)
    weather_on = getattr(request.app.state, "weather", None) is not None
    api = f"{API_PREFIX}/meters/{meter_id}"
    client = {
        "view": view,
        "first": first.isoformat(),
        "last": last.isoformat(),
        "energy_api": f"{api}/energy",
        "demand_api": f"{api}/demand",
        "prices_api": f"{api}/prices",
        "weather_api": f"{API_PREFIX}/sites/{plant.site_id}/weather" if weather_on else None,
        # The peaks: of the month holding the view's day, so an earlier month can be read.
        "peak_first": peak_first.isoformat(),
        "peak_last": peak_last.isoformat(),
        "today": today.isoformat(),
        "lang": page.t.lang,
        "messages": page.t.messages("plant."),
    }
    labels = {
        "hour": page.t("plant.range_hour", date=page.t.date(first)),
        "day": page.t("plant.range_day", month=month_text(page.t, first)),
        "month": page.t("plant.range_month", year=first.year),
    }
    return render(
        page,
        "plant.html",
        plant=plant,
        view=view,
        views=("hour", "day", "month"),
        anchor=anchor,
        range_label=labels[view],
        prev_anchor=prev_anchor,
        next_anchor=next_anchor,
        today=today,
        month_label=month_text(page.t, month_first),
        peak_month_label=month_text(page.t, peak_first),
        weather_on=weather_on,
        prices=all_prices(conn, page.tenant_id, meter_id),
        client=client,
        yen=lambda value: yen(page.t, value),
        price_text=lambda milli: price_text(page.t, milli),
    )
