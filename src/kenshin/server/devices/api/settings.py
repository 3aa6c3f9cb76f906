"""Gateway settings over HTTP: the tenant's defaults, one gateway's own, and the
effective settings with secrets masked (`devices/config.py` versions and merges them).

Separate from the gateway's resource: settings are versioned and pushed to the gateway,
so every change wakes the pushers.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from ...deps import Conn, RowId, TenantId
from ...problems import Problem
from ...times import JstDateTime
from .. import config
from .common import Operator, Viewer, gateway_or_404, wake

router = APIRouter(tags=["devices"])


class SettingsIn(BaseModel):
    values: dict[str, Any]
    replace: bool = False


class SettingsOut(BaseModel):
    version: int
    values: dict[str, Any]
    created_at: JstDateTime
    applied_version: int | None = None


@router.patch("/settings/default", summary="Change the tenant's default settings")
def put_default(
    body: SettingsIn, request: Request, conn: Conn, principal: Operator, tenant_id: TenantId
) -> SettingsOut:
    return _put(conn, request, principal, tenant_id, None, body)


@router.patch("/gateways/{gateway_id}/settings", summary="Change one gateway's settings")
def put_gateway_settings(
    gateway_id: RowId,
    body: SettingsIn,
    request: Request,
    conn: Conn,
    principal: Operator,
    tenant_id: TenantId,
) -> SettingsOut:
    gateway_or_404(conn, gateway_id, tenant_id)
    return _put(conn, request, principal, tenant_id, gateway_id, body)


def _put(conn, request, principal, tenant_id, gateway_id, body) -> SettingsOut:
    try:
        row = config.put_settings(
            conn,
            tenant_id,
            gateway_id,
            body.values,
            actor=principal.actor,
            user_id=principal.id if principal.kind == "user" else None,
            replace=body.replace,
        )
    except config.SettingsError as err:
        raise Problem(422, str(err)) from None
    wake(request)
    return SettingsOut(version=row.version, values=row.values, created_at=row.created_at)


@router.get("/gateways/{gateway_id}/settings", summary="Effective settings, secrets masked")
def get_gateway_settings(
    gateway_id: RowId, request: Request, conn: Conn, _: Viewer, tenant_id: TenantId
) -> SettingsOut:
    from kenshin.wire.messages import mask_secrets

    gateway = gateway_or_404(conn, gateway_id, tenant_id)
    settings = config.effective_settings(conn, gateway, request.app.state.credential_box, now_s=0)
    return SettingsOut(
        version=settings.version,
        values=mask_secrets(dict(settings.values)),
        created_at=gateway.state_since,
        applied_version=gateway.settings_version_applied,
    )
