"""Notices: what people tell the panel's readers. A failure being worked on ("the Kanto
uplink is down since 09:10"), maintenance ahead ("the service stops 02:00-03:00 on the
30th"), or anything else worth a line on the Home page.

A tenant's administrators write notices for their own tenant; platform administrators
write them for one tenant or, with ``every_tenant``, for all. Readers see the notices of
their tenant and those for every tenant, from `starts_at` (a maintenance notice shows a
week ahead) until `ends_at` (none: until someone ends it).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import Connection, Row, delete, insert, or_, select, update

from . import accounts, listing
from . import schema as s
from .bounds import ApiAwareDateTime
from .deps import Conn, Principal, RowId, TenantId, require_role, tenant_scope
from .problems import Problem
from .times import JstDateTime

__all__ = ["SHOWN_AHEAD", "current_notices", "router"]

router = APIRouter(tags=["notices"])
Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
Kind = Literal["failure", "maintenance", "info"]
SHOWN_AHEAD = timedelta(days=7)  # maintenance is announced this long before it starts


class NoticeIn(BaseModel):
    kind: Kind
    title: str = Field(min_length=1, max_length=200)
    body: str = Field("", max_length=4000)
    starts_at: ApiAwareDateTime | None = Field(None, description="default: now")
    ends_at: ApiAwareDateTime | None = Field(None, description="none: until ended")
    every_tenant: bool = Field(False, description="platform administrators: for all tenants")

    @model_validator(mode="after")
    def _ends_after_start(self) -> NoticeIn:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class NoticePatch(BaseModel):
    title: str | None = Field(None, min_length=1, max_length=200)
    body: str | None = Field(None, max_length=4000)
    ends_at: ApiAwareDateTime | None = Field(None, description="when it ends (now: end it)")


class NoticeOut(BaseModel):
    id: RowId
    every_tenant: bool
    kind: Kind
    title: str
    body: str
    starts_at: JstDateTime
    ends_at: JstDateTime | None
    created_by: str
    created_at: JstDateTime


def _out(row: Row) -> NoticeOut:
    return NoticeOut(every_tenant=row.tenant_id is None, **row._mapping)


def current_notices(conn: Connection, tenant_id: int, now: datetime) -> list[Row]:
    """What a tenant's readers see now: begun (or maintenance within `SHOWN_AHEAD`) and not
    ended; failures first, then by start."""
    n = s.notices.c
    rows = conn.execute(
        select(s.notices)
        .where(
            or_(n.tenant_id == tenant_id, n.tenant_id.is_(None)),
            or_(n.ends_at.is_(None), n.ends_at > now),
            or_(n.starts_at <= now, (n.kind == "maintenance") & (n.starts_at <= now + SHOWN_AHEAD)),
        )
        .order_by(n.starts_at, n.id)
        .limit(50)
    ).all()
    return sorted(rows, key=lambda r: r.kind != "failure")  # stable: by start within


@router.get("/notices", summary="Notices for the tenant's readers (and every tenant's)")
def list_notices(
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    ended: Annotated[bool, Query(description="also the ended ones (the newest 100)")] = False,
) -> listing.Page[NoticeOut]:
    now = s.utcnow()
    if not ended:
        return listing.one_page([_out(r) for r in current_notices(conn, tenant_id, now)])
    n = s.notices.c
    rows = conn.execute(
        select(s.notices)
        .where(or_(n.tenant_id == tenant_id, n.tenant_id.is_(None)))
        .order_by(n.starts_at.desc(), n.id.desc())
        .limit(100)
    )
    return listing.one_page([_out(r) for r in rows])


TenantQuery = Annotated[
    RowId | None, Query(description="Platform administrators only: the tenant to act on")
]


def _owner(conn: Connection, principal: Principal, tenant_id: int | None, every: bool):
    """The tenant a new notice belongs to (None: every tenant's)."""
    if not every:
        return tenant_scope(principal, conn, tenant_id)
    if not principal.is_platform_admin:
        raise Problem(403, "only platform administrators write notices for every tenant")
    return None


@router.post("/notices", status_code=201, summary="Tell the tenant's readers something")
def add_notice(
    body: NoticeIn,
    conn: Conn,
    principal: Admin,
    tenant_id: TenantQuery = None,
) -> NoticeOut:
    owner = _owner(conn, principal, tenant_id, body.every_tenant)
    values = body.model_dump(exclude={"every_tenant"})
    values["starts_at"] = values["starts_at"] or s.utcnow()
    row = conn.execute(
        insert(s.notices)
        .values(tenant_id=owner, created_by=principal.actor, **values)
        .returning(*s.notices.c)
    ).one()
    accounts.audit(
        conn,
        principal.actor,
        "notice.add",
        tenant_id=owner,
        detail={"id": row.id, "kind": row.kind},
    )
    return _out(row)


def _writable(conn: Connection, principal: Principal, notice_id: int, tenant_id: int | None):
    """The notice, if this principal may change it: the tenant's own (a platform
    administrator names the tenant, as everywhere), or every tenant's for a platform
    administrator. Another tenant's is 404, as if it did not exist."""
    row = conn.execute(select(s.notices).where(s.notices.c.id == notice_id)).one_or_none()
    scope = tenant_scope(principal, conn, tenant_id)
    if row is None or row.tenant_id not in (None, scope):
        raise Problem(404, f"no notice {notice_id}")
    if row.tenant_id is None and not principal.is_platform_admin:
        raise Problem(403, "a notice for every tenant is changed by platform administrators")
    return row


@router.patch("/notices/{notice_id}", summary="Change a notice, or end it (ends_at: now)")
def change_notice(
    notice_id: RowId, body: NoticePatch, conn: Conn, principal: Admin, tenant_id: TenantQuery = None
) -> NoticeOut:
    row = _writable(conn, principal, notice_id, tenant_id)
    values = body.model_dump(exclude_unset=True, exclude_none=True)
    if "ends_at" in values and values["ends_at"] <= row.starts_at:
        values["ends_at"] = row.starts_at  # ended before it began: it never shows
    if values:
        conn.execute(update(s.notices).where(s.notices.c.id == notice_id).values(**values))
        accounts.audit(conn, principal.actor, "notice.change", tenant_id=row.tenant_id,
                       detail={"id": notice_id, "fields": sorted(values)})  # fmt: skip
    return _out(conn.execute(select(s.notices).where(s.notices.c.id == notice_id)).one())


@router.delete("/notices/{notice_id}", status_code=204, summary="Remove a notice")
def remove_notice(
    notice_id: RowId, conn: Conn, principal: Admin, tenant_id: TenantQuery = None
) -> Response:
    row = _writable(conn, principal, notice_id, tenant_id)
    conn.execute(delete(s.notices).where(s.notices.c.id == notice_id))
    accounts.audit(
        conn, principal.actor, "notice.remove", tenant_id=row.tenant_id, detail={"id": notice_id}
    )
    return Response(status_code=204)
