"""Health for process managers and load balancers; no authentication, no secrets.

``/livez``: the process answers (restart it if not). Nothing else is checked, so a database
outage does not make a supervisor kill a server that would recover by itself.

``/readyz``: this server can do its work now: the database answers, and where it runs the
MQTT side, the broker runs, the ingest is connected and readings wait no longer than
``ready_max_ingest_lag_s`` to be stored. 200 when all are, else 503 naming each part that
is not, with why; the supervised parts' restarts are shown either way.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from sqlalchemy.exc import SQLAlchemyError

from ..problems import problem_response

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/livez", summary="The process is alive")
def livez() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Database, broker and ingest are working")
def readyz(request: Request):
    state = request.app.state
    parts: dict[str, dict] = {"database": _database(state.engine)}
    service = getattr(state, "device_service", None)
    health = getattr(service, "health", None)  # an API worker's relay has none: the
    if health is not None:  # background process runs the MQTT side (server/workers.py)
        parts.update(health(state.settings.ready_max_ingest_lag_s))
    jobs = getattr(state, "jobs", None)
    if jobs is not None:
        parts["jobs"] = {"ok": True, "jobs": jobs.report()}  # a failing run is not unready
    failing = sorted(name for name, part in parts.items() if not part["ok"])
    if failing:
        reasons = "; ".join(f"{name}: {parts[name].get('reason', 'failing')}" for name in failing)
        return problem_response(503, f"not ready: {reasons}", parts=parts)
    return {"status": "ok", "parts": parts}


def _database(engine) -> dict:
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as err:
        log.warning("readiness: database unreachable: %s", err)
        return {"ok": False, "reason": "the database is unreachable"}
    return {"ok": True}
