"""The Export page: the settlement CSV of many meters for a range of JST days (the form
hands the choices to ``GET /api/v1/settlement.csv``, so roles, limits and the audit log
are the API's), and the missing-slots (欠測) report of a range, yesterday by default.

The download goes through ``/export/settlement``, which checks the range first: a range
past the limit comes back as this page with the reason, not as the API's JSON problem.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from .. import schema as s
from ..api import API_PREFIX
from ..bounds import ApiDate
from ..metering import settlement
from ..metering.api import DIRECTIONS
from ..metering.settlement import MAX_SETTLEMENT_DAYS, missing_report, yesterday
from .rendering import PageRoute, SignedIn, render

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
REPORT_ROWS = 200  # the meters with the most missing slots; the CSV has them all
RANGES_SHOWN = 3  # per meter; "and N more"
Search = Annotated[str | None, Query(max_length=100)]


def _range_error(first: date, last: date) -> str | None:
    """The catalogue key of what is wrong with the range, or None."""
    if last < first:
        return "settle.error_order"
    if (last - first).days + 1 > MAX_SETTLEMENT_DAYS:
        return "settle.error_long"
    return None


def _last_month() -> tuple[date, date]:
    """The default export: the last whole month (what a month's settlement is on)."""
    end = yesterday().replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


def _page(
    page: SignedIn,
    request: Request,
    *,
    first: date,
    last: date,
    direction: str,
    q: str | None,
    export: dict,
    export_error: str | None = None,
) -> Response:
    report_error = _range_error(first, last)
    expected, shown, counts = 0, [], {"total": 0, "missing": 0}
    if report_error is None:
        expected, meters = missing_report(
            request.app.state.engine, page.tenant_id, first, last, DIRECTIONS[direction],
            s.utcnow(), settlement.meter_filters(page.tenant_id, None, q),
        )  # fmt: skip
        for meter, gaps in meters:  # streamed: only the worst REPORT_ROWS are kept
            counts["total"] += 1
            if gaps:
                counts["missing"] += 1
                shown.append((sum(g.slots for g in gaps), meter, gaps))
                if len(shown) > 2 * REPORT_ROWS:
                    shown = sorted(shown, key=lambda x: (-x[0], x[1].meter_id))[:REPORT_ROWS]
        shown = sorted(shown, key=lambda x: (-x[0], x[1].meter_id))[:REPORT_ROWS]
    query = {"from": first, "to": last, "direction": direction, **({"q": q} if q else {})}
    return render(
        page,
        "export.html",
        days=MAX_SETTLEMENT_DAYS,
        export=export,
        export_error=export_error,
        report={"from": first, "to": last, "direction": direction, "q": q or ""},
        report_error=report_error,
        expected=expected,
        counts=counts,
        shown=shown,
        ranges_shown=RANGES_SHOWN,
        missing_csv=f"{API_PREFIX}/missing-slots?"
        + urlencode({**query, "format": "csv", "lang": page.t.lang}),
    )


@router.get("/export")
def export_page(
    page: SignedIn,
    request: Request,
    first: Annotated[ApiDate | None, Query(alias="from")] = None,
    last: Annotated[ApiDate | None, Query(alias="to")] = None,
    direction: Literal["normal", "reverse"] = "normal",
    q: Search = None,
) -> Response:
    first = first or last or yesterday()
    start, end = _last_month()
    export = {"from": start, "to": end, "layout": "long", "lang": page.t.lang,
              "direction": "both", "q": ""}  # fmt: skip
    return _page(
        page, request, first=first, last=last or first, direction=direction, q=q, export=export
    )


@router.get("/export/settlement")
def export_settlement(
    page: SignedIn,
    request: Request,
    first: Annotated[ApiDate, Query(alias="from")],
    last: Annotated[ApiDate, Query(alias="to")],
    layout: Literal["long", "wide"] = "long",
    lang: Literal["ja", "en"] = "ja",
    direction: Literal["both", "normal", "reverse"] = "both",
    q: Search = None,
) -> Response:
    """To the API's download when the range is one it gives; else the form again with the
    reason (a page to read, 200: the form is not broken, the range is)."""
    export = {"from": first, "to": last, "layout": layout, "lang": lang,
              "direction": direction, "q": q or ""}  # fmt: skip
    error = _range_error(first, last)
    if error is None:
        asked = {k: v for k, v in export.items() if v != ""}
        return RedirectResponse(f"{API_PREFIX}/settlement.csv?{urlencode(asked)}", 303)
    day = yesterday()
    return _page(
        page, request, first=day, last=day, direction="normal", q=None, export=export,
        export_error=error,
    )  # fmt: skip
