"""Meters get their own columns for the UDP port and the Wi-SUN dongle's device path.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Adding nullable columns needs no table rebuild on SQLite, so plain ADD COLUMN suffices.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("meters", sa.Column("udp_port", sa.Integer(), nullable=True))
    op.add_column("meters", sa.Column("device", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("meters") as batch:
        batch.drop_column("device")
        batch.drop_column("udp_port")
