"""The alerts room's tables: rules, alerts, subscriptions and notifications.
In the room, so the room's tables and its code change together;
`schema.py` imports them with every other room's onto the one metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
    true,
)

from ..schema_base import (
    SEVERITIES,
    Id,
    JSONDoc,
    UTCDateTime,
    _created_at,
    _id,
    _one_of,
    metadata,
    utcnow,
)

# Anomaly rules a tenant runs, each by name with its parameters.
alert_rules = Table(
    "alert_rules",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("params", JSONDoc, nullable=False),
    Column("enabled", Boolean(), nullable=False, default=True, server_default=true()),
    Column("severity", String(16), nullable=False, default="warning", server_default="warning"),
    UniqueConstraint("tenant_id", "rule"),
    _one_of("severity", SEVERITIES),
)

ALERT_STATES = ("open", "acknowledged", "resolved")
alerts = Table(
    "alerts",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("subject", String(64), nullable=False),  # "meter:12", "gateway:3", "tenant"
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=True),
    Column("gateway_id", Id, ForeignKey("gateways.id"), nullable=True),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False, default="open", server_default="open"),
    Column("detail", JSONDoc, nullable=True),
    Column("opened_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("last_seen_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("acknowledged_at", UTCDateTime(), nullable=True),
    Column("acknowledged_by", String(64), nullable=True),
    Column("resolved_at", UTCDateTime(), nullable=True),
    Index(None, "tenant_id", "state", "opened_at"),
    # At most one unresolved alert per rule and subject (deduplication).
    Index(
        "uq_alerts_unresolved",
        "tenant_id",
        "rule",
        "subject",
        unique=True,
        sqlite_where=text("state <> 'resolved'"),
        postgresql_where=text("state <> 'resolved'"),
    ),
    _one_of("state", ALERT_STATES),
    _one_of("severity", SEVERITIES),
)

ALERT_CHANNELS = ("email", "webhook")
alert_subscriptions = Table(
    "alert_subscriptions",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False, index=True),
    Column("channel", String(16), nullable=False),
    Column("target", String(320), nullable=True),  # an e-mail address; webhooks: NULL
    Column("min_severity", String(16), nullable=False, default="warning"),
    Column("rules", JSONDoc, nullable=True),  # NULL: every rule
    _created_at(),
    _one_of("channel", ALERT_CHANNELS),
    _one_of("min_severity", SEVERITIES),
)


NOTIFICATION_STATES = ("pending", "sent", "dead")
alert_notifications = Table(
    "alert_notifications",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("alert_id", Id, ForeignKey("alerts.id"), nullable=False, index=True),
    Column("channel", String(16), nullable=False),
    Column("target", String(320), nullable=True),
    Column("change", String(16), nullable=False),  # opened | resolved
    Column("state", String(16), nullable=False, default="pending", server_default="pending"),
    Column("attempts", Integer(), nullable=False, default=0, server_default="0"),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("last_error", Text(), nullable=True),
    _created_at(),
    Column("sent_at", UTCDateTime(), nullable=True),
    Index(None, "state", "next_attempt_at"),
    _one_of("state", NOTIFICATION_STATES),
    _one_of("channel", ALERT_CHANNELS),
)
