"""Tenants, users, sessions, API keys and the audit log: the queries the routers and the
bootstrap share. Every function takes an open `Connection` and leaves the transaction to
the caller; tenant-owned rows are always looked up together with their tenant.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from . import logs
from . import schema as s
from .chunked import delete_before
from .security import NewApiKey, generate_api_key, hash_password, hash_token, new_session_token

__all__ = [
    "AlreadyExists",
    "audit",
    "count_enabled_admins",
    "end_session",
    "end_user_sessions",
    "find_api_key",
    "find_session_user",
    "get_tenant",
    "get_user",
    "hash_outside_transaction",
    "insert_api_key",
    "insert_tenant",
    "insert_user",
    "last_audited",
    "normalize_email",
    "start_session",
    "tenant_retentions",
    "touch_api_key",
    "touch_session",
    "trim_audit_log",
]


class AlreadyExists(Exception):
    """A unique name (tenant name, email) is taken; roll the transaction back."""


def normalize_email(email: str) -> str:
    return email.strip().lower()


def audit(
    conn: Connection,
    actor: str,
    action: str,
    *,
    target: str | None = None,
    tenant_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """The one way to write the audit log: `actor` (``user:3``, ``api_key:7``, ``system``
    or ``anonymous``) did `action` (``user.create``...) to `target` (``user:12``...) in
    tenant `tenant_id` (None: the platform's). When and from where (the client's address
    and the request's id, from the request's context: `logs`) are added here. It is part
    of the caller's transaction: what is rolled back was not done, and is not logged."""
    conn.execute(
        insert(s.audit_log).values(
            tenant_id=tenant_id,
            actor=actor,
            action=action,
            target=target,
            detail=detail,
            client=(logs.client_address.get() or "")[:64] or None,
            request_id=logs.request_id.get(),
        )
    )


def last_audited(
    conn: Connection, tenant_id: int, action: str, targets: Iterable[str]
) -> dict[str, datetime]:
    """target -> when `action` was last done to it in the tenant, from the audit log (a
    target without an entry, or whose entries the retention removed, is not in it)."""
    a = s.audit_log.c
    rows = conn.execute(
        select(a.target, func.max(a.at))
        .where(a.tenant_id == tenant_id, a.action == action, a.target.in_(list(targets)))
        .group_by(a.target)
    )
    return dict(rows.all())


def trim_audit_log(engine: Engine, cutoff: datetime, *, dry_run: bool = False) -> int:
    """Delete the audit log's entries older than `cutoff`, every tenant's and the
    platform's (the retention job); returns how many (`dry_run`: would)."""
    return delete_before(engine, s.audit_log, "at", cutoff, dry_run=dry_run)


def tenant_retentions(conn: Connection) -> list[Row]:
    """Every tenant's id and how long its data is kept (`instant_retention_days`,
    `energy_retention_days`; NULL: forever), for the metering room's retention."""
    t = s.tenants.c
    return conn.execute(
        select(t.id, t.instant_retention_days, t.energy_retention_days).order_by(t.id)
    ).all()


def _insert(conn: Connection, table, what: str, **values: Any) -> Row:
    # No savepoint: pysqlite's transaction handling makes SAVEPOINT unsafe on SQLite. After
    # AlreadyExists the caller rolls back (on PostgreSQL the transaction is spent anyway).
    try:
        return _insert_row(conn, table, **values)
    except IntegrityError as err:
        raise AlreadyExists(what) from err


def _insert_row(conn: Connection, table, **values: Any) -> Row:
    # Not RETURNING: SQLite before 3.35 (still shipped by some distributions) lacks it.
    key = conn.execute(insert(table).values(**values)).inserted_primary_key
    return conn.execute(select(table).where(table.c.id == key[0])).one()


# ---------------------------------------------------------------- tenants


def insert_tenant(conn: Connection, name: str, kind: str) -> Row:
    if kind not in s.TENANT_KINDS:
        raise ValueError(f"tenant kind must be one of {', '.join(s.TENANT_KINDS)}")
    return _insert(conn, s.tenants, f"a tenant named {name!r} exists", name=name, kind=kind)


def get_tenant(conn: Connection, tenant_id: int) -> Row | None:
    return conn.execute(select(s.tenants).where(s.tenants.c.id == tenant_id)).one_or_none()


# ---------------------------------------------------------------- users


def insert_user(
    conn: Connection,
    *,
    tenant_id: int | None,
    email: str,
    password: str | None = None,
    role: str,
    password_hash: str | None = None,
) -> Row:
    """A new user with `password`, or with its `password_hash` made beforehand (outside
    the transaction: see `hash_outside_transaction`)."""
    if (password is None) == (password_hash is None):
        raise ValueError("give the password or its hash")
    if role not in s.ROLES:
        raise ValueError(f"role must be one of {', '.join(s.ROLES)}")
    return _insert(
        conn,
        s.users,
        "this tenant has a user with that e-mail address"
        if tenant_id is not None
        else "a platform administrator has that e-mail address",
        tenant_id=tenant_id,
        email=normalize_email(email),
        password_hash=password_hash or hash_password(password or ""),
        role=role,
    )


def hash_outside_transaction(conn: Any, password: str) -> str:
    """`password`'s hash, made with no transaction open and no connection held: a
    request's connection (`deps.Conn`) that has begun one (looking up a session, say)
    commits it and goes back to the pool first; the next statement takes another. scrypt
    takes ~32 MiB and ~0.1 s, too long to hold a connection, locks or a snapshot."""
    release = getattr(conn, "release", None)
    if release is not None:
        release()
    return hash_password(password)


def get_user(conn: Connection, user_id: int, tenant_id: int) -> Row | None:
    """The user, if it belongs to `tenant_id`."""
    return conn.execute(
        select(s.users).where(s.users.c.id == user_id, s.users.c.tenant_id == tenant_id)
    ).one_or_none()


def count_enabled_admins(conn: Connection, tenant_id: int) -> int:
    return conn.execute(
        select(func.count())
        .select_from(s.users)
        .where(
            s.users.c.tenant_id == tenant_id,
            s.users.c.role == "admin",
            s.users.c.disabled.is_(False),
        )
    ).scalar_one()


# ---------------------------------------------------------------- sessions


def start_session(conn: Connection, user_id: int, lifetime: timedelta) -> str:
    """A new session for `user_id`; returns the cookie's token (only its hash is stored)."""
    now = s.utcnow()
    conn.execute(
        delete(s.user_sessions).where(
            s.user_sessions.c.user_id == user_id, s.user_sessions.c.expires_at <= now
        )
    )
    token, token_hash = new_session_token()
    conn.execute(
        insert(s.user_sessions).values(
            id=token_hash, user_id=user_id, created_at=now, expires_at=now + lifetime
        )
    )
    return token


def find_session_user(conn: Connection, token: str, now: datetime) -> Row | None:
    """(session id, last_seen_at, user columns...) for a live session of an enabled user."""
    return conn.execute(
        select(
            s.user_sessions.c.id.label("session_id"),
            s.user_sessions.c.last_seen_at,
            s.users.c.id,
            s.users.c.tenant_id,
            s.users.c.email,
            s.users.c.role,
        )
        .join(s.users, s.users.c.id == s.user_sessions.c.user_id)
        .where(
            s.user_sessions.c.id == hash_token(token),
            s.user_sessions.c.expires_at > now,
            s.users.c.disabled.is_(False),
        )
    ).one_or_none()


def end_session(conn: Connection, token: str) -> bool:
    result = conn.execute(delete(s.user_sessions).where(s.user_sessions.c.id == hash_token(token)))
    return result.rowcount > 0


def end_user_sessions(conn: Connection, user_id: int) -> None:
    conn.execute(delete(s.user_sessions).where(s.user_sessions.c.user_id == user_id))


def touch_session(conn: Connection, session_id: str, now: datetime) -> None:
    conn.execute(
        update(s.user_sessions).where(s.user_sessions.c.id == session_id).values(last_seen_at=now)
    )


# ---------------------------------------------------------------- API keys


def insert_api_key(conn: Connection, tenant_id: int, name: str, role: str) -> tuple[Row, str]:
    """A new key row and the full key (to show once)."""
    if role not in s.API_KEY_ROLES:
        raise ValueError(f"role must be one of {', '.join(s.API_KEY_ROLES)}")
    new: NewApiKey = generate_api_key()
    row = _insert_row(
        conn,
        s.api_keys,
        tenant_id=tenant_id,
        name=name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        role=role,
    )
    return row, new.key


def find_api_key(conn: Connection, key: str) -> Row | None:
    """The live (not revoked) key row for a presented key."""
    return conn.execute(
        select(s.api_keys).where(
            and_(s.api_keys.c.key_hash == hash_token(key), s.api_keys.c.revoked_at.is_(None))
        )
    ).one_or_none()


def touch_api_key(conn: Connection, key_id: int, now: datetime) -> None:
    conn.execute(update(s.api_keys).where(s.api_keys.c.id == key_id).values(last_used_at=now))
