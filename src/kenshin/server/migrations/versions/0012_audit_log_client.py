"""audit_log: where each entry came from (client address, request id), and indexes for
reading it by actor and for the retention job's cut by time.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("client", sa.String(64), nullable=True))
    op.add_column("audit_log", sa.Column("request_id", sa.String(128), nullable=True))
    op.create_index(
        op.f("ix_audit_log_tenant_id_actor_at"), "audit_log", ["tenant_id", "actor", "at"]
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_tenant_id_actor_at"), table_name="audit_log")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("request_id")
        batch.drop_column("client")
