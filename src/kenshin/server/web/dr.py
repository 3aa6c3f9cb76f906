"""The customer's opt-out page of a DR event: `/dr/opt-out/{token}`, public (the token in
the link is the home's own, unguessable: docs/dr.md). GET says which event and asks to
confirm; POST opts the home out before the deadline, or says plainly that it is too late.
Japanese or English like the panel (`?lang=`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from .. import schema_base
from ..deps import Conn
from ..dr import service
from .rendering import PageProblem, PageRoute, render

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Token = Annotated[str, Path(min_length=20, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def _found(conn, token: str):
    found = service.participation_by_token(conn, token)
    if found is None:
        raise PageProblem(404, "error.not_found")
    return found


def _answer(request: Request, part, event, *, done: bool = False) -> Response:
    if part.state == "opted_out":
        outcome = "opted_out"
    elif schema_base.utcnow() >= event.opt_out_deadline or event.state not in (
        "proposed", "scheduled", "active"
    ):  # fmt: skip
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
