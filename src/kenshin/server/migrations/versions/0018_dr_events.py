"""dr_rules, dr_events, dr_participations, dr_opt_outs: a tenant's DR events, each home's
participation (sent to its gateway, acknowledged, acting, done, opted out), the opt-outs
and the imbalance rules that raise or propose events (issue 20, the dr room).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

# As the room's tables.py at this revision (a migration keeps its own copy).
EVENT_STATES = ("proposed", "scheduled", "active", "ended", "final", "cancelled")
PARTICIPATION_STATES = (
    "pending", "sent", "acknowledged", "no_devices", "refused", "acting", "done", "failed",
    "opted_out",
)  # fmt: skip
OPT_OUT_VIA = ("link", "api", "gateway")


def _one_of(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{column}"))


def _check(table: str, name: str, text: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(text, name=op.f(f"ck_{table}_{name}"))


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], name=op.f(f"fk_{table}_tenant_id_tenants")
    )


def upgrade() -> None:
    op.create_table(
        "dr_rules",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("threshold_w", sa.Integer(), nullable=False),
        sa.Column("slots", JSON_DOC, nullable=False),
        sa.Column("target_w", sa.Integer(), nullable=False),
        sa.Column("auto", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _check("dr_rules", "threshold_positive", "threshold_w > 0"),
        _check("dr_rules", "target_positive", "target_w > 0"),
        _tenant_fk("dr_rules"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dr_rules")),
    )
    op.create_index(op.f("ix_dr_rules_tenant_id"), "dr_rules", ["tenant_id"])
    op.create_table(
        "dr_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("start_at", TS, nullable=False),
        sa.Column("end_at", TS, nullable=False),
        sa.Column("targets_w", JSON_DOC, nullable=True),
        sa.Column("shed_level", sa.Integer(), nullable=True),
        sa.Column("price_jpy_kwh", sa.Float(), nullable=True),
        sa.Column("opt_out_deadline", TS, nullable=False),
        sa.Column("state", sa.String(16), server_default="scheduled", nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("openadr_event_id", sa.String(64), nullable=True),
        sa.Column("rule_id", ID, nullable=True),
        sa.Column("results", JSON_DOC, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("cancelled_at", TS, nullable=True),
        sa.Column("final_at", TS, nullable=True),
        _one_of("dr_events", "state", EVENT_STATES),
        _check("dr_events", "end_after_start", "end_at > start_at"),
        _check("dr_events", "targets_or_shed", "(targets_w IS NULL) <> (shed_level IS NULL)"),
        _check("dr_events", "shed_range", "shed_level IS NULL OR shed_level BETWEEN 1 AND 3"),
        _tenant_fk("dr_events"),
        sa.ForeignKeyConstraint(
            ["rule_id"], ["dr_rules.id"], name=op.f("fk_dr_events_rule_id_dr_rules")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dr_events")),
    )
    op.create_index(op.f("ix_dr_events_tenant_id_start_at"), "dr_events", ["tenant_id", "start_at"])
    op.create_index(op.f("ix_dr_events_state"), "dr_events", ["state"])
    op.create_table(
        "dr_participations",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("site_id", ID, nullable=False),
        sa.Column("gateway_id", ID, nullable=False),
        sa.Column("state", sa.String(16), server_default="pending", nullable=False),
        sa.Column("opt_out_token", sa.String(64), nullable=False),
        sa.Column("targets_w", JSON_DOC, nullable=True),
        sa.Column("devices", JSON_DOC, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("report", JSON_DOC, nullable=True),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("cancel_sent_at", TS, nullable=True),
        sa.Column("state_at", TS, nullable=True),
        sa.Column("reported_at", TS, nullable=True),
        _one_of("dr_participations", "state", PARTICIPATION_STATES),
        sa.ForeignKeyConstraint(
            ["event_id"], ["dr_events.id"], name=op.f("fk_dr_participations_event_id_dr_events")
        ),
        sa.ForeignKeyConstraint(
            ["site_id", "tenant_id"],
            ["sites.id", "sites.tenant_id"],
            name=op.f("fk_dr_participations_site_id_tenant_id_sites"),
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id", "tenant_id"],
            ["gateways.id", "gateways.tenant_id"],
            name=op.f("fk_dr_participations_gateway_id_tenant_id_gateways"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dr_participations")),
        sa.UniqueConstraint(
            "event_id", "site_id", name=op.f("uq_dr_participations_event_id_site_id")
        ),
        sa.UniqueConstraint("opt_out_token", name=op.f("uq_dr_participations_opt_out_token")),
    )
    op.create_index(
        op.f("ix_dr_participations_gateway_id_event_id"),
        "dr_participations",
        ["gateway_id", "event_id"],
    )
    op.create_index(op.f("ix_dr_participations_state"), "dr_participations", ["state"])
    op.create_table(
        "dr_opt_outs",
        sa.Column("participation_id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("by", sa.String(64), nullable=True),
        _one_of("dr_opt_outs", "via", OPT_OUT_VIA),
        sa.ForeignKeyConstraint(
            ["participation_id"],
            ["dr_participations.id"],
            name=op.f("fk_dr_opt_outs_participation_id_dr_participations"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["dr_events.id"], name=op.f("fk_dr_opt_outs_event_id_dr_events")
        ),
        sa.PrimaryKeyConstraint("participation_id", name=op.f("pk_dr_opt_outs")),
    )
    op.create_index(op.f("ix_dr_opt_outs_event_id"), "dr_opt_outs", ["event_id"])


def downgrade() -> None:
    op.drop_table("dr_opt_outs")
    op.drop_table("dr_participations")
    op.drop_table("dr_events")
    op.drop_table("dr_rules")
