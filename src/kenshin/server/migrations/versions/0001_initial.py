"""The initial schema: tenants, accounts, devices, settings, events, commands, readings.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Self-contained on purpose: it spells out its types instead of importing
`kenshin.server.schema`, so later changes to the schema cannot change what this
revision does. Timestamps are `timestamptz` on PostgreSQL and UTC ISO text on SQLite
(`kenshin.server.schema.UTCDateTime` does the conversion).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _id() -> sa.Column:
    return sa.Column("id", ID, autoincrement=True, nullable=False)


def _one_of(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{column}"))


def upgrade() -> None:
    op.create_table(
        "tenants",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _one_of("tenants", "kind", ("retailer", "generator", "aggregator")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
    )

    op.create_table(
        "users",
        _id(),
        sa.Column("tenant_id", ID, nullable=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        _one_of("users", "role", ("admin", "operator", "viewer")),
        sa.CheckConstraint("email = lower(email)", name=op.f("ck_users_email_lower")),
        sa.CheckConstraint(
            "tenant_id IS NOT NULL OR role = 'admin'",
            name=op.f("ck_users_platform_user_is_admin"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_users_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_index(op.f("ix_users_tenant_id"), "users", ["tenant_id"])

    op.create_table(
        "user_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
    )
    op.create_index(op.f("ix_user_sessions_user_id"), "user_sessions", ["user_id"])
    op.create_index(op.f("ix_user_sessions_expires_at"), "user_sessions", ["expires_at"])

    op.create_table(
        "api_keys",
        _id(),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(8), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        _one_of("api_keys", "role", ("admin", "operator", "viewer")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_api_keys_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_tenant_id"), "api_keys", ["tenant_id"])

    op.create_table(
        "sites",
        _id(),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("service_code", sa.String(11), nullable=False),
        sa.Column("address", sa.String(500), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "substr(service_code, 1, 3) = 'pss' AND length(service_code) = 11 "
            "AND ltrim(substr(service_code, 4), '0123456789') = ''",
            name=op.f("ck_sites_service_code_format"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_sites_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sites")),
        sa.UniqueConstraint("id", "tenant_id", name=op.f("uq_sites_id_tenant_id")),
        sa.UniqueConstraint(
            "tenant_id", "customer_id", name=op.f("uq_sites_tenant_id_customer_id")
        ),
        sa.UniqueConstraint(
            "tenant_id", "service_code", name=op.f("uq_sites_tenant_id_service_code")
        ),
    )

    op.create_table(
        "gateways",
        _id(),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("claim_code_hash", sa.String(255), nullable=True),
        sa.Column("tenant_id", ID, nullable=True),
        sa.Column("site_id", ID, nullable=True),
        sa.Column("mqtt_username", sa.String(64), nullable=True),
        sa.Column("mqtt_password_hash", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), server_default="unclaimed", nullable=False),
        sa.Column("state_since", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=True),
        sa.Column("settings_version_applied", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        _one_of(
            "gateways",
            "state",
            ("unclaimed", "never_seen", "working", "lost_contact", "meter_link_down"),
        ),
        sa.CheckConstraint("length(public_key) = 32", name=op.f("ck_gateways_public_key_ed25519")),
        sa.CheckConstraint(
            "tenant_id IS NOT NULL OR state = 'unclaimed'",
            name=op.f("ck_gateways_claimed_has_tenant"),
        ),
        sa.CheckConstraint(
            "site_id IS NULL OR tenant_id IS NOT NULL", name=op.f("ck_gateways_site_has_tenant")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_gateways_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["site_id", "tenant_id"],
            ["sites.id", "sites.tenant_id"],
            name=op.f("fk_gateways_site_id_tenant_id_sites"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateways")),
        sa.UniqueConstraint("id", "tenant_id", name=op.f("uq_gateways_id_tenant_id")),
        sa.UniqueConstraint("mqtt_username", name=op.f("uq_gateways_mqtt_username")),
        sa.UniqueConstraint("serial", name=op.f("uq_gateways_serial")),
    )
    op.create_index(op.f("ix_gateways_tenant_id_state"), "gateways", ["tenant_id", "state"])
    op.create_index(op.f("ix_gateways_site_id"), "gateways", ["site_id"])

    op.create_table(
        "meters",
        _id(),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("site_id", ID, nullable=False),
        sa.Column("gateway_id", ID, nullable=True),
        sa.Column("serial", sa.String(64), nullable=True),
        sa.Column("link", sa.String(8), nullable=False),
        sa.Column("udp_host", sa.String(255), nullable=True),
        sa.Column("broute_id_enc", sa.LargeBinary(), nullable=True),
        sa.Column("broute_password_enc", sa.LargeBinary(), nullable=True),
        sa.Column("coefficient", sa.Integer(), nullable=True),
        sa.Column("unit_code", sa.SmallInteger(), nullable=True),
        sa.Column("digits", sa.SmallInteger(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        _one_of("meters", "link", ("wisun", "udp")),
        sa.CheckConstraint(
            "link <> 'udp' OR udp_host IS NOT NULL", name=op.f("ck_meters_udp_has_host")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_meters_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["site_id", "tenant_id"],
            ["sites.id", "sites.tenant_id"],
            name=op.f("fk_meters_site_id_tenant_id_sites"),
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id", "tenant_id"],
            ["gateways.id", "gateways.tenant_id"],
            name=op.f("fk_meters_gateway_id_tenant_id_gateways"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meters")),
        sa.UniqueConstraint("tenant_id", "serial", name=op.f("uq_meters_tenant_id_serial")),
    )
    op.create_index(op.f("ix_meters_site_id"), "meters", ["site_id"])
    op.create_index(op.f("ix_meters_gateway_id"), "meters", ["gateway_id"])

    op.create_table(
        "settings",
        _id(),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("gateway_id", ID, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("values", JSON_DOC, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_settings_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id", "tenant_id"],
            ["gateways.id", "gateways.tenant_id"],
            name=op.f("fk_settings_gateway_id_tenant_id_gateways"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_settings_created_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settings")),
        sa.UniqueConstraint(
            "tenant_id",
            "gateway_id",
            "version",
            name=op.f("uq_settings_tenant_id_gateway_id_version"),
        ),
    )
    op.create_index(
        "uq_settings_tenant_default_version",
        "settings",
        ["tenant_id", "version"],
        unique=True,
        sqlite_where=sa.text("gateway_id IS NULL"),
        postgresql_where=sa.text("gateway_id IS NULL"),
    )
    op.create_index(op.f("ix_settings_gateway_id"), "settings", ["gateway_id"])

    op.create_table(
        "audit_log",
        _id(),
        sa.Column("tenant_id", ID, nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(128), nullable=True),
        sa.Column("detail", JSON_DOC, nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_audit_log_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_tenant_id_at"), "audit_log", ["tenant_id", "at"])

    op.create_table(
        "events",
        _id(),
        sa.Column("tenant_id", ID, nullable=True),
        sa.Column("gateway_id", ID, nullable=True),
        sa.Column("meter_id", ID, nullable=True),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("detail", JSON_DOC, nullable=True),
        sa.Column("at", TS, nullable=False),
        _one_of("events", "severity", ("info", "warning", "error", "critical")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_events_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name=op.f("fk_events_gateway_id_gateways")
        ),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_events_meter_id_meters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_tenant_id_at"), "events", ["tenant_id", "at"])
    op.create_index(op.f("ix_events_gateway_id_at"), "events", ["gateway_id", "at"])
    op.create_index(op.f("ix_events_meter_id_at"), "events", ["meter_id", "at"])

    op.create_table(
        "commands",
        _id(),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("gateway_id", ID, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("args", JSON_DOC, nullable=True),
        sa.Column("state", sa.String(16), server_default="pending", nullable=False),
        sa.Column("result", JSON_DOC, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("done_at", TS, nullable=True),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("created_by", sa.String(64), nullable=True),
        _one_of("commands", "state", ("pending", "sent", "done", "failed", "expired")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_commands_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id", "tenant_id"],
            ["gateways.id", "gateways.tenant_id"],
            name=op.f("fk_commands_gateway_id_tenant_id_gateways"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commands")),
    )
    op.create_index(op.f("ix_commands_gateway_id_state"), "commands", ["gateway_id", "state"])
    op.create_index(
        op.f("ix_commands_tenant_id_created_at"), "commands", ["tenant_id", "created_at"]
    )

    op.create_table(
        "readings_instant",
        sa.Column("meter_id", ID, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("power_w", sa.Integer(), nullable=False),
        sa.Column("current_r_da", sa.Integer(), nullable=False),
        sa.Column("current_t_da", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_readings_instant_meter_id_meters")
        ),
        sa.PrimaryKeyConstraint("meter_id", "at", name=op.f("pk_readings_instant")),
    )

    op.create_table(
        "readings_fixed",
        sa.Column("meter_id", ID, nullable=False),
        sa.Column("slot_start", TS, nullable=False),
        sa.Column("direction", sa.SmallInteger(), nullable=False),
        sa.Column("raw", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.CheckConstraint("direction IN (0, 1)", name=op.f("ck_readings_fixed_direction")),
        _one_of("readings_fixed", "source", ("measured", "refill")),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_readings_fixed_meter_id_meters")
        ),
        sa.PrimaryKeyConstraint(
            "meter_id", "slot_start", "direction", name=op.f("pk_readings_fixed")
        ),
    )

    op.create_table(
        "ingest_progress",
        sa.Column("gateway_id", ID, autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name=op.f("fk_ingest_progress_gateway_id_gateways")
        ),
        sa.PrimaryKeyConstraint("gateway_id", name=op.f("pk_ingest_progress")),
    )

    op.create_table(
        "quarantine",
        _id(),
        sa.Column("topic", sa.String(512), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    op.create_index(op.f("ix_quarantine_at"), "quarantine", ["at"])


def downgrade() -> None:
    for table in (
        "quarantine",
        "ingest_progress",
        "readings_fixed",
        "readings_instant",
        "commands",
        "events",
        "audit_log",
        "settings",
        "meters",
        "gateways",
        "sites",
        "api_keys",
        "user_sessions",
        "users",
        "tenants",
    ):
        op.drop_table(table)
