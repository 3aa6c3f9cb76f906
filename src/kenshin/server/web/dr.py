"""The panel's demand-response pages, and the customer's opt-out page.

- `/dr`: the tenant's DR events (energy-saving requests), latest start first, a page at
  a time (the API's cursor, as the audit log pages); the proposals of its imbalance rules
  apart, with Confirm; for operators the form that makes an event. `?date=&start=&end=&kw=`
  pre-fill the form (the Demand page's link for its slots at risk; read by the script).
- `/dr/{id}`: one event as it stands: the tenant's target against its homes' baseline and
  actual per half hour (a plotly chart), its homes counted by state and listed, and once
  final its stored results and their CSV.
- `/dr/opt-out/{token}`: the customer's page, public (the token in the link is the home's
  own, unguessable: docs/dr.md). GET says which event and asks to confirm; POST opts the
  home out before the deadline, or says plainly that it is too late. Japanese or English
  like the panel (`?lang=`).

The panel pages read with the functions the JSON API's routes run (dr/api.py), with the
reader's own principal, so a page shows what the API shows the same person (an operator
the opt-out links, a viewer not). Every change (make, confirm, cancel, opt a home out) is
the page calling that API through static/forms.js, so validation, roles, the CSRF check
and the audit log are the API's, written once: the create form's fields are the API's,
its script only turns a date, half hours and kW into `start`, `end` and `targets_w`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from kenshin.jst import JST

from .. import listing, schema_base
from ..api import API_PREFIX
from ..deps import Conn, RowId
from ..devices import queries as devices
from ..dr import api as dr_api
from ..dr import queries, service
from ..dr.queries import LIVE_STATES
from ..problems import Problem
from .rendering import Page, PageProblem, PageRoute, SignedIn, render

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Token = Annotated[str, Path(min_length=20, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
LIST_ROWS = 50
PROPOSALS_SHOWN = 20
HOME_ROWS = 500  # of an event's homes; the rest through the API
COUNTED = ("acknowledged", "acting", "opted_out", "failed", "no_devices")  # the page's figures


def _render(page: Page, template: str, **values) -> Response:
    client = {"lang": page.t.lang, "messages": page.t.messages("dr."), **values.pop("client")}
    api = f"{API_PREFIX}/dr/events"
    return render(page, template, api=api, live_states=LIVE_STATES, client=client, **values)


@router.get("/dr")
def events_page(page: SignedIn, conn: Conn, cursor: listing.Cursor = None) -> Response:
    try:
        events = dr_api.list_events(conn, page.principal, page.tenant_id, None, LIST_ROWS, cursor)
    except Problem:  # a cursor that is not ours: no such page
        raise PageProblem(404, "error.not_found") from None
    proposals = dr_api.list_events(
        conn, page.principal, page.tenant_id, ["proposed"], PROPOSALS_SHOWN, None
    )
    older = "/dr?" + urlencode({"cursor": events.next_cursor}) if events.next_cursor else None
    today = datetime.now(JST).date()
    return _render(
        page, "dr.html", events=events.items, proposals=proposals.items, older=older,
        first_page=cursor is None, today=today,
        client={"tomorrow": (today + timedelta(days=1)).isoformat()},
    )  # fmt: skip


@router.get("/dr/{event_id}")
def event_page(page: SignedIn, conn: Conn, event_id: RowId) -> Response:
    if queries.get_event(conn, page.tenant_id, event_id) is None:  # or another tenant's
        raise PageProblem(404, "error.not_found")
    live = dr_api.live(event_id, conn, page.principal, page.tenant_id)
    homes = dr_api.homes(event_id, conn, page.principal, page.tenant_id).items
    event = live.event
    results = None  # measured on the fly until final: the API has them, the page waits
    if event.state == "final":
        results = dr_api.get_results(event_id, conn, page.principal, page.tenant_id)
    shown, result_homes = homes[:HOME_ROWS], results.homes[:HOME_ROWS] if results else []
    sites = {h.site_id for h in (*shown, *result_homes)}
    open_to_opt_out = event.state in LIVE_STATES and schema_base.utcnow() < event.opt_out_deadline
    return _render(
        page, "dr_event.html", event=event, homes=shown, more_homes=len(homes) > HOME_ROWS,
        serials=queries.gateway_serials(conn, page.tenant_id),
        codes=devices.site_service_codes(conn, page.tenant_id, sorted(sites)),
        results=results, result_homes=result_homes, counted=COUNTED,
        open_to_opt_out=open_to_opt_out,
        client={"slots": [s.model_dump(mode="json") for s in live.slots]},
    )  # fmt: skip


# -- the customer's opt-out page ---------------------------------------------------------


def _found(conn, token: str):
    found = service.participation_by_token(conn, token)
    if found is None:
        raise PageProblem(404, "error.not_found")
    return found


def _answer(request: Request, part, event, *, done: bool = False) -> Response:
    if part.state == "opted_out":
        outcome = "opted_out"
    elif schema_base.utcnow() >= event.opt_out_deadline or event.state not in LIVE_STATES:
        outcome = "too_late"
    else:
        outcome = "ask"
    status = 409 if done and outcome == "too_late" else 200
    return render(request, "dr_opt_out.html", status, event=event, outcome=outcome)


@router.get("/dr/opt-out/{token}")
def opt_out_page(request: Request, conn: Conn, token: Token) -> Response:
    return _answer(request, *_found(conn, token))


@router.post("/dr/opt-out/{token}")
def opt_out_submit(request: Request, conn: Conn, token: Token) -> Response:
    part, event = _found(conn, token)
    service.opt_out(conn, part, event, via="link")
    part, event = _found(conn, token)
    return _answer(request, part, event, done=True)
