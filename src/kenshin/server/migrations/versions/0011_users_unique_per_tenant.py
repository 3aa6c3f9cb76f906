"""users.email unique per tenant (and among platform administrators), not platform-wide:
a tenant's admin adding a user learned whether the address had an account in another
tenant (409 "already in use"). Login looks the address up by its own index.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_PLATFORM = sa.text("tenant_id IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_email", type_="unique")
    op.create_index("ix_users_email", "users", ["email"])
    op.create_index("uq_users_tenant_id_email", "users", ["tenant_id", "email"], unique=True)
    op.create_index(
        "uq_users_platform_email",
        "users",
        ["email"],
        unique=True,
        postgresql_where=_PLATFORM,
        sqlite_where=_PLATFORM,
    )


def downgrade() -> None:
    # Fails if an address now has accounts in two tenants: merge or rename them first.
    op.drop_index("uq_users_platform_email", table_name="users")
    op.drop_index("uq_users_tenant_id_email", table_name="users")
    op.drop_index("ix_users_email", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.create_unique_constraint("uq_users_email", ["email"])
