"""The devices room's reads: its HTTP lists (gateways, meters and sites, a page at a
time) and the doors other rooms read meters and gateways through.

Separate from the handlers (`devices/api/`) so the SQL of a list lives in one place and
the handlers only check, call and shape; separate from `registry.py`, which holds the
room's writes and its one-row doors for other rooms. The site list's statement is built
once per shape and cached (`_site_list`): its values are bound parameters.

A door that another room joins to (`tenant_meters`, `tenant_meter`, `export_meters`)
hands out a selectable with named columns, never the table: the caller keeps its one
query, and the meters' table stays this room's to change. A tenant or meter id may be a
`bindparam`, for statements built once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    String,
    Subquery,
    bindparam,
    func,
    or_,
    select,
)

from .. import listing, schema_base
from ..metering.current import site_summary_columns, site_summary_values
from . import registry
from . import tables as t


def tenant_meters(tenant_id: int | ColumnElement) -> Subquery:
    """The tenant's meters (`id`, `site_id`, `gateway_id`, `created_at`), to join to."""
    m = t.meters.c
    return (
        select(m.id, m.site_id, m.gateway_id, m.created_at)
        .where(m.tenant_id == tenant_id)
        .subquery("tenant_meters")
    )


def tenant_meter_ids(tenant_id: int | ColumnElement) -> Select:
    """The ids of the tenant's meters, for an IN or a count."""
    m = t.meters.c
    return select(m.id).where(m.tenant_id == tenant_id)


def tenant_meter(meter_id: int | ColumnElement, tenant_id: int | ColumnElement) -> Select:
    """The meter's id (one row) if it is the tenant's, else no row: to join from or to
    test with `.exists()` in the caller's query."""
    m = t.meters.c
    return select(m.id).where(m.id == meter_id, m.tenant_id == tenant_id)


def has_meter(conn: Connection, tenant_id: int, meter_id: int) -> bool:
    return conn.execute(tenant_meter(meter_id, tenant_id)).first() is not None


def meter_count(conn: Connection, tenant_id: int) -> int:
    counted = select(func.count()).select_from(tenant_meter_ids(tenant_id).subquery())
    return conn.execute(counted).scalar_one()


def export_meters(
    tenant_id: int, site_ids: Sequence[int] | None = None, q: str | None = None
) -> Subquery:
    """The tenant's meters an export is of (on the sites `site_ids`, found by `q`: see
    `registry.meter_search`) and whom each serves: `meter_id`, `service_code`,
    `customer_id`, `supply_point`."""
    m, site = t.meters.c, t.sites.c
    return (
        select(m.id.label("meter_id"), site.service_code, site.customer_id, m.supply_point)
        .join_from(t.meters, t.sites, site.id == m.site_id)
        .where(
            listing.combine(
                m.tenant_id == tenant_id,
                m.site_id.in_(site_ids) if site_ids else None,
                registry.meter_search(q, tenant_id),
            )
        )
        .subquery("export_meters")
    )


def site_service_codes(conn: Connection, tenant_id: int, site_ids: Sequence[int]) -> dict[int, str]:
    """site id -> service code, of the tenant's sites asked (a DR event's homes, by site)."""
    if not site_ids:
        return {}
    site = t.sites.c
    return dict(
        conn.execute(
            select(site.id, site.service_code).where(
                site.tenant_id == tenant_id, site.id.in_(list(site_ids))
            )
        ).all()
    )


def service_codes(conn: Connection, meter_ids: set[int]) -> dict[int, str]:
    """meter id -> its site's service code, as a webhook names the meter."""
    if not meter_ids:
        return {}
    m, site = t.meters.c, t.sites.c
    return dict(
        conn.execute(
            select(m.id, site.service_code)
            .join_from(t.meters, t.sites, site.id == m.site_id)
            .where(m.id.in_(meter_ids))
        ).all()
    )


def working_meters(conn: Connection) -> list[Row]:
    """Every meter behind a working gateway (`id`, `tenant_id`, `gateway_id`), by id."""
    m, g = t.meters.c, t.gateways.c
    return conn.execute(
        select(m.id, m.tenant_id, m.gateway_id)
        .join(t.gateways, g.id == m.gateway_id)
        .where(g.state == "working")
        .order_by(m.id)
    ).all()


def lock_meter(conn: Connection, meter_id: int) -> None:
    """Lock the meter's row to the end of the transaction (PostgreSQL; SQLite has one
    writer anyway): what one meter's writers take turns on."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(t.meters.c.id).where(t.meters.c.id == meter_id).with_for_update())


def queue_depths(
    conn: Connection, tenant_id: int, since: datetime, reports: int
) -> dict[int, list[int]]:
    """The queue depths of each of the tenant's gateways' last `reports` reports since
    `since`, oldest first."""
    r, g = t.gateway_reports.c, t.gateways.c
    ranked = (
        select(
            r.gateway_id,
            r.queue_depth,
            func.row_number().over(partition_by=r.gateway_id, order_by=r.at.desc()).label("n"),
        )
        .join_from(t.gateway_reports, t.gateways, g.id == r.gateway_id)
        .where(g.tenant_id == tenant_id, r.at >= since)
        .subquery()
    )
    rows = conn.execute(
        select(ranked.c.gateway_id, ranked.c.queue_depth)
        .where(ranked.c.n <= reports)
        .order_by(ranked.c.gateway_id, ranked.c.n.desc())
    )
    depths: dict[int, list[int]] = {}
    for gateway_id, depth in rows:
        depths.setdefault(gateway_id, []).append(depth)
    return depths


def tenant_gateways(
    conn: Connection, tenant_id: int, tags: Sequence[str] | None = None
) -> list[Row]:
    """The tenant's gateways (`id`, `serial`, `tags`), by id; with `tags`, those that carry
    every one of them: a rollout's cohort is chosen from them."""
    g = t.gateways.c
    rows = conn.execute(
        select(g.id, g.serial, g.tags).where(g.tenant_id == tenant_id).order_by(g.id)
    ).all()
    if not tags:
        return rows
    wanted = set(tags)  # JSON lists are matched here, alike on SQLite and PostgreSQL
    return [row for row in rows if wanted <= set(row.tags or ())]


def agent_versions(conn: Connection, tenant_id: int) -> dict[int, str]:
    """The agent version each of the tenant's gateways last reported, by gateway id (a
    gateway that never reported is not listed)."""
    r, g = t.gateway_reports.c, t.gateways.c
    ranked = (
        select(
            r.gateway_id,
            r.agent_version,
            func.row_number().over(partition_by=r.gateway_id, order_by=r.at.desc()).label("n"),
        )
        .join_from(t.gateway_reports, t.gateways, g.id == r.gateway_id)
        .where(g.tenant_id == tenant_id)
        .subquery()
    )
    rows = conn.execute(select(ranked.c.gateway_id, ranked.c.agent_version).where(ranked.c.n == 1))
    return {gateway_id: version for gateway_id, version in rows}


def gateway_page(
    conn: Connection,
    tenant_id: int,
    *,
    state: list[str] | None,
    site_id: int | None,
    q: str | None,
    sort: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[Row], str | None]:
    """A page of the tenant's gateways, searched, filtered by state and site, sorted."""
    g = t.gateways.c
    query = select(t.gateways).where(
        listing.combine(
            g.tenant_id == tenant_id,
            g.state.in_(state) if state else None,
            g.site_id == site_id if site_id is not None else None,
            listing.search_filter(q, [g.serial, g.model]),
        )
    )
    query, page = listing.paginate(
        query,
        sortable={"serial": g.serial, "state": g.state, "created_at": g.created_at, "id": g.id},
        id_column=g.id,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )
    return page(conn.execute(query).all())


def meter_page(
    conn: Connection,
    tenant_id: int,
    *,
    q: str | None,
    link: str | None,
    state: list[str] | None,
    site_id: int | None,
    gateway_id: int | None,
    sort: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[Row], str | None]:
    """A page of the tenant's meters (every column: the caller hides the credentials)."""
    m, g = t.meters.c, t.gateways.c
    query = select(t.meters).where(
        listing.combine(
            m.tenant_id == tenant_id,
            m.link == link if link else None,
            m.site_id == site_id if site_id is not None else None,
            m.gateway_id == gateway_id if gateway_id is not None else None,
            m.gateway_id.in_(select(g.id).where(g.tenant_id == tenant_id, g.state.in_(state)))
            if state
            else None,
            registry.meter_search(q, tenant_id),
        )
    )
    query, page = listing.paginate(
        query,
        sortable={
            "serial": func.coalesce(m.serial, ""),
            "link": m.link,
            "created_at": m.created_at,
            "id": m.id,
        },
        id_column=m.id,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )
    return page(conn.execute(query).all())


def site_page(
    conn: Connection,
    tenant_id: int,
    *,
    q: str | None,
    state: list[str] | None,
    sort: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[Row], str | None]:
    """A page of the tenant's sites, each with its first gateway (in the states asked) and
    the metering room's summary columns (power now, today's energy)."""
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        **site_summary_values(schema_base.utcnow()),
        **listing.page_values(_SITE_SORTS, sort, limit, cursor),
    }
    if state:
        values["states"] = state
    if q:
        values["needle"] = listing.search_needle(q)
        values["supply_point"] = listing.search_needle(registry.supply_point_search(q))
    query = _site_list(sort, bool(q), bool(state), cursor is not None)
    return listing.page_of(conn.execute(query, values).all(), sort=sort, limit=limit, id_key="id")


@lru_cache(maxsize=128)
def _site_list(sort: str, searched: bool, in_states: bool, after: bool) -> Select:
    """The site list's statement for a sort and the filters asked, built once: its values
    are bound parameters (`tenant_id`, `needle` and `supply_point` when searched, `states`,
    the page's, the summary's). Building it for each request, and SQLAlchemy walking it to
    find its compiled form, cost more than the rest of the handler (issue 21)."""
    site, g, m = t.sites.c, t.gateways.c, t.meters.c
    tenant_id = bindparam("tenant_id")
    states = bindparam("states", expanding=True)
    # One gateway a site: a join would list the site once per gateway, and a walk must see
    # each site exactly once. The row shows its first gateway (by id) in the states asked.
    first = t.gateways.alias("first_gateway").c

    def of_first_gateway(column):
        return (
            select(column)
            .where(first.site_id == site.id, *([first.state.in_(states)] if in_states else []))
            .order_by(first.id)
            .limit(1)
            .scalar_subquery()
        )

    in_state = None
    if in_states:  # a semi-join: the planner sees how many sites match (index on tenant, state)
        in_state = site.id.in_(
            select(g.site_id).where(g.tenant_id == tenant_id, g.state.in_(states))
        )
    query = select(
        t.sites,
        of_first_gateway(first.id).label("gateway_id"),
        of_first_gateway(first.state).label("gateway_state"),
        *site_summary_columns(select(m.id).where(m.site_id == site.id).correlate(t.sites)),
    ).where(
        listing.combine(
            site.tenant_id == tenant_id,
            in_state,
            or_(
                listing.matching(
                    [site.customer_id, site.service_code, site.address, site.phone, site.name],
                    bindparam("needle", type_=String),
                ),
                site.id.in_(  # a retailer's list is searched by the number it settles on
                    select(m.site_id).where(
                        m.tenant_id == tenant_id,
                        listing.matching([m.supply_point], bindparam("supply_point", type_=String)),
                    )
                ),
            )
            if searched
            else None,
        )
    )
    return listing.sorted_page(
        query, sortable=_SITE_SORTS, id_column=site.id, sort=sort, after=after
    )


_SITE_SORTS = {
    "customer_id": t.sites.c.customer_id,
    "service_code": t.sites.c.service_code,
    "address": func.coalesce(t.sites.c.address, ""),
    "name": func.coalesce(t.sites.c.name, ""),
    "created_at": t.sites.c.created_at,
    "id": t.sites.c.id,
}
