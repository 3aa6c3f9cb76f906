"""Per-meter 30-minute slot energy, derived from the fixed-time register values.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "slot_energy",
        sa.Column("meter_id", ID, nullable=False),
        sa.Column("slot_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("direction", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("milliwatt_hours", sa.BigInteger(), nullable=True),
        sa.Column("wh", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_slot_energy_meter_id_meters")
        ),
        sa.PrimaryKeyConstraint("meter_id", "slot_start", "direction", name=op.f("pk_slot_energy")),
        sa.CheckConstraint(
            "status IN ('measured', 'refilled', 'missing')", name=op.f("ck_slot_energy_status")
        ),
        sa.CheckConstraint("direction IN (0, 1)", name=op.f("ck_slot_energy_direction")),
    )


def downgrade() -> None:
    op.drop_table("slot_energy")
