"""The graph grid (today's 30-minute bars of many sites at once) and a meter's detail page
(hourly / daily / monthly, the day's peak, a realtime trace, CSV of what is shown).

The grid is one page of the tenant's meters by service code (keyset: ``?after=`` or
``?before=`` a meter id, never OFFSET), searchable like the List, with today's (JST) slot
values of all of them read in one query on `slot_energy` (its primary key: meter, slot,
direction) and put in the page as JSON for plotly: a page costs two small queries and a
count, whatever the fleet's size. The direction is the tenant's business: energy bought
(normal) for retailers and aggregators, sold (reverse) for generators.

The detail page is a frame: its figures come from the JSON API (`/energy`, `/peaks`,
`/power`) with the page's session, and its CSV link is the very query the chart shows, in
the API's CSV form. While it is open it keeps a realtime lease on the meter's gateway
(`kenshin.server.metering.live`) and draws the samples as they arrive.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, timedelta
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import Connection, Row, and_, func, select

from kenshin.jst import JST

from .. import listing
from .. import schema as s
from ..api import API_PREFIX
from ..bounds import ApiDate
from ..deps import Conn, RowId
from ..metering import live
from ..metering.series import jst_midnight
from .rendering import PageProblem, PageRoute, SignedIn, render

__all__ = ["GRID_PAGE", "router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

GRID_PAGE = 24  # meters on one page of the grid
SLOTS_A_DAY = 48
Direction = Literal["normal", "reverse"]
DIRECTIONS: dict[str, int] = {"normal": 0, "reverse": 1}
View = Literal["hour", "day", "month"]
VIEWS: tuple[View, ...] = ("hour", "day", "month")
# What each view shows: the energy API's period over which range.
VIEW_PERIOD = {"hour": "hour", "day": "day", "month": "month"}


def tenant_direction(kind: str | None) -> Direction:
    """Generators sell; retailers and aggregators buy."""
    return "reverse" if kind == "generator" else "normal"


def today_jst() -> date:
    return s.utcnow().astimezone(JST).date()


# -- the grid's queries ---------------------------------------------------------------------


def _grid_sites(tenant_id: int, q: str | None):
    """The tenant's sites that have a meter (and match the search): the grid's pages are
    pages of sites, so that the plan walks the (tenant, service code) index and stops at
    the page's end, whatever the database thinks of the tables' sizes."""
    m, site = s.meters.c, s.sites.c
    # By site alone (a site's meters are its tenant's: composite foreign key), so that the
    # probe is the meters' site index.
    has_meter = select(m.id).where(m.site_id == site.id).exists()
    return select(site.id, site.service_code).where(
        listing.combine(
            site.tenant_id == tenant_id,
            has_meter,
            listing.search_filter(
                q, [site.customer_id, site.service_code, site.address, site.phone, site.name]
            ),
        )
    )


def grid_meters(
    conn: Connection,
    tenant_id: int,
    q: str | None,
    *,
    after: int | None = None,
    before: int | None = None,
    limit: int = GRID_PAGE,
) -> tuple[list[Row], bool, bool]:
    """One page of the tenant's meters by service code (then id): `limit` sites from the
    first, or just after / just before the anchor meter's site (keyset: the service code,
    unique in a tenant, looked up within the tenant; an anchor not the tenant's reads the
    first page). A site with several meters shows them all on its page. Returns the
    meters (id, gateway_id, service_code, customer_id, address, name) and whether pages
    come before and after."""
    m, site = s.meters.c, s.sites.c
    anchor_id = after if after is not None else before
    anchor = None
    if anchor_id is not None:
        anchor = conn.execute(
            select(site.service_code)
            .join(s.meters, m.site_id == site.id)
            .where(m.id == anchor_id, m.tenant_id == tenant_id)
        ).scalar()
    sites = _grid_sites(tenant_id, q)
    if anchor is None:
        found = conn.execute(sites.order_by(site.service_code).limit(limit + 1)).all()
        has_prev, has_next = False, len(found) > limit
        found = found[:limit]
    elif after is not None:
        found = conn.execute(
            sites.where(site.service_code > anchor).order_by(site.service_code).limit(limit + 1)
        ).all()
        has_prev, has_next = True, len(found) > limit
        found = found[:limit]
    else:
        found = conn.execute(
            sites.where(site.service_code < anchor)
            .order_by(site.service_code.desc())
            .limit(limit + 1)
        ).all()
        has_prev, has_next = len(found) > limit, True
        found = list(reversed(found[:limit]))
    if not found:
        return [], has_prev, has_next
    order = {row.id: n for n, row in enumerate(found)}
    meters = conn.execute(
        select(m.id, m.site_id, m.gateway_id, site.service_code, site.customer_id,
               site.address, site.name)
        .join(s.sites, site.id == m.site_id)
        .where(m.tenant_id == tenant_id, m.site_id.in_(list(order)))
    ).all()  # fmt: skip
    meters.sort(key=lambda r: (order[r.site_id], r.id))
    return meters, has_prev, has_next


def today_slots(
    conn: Connection, meter_ids: list[int], direction: int, day: date
) -> dict[int, list[int | None]]:
    """The JST day's 48 slot values of each meter, in one query on slot_energy."""
    values: dict[int, list[int | None]] = {m: [None] * SLOTS_A_DAY for m in meter_ids}
    if not meter_ids:
        return values
    lo = jst_midnight(day)
    e = s.slot_energy.c
    rows = conn.execute(
        select(e.meter_id, e.slot_start, e.wh).where(
            e.meter_id.in_(meter_ids),
            e.direction == direction,
            e.slot_start >= lo,
            e.slot_start < lo + timedelta(days=1),
        )
    )
    for meter_id, start, wh in rows:
        index = int((start - lo.astimezone(UTC)).total_seconds()) // 1800
        if 0 <= index < SLOTS_A_DAY:
            values[meter_id][index] = wh
    return values


def grid_count(conn: Connection, tenant_id: int, q: str | None) -> int:
    """The meters the grid's pages hold in all."""
    m = s.meters.c
    query = select(func.count()).where(m.tenant_id == tenant_id)
    if q:
        query = query.where(m.site_id.in_(select(_grid_sites(tenant_id, q).subquery().c.id)))
    return conn.execute(query).scalar_one()


# -- the detail's queries -------------------------------------------------------------------


def meter_with_site(conn: Connection, tenant_id: int, meter_id: int) -> Row | None:
    """The meter (None if not this tenant's) with its site and gateway."""
    m, site, g = s.meters.c, s.sites.c, s.gateways.c
    return conn.execute(
        select(
            m.id,
            m.serial,
            m.link,
            m.gateway_id,
            site.service_code,
            site.customer_id,
            site.address,
            site.name,
            g.serial.label("gateway_serial"),
            g.state.label("gateway_state"),
        )
        .select_from(s.meters)
        .join(s.sites, and_(site.id == m.site_id, site.tenant_id == m.tenant_id))
        .outerjoin(s.gateways, and_(g.id == m.gateway_id, g.tenant_id == m.tenant_id))
        .where(m.id == meter_id, m.tenant_id == tenant_id)
    ).one_or_none()


def measured_directions(conn: Connection, meter_id: int) -> set[int]:
    """The directions the meter has any energy in (its monthly rollups: a few rows)."""
    e = s.meter_energy.c
    rows = conn.execute(
        select(e.direction).where(e.meter_id == meter_id, e.period == "month").group_by(e.direction)
    )
    return {direction for (direction,) in rows}


def view_range(view: View, day: date) -> tuple[date, date]:
    """The JST days a view of `day` shows: the day, its month, or its year."""
    if view == "hour":
        return day, day
    if view == "day":
        return day.replace(day=1), day.replace(day=calendar.monthrange(day.year, day.month)[1])
    return date(day.year, 1, 1), date(day.year, 12, 31)


def step(view: View, day: date, by: int) -> date:
    """The day `by` views away (the first of the month or year for those views)."""
    if view == "hour":
        return day + timedelta(days=by)
    if view == "day":
        month = day.year * 12 + day.month - 1 + by
        return date(month // 12, month % 12 + 1, 1)
    return date(day.year + by, 1, 1)


# -- pages ------------------------------------------------------------------------------------


@router.get("/graphs")
def graph_grid(
    page: SignedIn,
    conn: Conn,
    q: Annotated[str | None, Query(max_length=100, pattern="^[^\\x00]*$")] = None,
    after: RowId | None = None,
    before: RowId | None = None,
    direction: Direction | None = None,
    scale: Literal["own", "shared"] = "own",
) -> Response:
    shown = direction or tenant_direction(page.tenant_kind)
    day = today_jst()
    meters, has_prev, has_next = grid_meters(
        conn, page.tenant_id, q or None, after=after, before=None if after else before
    )
    values = today_slots(conn, [m.id for m in meters], DIRECTIONS[shown], day)
    total = grid_count(conn, page.tenant_id, q or None)

    def link(**extra) -> str:
        shared = "shared" if scale == "shared" else None
        params = {"q": q or None, "direction": direction, "scale": shared, **extra}
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return f"/graphs?{query}" if query else "/graphs"

    cards = []
    for meter in meters:
        slots = values[meter.id]
        measured = [wh for wh in slots if wh is not None]
        cards.append(
            {
                "meter": meter,
                "total_wh": sum(measured) if measured else None,
                "slots_measured": len(measured),
            }
        )
    client = {
        "lang": page.t.lang,
        "direction": shown,
        "day": day.isoformat(),
        "slots": [f"{n // 2:02d}:{n % 2 * 30:02d}" for n in range(SLOTS_A_DAY)],
        "meters": [{"id": m.id, "wh": values[m.id]} for m in meters],
        # One y scale for every card of the page (to compare sites), or each its own.
        "scale": scale,
    }
    return render(
        page,
        "graphs.html",
        cards=cards,
        client=client,
        day=day,
        q=q or "",
        direction=shown,
        chosen_direction=direction,
        total=total,
        prev_url=link(before=meters[0].id) if has_prev and meters else None,
        next_url=link(after=meters[-1].id) if has_next and meters else None,
        other_direction_url=link(direction="normal" if shown == "reverse" else "reverse"),
        scale=scale,
        other_scale_url=link(scale=None if scale == "shared" else "shared"),
    )


@router.get("/meters/{meter_id}")
def meter_detail(
    meter_id: RowId,
    page: SignedIn,
    conn: Conn,
    view: View = "hour",
    day: Annotated[ApiDate | None, Query(alias="date")] = None,
    direction: Direction | None = None,
) -> Response:
    meter = meter_with_site(conn, page.tenant_id, meter_id)
    if meter is None:  # another tenant's, or none at all: the same answer
        raise PageProblem(404, "error.not_found")
    today = today_jst()
    day = day or today
    has = measured_directions(conn, meter_id)
    preferred = tenant_direction(page.tenant_kind)
    if direction is None:
        # The tenant's direction, unless the meter only ever measured the other one.
        other = "normal" if preferred == "reverse" else "reverse"
        direction = other if has == {DIRECTIONS[other]} else preferred
    both = has >= {0, 1}
    first, last = view_range(view, day)
    base = f"{API_PREFIX}/meters/{meter_id}"
    energy = urlencode(
        {"from": first, "to": last, "period": VIEW_PERIOD[view], "direction": direction}
    )

    def link(**changes) -> str:
        params = {"view": view, "date": day.isoformat(), "direction": direction} | changes
        return f"/meters/{meter_id}?{urlencode(params)}"

    later = step(view, day, 1)
    range_only = urlencode({"from": first, "to": last})
    client = {
        "meter_id": meter_id,
        "lang": page.t.lang,
        "view": view,
        "direction": direction,
        "first": first.isoformat(),
        "last": last.isoformat(),
        "energy_url": f"{base}/energy?{energy}",
        "demand_url": f"{base}/demand?{range_only}&direction={direction}",
        "live": (
            {
                "start_url": f"{base}/live",
                "stop_url": f"{base}/live/stop",
                "power_url": f"{base}/power",
                "renew_ms": live.RENEW_S * 1000,
                "interval_ms": live.INTERVAL_S * 1000,
                "window_s": 600,
            }
            if meter.gateway_id is not None
            else None
        ),
        "messages": page.t.messages("meter.")
        | page.t.messages("common.")
        | page.t.messages("list.selling"),
    }
    return render(
        page,
        "meter.html",
        meter=meter,
        view=view,
        views=VIEWS,
        day=day,
        first=first,
        last=last,
        direction=direction,
        both_directions=both,
        csv_url=f"{base}/energy?{energy}&format=csv",
        view_urls={v: link(view=v) for v in VIEWS},
        prev_url=link(date=step(view, day, -1).isoformat()),
        next_url=link(date=later.isoformat()) if later <= today else None,
        today_url=link(date=today.isoformat()) if not first <= today <= last else None,
        direction_urls={d: link(direction=d) for d in DIRECTIONS},
        client=client,
    )
