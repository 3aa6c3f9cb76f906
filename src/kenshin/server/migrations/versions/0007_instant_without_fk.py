"""readings_instant without its foreign key to meters: the per-row check tripled the cost
of a COPY, and the ingest writes only for meters it has just looked up.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FK = "fk_readings_instant_meter_id_meters"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # the partitioned table and its partitions
        op.execute(f'ALTER TABLE readings_instant DROP CONSTRAINT IF EXISTS "{FK}"')
        return
    with op.batch_alter_table("readings_instant") as batch_op:
        batch_op.drop_constraint(FK, type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f'ALTER TABLE readings_instant ADD CONSTRAINT "{FK}" '
            "FOREIGN KEY (meter_id) REFERENCES meters (id)"
        )
        return
    with op.batch_alter_table("readings_instant") as batch_op:
        batch_op.create_foreign_key(FK, "meters", ["meter_id"], ["id"])
