"""Events: the one way anything is recorded as having happened.

`record_event` writes the event and, for a tenant's event when the tenant has a webhook
for events, an outbox row in the same transaction, so the webhook dispatcher delivers
exactly the events that were committed. `tenant_events` is the one read of them that
the API lists (GET /events).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select

from . import listing
from . import schema as s
from .outbox import subscribed

__all__ = ["event_details", "record_event", "tenant_events"]


def record_event(
    conn: Connection,
    *,
    tenant_id: int | None,
    code: str,
    severity: str,
    detail: dict[str, Any] | None = None,
    gateway_id: int | None = None,
    meter_id: int | None = None,
    at: datetime | None = None,
    webhooked: bool = True,
) -> int:
    """Record an event; returns its id. `webhooked=False`: not queued for the tenant's
    webhooks (an event about a dead delivery, which must not queue another one)."""
    at = at or s.utcnow()
    event_id = conn.execute(
        insert(s.events)
        .values(
            tenant_id=tenant_id,
            gateway_id=gateway_id,
            meter_id=meter_id,
            code=code[:64],
            severity=severity,
            detail=detail,
            at=at,
        )
        .returning(s.events.c.id)
    ).scalar_one()
    if webhooked and tenant_id is not None and subscribed(conn, tenant_id, "event"):
        conn.execute(
            insert(s.outbox).values(
                tenant_id=tenant_id,
                kind="event",
                body={
                    "event_id": event_id,
                    "code": code[:64],
                    "severity": severity,
                    "gateway_id": gateway_id,
                    "meter_id": meter_id,
                    "detail": detail,
                    "at": at.isoformat(),
                },
                at=at,
            )
        )
    return event_id


def event_details(conn: Connection, tenant_id: int, code: str, since: datetime) -> list[dict]:
    """The details of the tenant's events `code` recorded since `since` (without a
    detail: not listed)."""
    e = s.events.c
    found = select(e.detail).where(e.tenant_id == tenant_id, e.code == code, e.at >= since)
    return [detail for detail in conn.execute(found).scalars() if detail]


def tenant_events(
    conn: Connection, tenant_id: int, gateway_id: int | None, limit: int, cursor: str | None
) -> tuple[list[Row], str | None]:
    """A page of the tenant's events, newest first (of one gateway if given)."""
    e = s.events.c
    query = select(s.events).where(e.tenant_id == tenant_id)
    if gateway_id is not None:
        query = query.where(e.gateway_id == gateway_id)
    query, page = listing.paginate(
        query, sortable={"at": e.at}, id_column=e.id, sort="-at", limit=limit, cursor=cursor
    )
    return page(conn.execute(query).all())
