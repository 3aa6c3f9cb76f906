"""meter_repair: what the server asked gateways to send again, per meter.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meter_repair",
        sa.Column("meter_id", ID, autoincrement=False, nullable=False),
        sa.Column("complete_through", TIME, nullable=True),
        sa.Column("command_id", ID, nullable=True),
        sa.Column("missing_from", TIME, nullable=True),
        sa.Column("missing_to", TIME, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_try_at", TIME, nullable=True),
        sa.Column("rescanned_at", TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_meter_repair_meter_id_meters")
        ),
        sa.PrimaryKeyConstraint("meter_id", name=op.f("pk_meter_repair")),
    )


def downgrade() -> None:
    op.drop_table("meter_repair")
