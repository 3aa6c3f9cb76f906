"""Logging in and out of the web session, and who am I."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select, update

from .. import accounts
from .. import schema as s
from ..deps import SESSION_COOKIE, Conn, CurrentPrincipal, get_settings
from ..problems import Problem
from ..security import dummy_password_hash, hash_password, password_needs_rehash, verify_password
from ..settings import Settings
from .models import Role, TenantOut, UserOut

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginRequest(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class Me(BaseModel):
    kind: Literal["user", "api_key"]
    id: int
    name: str  # the user's email or the API key's name
    role: Role
    tenant: TenantOut | None  # None: a platform administrator


@router.post("/login", summary="Log in: sets the session cookie")
def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    conn: Conn,
    settings: Annotated[Settings, Depends(get_settings)],
) -> UserOut:
    email = accounts.normalize_email(body.email)
    user = conn.execute(select(s.users).where(s.users.c.email == email)).one_or_none()
    # Verify even for an unknown email, so the answer takes as long either way.
    ok = verify_password(body.password, user.password_hash if user else dummy_password_hash())
    if user is None or not ok or user.disabled:
        why = "unknown email" if user is None else "disabled" if ok else "wrong password"
        # Its own transaction: the request's is rolled back with the 401.
        with request.app.state.engine.begin() as own:
            accounts.audit(
                own, "anonymous", "auth.login_failed", target=user and f"user:{user.id}",
                tenant_id=user and user.tenant_id, detail={"email": email, "reason": why},
            )  # fmt: skip
        raise Problem(401, "wrong email or password")
    if password_needs_rehash(user.password_hash):
        conn.execute(
            update(s.users)
            .where(s.users.c.id == user.id)
            .values(password_hash=hash_password(body.password))
        )
    if old := request.cookies.get(SESSION_COOKIE):
        accounts.end_session(conn, old)
    lifetime = timedelta(hours=settings.session_hours)
    token = accounts.start_session(conn, user.id, lifetime)
    accounts.audit(
        conn, f"user:{user.id}", "auth.login", target=f"user:{user.id}", tenant_id=user.tenant_id
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.session_cookie_secure,
    )
    return UserOut.model_validate(user)


@router.post("/logout", status_code=204, summary="Log out: ends the session")
def logout(request: Request, conn: Conn) -> Response:
    if token := request.cookies.get(SESSION_COOKIE):
        accounts.end_session(conn, token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


@router.get("/me", summary="Who is asking")
def me(principal: CurrentPrincipal, conn: Conn) -> Me:
    tenant = None
    if principal.tenant_id is not None:
        tenant = TenantOut.model_validate(accounts.get_tenant(conn, principal.tenant_id))
    return Me(
        kind=principal.kind,
        id=principal.id,
        name=principal.name,
        role=principal.role,
        tenant=tenant,
    )
