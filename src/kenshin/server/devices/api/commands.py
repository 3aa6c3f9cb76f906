"""Commands to a gateway over HTTP (run one, read its result) and the tenant's events.

Separate from the gateway's resource: a command is a row of its own with a lifetime
(`devices/commands.py`), pushed to the gateway and answered later; the events list shows
what came of them, and the rest of what happened.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ... import events, listing
from ...deps import Conn, RowId, TenantId
from ...problems import Problem
from ...times import JstDateTime
from .. import commands
from .common import Operator, Viewer, gateway_or_404, wake

router = APIRouter(tags=["devices"])


class CommandIn(BaseModel):
    name: str = Field(max_length=32)
    args: dict[str, Any] = Field(default_factory=dict)
    ttl_s: int = Field(600, ge=5, le=86_400)


class CommandOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    gateway_id: RowId
    name: str
    args: dict[str, Any] | None
    state: str
    result: dict[str, Any] | None
    error: str | None
    created_at: JstDateTime
    done_at: JstDateTime | None


@router.post("/gateways/{gateway_id}/commands", status_code=201, summary="Run a command")
def run_command(
    gateway_id: RowId,
    body: CommandIn,
    request: Request,
    conn: Conn,
    principal: Operator,
    tenant_id: TenantId,
) -> CommandOut:
    gateway_or_404(conn, gateway_id, tenant_id)
    try:
        row = commands.create(
            conn,
            tenant_id,
            gateway_id,
            body.name,
            body.args,
            actor=principal.actor,
            ttl=timedelta(seconds=body.ttl_s),
        )
    except commands.CommandError as err:
        raise Problem(422, str(err)) from None
    wake(request)
    return CommandOut.model_validate(row)


@router.get("/commands/{command_id}", summary="A command and its result")
def get_command(command_id: RowId, conn: Conn, _: Viewer, tenant_id: TenantId) -> CommandOut:
    row = commands.get(conn, command_id, tenant_id)
    if row is None:
        raise Problem(404, "no such command")
    return CommandOut.model_validate(row)


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    gateway_id: RowId | None
    meter_id: RowId | None
    code: str
    severity: str
    detail: dict[str, Any] | None
    at: JstDateTime


@router.get("/events", summary="The tenant's latest events")
def list_events(
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    gateway_id: RowId | None = None,
    limit: listing.Limit = 100,
    cursor: listing.Cursor = None,
) -> listing.Page[EventOut]:
    rows, next_cursor = events.tenant_events(conn, tenant_id, gateway_id, limit, cursor)
    return listing.Page[EventOut](
        items=[EventOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )
