"""On PostgreSQL, the readings, slot energy and energy rollups become range-partitioned by
month, each with a DEFAULT partition (kenshin.server.metering.partitions makes the months).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

Each table is rebuilt: renamed aside, made again as a partitioned table with the same
columns, constraint names and defaults, its rows copied in, the old one dropped. On
SQLite nothing changes (SQLite has no partitions).
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# table → (partition column, primary key columns, foreign key to meters)
TABLES = {
    "readings_instant": ("at", "meter_id, at"),
    "readings_fixed": ("slot_start", "meter_id, slot_start, direction"),
    "slot_energy": ("slot_start", "meter_id, slot_start, direction"),
    "meter_energy": ("start", "meter_id, period, direction, start"),
}


def _rebuild(table: str, primary_key: str, partition_by: str | None) -> None:
    op.execute(f'ALTER TABLE "{table}" RENAME TO "{table}_old"')
    op.execute(f'ALTER INDEX "pk_{table}" RENAME TO "pk_{table}_old"')
    fk = f"fk_{table}_meter_id_meters"
    op.execute(f'ALTER TABLE "{table}_old" RENAME CONSTRAINT "{fk}" TO "fk_{table}_old"')
    layout = f"PARTITION BY RANGE ({partition_by})" if partition_by else ""
    like = f'LIKE "{table}_old" INCLUDING DEFAULTS INCLUDING CONSTRAINTS'
    op.execute(f'CREATE TABLE "{table}" ({like}) {layout}')
    op.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "pk_{table}" PRIMARY KEY ({primary_key})')
    op.execute(
        f'ALTER TABLE "{table}" ADD CONSTRAINT "fk_{table}_meter_id_meters" '
        "FOREIGN KEY (meter_id) REFERENCES meters (id)"
    )
    if partition_by:
        op.execute(f'CREATE TABLE "{table}_default" PARTITION OF "{table}" DEFAULT')
    op.execute(f'INSERT INTO "{table}" SELECT * FROM "{table}_old"')
    op.execute(f'DROP TABLE "{table}_old"')


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, (column, primary_key) in TABLES.items():
        _rebuild(table, primary_key, column)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, (_, primary_key) in TABLES.items():
        _rebuild(table, primary_key, None)
