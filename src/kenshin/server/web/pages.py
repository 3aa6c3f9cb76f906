"""The control panel's pages: login and logout, Home, the List of sites and a site (a
gateway's page is `gateway.py`).

Pages are rendered on the server from a query or two; what changes while a page is open
(the list's power and energy, a command's result) the page's own JavaScript reads from
the JSON API with the same session cookie, and every action goes through that API too, so
roles and tenant walls are the API's, enforced once.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from .. import csrf
from .. import schema as s
from ..api import API_PREFIX, auth
from ..deps import Conn, RowId, get_settings, in_transaction
from ..metering.current import meter_now
from ..notices import current_notices
from ..problems import Problem
from ..settings import Settings
from .alerts import open_alerts
from .queries import (
    PANEL_STATES,
    home_summary,
    integrity_failures,
    latest_events,
    site_gateways,
)
from .rendering import Anyone, PageProblem, PageRoute, SignedIn, lang_of, render, safe_next

__all__ = ["LIST_REFRESH_S", "router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

LIST_REFRESH_S = 20  # the List page reads the sites again this often
_FORM_LIMIT = 16 * 1024


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the login form: nothing bigger or stranger)."""
    body = await request.body()
    if len(body) > _FORM_LIMIT:
        raise Problem(413, "the form is too large")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


Form = Annotated[dict[str, str], Depends(_form)]


# -- login and logout ------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str | None = None, out: bool = False) -> Response:
    return _login_form(request, safe_next(next), logged_out=out)


def _login_form(
    request: Request,
    target: str,
    *,
    failed: str | None = None,
    logged_out: bool = False,
    email: str = "",
    tenant: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The login form; `failed`: why the last attempt failed (a catalogue key); `tenant`:
    not None when the address opens accounts in several tenants and the form asks which."""
    response = render(
        request,
        "login.html",
        status,
        next=target,
        failed=failed,
        logged_out=logged_out,
        email=email,
        tenant=tenant,
        pre_session=True,
    )
    response.headers.update(headers or {})
    return response


@router.post("/login")
async def login_submit(
    request: Request,
    form: Form,
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    target = safe_next(form.get("next"))
    email = form.get("email", "")[:320]
    tenant = form.get("tenant") or None
    again = functools.partial(_login_form, request, target, email=email)
    try:
        csrf.check_form(request, form, pre_session=True)  # no login forged by another site
        body = auth.LoginRequest(email=email, password=form.get("password", ""), tenant=tenant)
        user, rehash = await auth.authenticate(request, body)
    except ValidationError:
        return again(failed="login.failed")
    except Problem as err:
        if err.status == 403:
            return again(failed="login.stale", status=403)
        if err.status == 429:
            return again(failed="login.too_many", status=429, headers=err.headers)
        if err.extensions.get("tenant_required"):
            return again(failed="login.which_tenant", tenant=tenant or "")
        return again(failed="login.failed", tenant=tenant)  # a page to read: 200, as before
    response = RedirectResponse(target, status_code=303)
    await in_transaction(
        request, auth.start_user_session, request, response, settings, user, rehash
    )
    response.delete_cookie(csrf.PRE_SESSION_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(request: Request, form: Form, conn: Conn) -> Response:
    try:
        csrf.check_form(request, form, pre_session=False)
    except Problem:
        raise PageProblem(403, "error.csrf") from None
    response = auth.logout(request, conn)  # ends the session, clears the cookie
    response.status_code = 303
    lang = lang_of(request).lang
    response.headers["Location"] = f"/login?out=true&lang={lang}"
    return response


# -- pages -----------------------------------------------------------------------------


@router.get("/")
def home(page: Anyone, conn: Conn) -> Response:
    if page.tenant_kind is None:  # a platform administrator: the tenants are theirs
        return RedirectResponse("/platform/tenants", status_code=303)
    now = s.utcnow()
    summary = home_summary(conn, page.tenant_id, now)
    donut = {
        "states": list(PANEL_STATES),
        "labels": [page.t(f"state.{state}") for state in PANEL_STATES],
        "counts": [summary.gateways_by_state[state] for state in PANEL_STATES],
        "links": [f"/list?state={state}" for state in PANEL_STATES],
    }
    return render(
        page,
        "home.html",
        summary=summary,
        donut=donut,
        states=PANEL_STATES,
        events=latest_events(conn, page.tenant_id),
        integrity_failures=integrity_failures(conn, page.tenant_id),
        today=now,
        notices=current_notices(conn, page.tenant_id, now),
        open_alerts=open_alerts(conn, page.tenant_id),
    )


@router.get("/list")
def site_list(
    page: SignedIn,
    state: Annotated[list[str] | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    refresh: Annotated[int, Query(ge=1, le=3600, description="seconds")] = LIST_REFRESH_S,
) -> Response:
    chosen = [x for x in state or () if x in PANEL_STATES]
    client = {
        "api": f"{API_PREFIX}/sites",
        "states": chosen,
        "q": q or "",
        "refresh_ms": refresh * 1000,
        "lang": page.t.lang,
        "messages": page.t.messages("list.")
        | page.t.messages("state.")
        | page.t.messages("common."),
    }
    return render(
        page,
        "list.html",
        chosen=chosen,
        q=q or "",
        states=PANEL_STATES,
        client=client,
        refresh_s=refresh,
    )


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested settings as ``poll.instant_interval_s = 60`` rows."""
    rows: list[tuple[str, Any]] = []
    for key in sorted(values):
        value = values[key]
        if isinstance(value, dict) and value:
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


@router.get("/sites/{site_id}")
def site_page(site_id: RowId, page: SignedIn, conn: Conn) -> Response:
    """A customer's site: who and where, its gateways with their state, its meters with
    power now and today's energy, each a link to its own page."""
    site = conn.execute(
        select(s.sites).where(s.sites.c.id == site_id, s.sites.c.tenant_id == page.tenant_id)
    ).one_or_none()
    if site is None:  # another tenant's, or none at all: the same answer
        raise PageProblem(404, "error.not_found")
    m = s.meters.c
    gateways = site_gateways(conn, page.tenant_id, site_id)
    now = s.utcnow()
    meters = [
        (row, meter_now(conn, row.id, now))
        for row in conn.execute(
            select(s.meters)
            .where(m.site_id == site_id, m.tenant_id == page.tenant_id)
            .order_by(m.id)
        )
    ]
    return render(page, "site.html", site=site, gateways=gateways, meters=meters)
