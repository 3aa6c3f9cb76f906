"""The webhooks room's tables: the outbox, the webhooks and their deliveries.
In the room, so the room's tables and its code change together;
`schema.py` imports them with every other room's onto the one metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

from ..schema_base import (
    Id,
    JSONDoc,
    UTCDateTime,
    _created_at,
    _id,
    _one_of,
    metadata,
    utcnow,
)

# Work for the webhook dispatcher, written in the same transaction as what it reports
# (a slot that got its value, an event), consumed and deleted by the dispatcher.
OUTBOX_KINDS = ("slot", "event")
outbox = Table(
    "outbox",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("body", JSONDoc, nullable=False),
    Column("at", UTCDateTime(), nullable=False, default=utcnow),
    Index(None, "tenant_id", "id"),
    _one_of("kind", OUTBOX_KINDS),
)

WEBHOOK_KINDS = ("slot.closed", "event")
DELIVERY_STATES = ("pending", "delivered", "dead")
webhooks = Table(
    "webhooks",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False, index=True),
    Column("url", String(2000), nullable=False),
    Column("description", String(200), nullable=True),
    Column("kinds", JSONDoc, nullable=False),  # a list drawn from WEBHOOK_KINDS
    Column("secret_enc", LargeBinary(), nullable=False),  # CredentialBox-sealed HMAC key
    Column("active", Boolean(), nullable=False, default=True, server_default=true()),
    _created_at(),
    Column("created_by", String(64), nullable=True),
    UniqueConstraint("id", "tenant_id"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("webhook_id", Id, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("payload", JSONDoc, nullable=False),
    Column("state", String(16), nullable=False, default="pending", server_default="pending"),
    Column("attempts", Integer(), nullable=False, default=0, server_default="0"),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("last_status", Integer(), nullable=True),  # the receiver's HTTP status
    Column("last_error", Text(), nullable=True),
    _created_at(),
    Column("delivered_at", UTCDateTime(), nullable=True),
    ForeignKeyConstraint(["webhook_id", "tenant_id"], ["webhooks.id", "webhooks.tenant_id"]),
    Index(None, "state", "next_attempt_at"),
    Index(None, "webhook_id", "created_at"),
    _one_of("state", DELIVERY_STATES),
)
