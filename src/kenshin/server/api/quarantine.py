"""``/quarantine``: the messages the ingest could not use, for platform administrators.

A message lands there when it cannot be decoded, names a gateway or meter that is not the
sender's, or is refused by the database (each also an event). Rows are bounded: at most
64 KiB of payload each, and trimmed by age and count (settings `quarantine_keep_days`,
`quarantine_max_rows`).
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import func, select

from .. import schema as s
from ..deps import Conn, Principal, require_platform_admin
from ..times import JstDateTime

router = APIRouter(prefix="/quarantine", tags=["quarantine"])
PlatformAdmin = Annotated[Principal, Depends(require_platform_admin)]


class QuarantinedOut(BaseModel):
    id: int
    topic: str
    reason: str
    at: JstDateTime
    size: int
    payload_b64: str


class QuarantineList(BaseModel):
    items: list[QuarantinedOut]
    next_cursor: str | None  # the next page: pass it as `cursor`
    total: int


@router.get("", summary="The newest quarantined messages (platform administrators)")
def list_quarantine(
    conn: Conn,
    _: PlatformAdmin,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[1-9][0-9]{0,18}$")] = None,
) -> QuarantineList:
    q = s.quarantine
    query = select(q).order_by(q.c.id.desc()).limit(limit)
    if cursor is not None:  # newest first: the next page is below the last id shown
        query = query.where(q.c.id < int(cursor))
    items = [
        QuarantinedOut(
            id=row.id,
            topic=row.topic,
            reason=row.reason,
            at=row.at,
            size=len(row.payload),
            payload_b64=base64.b64encode(row.payload).decode(),
        )
        for row in conn.execute(query)
    ]
    total = conn.execute(select(func.count()).select_from(q)).scalar_one()
    next_cursor = str(items[-1].id) if len(items) == limit else None
    return QuarantineList(items=items, next_cursor=next_cursor, total=total)
