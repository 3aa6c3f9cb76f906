"""What the pages read: a query or two a page, each on an index, always with the tenant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Row, and_, func, select

from .. import schema as s
from ..metering.rollups import day_start

__all__ = [
    "PANEL_STATES",
    "HomeSummary",
    "gateway_with_report",
    "home_summary",
    "latest_events",
]

# The donut's segments, in the order drawn: what a claimed gateway can be.
PANEL_STATES = ("working", "never_seen", "lost_contact", "meter_link_down")


@dataclass(frozen=True)
class HomeSummary:
    tenant_name: str
    gateways_by_state: dict[str, int]
    bought_wh: int | None  # today (JST) so far; None: nothing measured yet
    sold_wh: int | None

    @property
    def gateways(self) -> int:
        return sum(self.gateways_by_state.values())


def _tenant_day_wh(tenant_id: int, direction: int, now: datetime):
    e = s.tenant_energy.c
    return (
        select(e.wh)
        .where(
            e.tenant_id == tenant_id,
            e.period == "day",
            e.direction == direction,
            e.start == day_start(now),
        )
        .scalar_subquery()
    )


def home_summary(conn: Connection, tenant_id: int, now: datetime) -> HomeSummary:
    """The tenant's name, its gateways counted by state, and today's energy bought and
    sold: one query (counts over the (tenant_id, state) index, primary-key lookups)."""
    g = s.gateways.c
    name = select(s.tenants.c.name).where(s.tenants.c.id == tenant_id).scalar_subquery()
    row = conn.execute(
        select(
            name.label("tenant_name"),
            *(func.count().filter(g.state == state).label(state) for state in PANEL_STATES),
            _tenant_day_wh(tenant_id, 0, now).label("bought_wh"),
            _tenant_day_wh(tenant_id, 1, now).label("sold_wh"),
        ).where(g.tenant_id == tenant_id)
    ).one()
    return HomeSummary(
        row.tenant_name,
        {state: row._mapping[state] for state in PANEL_STATES},
        row.bought_wh,
        row.sold_wh,
    )


def latest_events(
    conn: Connection, tenant_id: int, *, gateway_id: int | None = None, limit: int = 20
) -> list[Row]:
    """The newest events, with their gateway's serial (None for a tenant-wide event)."""
    e, g = s.events.c, s.gateways.c
    query = (
        select(s.events, g.serial.label("gateway_serial"))
        .outerjoin(s.gateways, g.id == e.gateway_id)
        .where(e.tenant_id == tenant_id)
    )
    if gateway_id is not None:
        query = query.where(e.gateway_id == gateway_id)
    return list(conn.execute(query.order_by(e.at.desc(), e.id.desc()).limit(limit)))


def integrity_failures(conn: Connection, tenant_id: int) -> list[Row]:
    """Gateways whose newest integrity check failed (their installed files differ from
    the signed release): that event of each, with the gateway's serial, newest first."""
    e, g = s.events.c, s.gateways.c
    newest = (
        select(func.max(e.id))
        .where(e.tenant_id == tenant_id, e.code == "gw_integrity")
        .group_by(e.gateway_id)
    )
    query = (
        select(s.events, g.serial.label("gateway_serial"))
        .outerjoin(s.gateways, g.id == e.gateway_id)
        .where(e.id.in_(newest))
        .order_by(e.at.desc(), e.id.desc())
    )
    return [row for row in conn.execute(query) if (row.detail or {}).get("ok") is not True]


def site_gateways(conn: Connection, tenant_id: int, site_id: int) -> list[Row]:
    """A site's gateways, oldest first (the site page and its set-up page)."""
    g = s.gateways.c
    query = select(s.gateways).where(g.site_id == site_id, g.tenant_id == tenant_id)
    return conn.execute(query.order_by(g.id)).all()


def gateway_with_report(conn: Connection, tenant_id: int, gateway_id: int) -> Row | None:
    """The gateway (None if not this tenant's), its site, and its newest status report
    (``report_*`` columns, None before the first): one query."""
    g, site, r = s.gateways.c, s.sites.c, s.gateway_reports.c
    other = s.gateway_reports.alias("other_report").c
    newest = (
        select(other.id)
        .where(other.gateway_id == g.id)
        .order_by(other.at.desc(), other.id.desc())
        .limit(1)
        .correlate(s.gateways)
        .scalar_subquery()
    )
    report = [
        column.label(f"report_{column.key}")
        for column in s.gateway_reports.c
        if column.key not in ("id", "gateway_id")
    ]
    return conn.execute(
        select(
            s.gateways,
            site.customer_id,
            site.service_code,
            site.address,
            *report,
        )
        .outerjoin(s.sites, and_(site.id == g.site_id, site.tenant_id == g.tenant_id))
        .outerjoin(s.gateway_reports, r.id == newest)
        .where(g.id == gateway_id, g.tenant_id == tenant_id)
    ).one_or_none()
