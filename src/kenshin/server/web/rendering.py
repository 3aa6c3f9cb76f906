"""How a page is answered: who is asking (the API's own session cookie), in which language,
and the HTML that goes back, errors included.

Pages use the session cookie and the principal exactly as the JSON API does
(`deps.current_principal`); a request without a live session is sent to the login page,
and errors come back as an HTML page in the reader's language, not as JSON. Every page
carries a strict Content-Security-Policy (no inline script: the panel's JavaScript lives
in /static) and is never cached, since it shows one tenant's data.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from starlette.responses import RedirectResponse, Response

from .. import csrf
from .. import schema as s
from ..deps import SESSION_COOKIE, Conn, Principal, current_principal
from ..problems import Problem
from .assets import PLOTLY_URL, static_url
from .i18n import LANGS, Translator, translator

__all__ = [
    "LANG_COOKIE",
    "AdminPage",
    "Anyone",
    "OperatorPage",
    "Page",
    "PageProblem",
    "PageRoute",
    "PlatformAdminPage",
    "lang_of",
    "render",
    "safe_next",
]

LANG_COOKIE = "kenshin_lang"
_LANG_COOKIE_AGE = 365 * 24 * 3600
_SECURITY_HEADERS = {
    # Plotly sets inline styles on the elements it draws; scripts come from /static only.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_env = Environment(
    loader=PackageLoader(__package__, "templates"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,  # a misspelt variable fails the page (and its test)
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals.update(static_url=static_url, plotly_url=PLOTLY_URL)
templates = Jinja2Templates(env=_env)


class PageProblem(Problem):
    """A Problem a page answers as an HTML page: `message` is the catalogue key of its
    title, and ``<message>_detail`` that of its explanation."""

    def __init__(self, status: int, message: str, detail: str | None = None) -> None:
        super().__init__(status, detail or message)
        self.message = message


class LoginRequired(Exception):
    """No live session: the page sends the browser to log in, and back here after."""


def lang_of(request: Request) -> Translator:
    """``?lang=`` if given, else the language cookie, else Japanese."""
    return translator(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE))


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only (never ``//elsewhere``)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


@dataclass(frozen=True)
class Page:
    """What every page knows: the request, who is asking, for which tenant, in which
    language."""

    request: Request
    principal: Principal | None
    t: Translator
    tenant_kind: str | None = None  # retailer, generator or aggregator: which pages it has

    @property
    def tenant_id(self) -> int:
        assert self.principal is not None and self.principal.tenant_id is not None
        return self.principal.tenant_id

    @property
    def other_lang_url(self) -> str:
        """This page in the other language."""
        url = self.request.url.include_query_params(lang=self.t.other)
        return f"{url.path}?{url.query}"

    @property
    def can_operate(self) -> bool:
        return self.principal is not None and self.principal.has_role("operator")

    @property
    def is_admin(self) -> bool:
        """A tenant's administrator (the admin pages are theirs)."""
        return self.tenant_kind is not None and self.principal.role == "admin"


def _anyone(request: Request, conn: Conn) -> Page:
    """Whoever is signed in: a tenant's user, or a platform administrator (no tenant)."""
    try:
        principal = current_principal(request, conn, None, request.cookies.get(SESSION_COOKIE))
    except Problem as err:
        if err.status == 401:
            raise LoginRequired from None
        raise
    kind = None
    if principal.tenant_id is not None:
        kind = conn.execute(
            select(s.tenants.c.kind).where(s.tenants.c.id == principal.tenant_id)
        ).scalar_one()
    return Page(request, principal, lang_of(request), kind)


def _signed_in(page: Annotated[Page, Depends(_anyone)]) -> Page:
    if page.tenant_kind is None:  # the tenant pages show one tenant; theirs are /platform
        raise PageProblem(403, "error.platform_admin")
    return page


def _role(role: str) -> Callable[[Page], Page]:
    def check(page: Annotated[Page, Depends(_signed_in)]) -> Page:
        assert page.principal is not None
        if not page.principal.has_role(role):  # the same answer as a page that is not there
            raise PageProblem(403, f"error.needs_{role}")
        return page

    return check


def _platform_admin(page: Annotated[Page, Depends(_anyone)]) -> Page:
    assert page.principal is not None
    if not page.principal.is_platform_admin:
        raise PageProblem(404, "error.not_found")
    return page


Anyone = Annotated[Page, Depends(_anyone)]
SignedIn = Annotated[Page, Depends(_signed_in)]
OperatorPage = Annotated[Page, Depends(_role("operator"))]
AdminPage = Annotated[Page, Depends(_role("admin"))]
PlatformAdminPage = Annotated[Page, Depends(_platform_admin)]


def render(page: Page | Request, template: str, status: int = 200, **values: Any) -> Response:
    """The page's HTML; remembers a ``?lang=`` choice in a cookie."""
    if isinstance(page, Request):
        page = Page(page, None, lang_of(page))
    request = page.request
    # The CSRF token of the page's forms and scripts (csrf.py): the session's, or on the
    # login form (`pre_session`) a pre-session one, with its cookie when new.
    token, nonce = csrf.page_token(request, pre_session=values.pop("pre_session", False))
    response = templates.TemplateResponse(
        request,
        template,
        {"page": page, "t": page.t, "langs": LANGS, "csrf_token": token, **values},
        status_code=status,
        headers=_SECURITY_HEADERS,
    )
    if nonce is not None:
        response.set_cookie(
            csrf.PRE_SESSION_COOKIE,
            nonce,
            path="/",
            httponly=True,
            samesite="lax",
            secure=csrf.cookie_secure(request, request.app.state.settings),
        )
    if request.query_params.get("lang") in LANGS:
        response.set_cookie(
            LANG_COOKIE, page.t.lang, max_age=_LANG_COOKIE_AGE, path="/", samesite="lax"
        )
    return response


def _login_redirect(request: Request) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


class PageRoute(APIRoute):
    """A route answering with pages: login redirects and errors as HTML."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return _login_redirect(request)
            except PageProblem as err:
                return render(request, "error.html", err.status, message=err.message)
            except RequestValidationError:
                # A malformed id in a page's path is a page that does not exist.
                return render(request, "error.html", 404, message="error.not_found")

        return page_handler
