"""/api/v1/openadr/clients: a tenant's admins make, list and revoke the clients of its
OpenADR VTN (docs/dr.md). The secret is in the creation's answer only."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError

from .. import accounts
from ..deps import Conn, Principal, RowId, TenantId, require_role
from ..problems import Problem
from ..times import JstDateTime
from . import auth
from .api import BASE

router = APIRouter(prefix="/openadr/clients", tags=["openadr"])
Admin = Annotated[Principal, Depends(require_role("admin"))]


class ClientIn(BaseModel):
    role: Literal["bl", "ven"] = Field(
        description="bl: business logic (writes programs and events, reads reports); "
        "ven: reads programs and events, writes its reports and subscriptions"
    )
    name: str = Field(
        min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$",
        description="the client's name (a VEN's venName), unique in the tenant",
    )  # fmt: skip


class ClientOut(BaseModel):
    id: int
    client_id: str
    role: Literal["bl", "ven"]
    name: str
    created_by: str
    created_at: JstDateTime
    revoked_at: JstDateTime | None


class NewClientOut(ClientOut):
    client_secret: str = Field(description="shown once: keep it")
    token_url: str = Field(description="where to trade the credentials for a token")


class ClientPage(BaseModel):
    items: list[ClientOut]
    next_cursor: None = None


@router.post("", status_code=201, summary="Make an OpenADR client (its secret shown once)")
def create_client(body: ClientIn, conn: Conn, principal: Admin, tenant_id: TenantId):
    taken = Problem(409, f"a client named {body.name!r} exists in this tenant")
    if any(row.name == body.name for row in auth.list_clients(conn, tenant_id)):
        raise taken
    try:
        with conn.begin_nested():  # another request may have taken the name meanwhile
            made = auth.create_client(conn, tenant_id, body.role, body.name, principal.actor)
    except IntegrityError:
        raise taken from None
    accounts.audit(
        conn, principal.actor, "openadr_client.create", target=f"openadr_client:{made.id}",
        tenant_id=tenant_id, detail={"role": body.role, "name": body.name},
    )  # fmt: skip
    row = next(r for r in auth.list_clients(conn, tenant_id) if r.id == made.id)
    return NewClientOut(**row._mapping, client_secret=made.client_secret,
                        token_url=f"{BASE}/auth/token")  # fmt: skip


@router.get("", summary="The tenant's OpenADR clients")
def list_clients(conn: Conn, principal: Admin, tenant_id: TenantId) -> ClientPage:
    return ClientPage(items=[ClientOut(**r._mapping) for r in auth.list_clients(conn, tenant_id)])


@router.delete("/{client_row_id}", status_code=204, summary="Revoke an OpenADR client")
def revoke_client(client_row_id: RowId, conn: Conn, principal: Admin, tenant_id: TenantId):
    if not auth.revoke_client(conn, tenant_id, client_row_id):
        raise Problem(404, "no such client")
    accounts.audit(conn, principal.actor, "openadr_client.revoke",
                   target=f"openadr_client:{client_row_id}", tenant_id=tenant_id)  # fmt: skip
    return Response(status_code=204)
