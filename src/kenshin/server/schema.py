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
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = [
    "ALERT_CHANNELS",
    "ALERT_STATES",
    "API_KEY_ROLES",
    "COMMAND_STATES",
    "DELIVERY_STATES",
    "ENERGY_PERIODS",
    "GATEWAY_STATES",
    "METER_LINKS",
    "NOTIFICATION_STATES",
    "OUTBOX_KINDS",
    "READING_SOURCES",
    "ROLES",
    "SEVERITIES",
    "TENANT_ENERGY_PERIODS",
    "TENANT_KINDS",
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
    "events",
    "gateway_reports",
    "gateways",
    "ingest_progress",
    "metadata",
    "meter_daily_peak",
    "meter_energy",
    "meter_forecast",
    "meter_latest",
    "meters",
    "outbox",
    "plant_prices",
    "procurement_plan",
    "quarantine",
    "readings_fixed",
    "readings_instant",
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

TENANT_KINDS = ("retailer", "generator", "aggregator")
ROLES = ("admin", "operator", "viewer")  # each includes the powers of those after it
API_KEY_ROLES = ROLES
GATEWAY_STATES = ("unclaimed", "never_seen", "working", "lost_contact", "meter_link_down")
METER_LINKS = ("wisun", "udp")
SEVERITIES = ("info", "warning", "error", "critical")
COMMAND_STATES = ("pending", "sent", "done", "failed", "expired")
READING_SOURCES = ("measured", "refill")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An instant: aware UTC datetimes in and out, on every backend.

    Naive datetimes are refused (their zone is a guess). On SQLite the value is stored as
    naive UTC text of fixed width, so `<`, `>`, `BETWEEN`, `ORDER BY` and `max()` agree
    with time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must carry a timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# 64-bit ids; on SQLite a plain INTEGER so the column is the rowid and auto-increments.
Id = BigInteger().with_variant(Integer(), "sqlite")
# JSON documents: jsonb on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONDoc = JSON().with_variant(postgresql.JSONB(), "postgresql")


def _one_of(column: str, values: tuple[str, ...], name: str | None = None) -> CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=name or column)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _id() -> Column[Any]:
    return Column("id", Id, primary_key=True, autoincrement=True)


def _created_at() -> Column[Any]:
    return Column("created_at", UTCDateTime(), nullable=False, default=utcnow)


tenants = Table(
    "tenants",
    metadata,
    _id(),
    Column("name", String(200), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    _created_at(),
    # Retention in days (NULL: keep forever): instant power, and 30-minute values with
    # everything derived from them. Enforced by kenshin.server.metering.retention.
    Column("instant_retention_days", Integer(), nullable=True),
    Column("energy_retention_days", Integer(), nullable=True),
    _one_of("kind", TENANT_KINDS),
)

users = Table(
    "users",
    metadata,
    _id(),
    # NULL: a platform administrator, who belongs to no tenant and must be an admin.
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=True, index=True),
    # Unique within a tenant, and among platform administrators: not across tenants, so
    # that adding a user tells a tenant's admin nothing about the addresses of the others
    # (a login names the tenant when one address and password open accounts in several).
    Column("email", String(320), nullable=False, index=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    _created_at(),
    Column("disabled", Boolean(), nullable=False, default=False, server_default=false()),
    _one_of("role", ROLES),
    CheckConstraint("email = lower(email)", name="email_lower"),
    CheckConstraint("tenant_id IS NOT NULL OR role = 'admin'", name="platform_user_is_admin"),
    Index("uq_users_tenant_id_email", "tenant_id", "email", unique=True),
    Index(
        "uq_users_platform_email",
        "email",
        unique=True,
        postgresql_where=text("tenant_id IS NULL"),
        sqlite_where=text("tenant_id IS NULL"),
    ),
)

# Web sessions: the cookie holds a random token; the row holds only its SHA-256.
user_sessions = Table(
    "user_sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # hex SHA-256 of the cookie's token
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    _created_at(),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
    Column("last_seen_at", UTCDateTime(), nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("prefix", String(8), nullable=False),  # the 8 characters after "ksk_", shown
    Column("key_hash", String(64), nullable=False, unique=True),  # hex SHA-256 of the key
    Column("role", String(16), nullable=False),
    _created_at(),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    _one_of("role", API_KEY_ROLES),
)

sites = Table(
    "sites",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("service_code", String(11), nullable=False),
    Column("address", String(500), nullable=True),
    Column("phone", String(32), nullable=True),
    Column("name", String(200), nullable=True),
    _created_at(),
    UniqueConstraint("tenant_id", "customer_id"),
    UniqueConstraint("tenant_id", "service_code"),
    UniqueConstraint("id", "tenant_id"),  # target of the composite tenant-safe FKs
    # "pss" and eight digits, case-sensitive, with functions both SQLite and PostgreSQL have.
    CheckConstraint(
        "substr(service_code, 1, 3) = 'pss' AND length(service_code) = 11 "
        "AND ltrim(substr(service_code, 4), '0123456789') = ''",
        name="service_code_format",
    ),
)

gateways = Table(
    "gateways",
    metadata,
    _id(),
    Column("serial", String(64), nullable=False, unique=True),
    Column("model", String(64), nullable=False),
    Column("public_key", LargeBinary(), nullable=False),  # raw Ed25519 public key, 32 bytes
    Column("claim_code_hash", String(255), nullable=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=True),
    Column("site_id", Id, nullable=True),
    Column("mqtt_username", String(64), nullable=True, unique=True),
    Column("mqtt_password_hash", String(255), nullable=True),
    Column("state", String(16), nullable=False, default="unclaimed", server_default="unclaimed"),
    Column("state_since", UTCDateTime(), nullable=False, default=utcnow),
    Column("last_seen_at", UTCDateTime(), nullable=True),
    Column("settings_version_applied", Integer(), nullable=True),
    # The running agent's X25519 key from its latest enrollment: settings secrets are
    # sealed to it (kenshin.wire.sealing). None: an older agent, which gets none.
    Column("seal_public_key", LargeBinary(), nullable=True),
    _created_at(),
    ForeignKeyConstraint(["site_id", "tenant_id"], ["sites.id", "sites.tenant_id"]),
    UniqueConstraint("id", "tenant_id"),
    Index(None, "tenant_id", "state"),
    Index(None, "site_id"),
    _one_of("state", GATEWAY_STATES),
    CheckConstraint("length(public_key) = 32", name="public_key_ed25519"),
    CheckConstraint("tenant_id IS NOT NULL OR state = 'unclaimed'", name="claimed_has_tenant"),
    CheckConstraint("site_id IS NULL OR tenant_id IS NOT NULL", name="site_has_tenant"),
)

# Exactly 22 ASCII digits, with functions both SQLite and PostgreSQL have (as service_code).
SUPPLY_POINT_CHECK = (
    "supply_point IS NULL OR (length(supply_point) = 22 AND ltrim(supply_point, '0123456789') = '')"
)

meters = Table(
    "meters",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("site_id", Id, nullable=False),
    Column("gateway_id", Id, nullable=True),
    Column("serial", String(64), nullable=True),
    Column("link", String(8), nullable=False),
    Column("udp_host", String(255), nullable=True),
    Column("udp_port", Integer(), nullable=True),  # None: 3610
    Column("device", String(255), nullable=True),  # the Wi-SUN dongle's serial port
    # AES-GCM sealed (kenshin.server.security.CredentialBox), bound to the meter's id.
    Column("broute_id_enc", LargeBinary(), nullable=True),
    Column("broute_password_enc", LargeBinary(), nullable=True),
    Column("coefficient", Integer(), nullable=True),  # EPC 0xD3
    Column("unit_code", SmallInteger(), nullable=True),  # EPC 0xE1
    Column("digits", SmallInteger(), nullable=True),  # EPC 0xD7
    # 供給地点特定番号: the 22 digits a retailer settles on (digits only; None: not known).
    Column("supply_point", String(22), nullable=True),
    _created_at(),
    ForeignKeyConstraint(["site_id", "tenant_id"], ["sites.id", "sites.tenant_id"]),
    ForeignKeyConstraint(["gateway_id", "tenant_id"], ["gateways.id", "gateways.tenant_id"]),
    UniqueConstraint("tenant_id", "serial"),
    UniqueConstraint("tenant_id", "supply_point"),  # NULLs are distinct: many unknown
    Index(None, "site_id"),
    Index(None, "gateway_id"),
    _one_of("link", METER_LINKS),
    CheckConstraint("link <> 'udp' OR udp_host IS NOT NULL", name="udp_has_host"),
    CheckConstraint(SUPPLY_POINT_CHECK, name="supply_point_format"),
)

settings = Table(
    "settings",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("gateway_id", Id, nullable=True),  # NULL: the tenant's default settings
    Column("version", Integer(), nullable=False),
    Column("values", JSONDoc, nullable=False),
    _created_at(),
    Column("created_by", Id, ForeignKey("users.id"), nullable=True),
    ForeignKeyConstraint(["gateway_id", "tenant_id"], ["gateways.id", "gateways.tenant_id"]),
    UniqueConstraint("tenant_id", "gateway_id", "version"),
    # NULLs are distinct in UNIQUE, so tenant defaults need their own partial index.
    Index(
        "uq_settings_tenant_default_version",
        "tenant_id",
        "version",
        unique=True,
        sqlite_where=text("gateway_id IS NULL"),
        postgresql_where=text("gateway_id IS NULL"),
    ),
    Index(None, "gateway_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=True),
    Column("actor", String(64), nullable=False),  # "user:3", "api_key:7" or "system"
    Column("action", String(64), nullable=False),  # "user.create", "api_key.revoke", ...
    Column("target", String(128), nullable=True),  # "user:12", "tenant:2", ...
    Column("detail", JSONDoc, nullable=True),
    Column("at", UTCDateTime(), nullable=False, default=utcnow),
    # Where from: the client's address as the server saw it (behind a proxy: what the
    # proxy forwarded, if it is trusted), and the request's X-Request-ID (logs.py).
    Column("client", String(64), nullable=True),
    Column("request_id", String(128), nullable=True),
    Index(None, "tenant_id", "at"),
    Index(None, "tenant_id", "actor", "at"),
    Index(None, "at"),  # the retention job's cut, across tenants
)

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

commands = Table(
    "commands",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("gateway_id", Id, nullable=False),
    Column("name", String(64), nullable=False),
    Column("args", JSONDoc, nullable=True),
    Column("state", String(16), nullable=False, default="pending", server_default="pending"),
    Column("result", JSONDoc, nullable=True),
    Column("error", Text(), nullable=True),
    _created_at(),
    Column("sent_at", UTCDateTime(), nullable=True),
    Column("done_at", UTCDateTime(), nullable=True),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("created_by", String(64), nullable=True),  # an actor, as in audit_log
    ForeignKeyConstraint(["gateway_id", "tenant_id"], ["gateways.id", "gateways.tenant_id"]),
    Index(None, "gateway_id", "state"),
    Index(None, "tenant_id", "created_at"),
    _one_of("state", COMMAND_STATES),
)

readings_instant = Table(
    "readings_instant",
    metadata,
    # No foreign key to meters: its per-row check tripled the cost of every COPY (the
    # fleet's busiest write). The ingest writes only for a meter it has just looked up as
    # the sending gateway's, in the same transaction, and meters are never deleted.
    Column("meter_id", Id, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("power_w", Integer(), nullable=False),
    Column("current_r_da", Integer(), nullable=False),
    Column("current_t_da", Integer(), nullable=True),  # single-phase two-wire meters: none
    PrimaryKeyConstraint("meter_id", "at"),
)

readings_fixed = Table(
    "readings_fixed",
    metadata,
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=False),
    Column("slot_start", UTCDateTime(), nullable=False),
    Column("direction", SmallInteger(), nullable=False),  # 0 normal (bought), 1 reverse (sold)
    Column("raw", BigInteger(), nullable=False),  # the meter's cumulative counter, as read
    Column("source", String(16), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False, default=utcnow),
    PrimaryKeyConstraint("meter_id", "slot_start", "direction"),
    CheckConstraint("direction IN (0, 1)", name="direction"),
    _one_of("source", READING_SOURCES),
)

# Derived from readings_fixed by kenshin.server.metering.store: one row per meter, slot and
# direction; `missing` rows have no energy (never interpolated).
slot_energy = Table(
    "slot_energy",
    metadata,
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=False),
    Column("slot_start", UTCDateTime(), nullable=False),
    Column("direction", SmallInteger(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("milliwatt_hours", BigInteger(), nullable=True),
    Column("wh", BigInteger(), nullable=True),
    PrimaryKeyConstraint("meter_id", "slot_start", "direction"),
    CheckConstraint("direction IN (0, 1)", name="direction"),
    _one_of("status", ("measured", "refilled", "missing")),
)

# Rollups of slot_energy, kept current by the ingest with additive deltas (see
# kenshin.server.metering.rollups): `start` is the period's first instant (hours in UTC,
# which JST shares; days and months at JST midnight). `slots` counts the 30-minute values
# summed into `wh` (a complete JST day has 48 per meter), `refilled` those from history.
ENERGY_PERIODS = ("hour", "day", "month")
TENANT_ENERGY_PERIODS = ("slot", *ENERGY_PERIODS)

meter_energy = Table(
    "meter_energy",
    metadata,
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=False),
    Column("period", String(5), nullable=False),
    Column("direction", SmallInteger(), nullable=False),
    Column("start", UTCDateTime(), nullable=False),
    Column("wh", BigInteger(), nullable=False),
    Column("slots", Integer(), nullable=False),
    Column("refilled", Integer(), nullable=False),
    PrimaryKeyConstraint("meter_id", "period", "direction", "start"),
    CheckConstraint("direction IN (0, 1)", name="direction"),
    _one_of("period", ENERGY_PERIODS),
)

tenant_energy = Table(
    "tenant_energy",
    metadata,
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("period", String(5), nullable=False),
    Column("direction", SmallInteger(), nullable=False),
    Column("start", UTCDateTime(), nullable=False),
    Column("wh", BigInteger(), nullable=False),
    Column("slots", Integer(), nullable=False),  # meter-slots summed
    Column("refilled", Integer(), nullable=False),
    PrimaryKeyConstraint("tenant_id", "period", "direction", "start"),
    CheckConstraint("direction IN (0, 1)", name="direction"),
    _one_of("period", TENANT_ENERGY_PERIODS),
)

# The day's (JST) highest bought power and highest sold power, with their instants, from
# instant readings; kept by the ingest with GREATEST-style upserts.
meter_daily_peak = Table(
    "meter_daily_peak",
    metadata,
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=False),
    Column("day", UTCDateTime(), nullable=False),  # JST midnight
    Column("import_w", Integer(), nullable=True),
    Column("import_at", UTCDateTime(), nullable=True),
    Column("export_w", Integer(), nullable=True),  # positive watts sold
    Column("export_at", UTCDateTime(), nullable=True),
    PrimaryKeyConstraint("meter_id", "day"),
)

# The newest instant reading of each meter: the list page's "current power" in one lookup.
meter_latest = Table(
    "meter_latest",
    metadata,
    Column("meter_id", Id, ForeignKey("meters.id"), primary_key=True, autoincrement=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("power_w", Integer(), nullable=False),
    Column("current_r_da", Integer(), nullable=False),
    Column("current_t_da", Integer(), nullable=True),
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

# Each heartbeat's figures (every few hours, or on change): the gateway page's link
# quality, queue depth and versions, and the history the queue_growing rule reads.
gateway_reports = Table(
    "gateway_reports",
    metadata,
    _id(),
    Column("gateway_id", Id, ForeignKey("gateways.id"), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("agent_version", String(64), nullable=False),
    Column("uptime_s", BigInteger(), nullable=False),
    Column("link", String(32), nullable=False),
    Column("lqi", SmallInteger(), nullable=True),
    Column("queue_depth", Integer(), nullable=False),
    Column("last_good_read_at", UTCDateTime(), nullable=True),
    Column("settings_version", Integer(), nullable=True),
    Column("errors", JSONDoc, nullable=True),
    Index(None, "gateway_id", "at"),
)

# -- analytics and alerts (kenshin.server.analytics, kenshin.server.alerts) ------------------


# Forecast 30-minute energy with a band (low/high: e.g. the 10th and 90th percentiles).
def _forecast_table(name: str, owner: str) -> Table:
    return Table(
        name,
        metadata,
        Column(f"{owner}_id", Id, ForeignKey(f"{owner}s.id"), nullable=False),
        Column("slot_start", UTCDateTime(), nullable=False),
        Column("direction", SmallInteger(), nullable=False),
        Column("low_wh", BigInteger(), nullable=False),
        Column("mid_wh", BigInteger(), nullable=False),
        Column("high_wh", BigInteger(), nullable=False),
        Column("made_at", UTCDateTime(), nullable=False, default=utcnow),
        PrimaryKeyConstraint(f"{owner}_id", "slot_start", "direction"),
        CheckConstraint("direction IN (0, 1)", name="direction"),
    )


meter_forecast = _forecast_table("meter_forecast", "meter")
tenant_forecast = _forecast_table("tenant_forecast", "tenant")

# A retailer's procured energy per 30-minute slot (uploaded as CSV or through the API).
procurement_plan = Table(
    "procurement_plan",
    metadata,
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("slot_start", UTCDateTime(), nullable=False),
    Column("wh", BigInteger(), nullable=False),
    Column("uploaded_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("uploaded_by", String(64), nullable=True),
    PrimaryKeyConstraint("tenant_id", "slot_start"),
)

# A generator's sale price per plant (meter), valid over a JST date range (to: inclusive,
# NULL: open-ended).
plant_prices = Table(
    "plant_prices",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=False),
    Column("yen_per_kwh_milli", BigInteger(), nullable=False),  # 1/1000 yen, exact
    Column("valid_from", Date(), nullable=False),
    Column("valid_to", Date(), nullable=True),
    _created_at(),
    Index(None, "meter_id", "valid_from"),
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

ingest_progress = Table(
    "ingest_progress",
    metadata,
    Column("gateway_id", Id, ForeignKey("gateways.id"), primary_key=True, autoincrement=False),
    Column("last_seq", BigInteger(), nullable=False),
)

# The metering room's repair of lost half hours (metering/repair.py): per meter, the
# boundary up to which every value is here, and the backfill asked of its gateway.
meter_repair = Table(
    "meter_repair",
    metadata,
    Column("meter_id", Id, ForeignKey("meters.id"), primary_key=True, autoincrement=False),
    Column("complete_through", UTCDateTime(), nullable=True),
    Column("command_id", Id, nullable=True),  # the one backfill outstanding, if any
    Column("missing_from", UTCDateTime(), nullable=True),  # what it asked for
    Column("missing_to", UTCDateTime(), nullable=True),
    Column("attempts", Integer(), nullable=False, default=0, server_default="0"),
    Column("next_try_at", UTCDateTime(), nullable=True),
    Column("rescanned_at", UTCDateTime(), nullable=True),  # last look from the horizon on
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
