"""The rollouts pages: the tenant's rollouts with the fleet's version distribution (a
donut), and one rollout with its stages and each gateway's update state. Operators move
a rollout from the page through the JSON API (so roles are the API's). Everything is read
through the rollouts room's doors."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..api import API_PREFIX
from ..deps import Conn, RowId
from ..rollouts import queries
from ..rollouts.api import rollout_out
from .rendering import PageProblem, PageRoute, SignedIn, render

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
LIST_ROWS = 100
GATEWAY_ROWS = 500  # a page of the API's list; the rest through the API
UPDATE_STATES = ("pending", "downloading", "installed", "healthy", "failed", "rolled_back")


def _client(page, conn, **more) -> dict:
    versions = queries.version_distribution(conn, page.tenant_id)
    return {
        "lang": page.t.lang,
        "api": f"{API_PREFIX}/rollouts/",
        "versions": [{"version": v, "gateways": n} for v, n in versions],
        "messages": page.t.messages("rollouts."),
        **more,
    }


@router.get("/rollouts")
def rollouts_page(page: SignedIn, conn: Conn) -> Response:
    rows, _ = queries.rollout_page(conn, page.tenant_id, None, LIST_ROWS, None)
    rollouts = [rollout_out(*queries.get_rollout(conn, page.tenant_id, r.id)) for r in rows]
    return render(page, "rollouts.html", rollouts=rollouts, client=_client(page, conn))


@router.get("/rollouts/{rollout_id}")
def rollout_page(page: SignedIn, conn: Conn, rollout_id: RowId) -> Response:
    found = queries.get_rollout(conn, page.tenant_id, rollout_id)
    if found is None:
        raise PageProblem(404, "error.not_found")
    gateways, more = queries.gateway_page(conn, rollout_id, None, GATEWAY_ROWS, None)
    return render(
        page,
        "rollout.html",
        rollout=rollout_out(*found),
        gateways=gateways,
        more=more is not None,
        serials=queries.serials(conn, page.tenant_id),
        states=UPDATE_STATES,
        client=_client(page, conn, rollout_id=rollout_id),
    )
