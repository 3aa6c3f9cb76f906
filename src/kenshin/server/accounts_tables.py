"""The accounts' tables: tenants, users, their web sessions, API keys and the audit log.

Owned by the `api/` room through the shared `accounts.py` (its door). Beside `accounts.py`
rather than in `api/`, whose package imports every router, so `schema.py` can import it
first.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    false,
    text,
)

from .schema_base import (
    Id,
    JSONDoc,
    UTCDateTime,
    _created_at,
    _id,
    _one_of,
    metadata,
    utcnow,
)

TENANT_KINDS = ("retailer", "generator", "aggregator")
ROLES = ("admin", "operator", "viewer")  # each includes the powers of those after it
API_KEY_ROLES = ROLES


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
