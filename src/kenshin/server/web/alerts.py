"""The alerts page: the tenant's anomaly alerts (open, acknowledged, resolved) with their
subject and times; operators acknowledge or resolve them from the page (through the JSON
API, so roles are the API's). Home shows the open ones and the current notices."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import Connection, Row, func, select

from .. import schema as s
from ..api import API_PREFIX
from ..deps import Conn
from .rendering import PageRoute, SignedIn, render

__all__ = ["open_alerts", "router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
AlertState = Literal["open", "acknowledged", "resolved"]
UNRESOLVED = ("open", "acknowledged")
PAGE_ROWS = 200


def _alerts(conn: Connection, tenant_id: int, states, limit: int) -> list[Row]:
    """Alerts with their meter's site (service code) and gateway serial, newest first."""
    a, m, site, g = s.alerts.c, s.meters.c, s.sites.c, s.gateways.c
    return list(
        conn.execute(
            select(s.alerts, site.service_code, site.customer_id, g.serial.label("gateway_serial"))
            .outerjoin(s.meters, m.id == a.meter_id)
            .outerjoin(s.sites, site.id == m.site_id)
            .outerjoin(s.gateways, g.id == a.gateway_id)
            .where(a.tenant_id == tenant_id, a.state.in_(states))
            .order_by(a.opened_at.desc(), a.id.desc())
            .limit(limit)
        )
    )


def open_alerts(conn: Connection, tenant_id: int, limit: int = 5) -> tuple[int, list[Row]]:
    """How many alerts are not resolved, and the newest of them."""
    a = s.alerts.c
    count = conn.execute(
        select(func.count()).where(a.tenant_id == tenant_id, a.state.in_(UNRESOLVED))
    ).scalar_one()
    return count, _alerts(conn, tenant_id, UNRESOLVED, limit)


@router.get("/alerts")
def alerts_page(
    page: SignedIn,
    conn: Conn,
    state: Annotated[list[AlertState] | None, Query()] = None,
) -> Response:
    chosen = state or list(UNRESOLVED)
    client = {
        "api": f"{API_PREFIX}/alerts/",
        "lang": page.t.lang,
        "messages": page.t.messages("alerts.") | page.t.messages("alert_state."),
    }
    return render(
        page,
        "alerts.html",
        alerts=_alerts(conn, page.tenant_id, chosen, PAGE_ROWS),
        chosen=chosen,
        states=("open", "acknowledged", "resolved"),
        client=client,
    )
