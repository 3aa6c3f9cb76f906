"""Logging in and out of the web session, and who am I."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import Connection, Row, select, update
from starlette.concurrency import run_in_threadpool

from .. import accounts
from .. import schema as s
from ..csrf import CSRF_HEADER, cookie_secure, session_csrf_token
from ..deps import SESSION_COOKIE, Conn, CurrentPrincipal, get_settings, in_transaction
from ..problems import Problem
from ..ratelimits import RATE_LIMITED
from ..security import dummy_password_hash, hash_password, password_needs_rehash, verify_password
from ..settings import Settings
from .models import Role, TenantOut, UserOut

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginRequest(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    tenant: str | None = Field(
        None,
        max_length=200,
        description="the tenant's name: needed only when this address and password open "
        "accounts in several tenants (the answer is then a 401 with tenant_required)",
    )


class Me(BaseModel):
    kind: Literal["user", "api_key"]
    id: int
    name: str  # the user's email or the API key's name
    role: Role
    tenant: TenantOut | None  # None: a platform administrator


def _candidates(conn: Connection, email: str, tenant: str | None) -> list[Row]:
    """Every account of `email` (in `tenant`, by name, if given): one address may have
    one in each tenant, and one as a platform administrator."""
    query = select(s.users).where(s.users.c.email == email).order_by(s.users.c.id)
    if tenant is not None:
        query = query.join(s.tenants, s.tenants.c.id == s.users.c.tenant_id).where(
            s.tenants.c.name == tenant
        )
    return list(conn.execute(query).all())


def _matching(password: str, users: list[Row]) -> list[Row]:
    if not users:  # verify all the same, so that the answer takes as long either way
        verify_password(password, dummy_password_hash())
    return [u for u in users if verify_password(password, u.password_hash) and not u.disabled]


def _login_failed(conn: Connection, email: str, users: list[Row]) -> None:
    """In the audit log of the one tenant the address names, where it names one."""
    user = users[0] if len(users) == 1 else None
    why = (
        "unknown email" if not users else "disabled" if user and user.disabled else "wrong password"
    )
    accounts.audit(
        conn, "anonymous", "auth.login_failed", target=user and f"user:{user.id}",
        tenant_id=user and user.tenant_id, detail={"email": email, "reason": why},
    )  # fmt: skip


async def authenticate(request: Request, body: LoginRequest) -> tuple[Row, str | None]:
    """The user that `body` logs in as, and a new hash of the password if the stored one
    is weaker than today's; a 429 past the login limits, a 401 otherwise.

    The password hash (scrypt, ~32 MiB and ~0.1 s) runs in a worker thread and outside
    any transaction: the account is read in a short transaction of its own, and the
    session is written in another (`in_transaction`), so a stream of logins holds neither
    the event loop nor database connections."""
    email = accounts.normalize_email(body.email)
    request.app.state.rate_limits.login(request, email)
    users = await in_transaction(request, _candidates, email, body.tenant)
    matched = await run_in_threadpool(_matching, body.password, users)
    if not matched:
        await in_transaction(request, _login_failed, email, users)
        raise Problem(401, "wrong email or password")
    if len(matched) > 1:
        raise Problem(
            401,
            "this address and password open accounts in several tenants: name the tenant",
            tenant_required=True,
        )
    user = matched[0]
    rehash = None
    if password_needs_rehash(user.password_hash):
        rehash = await run_in_threadpool(hash_password, body.password)
    return user, rehash


def start_user_session(
    conn: Connection,
    request: Request,
    response: Response,
    settings: Settings,
    user: Row,
    rehash: str | None,
) -> None:
    """Open a session for `user` (checked by `authenticate`): its cookie on `response`,
    and the session's CSRF token in the ``X-CSRF-Token`` header."""
    if rehash is not None:
        conn.execute(update(s.users).where(s.users.c.id == user.id).values(password_hash=rehash))
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
        secure=cookie_secure(request, settings),
    )
    response.headers[CSRF_HEADER] = session_csrf_token(request.app.state.csrf_key, token)


@router.post(
    "/login",
    summary="Log in: sets the session cookie",
    description="The answer's `X-CSRF-Token` header is the session's CSRF token: send it "
    "back in that header with every POST, PUT, PATCH and DELETE made with the cookie. "
    "Too many attempts (per address and per account): 429 with Retry-After.",
    responses=RATE_LIMITED,
)
async def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    settings: Annotated[Settings, Depends(get_settings)],
) -> UserOut:
    user, rehash = await authenticate(request, body)
    await in_transaction(request, start_user_session, request, response, settings, user, rehash)
    return UserOut.model_validate(user)


@router.post("/logout", status_code=204, summary="Log out: ends the session")
def logout(request: Request, conn: Conn) -> Response:
    if token := request.cookies.get(SESSION_COOKIE):
        accounts.end_session(conn, token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


@router.get(
    "/me",
    summary="Who is asking",
    description="With the session cookie, the `X-CSRF-Token` header holds the session's "
    "CSRF token (see POST /auth/login).",
)
def me(principal: CurrentPrincipal, conn: Conn, request: Request, response: Response) -> Me:
    if principal.kind == "user" and (token := request.cookies.get(SESSION_COOKIE)):
        response.headers[CSRF_HEADER] = session_csrf_token(request.app.state.csrf_key, token)
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
