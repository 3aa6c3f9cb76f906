"""A tenant's API keys. Tenant administrators only; the full key is shown once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, StringConstraints
from sqlalchemy import select, update

from .. import accounts, listing
from .. import schema as s
from ..deps import Conn, Principal, RowId, TenantId, require_role
from ..problems import Problem
from ..times import JstDateTime
from .models import Role

router = APIRouter(prefix="/api-keys", tags=["api keys"])
Admin = Annotated[Principal, Depends(require_role("admin"))]


class ApiKeyCreate(BaseModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    role: Role = "viewer"


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str  # the 8 characters after "ksk_"
    role: Role
    created_at: JstDateTime
    last_used_at: JstDateTime | None
    revoked_at: JstDateTime | None


class ApiKeyCreated(ApiKeyOut):
    key: str  # the full key: shown now and never again


def _key_or_404(conn: Conn, key_id: RowId, tenant_id: RowId):
    row = conn.execute(
        select(s.api_keys).where(s.api_keys.c.id == key_id, s.api_keys.c.tenant_id == tenant_id)
    ).one_or_none()
    if row is None:
        raise Problem(404, "no such API key")
    return row


def _out(row) -> ApiKeyOut:
    return ApiKeyOut.model_validate(row, from_attributes=True)


@router.post("", status_code=201, summary="Make an API key (the response shows it once)")
def create_api_key(
    body: ApiKeyCreate, response: Response, conn: Conn, principal: Admin, tenant_id: TenantId
) -> ApiKeyCreated:
    row, key = accounts.insert_api_key(conn, tenant_id, body.name, body.role)
    accounts.audit(
        conn,
        principal.actor,
        "api_key.create",
        target=f"api_key:{row.id}",
        tenant_id=tenant_id,
        detail={"name": row.name, "role": row.role, "prefix": row.prefix},
    )
    response.headers["Cache-Control"] = "no-store"
    return ApiKeyCreated(**_out(row).model_dump(), key=key)


@router.get("", summary="List the tenant's API keys (never the keys themselves)")
def list_api_keys(conn: Conn, _: Admin, tenant_id: TenantId) -> listing.Page[ApiKeyOut]:
    rows = conn.execute(
        select(s.api_keys).where(s.api_keys.c.tenant_id == tenant_id).order_by(s.api_keys.c.id)
    ).all()
    return listing.one_page([_out(r) for r in rows])


@router.get("/{key_id}", summary="One API key")
def get_api_key(key_id: RowId, conn: Conn, _: Admin, tenant_id: TenantId) -> ApiKeyOut:
    return _out(_key_or_404(conn, key_id, tenant_id))


@router.delete("/{key_id}", status_code=204, summary="Revoke an API key (kept, for the record)")
def revoke_api_key(
    key_id: RowId, request: Request, conn: Conn, principal: Admin, tenant_id: TenantId
) -> Response:
    row = _key_or_404(conn, key_id, tenant_id)
    # Once revoked for all to read, no longer taken from this process's cache either.
    request.state.after_commit.append(lambda: request.app.state.principals.forget(row.id))
    if row.revoked_at is None:
        conn.execute(
            update(s.api_keys).where(s.api_keys.c.id == row.id).values(revoked_at=s.utcnow())
        )
        accounts.audit(
            conn, principal.actor, "api_key.revoke", target=f"api_key:{row.id}", tenant_id=tenant_id
        )
    return Response(status_code=204)
