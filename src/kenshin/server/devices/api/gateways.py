"""A tenant's gateways over HTTP: the factory's import (platform administrators), claiming
by the printed code, the list, one gateway, and revoking its broker credential.

Separate from sites and meters: a gateway is claimed, not created, and its identities come
from the factory; its settings and commands have routers of their own.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from ... import listing
from ...deps import Conn, RowId, TenantId
from ...problems import Problem
from ...times import JstDateTime
from .. import enrollment, queries, registry
from .common import GatewayState, Operator, PlatformAdmin, Viewer, gateway_or_404, keys, wake

router = APIRouter(tags=["devices"])


@router.post("/gateways/import", summary="Import manufactured gateways (CSV)")
def import_gateways(
    request: Request,
    conn: Conn,
    principal: PlatformAdmin,
    csv_text: Annotated[
        str, Body(media_type="text/csv", description="serial,model,public_key,claim_code")
    ],
) -> dict[str, Any]:
    try:
        report = registry.import_identities(conn, csv_text, keys(request), principal.actor)
    except registry.RegistryError as err:
        raise Problem(422, str(err)) from None
    return {"added": report.added, "already_known": report.already_known, "errors": report.errors}


class ClaimRequest(BaseModel):
    claim_code: str | None = Field(None, max_length=32)
    serial: str | None = Field(None, max_length=64)
    site_id: RowId | None = None


class GatewayOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    serial: str
    model: str
    site_id: RowId | None
    state: str
    state_since: JstDateTime
    last_seen_at: JstDateTime | None
    settings_version_applied: int | None
    tags: list[str] = Field(default_factory=list, description="the operator's labels")

    @field_validator("tags", mode="before")
    @classmethod
    def _none_is_no_tags(cls, value: Any) -> Any:
        return [] if value is None else value


Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}$")]


class TagsIn(BaseModel):
    tags: list[Tag] = Field(
        max_length=20, description="1 to 32 of A-Z a-z 0-9 _ . : - each (a letter or digit first)"
    )


@router.post("/gateways/claim", status_code=201, summary="Claim a gateway by its printed code")
def claim(
    body: ClaimRequest, request: Request, conn: Conn, principal: Operator, tenant_id: TenantId
) -> GatewayOut:
    try:
        row = registry.claim_gateway(
            conn,
            tenant_id,
            key=keys(request),
            actor=principal.actor,
            serial=body.serial,
            claim_code=body.claim_code,
            site_id=body.site_id,
        )
    except registry.RegistryError as err:
        raise Problem(404 if "no unclaimed" in str(err) else 422, str(err)) from None
    wake(request)
    return GatewayOut.model_validate(row)


GatewaySort = listing.sort_parameter(("serial", "state", "created_at", "id"))
GatewaySearch = listing.search_parameter("serial or model")


@router.get("/gateways", summary="The tenant's gateways: search, filter by state, sort, pages")
def list_gateways(
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    state: Annotated[list[GatewayState] | None, Query(description="any of")] = None,
    site_id: RowId | None = None,
    q: GatewaySearch = None,
    sort: GatewaySort = "id",
    limit: listing.Limit = listing.DEFAULT_LIMIT,
    cursor: listing.Cursor = None,
) -> listing.Page[GatewayOut]:
    rows, next_cursor = queries.gateway_page(
        conn, tenant_id, state=state, site_id=site_id, q=q, sort=sort, limit=limit, cursor=cursor
    )
    return listing.Page[GatewayOut](
        items=[GatewayOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.delete(
    "/gateways/{gateway_id}/broker-credential",
    status_code=204,
    summary="Revoke the gateway's broker credential (it must enroll again)",
)
def revoke_broker_credential(
    gateway_id: RowId, request: Request, conn: Conn, principal: Operator, tenant_id: TenantId
) -> Response:
    gateway = gateway_or_404(conn, gateway_id, tenant_id)
    username = enrollment.revoke_credential(conn, gateway, principal.actor)
    conn.commit()
    service = getattr(request.app.state, "device_service", None)
    if username is not None and service is not None:
        service.credential_revoked(username)  # a managed Mosquitto: ends its session too
    return Response(status_code=204)


@router.get("/gateways/{gateway_id}", summary="One gateway")
def get_gateway(gateway_id: RowId, conn: Conn, _: Viewer, tenant_id: TenantId) -> GatewayOut:
    return GatewayOut.model_validate(gateway_or_404(conn, gateway_id, tenant_id))


@router.put("/gateways/{gateway_id}/tags", summary="Replace a gateway's tags")
def put_tags(
    gateway_id: RowId, body: TagsIn, conn: Conn, principal: Operator, tenant_id: TenantId
) -> GatewayOut:
    row = registry.set_gateway_tags(conn, tenant_id, gateway_id, body.tags, principal.actor)
    if row is None:
        raise Problem(404, "no such gateway")
    return GatewayOut.model_validate(row)
