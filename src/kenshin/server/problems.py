"""Errors as RFC 9457 problem details (``application/problem+json``), one format for all.

Handlers return ``raise Problem(404, "no such user")``, or FastAPI's `HTTPException`; both,
request validation errors (422, with an ``errors`` list that never echoes the input, which
may be a password) and unexpected exceptions (500, no detail) come out as::

    {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no such user"}
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "PROBLEM_JSON",
    "PROBLEM_RESPONSES",
    "Problem",
    "ProblemDetail",
    "install_problem_handlers",
    "problem_response",
]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class ProblemDetail(BaseModel):
    """RFC 9457 problem details (the OpenAPI description of every error body)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        s: {
            "model": ProblemDetail,
            "description": HTTPStatus(s).phrase,
            "content": {PROBLEM_JSON: {}},
        }
        for s in statuses
    }


# For `APIRouter(responses=...)`: the errors every authenticated endpoint may answer (400:
# a request well-formed but not sensible, e.g. a range past its limit; 409: a conflict
# with what is there, e.g. an e-mail already in use).
PROBLEM_RESPONSES = _responses(400, 401, 403, 404, 409, 422)


class Problem(Exception):
    """An error to answer with: status, a human-readable `detail`, optional extensions."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        type: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title or HTTPStatus(status).phrase)
        self.status = status
        self.detail = detail
        self.title = title
        self.type = type
        self.headers = headers
        self.extensions = extensions


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    type: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body: dict[str, Any] = {"type": type, "title": title or phrase, "status": status}
    if detail is not None:
        body["detail"] = detail
    body.update(extensions)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def _on_problem(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(
        exc.status,
        exc.detail,
        title=exc.title,
        type=exc.type,
        headers=exc.headers,
        **exc.extensions,
    )


async def _on_http_exception(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    if detail == HTTPStatus(exc.status_code).phrase:
        detail = None
    return problem_response(exc.status_code, detail, headers=getattr(exc, "headers", None))


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": list(e.get("loc", ())),
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]
    where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
    return problem_response(422, f"invalid request: {where}", errors=errors)


async def _on_pool_timeout(_request: Request, exc: Exception) -> JSONResponse:
    # What takes a connection outside a request's turn (deps.DbGate) may still find the
    # pool spent: that is the server being busy, not broken.
    log.warning("no database connection in time: %s", exc)
    return problem_response(
        503, "the server is busy: no database connection in time", headers={"Retry-After": "1"}
    )


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    # A connection lost under a statement (the database restarted, a failover): SQLAlchemy
    # renews the pool, and the same request sent again gets a new connection (db.py).
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        log.warning("a database connection was lost: %s", exc)
        return problem_response(
            503, "the database connection was lost: try again", headers={"Retry-After": "1"}
        )
    return await _on_unexpected(request, exc)


async def _on_out_of_range(_request: Request, exc: Exception) -> JSONResponse:
    # A number or date past what the server computes with (the validation missed it).
    log.warning("a request's value out of range: %s", exc)
    return problem_response(400, "a number or date in the request is out of range")


async def _on_data_error(_request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value (a number past its column, text it cannot hold).
    log.warning("the database refused a request's value: %s", exc)
    return problem_response(422, "a value in the request cannot be stored")


async def _on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return problem_response(500, "an unexpected error; it has been logged")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(PoolTimeout, _on_pool_timeout)
    app.add_exception_handler(OverflowError, _on_out_of_range)
    app.add_exception_handler(DataError, _on_data_error)
    app.add_exception_handler(DBAPIError, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected)
