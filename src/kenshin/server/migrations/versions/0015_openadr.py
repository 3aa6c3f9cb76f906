"""openadr_clients, openadr_tokens, openadr_objects: the OpenADR 3 VTN's clients, their
bearer tokens and its objects (issue 20, the openadr room).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

# As the room's tables.py at this revision (a migration keeps its own copy).
CLIENT_ROLES = ("bl", "ven")
OBJECT_TYPES = ("PROGRAM", "EVENT", "REPORT", "SUBSCRIPTION", "VEN", "RESOURCE")


def _one_of(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{column}"))


def upgrade() -> None:
    op.create_table(
        "openadr_clients",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        _one_of("openadr_clients", "role", CLIENT_ROLES),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_openadr_clients_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_openadr_clients")),
        sa.UniqueConstraint("client_id", name=op.f("uq_openadr_clients_client_id")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_openadr_clients_tenant_id_name")),
    )
    op.create_table(
        "openadr_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("client", ID, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["client"],
            ["openadr_clients.id"],
            name=op.f("fk_openadr_tokens_client_openadr_clients"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_openadr_tokens")),
    )
    op.create_index(
        op.f("ix_openadr_tokens_client_expires_at"), "openadr_tokens", ["client", "expires_at"]
    )
    op.create_table(
        "openadr_objects",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("object_type", sa.String(16), nullable=False),
        sa.Column("program_id", ID, nullable=True),
        sa.Column("parent_id", ID, nullable=True),
        sa.Column("owner", ID, nullable=True),
        sa.Column("name", sa.String(128), nullable=True),
        sa.Column("body", JSON_DOC, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("modified_at", TS, nullable=False),
        _one_of("openadr_objects", "object_type", OBJECT_TYPES),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_openadr_objects_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["owner"], ["openadr_clients.id"], name=op.f("fk_openadr_objects_owner_openadr_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_openadr_objects")),
    )
    op.create_index(
        op.f("ix_openadr_objects_tenant_id_object_type_id"),
        "openadr_objects",
        ["tenant_id", "object_type", "id"],
    )
    op.create_index(
        op.f("ix_openadr_objects_tenant_id_program_id"),
        "openadr_objects",
        ["tenant_id", "program_id"],
    )


def downgrade() -> None:
    op.drop_table("openadr_objects")
    op.drop_table("openadr_tokens")
    op.drop_table("openadr_clients")
