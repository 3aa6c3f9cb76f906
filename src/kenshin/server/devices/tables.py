"""The devices room's tables: sites, gateways, meters, gateway settings, commands and the
gateways' status reports. In the room, so the room's tables and its code change together;
`schema.py` imports them with every other room's onto the one metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
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

GATEWAY_STATES = ("unclaimed", "never_seen", "working", "lost_contact", "meter_link_down")
METER_LINKS = ("wisun", "udp")
COMMAND_STATES = ("pending", "sent", "done", "failed", "expired")


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
    Column("tags", JSONDoc, nullable=True),  # an operator's labels: a rollout's cohort
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
