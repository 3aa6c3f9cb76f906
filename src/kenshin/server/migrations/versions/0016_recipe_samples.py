"""recipe_samples: the series that recipes on the gateways measure (issue 19 point 5,
e.g. a PV inverter's generation), one row per gateway, series and time, in the metering
room.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "recipe_samples",
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("gateway_id", ID, nullable=False),
        sa.Column("series", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("recipe", sa.String(128), nullable=False),
        sa.Column("values", JSON_DOC, nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id", "tenant_id"],
            ["gateways.id", "gateways.tenant_id"],
            name=op.f("fk_recipe_samples_gateway_id_tenant_id_gateways"),
        ),
        sa.PrimaryKeyConstraint("gateway_id", "series", "at", name=op.f("pk_recipe_samples")),
    )
    op.create_index(op.f("ix_recipe_samples_tenant_id_at"), "recipe_samples", ["tenant_id", "at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_recipe_samples_tenant_id_at"), table_name="recipe_samples")
    op.drop_table("recipe_samples")
