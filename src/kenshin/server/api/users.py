"""A tenant's users. Tenant administrators only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import select, update

from .. import accounts, listing
from .. import schema as s
from ..deps import Conn, Principal, RowId, TenantId, require_role
from ..problems import Problem
from ..ratelimits import RATE_LIMITED
from .models import Email, Password, Role, UserOut

router = APIRouter(prefix="/users", tags=["users"])
Admin = Annotated[Principal, Depends(require_role("admin"))]


class UserCreate(BaseModel):
    email: Email
    password: Password
    role: Role = "viewer"


class UserUpdate(BaseModel):
    """Only the fields given change."""

    role: Role | None = None
    disabled: bool | None = None
    password: Password | None = None


def _user_or_404(conn: Conn, user_id: RowId, tenant_id: RowId):
    row = accounts.get_user(conn, user_id, tenant_id)
    if row is None:
        raise Problem(404, "no such user")
    return row


@router.post("", status_code=201, summary="Add a user to the tenant")
def create_user(body: UserCreate, conn: Conn, principal: Admin, tenant_id: TenantId) -> UserOut:
    password_hash = accounts.hash_outside_transaction(conn, body.password)
    try:
        row = accounts.insert_user(
            conn, tenant_id=tenant_id, email=body.email, password_hash=password_hash, role=body.role
        )
    except accounts.AlreadyExists as err:
        raise Problem(409, str(err)) from None
    accounts.audit(
        conn,
        principal.actor,
        "user.create",
        target=f"user:{row.id}",
        tenant_id=tenant_id,
        detail={"email": row.email, "role": row.role},
    )
    return UserOut.model_validate(row)


@router.get("", summary="List the tenant's users")
def list_users(conn: Conn, _: Admin, tenant_id: TenantId) -> listing.Page[UserOut]:
    rows = conn.execute(
        select(s.users).where(s.users.c.tenant_id == tenant_id).order_by(s.users.c.id)
    ).all()
    return listing.one_page([UserOut.model_validate(r) for r in rows])


@router.get("/{user_id}", summary="One user")
def get_user(user_id: RowId, conn: Conn, _: Admin, tenant_id: TenantId) -> UserOut:
    return UserOut.model_validate(_user_or_404(conn, user_id, tenant_id))


@router.patch(
    "/{user_id}",
    summary="Change a user's role, disable or enable, reset password",
    responses=RATE_LIMITED,
)
def update_user(
    user_id: RowId,
    body: UserUpdate,
    conn: Conn,
    principal: Admin,
    tenant_id: TenantId,
    request: Request,
) -> UserOut:
    new_hash = None
    if body.password is not None:
        request.app.state.rate_limits.password_reset(request, user_id)
        new_hash = accounts.hash_outside_transaction(conn, body.password)
    user = _user_or_404(conn, user_id, tenant_id)
    changes: dict[str, object] = {}
    if body.role is not None and body.role != user.role:
        changes["role"] = body.role
    if body.disabled is not None and body.disabled != user.disabled:
        changes["disabled"] = body.disabled
    was_active_admin = user.role == "admin" and not user.disabled
    new_role = changes.get("role", user.role)
    new_disabled = changes.get("disabled", user.disabled)
    stays_active_admin = new_role == "admin" and not new_disabled
    loses_admin = was_active_admin and not stays_active_admin
    if loses_admin and accounts.count_enabled_admins(conn, tenant_id) <= 1:
        raise Problem(409, "the tenant's last enabled administrator stays one")
    audit_detail = dict(changes)
    if new_hash is not None:
        changes["password_hash"] = new_hash
        audit_detail["password"] = "reset"
    if not changes:
        return UserOut.model_validate(user)
    conn.execute(update(s.users).where(s.users.c.id == user.id).values(**changes))
    if changes.get("disabled") or "password_hash" in changes:
        accounts.end_user_sessions(conn, user.id)
    accounts.audit(
        conn,
        principal.actor,
        "user.update",
        target=f"user:{user.id}",
        tenant_id=tenant_id,
        detail=audit_detail,
    )
    return UserOut.model_validate(_user_or_404(conn, user_id, tenant_id))
