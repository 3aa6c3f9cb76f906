"""OpenADR clients and their OAuth2 client-credentials tokens.

A client is made by a tenant's admin (`/api/v1/openadr/clients`) with a role: ``bl``
(business logic) or ``ven``. Its `client_id` is public; its secret is shown once and kept
as a hex SHA-256, as API keys are (`security.py`): the secret is 256 random bits, not a
human's password, so a fast hash leaves nothing to brute-force. `POST .../auth/token`
trades them for a bearer token, kept hashed too, valid `TOKEN_TTL_S` seconds.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, delete, insert, select, update

from .. import schema_base
from ..security import hash_token
from .tables import openadr_clients, openadr_tokens

__all__ = [
    "TOKEN_TTL_S",
    "Client",
    "NewClient",
    "create_client",
    "find_client",
    "issue_token",
    "list_clients",
    "revoke_client",
]

TOKEN_TTL_S = 3600
SECRET_PREFIX = "oas_"
TOKEN_PREFIX = "oat_"
# Compared with when the client_id is unknown, so both answers take the same time.
_NO_SECRET = hash_token("no such client")


@dataclass(frozen=True)
class Client:
    """Who asks the VTN: a tenant's OpenADR client."""

    id: int
    tenant_id: int
    role: str  # "bl" | "ven"
    name: str


@dataclass(frozen=True)
class NewClient:
    id: int
    client_id: str
    client_secret: str  # shown once


def create_client(conn: Connection, tenant_id: int, role: str, name: str, actor: str) -> NewClient:
    client_id = f"oac_{secrets.token_urlsafe(16)}"
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    row_id = conn.execute(
        insert(openadr_clients)
        .values(tenant_id=tenant_id, client_id=client_id, secret_hash=hash_token(secret),
                role=role, name=name, created_by=actor, created_at=schema_base.utcnow())
        .returning(openadr_clients.c.id)
    ).scalar_one()  # fmt: skip
    return NewClient(row_id, client_id, secret)


def list_clients(conn: Connection, tenant_id: int) -> list:
    c = openadr_clients.c
    return list(
        conn.execute(
            select(c.id, c.client_id, c.role, c.name, c.created_by, c.created_at, c.revoked_at)
            .where(c.tenant_id == tenant_id)
            .order_by(c.id)
        )
    )


def revoke_client(conn: Connection, tenant_id: int, row_id: int) -> bool:
    """Revoke the client and end its tokens at once; False: no such client here."""
    c = openadr_clients.c
    done = conn.execute(
        update(openadr_clients)
        .where(c.id == row_id, c.tenant_id == tenant_id, c.revoked_at.is_(None))
        .values(revoked_at=schema_base.utcnow())
    ).rowcount
    conn.execute(delete(openadr_tokens).where(openadr_tokens.c.client == row_id))
    return (
        bool(done)
        or conn.execute(select(c.id).where(c.id == row_id, c.tenant_id == tenant_id)).first()
        is not None
    )


def issue_token(conn: Connection, client_id: str, secret: str) -> tuple[str, Client] | None:
    """A new bearer token for the client, or None: unknown, revoked or a wrong secret."""
    c = openadr_clients.c
    row = conn.execute(
        select(c.id, c.tenant_id, c.role, c.name, c.secret_hash).where(
            c.client_id == client_id, c.revoked_at.is_(None)
        )
    ).first()
    expected = row.secret_hash if row is not None else _NO_SECRET
    if not hmac.compare_digest(expected, hash_token(secret)) or row is None:
        return None
    now = schema_base.utcnow()
    t = openadr_tokens.c
    conn.execute(delete(openadr_tokens).where(t.client == row.id, t.expires_at <= now))
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        insert(openadr_tokens).values(
            token_hash=hash_token(token),
            client=row.id,
            expires_at=now + timedelta(seconds=TOKEN_TTL_S),
        )
    )
    return token, Client(row.id, row.tenant_id, row.role, row.name)


def find_client(conn: Connection, token: str) -> Client | None:
    """The client of a bearer token that has not expired, nor been revoked."""
    c, t = openadr_clients.c, openadr_tokens.c
    row = conn.execute(
        select(c.id, c.tenant_id, c.role, c.name)
        .select_from(openadr_tokens.join(openadr_clients, t.client == c.id))
        .where(
            t.token_hash == hash_token(token),
            t.expires_at > schema_base.utcnow(),
            c.revoked_at.is_(None),
        )
    ).first()
    return None if row is None else Client(row.id, row.tenant_id, row.role, row.name)
