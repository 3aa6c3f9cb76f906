"""The server's database schema: SQLAlchemy Core tables, the one source of truth.

Every change here needs a migration in `migrations/versions/` that makes a database equal
to this metadata; `tests/server/test_migrations.py` compares the two on SQLite and
PostgreSQL.

Conventions:
- ids are 64-bit integers on PostgreSQL and SQLite's 64-bit `INTEGER PRIMARY KEY` rowid;
- timestamps are `UTCDateTime`: timezone-aware UTC in Python, `timestamptz` on PostgreSQL,
  fixed-width ISO-8601 text in UTC on SQLite (``2025-01-31 15:00:00.000000``), which sorts
  and compares like the instants it names (compare with bound Python datetimes, never
  with SQL's CURRENT_TIMESTAMP, whose SQLite text has another shape);
- enumerations are short strings guarded by CHECK constraints (portable, easy to migrate);
- tenant-owned rows that point at other tenant-owned rows use composite foreign keys
  `(row_id, tenant_id)`, so the database itself refuses to tie one tenant's meter to
  another tenant's site or gateway (invariant 3).

Each room's tables are in its own module, on the one `MetaData` of `schema_base.py`:
`accounts_tables.py` (the `api/` room, through `accounts.py`), `devices/tables.py`,
`metering/tables.py`, `webhooks/tables.py`, `analytics/tables.py`, `alerts/tables.py`,
`rollouts/tables.py`, `openadr/tables.py`, `dr/tables.py`.
This module imports them all, so `schema.metadata` (Alembic's) has every table and
`schema.<table>` is every table's name; it defines the tables of the shared modules at
the top of `kenshin.server` (`events`, `notices`, `ingest_progress`, `job_runs`,
`ingest_nodes`, `quarantine`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Table,
    Text,
)

from .accounts_tables import (
    API_KEY_ROLES,
    ROLES,
    TENANT_KINDS,
    api_keys,
    audit_log,
    tenants,
    user_sessions,
    users,
)
from .alerts.tables import (
    ALERT_CHANNELS,
    ALERT_STATES,
    NOTIFICATION_STATES,
    alert_notifications,
    alert_rules,
    alert_subscriptions,
    alerts,
)
from .analytics.tables import meter_forecast, plant_prices, procurement_plan, tenant_forecast
from .devices.tables import (
    COMMAND_STATES,
    GATEWAY_STATES,
    METER_LINKS,
    SUPPLY_POINT_CHECK,
    commands,
    gateway_reports,
    gateways,
    meters,
    settings,
    sites,
)
from .dr.tables import (
    EVENT_STATES,
    PARTICIPATION_STATES,
    dr_events,
    dr_opt_outs,
    dr_participations,
    dr_rules,
)
from .metering.tables import (
    ENERGY_PERIODS,
    READING_SOURCES,
    TENANT_ENERGY_PERIODS,
    meter_daily_peak,
    meter_energy,
    meter_latest,
    meter_repair,
    readings_fixed,
    readings_instant,
    recipe_samples,
    slot_energy,
    tenant_energy,
)
from .openadr.tables import openadr_clients, openadr_objects, openadr_tokens
from .rollouts.tables import ROLLOUT_STATES, UPDATE_STATES, rollout_gateways, rollouts
from .schema_base import (
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
from .webhooks.tables import (
    DELIVERY_STATES,
    OUTBOX_KINDS,
    WEBHOOK_KINDS,
    outbox,
    webhook_deliveries,
    webhooks,
)

__all__ = [
    "ALERT_CHANNELS",
    "ALERT_STATES",
    "API_KEY_ROLES",
    "COMMAND_STATES",
    "DELIVERY_STATES",
    "ENERGY_PERIODS",
    "EVENT_STATES",
    "GATEWAY_STATES",
    "METER_LINKS",
    "NOTIFICATION_STATES",
    "OUTBOX_KINDS",
    "PARTICIPATION_STATES",
    "READING_SOURCES",
    "ROLES",
    "ROLLOUT_STATES",
    "SEVERITIES",
    "SUPPLY_POINT_CHECK",
    "TENANT_ENERGY_PERIODS",
    "TENANT_KINDS",
    "UPDATE_STATES",
    "WEBHOOK_KINDS",
    "Id",
    "JSONDoc",
    "UTCDateTime",
    "alert_notifications",
    "alert_rules",
    "alert_subscriptions",
    "alerts",
    "api_keys",
    "audit_log",
    "commands",
    "dr_events",
    "dr_opt_outs",
    "dr_participations",
    "dr_rules",
    "events",
    "gateway_reports",
    "gateways",
    "ingest_progress",
    "metadata",
    "meter_daily_peak",
    "meter_energy",
    "meter_forecast",
    "meter_latest",
    "meter_repair",
    "meters",
    "openadr_clients",
    "openadr_objects",
    "openadr_tokens",
    "outbox",
    "plant_prices",
    "procurement_plan",
    "quarantine",
    "readings_fixed",
    "readings_instant",
    "recipe_samples",
    "rollout_gateways",
    "rollouts",
    "settings",
    "sites",
    "slot_energy",
    "tenant_energy",
    "tenant_forecast",
    "tenants",
    "user_sessions",
    "users",
    "utcnow",
    "webhook_deliveries",
    "webhooks",
]

events = Table(
    "events",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=True),
    Column("gateway_id", Id, ForeignKey("gateways.id"), nullable=True),
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=True),
    Column("code", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("detail", JSONDoc, nullable=True),
    Column("at", UTCDateTime(), nullable=False, default=utcnow),
    Index(None, "tenant_id", "at"),
    Index(None, "gateway_id", "at"),
    Index(None, "meter_id", "at"),
    _one_of("severity", SEVERITIES),
)


NOTICE_KINDS = ("failure", "maintenance", "info")
# What people tell the panel's readers: a failure being worked on, maintenance ahead.
# tenant_id NULL: every tenant's (written by a platform administrator).
notices = Table(
    "notices",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=True, index=True),
    Column("kind", String(16), nullable=False),
    Column("title", String(200), nullable=False),
    Column("body", Text(), nullable=False, default="", server_default=""),
    Column("starts_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=True),  # NULL: until someone ends it
    Column("created_by", String(64), nullable=False),
    _created_at(),
    _one_of("kind", NOTICE_KINDS),
)


ingest_progress = Table(
    "ingest_progress",
    metadata,
    Column("gateway_id", Id, ForeignKey("gateways.id"), primary_key=True, autoincrement=False),
    Column("last_seq", BigInteger(), nullable=False),
)

# Several servers on one database: each periodic job runs once per period wherever it
# runs (jobs.py), and each ingest's MQTT session name is held by one process (runtime.py).
job_runs = Table(
    "job_runs",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("holder", String(128), nullable=False),  # host:pid of the server that ran it
)

ingest_nodes = Table(
    "ingest_nodes",
    metadata,
    Column("node_name", String(16), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
)

quarantine = Table(
    "quarantine",
    metadata,
    _id(),
    Column("topic", String(512), nullable=False),
    Column("payload", LargeBinary(), nullable=False),
    Column("reason", Text(), nullable=False),
    Column("at", UTCDateTime(), nullable=False, default=utcnow),
    Index(None, "at"),
)
