"""Request dependencies: the database connection, who is asking, and for which tenant.

- `Conn`: one connection per request inside one transaction, committed when the handler
  returns, rolled back when it raises, and in both cases *before* the response is sent.
- `CurrentPrincipal`: from ``Authorization: Bearer <api key>`` if that header is present,
  otherwise from the session cookie; 401 if neither is valid.
- `require_role("operator")`: the principal, if its role includes operator
  (admin ⊃ operator ⊃ viewer); 403 otherwise.
- `TenantId`: the tenant the request acts on. A tenant's principal always acts on its
  own tenant; a platform administrator (no tenant) names one with ``?tenant_id=``.
  Another tenant's id, like any other tenant's row, is answered with 404.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar

from annotated_types import Interval
from fastapi import Depends, Query, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine
from starlette.concurrency import run_in_threadpool

from . import accounts
from .problems import Problem
from .schema import utcnow
from .security import CredentialBox, hash_token
from .settings import Settings

__all__ = [
    "ROLE_RANK",
    "SESSION_COOKIE",
    "Conn",
    "CurrentPrincipal",
    "DbGate",
    "Principal",
    "PrincipalCache",
    "RowId",
    "TenantId",
    "current_principal",
    "get_conn",
    "get_credential_box",
    "get_engine",
    "get_settings",
    "in_transaction",
    "require_platform_admin",
    "require_role",
    "tenant_scope",
]

SESSION_COOKIE = "kenshin_session"
ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}
Role = Literal["admin", "operator", "viewer"]
T = TypeVar("T")
# A row's id as a request may name it: a positive 64-bit integer (a bigger one could only
# be refused by the database, as a 500, not a 422).
RowId = Annotated[int, Interval(ge=1, le=2**63 - 1)]

# Writing last_used_at / last_seen_at on every request would turn reads into writes.
_TOUCH_EVERY = timedelta(seconds=60)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_credential_box(request: Request) -> CredentialBox:
    return request.app.state.credential_box


class DbGate:
    """Turns at the database: at most `capacity` requests of this process hold a
    connection at once; the others wait for a turn on the event loop, holding neither a
    thread nor a connection, in the order they came; one that waits `wait_s` gets a 503
    with Retry-After.

    Why: FastAPI runs a request's sync dependencies and handler in several trips through
    its thread pool (40 threads), and the connection is held across the trips. Under
    load, when every thread held a request waiting for a connection, the requests that
    held the connections got no thread to finish in: all waited out the pool's 30 s and
    failed with a 500 (issue 21). A turn is a connection that is there (`capacity` is the
    pool's size; what takes connections outside requests uses the pool's overflow), so no
    thread ever waits for one, and the thread pool and the pool cannot lock each other.
    """

    def __init__(self, capacity: int, wait_s: float) -> None:
        self.capacity, self.wait_s = capacity, wait_s
        # One semaphore per event loop: a process serves from one, but tests start an
        # application in several in turn, and an asyncio semaphore belongs to one loop.
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._turns = weakref.WeakKeyDictionary()

    @classmethod
    def for_settings(cls, settings: Settings) -> DbGate:
        return cls(settings.db_pool_size, settings.db_wait_s)

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        turns = self._turns.get(loop)
        if turns is None:
            turns = self._turns[loop] = asyncio.Semaphore(self.capacity)
        try:
            async with asyncio.timeout(self.wait_s):
                await turns.acquire()
        except TimeoutError:
            raise Problem(
                503,
                f"the server is busy: no database connection within {self.wait_s:g} s",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from None
        try:
            yield
        finally:
            turns.release()


RETRY_AFTER_S = 1  # by then the queue that made this request wait has moved on


class _RequestConnection:
    """The request's connection and transaction (`engine.begin()`), taken from the pool
    at its first use, in the thread that uses it (the handler's, usually); anything
    else is the connection's own (`execute`, `commit`, `dialect`...).

    Why lazy: taken in the dependency, it cost every request one more trip through the
    thread pool, and a request that never queries (a cached principal, a 404 from a
    check) took one for nothing."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._begun: Any = None  # engine.begin()'s context, once taken
        self._conn: Connection | None = None

    @property
    def taken(self) -> bool:
        return self._conn is not None

    def _take(self) -> Connection:
        if self._conn is None:
            begun = self._engine.begin()
            self._conn = begun.__enter__()
            self._begun = begun
        return self._conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._take(), name)

    def release(self) -> None:
        """Commit what was done so far and give the connection back to the pool; the next
        use takes another, in a new transaction (for work that must hold neither, such as
        a password hash)."""
        if self._begun is not None:
            begun, self._begun, self._conn = self._begun, None, None
            begun.__exit__(None, None, None)

    def end(self, error: BaseException | None = None) -> None:
        """Commit (roll back on `error`) and give the connection back to the pool."""
        if self._begun is not None:
            begun, self._begun = self._begun, None
            begun.__exit__(type(error) if error else None, error, None)


async def in_transaction(request: Request, work: Callable[..., T], *args: Any) -> T:
    """``work(conn, *args)`` in a transaction of its own, in a worker thread, during a
    turn at the database: for a handler that must not hold a connection all along (a
    login's password hash runs between two of these, with no transaction open)."""
    engine: Engine = request.app.state.engine

    def run() -> T:
        with engine.begin() as conn:
            return work(conn, *args)

    async with request.app.state.db_gate.turn():
        return await run_in_threadpool(run)


_CONN = "kenshin.conn"  # the request's _RequestConnection, in its ASGI scope, once it has one


async def get_conn(request: Request) -> AsyncIterator[Connection]:
    # The turn is taken here, not by a dependency of its own: each dependency is walked
    # wherever `Conn` appears, at a cost in every request.
    async with request.app.state.db_gate.turn():
        after_commit: list[Callable[[], None]] = []
        request.state.after_commit = after_commit  # e.g. "push the new settings now"
        conn = request.scope[_CONN] = _RequestConnection(request.app.state.engine)
        try:
            yield conn  # type: ignore[misc]  # a Connection in all but name
        except BaseException as error:
            if conn.taken:
                await run_in_threadpool(conn.end, error)
            raise
        if conn.taken:
            if request.method in ("GET", "HEAD"):
                # A read's commit is one round trip (a write's, at most the key's or the
                # session's last-used time): cheaper here than one more thread-pool trip.
                conn.end()
            else:  # a write's commit may wait for the disk: not on the event loop
                await run_in_threadpool(conn.end)
        for callback in after_commit:  # only once the change is there for others to read
            callback()


async def _on_database(request: Request, work: Callable[..., T], *args: Any) -> T:
    """``work(conn, *args)`` in a worker thread: on the request's connection if it has one
    (`Conn` was solved first: it holds a turn), else in a transaction of its own
    (`in_transaction`: a turn of its own, given back before `Conn` takes one, so a request
    never waits for a second turn while holding one).

    Why: the principal and tenant dependencies query only on a cache miss or for a
    platform administrator. Depending on `Conn` for that made FastAPI walk the connection's
    dependencies again under each of them: 34 dependencies solved for a series request,
    most of its Python time besides the query (issue 21)."""
    conn = request.scope.get(_CONN)
    if conn is not None:
        return await run_in_threadpool(work, conn, *args)
    return await in_transaction(request, work, *args)


# scope="function": commit (or roll back) before the response goes out, so a client never
# sees success for a transaction that then fails to commit.
Conn = Annotated[Connection, Depends(get_conn, scope="function")]


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user (by session cookie) or an API key (by bearer token)."""

    kind: Literal["user", "api_key"]
    id: int
    tenant_id: int | None  # None: a platform administrator
    role: Role
    name: str  # the user's email, or the API key's name

    @property
    def actor(self) -> str:
        """How the audit log names this principal: ``user:3`` or ``api_key:7``."""
        return f"{self.kind}:{self.id}"

    @property
    def is_platform_admin(self) -> bool:
        return self.tenant_id is None and self.role == "admin"

    def has_role(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


_bearer = HTTPBearer(
    auto_error=False, bearerFormat="ksk_…", description="An API key made under /api/v1/api-keys"
)
_session_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="Set by POST /api/v1/auth/login"
)


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="kenshin"'})


class PrincipalCache:
    """API keys' principals, kept `TTL_S` seconds by the key's hash: an API client sends
    many requests a second, and looking its key up cost each one a query. A key revoked
    through this process is forgotten at once (`forget`); one revoked through another
    process of the server is refused within `TTL_S`."""

    TTL_S = 5.0
    MAX = 10_000  # keys held at most (then start again): bounded, whoever sends what

    def __init__(self) -> None:
        self._held: dict[str, tuple[float, Principal]] = {}

    def get(self, key_hash: str) -> Principal | None:
        held = self._held.get(key_hash)
        if held is None or held[0] < time.monotonic():
            return None
        return held[1]

    def put(self, key_hash: str, principal: Principal) -> None:
        if len(self._held) >= self.MAX:
            self._held = {}
        self._held[key_hash] = (time.monotonic() + self.TTL_S, principal)

    def forget(self, key_id: int) -> None:
        self._held = {h: v for h, v in self._held.items() if v[1].id != key_id}


def current_principal(
    request: Request,
    conn: Conn,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session_token: Annotated[str | None, Depends(_session_cookie)],
) -> Principal:
    now = utcnow()
    if "authorization" in request.headers:
        if bearer is None:
            raise _unauthorized("the Authorization header must be 'Bearer <api key>'")
        key = accounts.find_api_key(conn, bearer.credentials)
        if key is None:
            raise _unauthorized("unknown or revoked API key")
        if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
            accounts.touch_api_key(conn, key.id, now)
        principal = Principal("api_key", key.id, key.tenant_id, key.role, key.name)
        request.app.state.principals.put(hash_token(bearer.credentials), principal)
        return principal
    if session_token:
        user = accounts.find_session_user(conn, session_token, now)
        if user is None:
            raise _unauthorized("the session has ended; log in again")
        if user.last_seen_at is None or now - user.last_seen_at > _TOUCH_EVERY:
            accounts.touch_session(conn, user.session_id, now)
        return Principal("user", user.id, user.tenant_id, user.role, user.email)
    raise _unauthorized("authentication required: log in, or send 'Bearer <api key>'")


# The dependencies are coroutines where they can answer without the database: a sync
# dependency is one more trip through the thread pool for every request.
async def _principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session_token: Annotated[str | None, Depends(_session_cookie)],
) -> Principal:
    if bearer is not None:
        cached = request.app.state.principals.get(hash_token(bearer.credentials))
        if cached is not None:
            return cached

    def find(conn: Connection) -> Principal:
        return current_principal(request, conn, bearer, session_token)

    return await _on_database(request, find)


CurrentPrincipal = Annotated[Principal, Depends(_principal)]


def require_role(role: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency giving the principal if its role includes `role`, else 403."""
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")

    async def check(principal: CurrentPrincipal) -> Principal:
        if not principal.has_role(role):
            raise Problem(403, f"this needs the {role} role; you have {principal.role}")
        return principal

    check.__name__ = f"require_{role}"
    return check


async def require_platform_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.is_platform_admin:
        raise Problem(403, "platform administrators only")
    return principal


def tenant_scope(
    principal: CurrentPrincipal,
    conn: Conn,
    tenant_id: Annotated[
        RowId | None,
        Query(description="Platform administrators only: the tenant to act on."),
    ] = None,
) -> int:
    if principal.tenant_id is not None:
        if tenant_id is not None and tenant_id != principal.tenant_id:
            raise Problem(404, "no such tenant")
        return principal.tenant_id
    if tenant_id is None:
        raise Problem(400, "a platform administrator names the tenant: ?tenant_id=")
    if accounts.get_tenant(conn, tenant_id) is None:
        raise Problem(404, "no such tenant")
    return tenant_id


async def _tenant(
    request: Request,
    principal: CurrentPrincipal,
    tenant_id: Annotated[
        RowId | None,
        Query(description="Platform administrators only: the tenant to act on."),
    ] = None,
) -> int:
    if principal.tenant_id is not None:  # no query: answered here
        return tenant_scope(principal, None, tenant_id)  # type: ignore[arg-type]
    return await _on_database(request, lambda conn: tenant_scope(principal, conn, tenant_id))


TenantId = Annotated[int, Depends(_tenant)]
