"""Setting up a server by hand or from code: the first administrator, tenants, users.

For the demo, tests and the `kenshin server create-admin` command; each call is one
transaction on the given engine (the schema must exist: see `kenshin.server.db.migrate`).
"""

from __future__ import annotations

from sqlalchemy import Engine, select, update

from . import accounts
from . import schema as s
from .security import hash_password, verify_password

__all__ = ["AlreadyExists", "create_tenant", "create_user", "ensure_admin"]

AlreadyExists = accounts.AlreadyExists


def ensure_admin(engine: Engine, email: str, password: str) -> tuple[int, bool]:
    """Make `email` a platform administrator with `password`: (user id, created?).

    Idempotent: an existing platform administrator keeps its sessions if nothing changes,
    or else gets the new password, is enabled again and logged out everywhere. An existing
    *tenant* user with that email is refused (ValueError), so that nobody is promoted to
    run the whole platform by accident.
    """
    email = accounts.normalize_email(email)
    with engine.begin() as conn:
        # The platform administrator of that address first; else any tenant's user of it.
        user = conn.execute(
            select(s.users)
            .where(s.users.c.email == email)
            .order_by(s.users.c.tenant_id.is_not(None), s.users.c.id)
            .limit(1)
        ).one_or_none()
        if user is None:
            row = accounts.insert_user(
                conn, tenant_id=None, email=email, password=password, role="admin"
            )
            accounts.audit(
                conn,
                "system",
                "user.create",
                target=f"user:{row.id}",
                detail={"email": email, "role": "admin", "platform": True},
            )
            return row.id, True
        if user.tenant_id is not None:
            raise ValueError(f"{email} is a user of tenant {user.tenant_id}, not a platform admin")
        unchanged = user.role == "admin" and not user.disabled
        if unchanged and verify_password(password, user.password_hash):
            return user.id, False  # as asked already: keep its sessions
        conn.execute(
            update(s.users)
            .where(s.users.c.id == user.id)
            .values(password_hash=hash_password(password), role="admin", disabled=False)
        )
        accounts.end_user_sessions(conn, user.id)
        accounts.audit(
            conn,
            "system",
            "user.update",
            target=f"user:{user.id}",
            detail={"password": "reset", "disabled": False},
        )
        return user.id, False


def create_tenant(
    engine: Engine,
    name: str,
    kind: str = "retailer",
    *,
    admin_email: str | None = None,
    admin_password: str | None = None,
) -> int:
    """A new tenant (and, if both are given, its first administrator); returns its id.

    Raises `AlreadyExists` for a taken tenant name or admin email (nothing is created).
    """
    if (admin_email is None) != (admin_password is None):
        raise ValueError("give both admin_email and admin_password, or neither")
    with engine.begin() as conn:
        tenant = accounts.insert_tenant(conn, name, kind)
        accounts.audit(
            conn,
            "system",
            "tenant.create",
            target=f"tenant:{tenant.id}",
            tenant_id=tenant.id,
            detail={"name": name, "kind": kind},
        )
        if admin_email is not None and admin_password is not None:
            user = accounts.insert_user(
                conn, tenant_id=tenant.id, email=admin_email, password=admin_password, role="admin"
            )
            accounts.audit(
                conn,
                "system",
                "user.create",
                target=f"user:{user.id}",
                tenant_id=tenant.id,
                detail={"email": user.email, "role": "admin"},
            )
        return tenant.id


def create_user(
    engine: Engine, tenant_id: int, email: str, password: str, role: str = "viewer"
) -> int:
    """A new user of `tenant_id`; returns its id. Raises `AlreadyExists` for a taken email."""
    with engine.begin() as conn:
        user = accounts.insert_user(
            conn, tenant_id=tenant_id, email=email, password=password, role=role
        )
        accounts.audit(
            conn,
            "system",
            "user.create",
            target=f"user:{user.id}",
            tenant_id=tenant_id,
            detail={"email": user.email, "role": role},
        )
        return user.id
