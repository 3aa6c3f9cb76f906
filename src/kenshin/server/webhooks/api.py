"""Webhooks over HTTP (tenant admins): register URLs, rotate secrets, ping, read the
delivery log, send a delivery again.

Admins only, reading included: a hook's URL and its log are the tenant's integration with
its own systems (the issue's "admin: users, keys, webhooks")."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import delete, insert, select, update

from .. import accounts, listing, schema_base
from ..deps import Conn, Principal, RowId, TenantId, require_role
from ..problems import Problem
from ..times import JstDateTime
from . import tables as t
from .dispatcher import sealed_for
from .targets import UnsafeTarget, resolve_target

router = APIRouter(tags=["webhooks"])
Admin = Annotated[Principal, Depends(require_role("admin"))]
Kind = Literal["slot.closed", "event"]
Secret = Annotated[
    SecretStr | None,
    Field(
        min_length=32,
        max_length=256,
        description="your own signing secret (32 characters or more); omit to have one made",
    ),
]


class HookIn(BaseModel):
    url: str = Field(max_length=2000, description="http(s)://, a public address")
    kinds: list[Kind] = Field(min_length=1, description="what to send")
    description: str | None = Field(None, max_length=200)
    active: bool = True
    secret: Secret = None


class SecretIn(BaseModel):
    secret: Secret = None


class HookPatch(BaseModel):
    """What to change; a field left out (or null, but for description) stays as it is."""

    url: str | None = Field(None, max_length=2000)
    kinds: list[Kind] | None = Field(None, min_length=1)
    description: str | None = Field(None, max_length=200, description="null: none")
    active: bool | None = Field(None, description="false: nothing is sent until true again")


class HookOut(BaseModel):
    id: int
    url: str
    kinds: list[Kind]
    description: str | None
    active: bool
    created_at: JstDateTime


class HookWithSecret(HookOut):
    secret: str = Field(description="shown this once: sign-checks every request")


class DeliveryOut(BaseModel):
    id: int
    webhook_id: RowId
    kind: str
    state: Literal["pending", "delivered", "dead"]
    attempts: int
    next_attempt_at: JstDateTime | None
    last_status: int | None
    last_error: str | None
    created_at: JstDateTime
    delivered_at: JstDateTime | None
    payload: dict[str, Any]


def _check(request: Request, url: str) -> None:
    try:
        resolve_target(url, allow_private=request.app.state.settings.webhooks_allow_private)
    except UnsafeTarget as err:
        raise Problem(422, str(err)) from None


def _hook(conn, hook_id: RowId, tenant_id: RowId):
    row = conn.execute(
        select(t.webhooks).where(t.webhooks.c.id == hook_id, t.webhooks.c.tenant_id == tenant_id)
    ).first()
    if row is None:
        raise Problem(404, "no such webhook")
    return row


def _seal(request: Request, conn, hook_id: RowId, given: SecretStr | None) -> str:
    secret = given.get_secret_value() if given else "whsec_" + secrets.token_urlsafe(32)
    sealed = request.app.state.credential_box.seal(secret, sealed_for(hook_id))
    conn.execute(update(t.webhooks).where(t.webhooks.c.id == hook_id).values(secret_enc=sealed))
    return secret


@router.post("/webhooks", status_code=201, summary="Register a URL for slots and/or events")
def add_hook(
    body: HookIn, request: Request, conn: Conn, principal: Admin, tenant_id: TenantId
) -> HookWithSecret:
    _check(request, body.url)
    row = conn.execute(
        insert(t.webhooks)
        .values(
            tenant_id=tenant_id,
            secret_enc=b"",  # sealed below, bound to the new id
            created_at=schema_base.utcnow(),
            created_by=principal.actor,
            **body.model_dump(exclude={"secret"}),
        )
        .returning(t.webhooks)
    ).one()
    secret = _seal(request, conn, row.id, body.secret)
    accounts.audit(
        conn, principal.actor, "webhook.add", target=f"webhook:{row.id}", tenant_id=tenant_id,
        detail={"url": body.url, "kinds": body.kinds},
    )  # fmt: skip
    return HookWithSecret(**HookOut.model_validate(row._mapping).model_dump(), secret=secret)


@router.get("/webhooks", summary="The tenant's webhooks (never their secrets)")
def list_hooks(conn: Conn, _: Admin, tenant_id: TenantId) -> listing.Page[HookOut]:
    rows = conn.execute(
        select(t.webhooks).where(t.webhooks.c.tenant_id == tenant_id).order_by(t.webhooks.c.id)
    )
    return listing.one_page([HookOut.model_validate(r._mapping) for r in rows])


@router.get("/webhooks/{hook_id}", summary="One webhook")
def get_hook(hook_id: RowId, conn: Conn, _: Admin, tenant_id: TenantId) -> HookOut:
    return HookOut.model_validate(_hook(conn, hook_id, tenant_id)._mapping)


@router.patch("/webhooks/{hook_id}", summary="Change a webhook's URL, kinds or state")
def patch_hook(
    hook_id: RowId,
    body: HookPatch,
    request: Request,
    conn: Conn,
    principal: Admin,
    tenant_id: TenantId,
) -> HookOut:
    _hook(conn, hook_id, tenant_id)
    changes = {
        field: value
        for field, value in body.model_dump(exclude_unset=True).items()
        if value is not None or field == "description"
    }
    if "url" in changes:
        _check(request, changes["url"])
    if changes:
        conn.execute(update(t.webhooks).where(t.webhooks.c.id == hook_id).values(**changes))
        accounts.audit(
            conn, principal.actor, "webhook.change", target=f"webhook:{hook_id}",
            tenant_id=tenant_id, detail=changes,
        )  # fmt: skip
    return HookOut.model_validate(_hook(conn, hook_id, tenant_id)._mapping)


@router.delete("/webhooks/{hook_id}", status_code=204, summary="Remove a webhook and its log")
def delete_hook(hook_id: RowId, conn: Conn, principal: Admin, tenant_id: TenantId) -> None:
    _hook(conn, hook_id, tenant_id)
    d = t.webhook_deliveries.c
    conn.execute(delete(t.webhook_deliveries).where(d.webhook_id == hook_id))
    conn.execute(delete(t.webhooks).where(t.webhooks.c.id == hook_id))
    accounts.audit(
        conn, principal.actor, "webhook.delete", target=f"webhook:{hook_id}", tenant_id=tenant_id
    )


@router.post("/webhooks/{hook_id}/rotate-secret", summary="A new secret (shown once)")
def rotate(
    hook_id: RowId,
    request: Request,
    conn: Conn,
    principal: Admin,
    tenant_id: TenantId,
    body: SecretIn | None = None,
) -> HookWithSecret:
    row = _hook(conn, hook_id, tenant_id)
    secret = _seal(request, conn, hook_id, body.secret if body else None)
    accounts.audit(
        conn, principal.actor, "webhook.rotate", target=f"webhook:{hook_id}", tenant_id=tenant_id
    )
    return HookWithSecret(**HookOut.model_validate(row._mapping).model_dump(), secret=secret)


def _enqueue(conn, tenant_id: RowId, hook_id: RowId, kind: str, payload: dict) -> DeliveryOut:
    now = schema_base.utcnow()
    row = conn.execute(
        insert(t.webhook_deliveries)
        .values(
            tenant_id=tenant_id, webhook_id=hook_id, kind=kind, payload=payload,
            state="pending", attempts=0, next_attempt_at=now, created_at=now,
        )
        .returning(t.webhook_deliveries)
    ).one()  # fmt: skip
    return DeliveryOut.model_validate(row._mapping)


@router.post("/webhooks/{hook_id}/ping", status_code=202, summary="Send a test delivery")
def ping(hook_id: RowId, conn: Conn, _: Admin, tenant_id: TenantId) -> DeliveryOut:
    _hook(conn, hook_id, tenant_id)
    return _enqueue(conn, tenant_id, hook_id, "ping", {"kind": "ping"})


@router.get("/webhooks/{hook_id}/deliveries", summary="The delivery log, newest first")
def deliveries(
    hook_id: RowId,
    conn: Conn,
    _: Admin,
    tenant_id: TenantId,
    state: Annotated[
        Literal["pending", "delivered", "dead"] | None, Query(description="only these")
    ] = None,
    limit: listing.Limit = listing.DEFAULT_LIMIT,
    cursor: listing.Cursor = None,
) -> listing.Page[DeliveryOut]:
    _hook(conn, hook_id, tenant_id)
    d = t.webhook_deliveries.c
    query = select(t.webhook_deliveries).where(d.webhook_id == hook_id)
    if state:
        query = query.where(d.state == state)
    query, page = listing.paginate(
        query, sortable={"id": d.id}, id_column=d.id, sort="-id", limit=limit, cursor=cursor
    )
    rows, next_cursor = page(conn.execute(query).all())
    return listing.Page[DeliveryOut](
        items=[DeliveryOut.model_validate(r._mapping) for r in rows], next_cursor=next_cursor
    )


@router.post(
    "/webhook-deliveries/{delivery_id}/redeliver",
    status_code=202,
    summary="Send a delivery again (as a new delivery)",
)
def redeliver(delivery_id: RowId, conn: Conn, _: Admin, tenant_id: TenantId) -> DeliveryOut:
    d = t.webhook_deliveries.c
    row = conn.execute(
        select(t.webhook_deliveries).where(d.id == delivery_id, d.tenant_id == tenant_id)
    ).first()
    if row is None:
        raise Problem(404, "no such delivery")
    return _enqueue(conn, tenant_id, row.webhook_id, row.kind, row.payload)
