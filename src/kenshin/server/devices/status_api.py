"""A gateway's live status for its page (and any client): GET /gateways/{id}/status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ..deps import Conn, Principal, RowId, TenantId, require_role
from ..problems import Problem
from ..times import JstDateTime
from .status import gateway_status

router = APIRouter(tags=["devices"])
Viewer = Annotated[Principal, Depends(require_role("viewer"))]


class ReportOut(BaseModel):
    at: JstDateTime = Field(description="when the server received the newest status report")
    link: str = Field(description="the gateway's link to its meter (joined, no_meter, ...)")
    lqi: int | None = Field(description="Wi-SUN link quality 0..255; null on an IP link")
    rssi_dbm: float | None = Field(description="the LQI as dBm (0.275 × LQI − 104.27)")
    uptime_s: int = Field(description="the agent's uptime, carried forward while connected")
    queue_depth: int
    agent_version: str
    settings_version: int | None
    errors: dict[str, Any]


class LqiPoint(BaseModel):
    at: JstDateTime
    lqi: int


class GatewayStatusOut(BaseModel):
    gateway_id: int
    state: str
    state_since: JstDateTime | None
    last_seen_at: JstDateTime | None
    report: ReportOut | None
    lqi_history: list[LqiPoint] = Field(description="the LQI reports of the last 24 hours")
    last_good_read_at: JstDateTime | None = Field(
        description="the later of the agent's last good read and the newest reading stored"
    )


@router.get("/gateways/{gateway_id}/status", summary="A gateway's live status and LQI history")
def get_status(gateway_id: RowId, conn: Conn, _: Viewer, tenant_id: TenantId) -> GatewayStatusOut:
    status = gateway_status(conn, tenant_id, gateway_id)
    if status is None:
        raise Problem(404, "no such gateway")
    return GatewayStatusOut.model_validate(status)
