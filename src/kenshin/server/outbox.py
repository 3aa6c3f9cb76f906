"""Whether a tenant's change goes to the webhook outbox: only when one of its active
webhooks subscribes to that kind. Every slot value used to write an outbox row whether
anyone would be told or not (the dispatcher then dropped it, or, on a node without the
dispatcher, nothing ever did): write amplification for nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from . import schema as s
from . import schema_base

__all__ = ["queue_slots", "subscribed"]


def subscribed(conn: Connection, tenant_id: int, kind: str) -> bool:
    """Whether an active webhook of `tenant_id` takes `kind` (``slot.closed``, ``event``)."""
    w = s.webhooks.c
    kinds = conn.execute(select(w.kinds).where(w.tenant_id == tenant_id, w.active.is_(True)))
    return any(kind in listed for listed in kinds.scalars())


def queue_slots(conn: Connection, tenant_id: int, bodies: list[dict[str, Any]]) -> None:
    """One outbox row of kind ``slot`` a slot value (`bodies`: what the webhook says of
    each), in the caller's transaction, when the tenant has a webhook for ``slot.closed``;
    the dispatcher gathers a half hour's rows into one delivery."""
    if bodies and subscribed(conn, tenant_id, "slot.closed"):
        at = schema_base.utcnow()
        rows = [{"tenant_id": tenant_id, "kind": "slot", "body": b, "at": at} for b in bodies]
        conn.execute(insert(s.outbox), rows)
