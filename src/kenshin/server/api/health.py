"""``/healthz``: is the server up and its database reachable? No authentication."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from sqlalchemy.exc import SQLAlchemyError

from ..problems import problem_response

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/healthz", summary="Liveness and database reachability")
def healthz(request: Request):
    try:
        with request.app.state.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as err:
        log.warning("health check: database unreachable: %s", err)
        return problem_response(503, "the database is unreachable", database="unreachable")
    return {"status": "ok", "database": "ok"}
