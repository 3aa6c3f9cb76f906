"""Onboarding a home from the panel (operators): a new site, or many homes from a CSV
previewed row by row; then the site's set-up page: its details, its gateway claimed by
the code printed on the box, its meters with their supply point number and B-route
credentials (write-only: the page says only when they were set), and each meter's first
reading, awaited live.

Every change goes through the API (static/forms.js and onboard.js): POST /sites, PATCH
/sites/{id}, POST /gateways/claim, POST and PATCH /meters, POST /homes/import.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import select

from .. import schema as s
from ..api import API_PREFIX
from ..deps import Conn, RowId
from ..devices import registry
from ..devices.api import HOME_COLUMNS, HOME_OPTIONAL
from .queries import site_gateways
from .rendering import OperatorPage, PageProblem, PageRoute, render

__all__ = ["FIRST_READING_POLL_S", "router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
FIRST_READING_POLL_S = 3  # the set-up page asks for a new meter's reading this often


@router.get("/onboard")
def onboard_page(page: OperatorPage) -> Response:
    client = {
        "api": f"{API_PREFIX}/homes/import",
        "lang": page.t.lang,
        "messages": page.t.messages("onboard.") | page.t.messages("form."),
    }
    return render(
        page, "onboard.html", api=API_PREFIX, columns=HOME_COLUMNS + HOME_OPTIONAL, client=client
    )


@router.get("/sites/{site_id}/setup")
def setup_page(site_id: RowId, page: OperatorPage, conn: Conn) -> Response:
    site = registry.get_site(conn, site_id, page.tenant_id)
    if site is None:  # another tenant's, or none at all: the same answer
        raise PageProblem(404, "error.not_found")
    m = s.meters.c
    gateways = site_gateways(conn, page.tenant_id, site_id)
    meters = conn.execute(
        select(s.meters).where(m.site_id == site_id, m.tenant_id == page.tenant_id).order_by(m.id)
    ).all()
    client = {
        "meters": [{"id": x.id, "url": f"{API_PREFIX}/meters/{x.id}/current"} for x in meters],
        "poll_ms": FIRST_READING_POLL_S * 1000,
        "lang": page.t.lang,
        "messages": page.t.messages("setup.reading") | page.t.messages("list.selling"),
    }
    return render(
        page,
        "setup.html",
        api=API_PREFIX,
        site=site,
        gateways=gateways,
        meters=meters,
        credentials_set=registry.broute_credentials_set_at(
            conn, page.tenant_id, [meter.id for meter in meters]
        ),
        client=client,
    )
