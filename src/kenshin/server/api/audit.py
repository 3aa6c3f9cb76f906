"""``/audit``: the tenant's audit log, for its administrators.

Who (``user:3``, ``api_key:7``, ``system``, ``anonymous`` for a failed login) did what
(``auth.login``, ``settings.update``, ``command.backfill``, ``export.csv``...) to which
object (``gateway:12``...), when, and from where (the client's address and the request's
``X-Request-ID``). Written by `accounts.audit` at each place; kept `audit_keep_days` (the
retention job). Newest first, a page at a time like every list (docs/api.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import func, or_, select

from kenshin.jst import JST

from .. import listing
from .. import schema as s
from ..deps import Conn, Principal, TenantId, require_role
from ..problems import Problem
from ..times import JstDateTime

router = APIRouter(prefix="/audit", tags=["audit"])
Admin = Annotated[Principal, Depends(require_role("admin"))]
AuditSort = listing.sort_parameter(("at", "id"))


class AuditEntry(BaseModel):
    id: int
    at: JstDateTime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any] | None
    client: str | None
    request_id: str | None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None
    total: int


@router.get("", summary="The tenant's audit log: who did what, when, from where")
def list_audit(
    conn: Conn,
    _: Admin,
    tenant_id: TenantId,
    actor: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[a-z_]+(:[0-9]+)?$", description="e.g. user:3, api_key:7"),
    ] = None,
    action: Annotated[
        list[str] | None,
        Query(
            max_length=20,
            description="any of these actions (e.g. auth.login); `auth.*`: every auth action",
        ),
    ] = None,
    start: Annotated[
        datetime | None, Query(description="from this time on (ISO 8601; no offset: JST)")
    ] = None,
    end: Annotated[datetime | None, Query(description="before this time")] = None,
    sort: AuditSort = "-at",
    limit: listing.Limit = listing.DEFAULT_LIMIT,
    cursor: listing.Cursor = None,
) -> AuditPage:
    a = s.audit_log.c
    start, end = (t if t is None or t.tzinfo else t.replace(tzinfo=JST) for t in (start, end))
    if start is not None and end is not None and end <= start:
        raise Problem(400, "'end' must be after 'start'")
    actions = None
    if action:
        if any(len(x) > 64 or "\x00" in x for x in action):
            raise Problem(400, "an action is at most 64 characters")
        exact = [x for x in action if not x.endswith(".*")]
        prefixes = [x[:-1] for x in action if x.endswith(".*")]
        options = ([a.action.in_(exact)] if exact else []) + [
            a.action.startswith(p, autoescape=True) for p in prefixes
        ]
        actions = options[0] if len(options) == 1 else or_(*options)
    where = listing.combine(
        a.tenant_id == tenant_id,
        a.actor == actor if actor else None,
        actions,
        a.at >= start if start is not None else None,
        a.at < end if end is not None else None,
    )
    total = conn.execute(select(func.count()).select_from(s.audit_log).where(where)).scalar_one()
    query, page = listing.paginate(
        select(s.audit_log).where(where),
        sortable={"at": a.at, "id": a.id},
        id_column=a.id,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )
    rows, next_cursor = page(conn.execute(query).all())
    return AuditPage(
        items=[AuditEntry.model_validate(dict(r._mapping)) for r in rows],
        next_cursor=next_cursor,
        total=total,
    )
