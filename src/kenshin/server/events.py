"""Events: the one way anything is recorded as having happened.

`record_event` writes the event and, for a tenant's event when the tenant has a webhook
for events, an outbox row in the same transaction, so the webhook dispatcher delivers
exactly the events that were committed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from . import schema as s
from .outbox import subscribed

__all__ = ["record_event"]


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
) -> int:
    """Record an event; returns its id."""
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
    if tenant_id is not None and subscribed(conn, tenant_id, "event"):
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
