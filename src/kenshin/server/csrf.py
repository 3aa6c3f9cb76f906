"""Cross-site request forgery: what a browser sends on its own must not act for its user.

A session cookie goes with every request the browser makes to this server, whichever
site asked for it (SameSite=Lax stops only some), so every unsafe request (not GET,
HEAD, OPTIONS) that a browser could send on its own is checked by `CsrfGuard`, a pure
ASGI middleware:

- **Origin.** ``Origin`` (or, without it, ``Referer``) when present must be this server
  (the request's scheme and ``Host``, or the configured ``public_url``): a cross-site
  form or fetch is refused with 403 before anything runs. Requests that carry
  ``Authorization`` (API keys) are programs, not browsers, and are let through.
- **Token.** A request with the session cookie must carry the session's CSRF token in
  ``X-CSRF-Token``: an HMAC of the session token under the server's key (synchronizer
  token without storage: it changes with every login, and only someone who can read
  this server's pages or the login answer has it). The panel puts it in
  ``<meta name="csrf-token">`` for its scripts; the API's login answers it in the
  ``X-CSRF-Token`` header, and so does ``GET /api/v1/auth/me``.
- **Forms.** The panel's two form posts, ``/login`` and ``/logout``, carry the token in a
  ``csrf_token`` field instead (checked by their handlers, `check_form`). The login form's
  is a pre-session token: the HMAC of a random ``kenshin_login`` cookie set with the form,
  so nobody can log a browser into an account of theirs (login CSRF).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from .deps import SESSION_COOKIE
from .problems import Problem, problem_response
from .settings import Settings

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "FORM_ROUTES",
    "PRE_SESSION_COOKIE",
    "CsrfGuard",
    "check_form",
    "cookie_secure",
    "page_token",
    "session_csrf_token",
]

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
PRE_SESSION_COOKIE = "kenshin_login"
FORM_ROUTES = frozenset({"/login", "/logout"})  # the token comes in the form: see check_form
# The API's login needs no session's token (it makes the session; a leftover cookie must
# not stop it): its JSON body cannot come from another site's form, and Origin is checked.
_NO_SESSION_TOKEN = FORM_ROUTES | {"/api/v1/auth/login"}
# A DR opt-out link's form: the token in its path is the secret, so a session's token is
# not asked for (a customer who is also a panel user must not be refused); Origin is.
_TOKEN_IN_PATH = ("/dr/opt-out/",)
_SAFE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def _mac(key: bytes, purpose: str, value: str) -> str:
    digest = hmac.new(key, f"kenshin:csrf:{purpose}:{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def session_csrf_token(key: bytes, session_token: str) -> str:
    return _mac(key, "session", session_token)


def _pre_session_token(key: bytes, nonce: str) -> str:
    return _mac(key, "login", nonce)


def _key(request: Request) -> bytes:
    return request.app.state.csrf_key


def page_token(request: Request, *, pre_session: bool = False) -> tuple[str, str | None]:
    """The token a page carries: (token, a new pre-session nonce to set as the
    ``kenshin_login`` cookie, or None). The session's when there is one (unless
    `pre_session`: the login form), else a pre-session token."""
    key = _key(request)
    session = request.cookies.get(SESSION_COOKIE)
    if session and not pre_session:
        return session_csrf_token(key, session), None
    nonce = request.cookies.get(PRE_SESSION_COOKIE)
    fresh = None
    if not nonce or len(nonce) > 64:
        nonce = fresh = secrets.token_urlsafe(32)
    return _pre_session_token(key, nonce), fresh


def check_form(request: Request, form: dict[str, str], *, pre_session: bool) -> None:
    """403 unless the form's ``csrf_token`` is this browser's (pre-session: the login
    form's, from its ``kenshin_login`` cookie; else the session's)."""
    sent = form.get(CSRF_FIELD, "")
    cookie = request.cookies.get(PRE_SESSION_COOKIE if pre_session else SESSION_COOKIE)
    key = _key(request)
    if cookie:
        expected = (_pre_session_token if pre_session else session_csrf_token)(key, cookie)
        if hmac.compare_digest(sent.encode(), expected.encode()):
            return
    raise Problem(403, "the form is stale or came from another site: reload the page")


def cookie_secure(request: Request, settings: Settings) -> bool:
    """Whether cookies get the Secure flag: always with `session_cookie_secure`, else when
    the request came over HTTPS (uvicorn takes X-Forwarded-Proto from trusted proxies) or
    the configured public URL is https."""
    return (
        settings.session_cookie_secure
        or request.url.scheme == "https"
        or (settings.public_url or "").startswith("https://")
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class CsrfGuard:
    """The middleware (see the module's description)."""

    def __init__(self, app: ASGIApp, key: bytes, public_url: str | None = None) -> None:
        self.app = app
        self.key = key
        self.public_origin = _origin(public_url) if public_url else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in _SAFE:
            refusal = self._refusal(scope)
            if refusal is not None:
                await problem_response(403, refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _own(self, scope: Scope, headers: Headers) -> set[str]:
        own = {f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()}
        if self.public_origin:
            own.add(self.public_origin)
        return own

    def _refusal(self, scope: Scope) -> str | None:
        headers = Headers(scope=scope)
        if "authorization" in headers:
            return None  # an API key: a program's request, not a browser's
        sent_from = headers.get("origin")
        if sent_from is None and headers.get("referer"):
            sent_from = _origin(headers["referer"])
        if sent_from is not None and sent_from.lower() not in self._own(scope, headers):
            return "a cross-site request: refused"
        session = _cookie(headers, SESSION_COOKIE)
        path = scope["path"]
        if session is None or path in _NO_SESSION_TOKEN or path.startswith(_TOKEN_IN_PATH):
            return None
        token = headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(token.encode(), session_csrf_token(self.key, session).encode()):
            return f"the {CSRF_HEADER} header is missing or wrong (see docs/api.md)"
        return None


def _cookie(headers: Headers, name: str) -> str | None:
    """The cookie as `Request.cookies` would read it."""
    for raw in headers.getlist("cookie"):
        value = cookie_parser(raw).get(name)
        if value is not None:
            return value
    return None
