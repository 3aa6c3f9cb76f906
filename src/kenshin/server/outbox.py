"""Whether a tenant's change goes to the webhook outbox: only when one of its active
webhooks subscribes to that kind. Every slot value used to write an outbox row whether
anyone would be told or not (the dispatcher then dropped it, or, on a node without the
dispatcher, nothing ever did): write amplification for nothing."""

from __future__ import annotations

from sqlalchemy import Connection, select

from . import schema as s

__all__ = ["subscribed"]


def subscribed(conn: Connection, tenant_id: int, kind: str) -> bool:
    """Whether an active webhook of `tenant_id` takes `kind` (``slot.closed``, ``event``)."""
    w = s.webhooks.c
    kinds = conn.execute(select(w.kinds).where(w.tenant_id == tenant_id, w.active.is_(True)))
    return any(kind in listed for listed in kinds.scalars())
