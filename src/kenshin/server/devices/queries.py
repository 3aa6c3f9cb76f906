"""The devices room's reads for its HTTP lists: gateways, meters and sites, a page at a time.

Separate from the handlers (`devices/api/`) so the SQL of a list lives in one place and
the handlers only check, call and shape; separate from `registry.py`, which holds the
room's writes and its one-row doors for other rooms. The site list's statement is built
once per shape and cached (`_site_list`): its values are bound parameters.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Row, Select, String, bindparam, func, or_, select

from .. import listing
from .. import schema as s
from ..metering.current import site_summary_columns, site_summary_values
from . import registry


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
    g = s.gateways.c
    query = select(s.gateways).where(
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
    m, g = s.meters.c, s.gateways.c
    query = select(s.meters).where(
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
        **site_summary_values(s.utcnow()),
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
    site, g, m = s.sites.c, s.gateways.c, s.meters.c
    tenant_id = bindparam("tenant_id")
    states = bindparam("states", expanding=True)
    # One gateway a site: a join would list the site once per gateway, and a walk must see
    # each site exactly once. The row shows its first gateway (by id) in the states asked.
    first = s.gateways.alias("first_gateway").c

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
        s.sites,
        of_first_gateway(first.id).label("gateway_id"),
        of_first_gateway(first.state).label("gateway_state"),
        *site_summary_columns(),
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
    "customer_id": s.sites.c.customer_id,
    "service_code": s.sites.c.service_code,
    "address": func.coalesce(s.sites.c.address, ""),
    "name": func.coalesce(s.sites.c.name, ""),
    "created_at": s.sites.c.created_at,
    "id": s.sites.c.id,
}
