"""Tenants: retailers, generators and aggregators. Platform administrators only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select, update

from .. import accounts, listing
from .. import schema as s
from ..deps import Conn, Principal, RowId, require_platform_admin
from ..problems import Problem
from .models import TenantKind, TenantOut

router = APIRouter(prefix="/tenants", tags=["tenants"])
PlatformAdmin = Annotated[Principal, Depends(require_platform_admin)]


class TenantCreate(BaseModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    kind: TenantKind


@router.post("", status_code=201, summary="Create a tenant")
def create_tenant(body: TenantCreate, conn: Conn, principal: PlatformAdmin) -> TenantOut:
    try:
        row = accounts.insert_tenant(conn, body.name, body.kind)
    except accounts.AlreadyExists as err:
        raise Problem(409, str(err)) from None
    accounts.audit(
        conn,
        principal.actor,
        "tenant.create",
        target=f"tenant:{row.id}",
        tenant_id=row.id,
        detail={"name": row.name, "kind": row.kind},
    )
    return TenantOut.model_validate(row)


@router.get("", summary="List tenants")
def list_tenants(conn: Conn, _: PlatformAdmin) -> listing.Page[TenantOut]:
    rows = conn.execute(select(s.tenants).order_by(s.tenants.c.id)).all()
    return listing.one_page([TenantOut.model_validate(r) for r in rows])


class RetentionIn(BaseModel):
    """Days kept (null: forever): instant power and its daily peaks; 30-minute values and
    everything derived from them (settlement data: usually forever)."""

    instant_retention_days: int | None = Field(None, ge=1, le=36_500)
    energy_retention_days: int | None = Field(None, ge=1, le=36_500)


@router.patch("/{tenant_id}/retention", summary="How long a tenant's data is kept")
def set_retention(
    tenant_id: RowId, body: RetentionIn, conn: Conn, principal: PlatformAdmin
) -> TenantOut:
    if accounts.get_tenant(conn, tenant_id) is None:
        raise Problem(404, "no such tenant")
    conn.execute(update(s.tenants).where(s.tenants.c.id == tenant_id).values(**body.model_dump()))
    accounts.audit(
        conn, principal.actor, "tenant.retention", target=f"tenant:{tenant_id}",
        tenant_id=tenant_id, detail=body.model_dump(),
    )  # fmt: skip
    return TenantOut.model_validate(accounts.get_tenant(conn, tenant_id))


@router.get("/{tenant_id}", summary="One tenant")
def get_tenant(tenant_id: RowId, conn: Conn, _: PlatformAdmin) -> TenantOut:
    row = accounts.get_tenant(conn, tenant_id)
    if row is None:
        raise Problem(404, "no such tenant")
    return TenantOut.model_validate(row)
