"""rollouts, rollout_gateways: staged rollouts of a gateway release and each gateway's
update state (issue 19, the rollouts room).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

# As the room's tables.py at this revision (a migration keeps its own copy).
ROLLOUT_STATES = ("running", "paused", "halted", "aborted", "done")
UPDATE_STATES = ("pending", "downloading", "installed", "healthy", "failed", "rolled_back")


def _one_of(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{column}"))


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("cohort", JSON_DOC, nullable=False),
        sa.Column("stages", JSON_DOC, nullable=False),
        sa.Column("stage", sa.Integer(), server_default="0", nullable=False),
        sa.Column("stage_started_at", TS, nullable=False),
        sa.Column("failure_threshold_pct", sa.Integer(), nullable=False),
        sa.Column("soak_s", sa.Integer(), nullable=True),
        sa.Column("window_s", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), server_default="running", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        _one_of("rollouts", "state", ROLLOUT_STATES),
        sa.CheckConstraint(
            "failure_threshold_pct BETWEEN 0 AND 100", name=op.f("ck_rollouts_threshold_range")
        ),
        sa.CheckConstraint("window_s BETWEEN 0 AND 86400", name=op.f("ck_rollouts_window_range")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_rollouts_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    op.create_index(
        op.f("ix_rollouts_tenant_id_created_at"), "rollouts", ["tenant_id", "created_at"]
    )
    op.create_index(op.f("ix_rollouts_state"), "rollouts", ["state"])
    op.create_table(
        "rollout_gateways",
        sa.Column("rollout_id", ID, nullable=False),
        sa.Column("gateway_id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), server_default="pending", nullable=False),
        sa.Column("delay_s", sa.Integer(), nullable=False),
        sa.Column("command_id", ID, nullable=True),
        sa.Column("asked_at", TS, nullable=True),
        sa.Column("state_at", TS, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("from_version", sa.String(64), nullable=True),
        _one_of("rollout_gateways", "state", UPDATE_STATES),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollouts.id"], name=op.f("fk_rollout_gateways_rollout_id_rollouts")
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id", "tenant_id"],
            ["gateways.id", "gateways.tenant_id"],
            name=op.f("fk_rollout_gateways_gateway_id_tenant_id_gateways"),
        ),
        sa.PrimaryKeyConstraint("rollout_id", "gateway_id", name=op.f("pk_rollout_gateways")),
    )
    op.create_index(
        op.f("ix_rollout_gateways_gateway_id_state"), "rollout_gateways", ["gateway_id", "state"]
    )
    op.create_index(
        op.f("ix_rollout_gateways_rollout_id_stage_state"),
        "rollout_gateways",
        ["rollout_id", "stage", "state"],
    )


def downgrade() -> None:
    op.drop_table("rollout_gateways")
    op.drop_table("rollouts")
