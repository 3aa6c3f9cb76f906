"""Metering storage and what reads it: energy rollups, daily peaks, the latest instant
reading per meter, per-tenant retention, webhooks with their delivery log and the outbox
that feeds them; forecasts, procurement plans, plant prices, alert rules, alerts, their
subscriptions and notifications; each gateway heartbeat's figures.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("body", JSON, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.CheckConstraint("kind IN ('slot', 'event')", name=op.f("ck_outbox_kind")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_outbox_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outbox_tenant_id_id"), ["tenant_id", "id"], unique=False
        )

    op.create_table(
        "tenant_energy",
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("period", sa.String(length=5), nullable=False),
        sa.Column("direction", sa.SmallInteger(), nullable=False),
        sa.Column("start", TIME, nullable=False),
        sa.Column("wh", sa.BigInteger(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("refilled", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "period IN ('slot', 'hour', 'day', 'month')", name=op.f("ck_tenant_energy_period")
        ),
        sa.CheckConstraint("direction IN (0, 1)", name=op.f("ck_tenant_energy_direction")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tenant_energy_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "period", "direction", "start", name=op.f("pk_tenant_energy")
        ),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("kinds", JSON, nullable=False),
        sa.Column("secret_enc", sa.LargeBinary(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_webhooks_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
        sa.UniqueConstraint("id", "tenant_id", name=op.f("uq_webhooks_id_tenant_id")),
    )
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhooks_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("webhook_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("delivered_at", TIME, nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'dead')", name=op.f("ck_webhook_deliveries_state")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_webhook_deliveries_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id", "tenant_id"],
            ["webhooks.id", "webhooks.tenant_id"],
            name=op.f("fk_webhook_deliveries_webhook_id_tenant_id_webhooks"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_state_next_attempt_at"),
            ["state", "next_attempt_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_webhook_id_created_at"),
            ["webhook_id", "created_at"],
            unique=False,
        )

    op.create_table(
        "meter_daily_peak",
        sa.Column("meter_id", ID, nullable=False),
        sa.Column("day", TIME, nullable=False),
        sa.Column("import_w", sa.Integer(), nullable=True),
        sa.Column("import_at", TIME, nullable=True),
        sa.Column("export_w", sa.Integer(), nullable=True),
        sa.Column("export_at", TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_meter_daily_peak_meter_id_meters")
        ),
        sa.PrimaryKeyConstraint("meter_id", "day", name=op.f("pk_meter_daily_peak")),
    )
    op.create_table(
        "meter_energy",
        sa.Column("meter_id", ID, nullable=False),
        sa.Column("period", sa.String(length=5), nullable=False),
        sa.Column("direction", sa.SmallInteger(), nullable=False),
        sa.Column("start", TIME, nullable=False),
        sa.Column("wh", sa.BigInteger(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("refilled", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "period IN ('hour', 'day', 'month')", name=op.f("ck_meter_energy_period")
        ),
        sa.CheckConstraint("direction IN (0, 1)", name=op.f("ck_meter_energy_direction")),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_meter_energy_meter_id_meters")
        ),
        sa.PrimaryKeyConstraint(
            "meter_id", "period", "direction", "start", name=op.f("pk_meter_energy")
        ),
    )
    op.create_table(
        "meter_latest",
        sa.Column("meter_id", ID, autoincrement=False, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("power_w", sa.Integer(), nullable=False),
        sa.Column("current_r_da", sa.Integer(), nullable=False),
        sa.Column("current_t_da", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_meter_latest_meter_id_meters")
        ),
        sa.PrimaryKeyConstraint("meter_id", name=op.f("pk_meter_latest")),
    )
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("instant_retention_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("energy_retention_days", sa.Integer(), nullable=True))

    op.create_table(
        "alert_rules",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("severity", sa.String(length=16), server_default="warning", nullable=False),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'error', 'critical')",
            name=op.f("ck_alert_rules_severity"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_alert_rules_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rules")),
        sa.UniqueConstraint("tenant_id", "rule", name=op.f("uq_alert_rules_tenant_id_rule")),
    )
    op.create_table(
        "alert_subscriptions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=320), nullable=True),
        sa.Column("min_severity", sa.String(length=16), nullable=False),
        sa.Column("rules", JSON, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.CheckConstraint(
            "channel IN ('email', 'webhook')", name=op.f("ck_alert_subscriptions_channel")
        ),
        sa.CheckConstraint(
            "min_severity IN ('info', 'warning', 'error', 'critical')",
            name=op.f("ck_alert_subscriptions_min_severity"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_alert_subscriptions_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_subscriptions")),
    )
    with op.batch_alter_table("alert_subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_subscriptions_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "procurement_plan",
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("slot_start", TIME, nullable=False),
        sa.Column("wh", sa.BigInteger(), nullable=False),
        sa.Column("uploaded_at", TIME, nullable=False),
        sa.Column("uploaded_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_procurement_plan_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "slot_start", name=op.f("pk_procurement_plan")),
    )
    op.create_table(
        "tenant_forecast",
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("slot_start", TIME, nullable=False),
        sa.Column("direction", sa.SmallInteger(), nullable=False),
        sa.Column("low_wh", sa.BigInteger(), nullable=False),
        sa.Column("mid_wh", sa.BigInteger(), nullable=False),
        sa.Column("high_wh", sa.BigInteger(), nullable=False),
        sa.Column("made_at", TIME, nullable=False),
        sa.CheckConstraint("direction IN (0, 1)", name=op.f("ck_tenant_forecast_direction")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tenant_forecast_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "slot_start", "direction", name=op.f("pk_tenant_forecast")
        ),
    )
    op.create_table(
        "alerts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("meter_id", ID, nullable=True),
        sa.Column("gateway_id", ID, nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("detail", JSON, nullable=True),
        sa.Column("opened_at", TIME, nullable=False),
        sa.Column("last_seen_at", TIME, nullable=False),
        sa.Column("acknowledged_at", TIME, nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("resolved_at", TIME, nullable=True),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'error', 'critical')", name=op.f("ck_alerts_severity")
        ),
        sa.CheckConstraint(
            "state IN ('open', 'acknowledged', 'resolved')", name=op.f("ck_alerts_state")
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name=op.f("fk_alerts_gateway_id_gateways")
        ),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_alerts_meter_id_meters")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_alerts_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alerts_tenant_id_state_opened_at"),
            ["tenant_id", "state", "opened_at"],
            unique=False,
        )
        batch_op.create_index(
            "uq_alerts_unresolved",
            ["tenant_id", "rule", "subject"],
            unique=True,
            sqlite_where=sa.text("state <> 'resolved'"),
            postgresql_where=sa.text("state <> 'resolved'"),
        )

    op.create_table(
        "meter_forecast",
        sa.Column("meter_id", ID, nullable=False),
        sa.Column("slot_start", TIME, nullable=False),
        sa.Column("direction", sa.SmallInteger(), nullable=False),
        sa.Column("low_wh", sa.BigInteger(), nullable=False),
        sa.Column("mid_wh", sa.BigInteger(), nullable=False),
        sa.Column("high_wh", sa.BigInteger(), nullable=False),
        sa.Column("made_at", TIME, nullable=False),
        sa.CheckConstraint("direction IN (0, 1)", name=op.f("ck_meter_forecast_direction")),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_meter_forecast_meter_id_meters")
        ),
        sa.PrimaryKeyConstraint(
            "meter_id", "slot_start", "direction", name=op.f("pk_meter_forecast")
        ),
    )
    op.create_table(
        "plant_prices",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("meter_id", ID, nullable=False),
        sa.Column("yen_per_kwh_milli", sa.BigInteger(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_plant_prices_meter_id_meters")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_plant_prices_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plant_prices")),
    )
    with op.batch_alter_table("plant_prices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plant_prices_meter_id_valid_from"),
            ["meter_id", "valid_from"],
            unique=False,
        )

    op.create_table(
        "alert_notifications",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("alert_id", ID, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=320), nullable=True),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("sent_at", TIME, nullable=True),
        sa.CheckConstraint(
            "channel IN ('email', 'webhook')", name=op.f("ck_alert_notifications_channel")
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'sent', 'dead')", name=op.f("ck_alert_notifications_state")
        ),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_alert_notifications_alert_id_alerts")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_alert_notifications_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_notifications")),
    )
    with op.batch_alter_table("alert_notifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_notifications_alert_id"), ["alert_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_alert_notifications_state_next_attempt_at"),
            ["state", "next_attempt_at"],
            unique=False,
        )

    op.create_table(
        "gateway_reports",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("gateway_id", ID, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=False),
        sa.Column("uptime_s", sa.BigInteger(), nullable=False),
        sa.Column("link", sa.String(length=32), nullable=False),
        sa.Column("lqi", sa.SmallInteger(), nullable=True),
        sa.Column("queue_depth", sa.Integer(), nullable=False),
        sa.Column("last_good_read_at", TIME, nullable=True),
        sa.Column("settings_version", sa.Integer(), nullable=True),
        sa.Column("errors", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name=op.f("fk_gateway_reports_gateway_id_gateways")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_reports")),
    )
    with op.batch_alter_table("gateway_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gateway_reports_gateway_id_at"), ["gateway_id", "at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("gateway_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gateway_reports_gateway_id_at"))

    op.drop_table("gateway_reports")

    with op.batch_alter_table("alert_notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_notifications_state_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_alert_notifications_alert_id"))

    op.drop_table("alert_notifications")
    with op.batch_alter_table("plant_prices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plant_prices_meter_id_valid_from"))

    op.drop_table("plant_prices")
    op.drop_table("meter_forecast")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_alerts_unresolved",
            sqlite_where=sa.text("state <> 'resolved'"),
            postgresql_where=sa.text("state <> 'resolved'"),
        )
        batch_op.drop_index(batch_op.f("ix_alerts_tenant_id_state_opened_at"))

    op.drop_table("alerts")
    op.drop_table("tenant_forecast")
    op.drop_table("procurement_plan")
    with op.batch_alter_table("alert_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_subscriptions_tenant_id"))

    op.drop_table("alert_subscriptions")
    op.drop_table("alert_rules")

    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("energy_retention_days")
        batch_op.drop_column("instant_retention_days")

    op.drop_table("meter_latest")
    op.drop_table("meter_energy")
    op.drop_table("meter_daily_peak")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_webhook_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_state_next_attempt_at"))

    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhooks_tenant_id"))

    op.drop_table("webhooks")
    op.drop_table("tenant_energy")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_tenant_id_id"))

    op.drop_table("outbox")
