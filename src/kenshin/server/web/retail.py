"""The retailer view: today's 30-minute demand against the procured plan and the forecast
band, actual so far, and the projected imbalance of the slots to come.

The page carries the day's outlook exactly as the JSON API answers it
(``GET /api/v1/imbalance``), so the chart draws at once; after a plan upload (``PUT
/api/v1/procurement-plan.csv``, operators and administrators, checked again by the API)
the page's script reads the same endpoint again and redraws. Only retailer and aggregator
tenants have this page: for a generator tenant it does not exist (the HTML 404 page).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from kenshin.jst import JST

from ..analytics import api as analytics_api
from ..api import API_PREFIX
from ..bounds import ApiDate
from ..deps import Conn
from .rendering import PageProblem, PageRoute, SignedIn, render

__all__ = ["RETAIL_KINDS", "router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

RETAIL_KINDS = ("retailer", "aggregator")  # the tenants that buy and resell power


@router.get("/retail")
def retail_page(
    page: SignedIn,
    conn: Conn,
    day: Annotated[ApiDate | None, Query(description="JST day, YYYY-MM-DD")] = None,
) -> Response:
    if page.tenant_kind not in RETAIL_KINDS:  # a generator has no plan to keep to
        raise PageProblem(404, "error.not_found")
    today = datetime.now(JST).date()
    day = day or today
    assert page.principal is not None
    outlook = analytics_api.imbalance(conn, page.principal, page.tenant_id, day)
    client = {
        "imbalance_api": f"{API_PREFIX}/imbalance",
        "plan_api": f"{API_PREFIX}/procurement-plan.csv",
        "outlook": outlook.model_dump(mode="json"),
        "lang": page.t.lang,
        "messages": page.t.messages("retail."),
    }
    return render(
        page,
        "retail.html",
        day=day,
        today=today,
        prev_day=day - timedelta(days=1),
        next_day=day + timedelta(days=1),
        client=client,
    )
