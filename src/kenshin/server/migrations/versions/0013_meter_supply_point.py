"""meters.supply_point: the 22-digit supply point number (供給地点特定番号) a retailer
settles on, unique within a tenant, digits only.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# As schema.SUPPLY_POINT_CHECK at this revision (a migration keeps its own copy).
_CHECK = (
    "supply_point IS NULL OR (length(supply_point) = 22 AND ltrim(supply_point, '0123456789') = '')"
)


def upgrade() -> None:
    with op.batch_alter_table("meters") as batch:
        batch.add_column(sa.Column("supply_point", sa.String(22), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_meters_tenant_id_supply_point"), ["tenant_id", "supply_point"]
        )
        batch.create_check_constraint(op.f("ck_meters_supply_point_format"), _CHECK)


def downgrade() -> None:
    with op.batch_alter_table("meters") as batch:
        batch.drop_constraint(op.f("ck_meters_supply_point_format"), type_="check")
        batch.drop_constraint(op.f("uq_meters_tenant_id_supply_point"), type_="unique")
        batch.drop_column("supply_point")
