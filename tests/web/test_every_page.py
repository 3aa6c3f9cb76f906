"""Every page of the panel on a desktop and on a phone (390 px), in real headless Chromium:
it answers 200 with its own heading (not the login or an error page), logs no console
error, never scrolls sideways, and leaves a picture for review in build/screenshots/,
``<page>-<size>-<lang>.png``.

Japanese at both sizes, English on the phone: the narrow screen is where a language's
longer words and options overflow (the export page's English layouts did); at 1280 px
both fit, and the pages' own modules draw them in English on a desktop. SQLite only: the
pages and their HTML are the same on both backends, and each page's own module runs it on
PostgreSQL too.

`test_every_page_is_drawn_here` lists the panel's page routes from the routers of the web
package and fails when one is not in `PAGES`: a new page without its screenshots fails
the suite.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute, APIRouter
from playwright.sync_api import expect
from sqlalchemy import select

from kenshin.jst import SLOT, jst_midnight
from kenshin.server import schema as s
from kenshin.server import web
from kenshin.server.dr import service as dr
from kenshin.server.dr.queries import participations
from kenshin.server.rollouts import service as rollouts
from kenshin.server.web.i18n import Translator, translator
from kenshin.server.web.plants import month_text

from . import conftest
from .analytics_fixtures import fill_plants, fill_retail, jst_today, write_weather_csv
from .conftest import EMAILS, PASSWORD, Panel, no_sideways_page, screenshot

SCREENS = (("desktop", "ja"), ("phone", "ja"), ("phone", "en"))
SIZES: dict[str, tuple[dict, int]] = {  # the browser context's options, the screen's width
    "desktop": ({"viewport": {"width": 1280, "height": 900}}, 1280),
    "phone": (
        {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
        390,
    ),
}
LOGINS = EMAILS | {"admin_b": "admin@b.test"}  # tenant B (a generator) has the plant pages
WAIT_MS = 15_000  # a loaded two-core machine


@dataclass(frozen=True)
class Seeded:
    """The ids the pages' paths take, and what their headings say."""

    ids: dict[str, Any]  # row ids, and the DR opt-out link's token
    site_name: str
    service_codes: dict[int, str] = field(default_factory=dict)  # meter id -> service code
    plant_names: dict[int, str] = field(default_factory=dict)


Texts = Callable[[Translator, Seeded], dict[str, str]]


@dataclass(frozen=True)
class Shot:
    """One page: its route as declared, who signs in (None: nobody), the ids its path
    takes (path parameter -> `Seeded.ids` key), what it shows once drawn (selector ->
    text contained), and a selector present once its script has drawn it (if it draws)."""

    name: str
    route: str
    role: str | None
    texts: Texts
    ids: dict[str, str] = field(default_factory=dict)
    ready: str | None = None

    def path(self, seeded: Seeded) -> str:
        return self.route.format(**{name: seeded.ids[key] for name, key in self.ids.items()})


def h1(key: str) -> Texts:
    return lambda t, _: {"h1": t(key)}


def this_month(t: Translator) -> str:
    return month_text(t, jst_today().replace(day=1))


def admin(area: str) -> Shot:
    return Shot(
        f"admin-{area}",
        f"/admin/{area}",
        "admin",
        lambda t, _: {
            "h1": t("admin.title"),
            "#admin-tabs [aria-current=page]": t(f"admin.area.{area}"),
        },
    )


PAGES = (
    Shot("login", "/login", None, h1("login.title")),
    Shot("home", "/", "admin", lambda t, _: {"h1": "Tenant A"}, ready="#donut .slice"),
    Shot("list", "/list", "admin", h1("list.title"), ready="body[data-loads]"),
    Shot(
        "site", "/sites/{site_id}", "admin",
        lambda t, x: {"h1": x.site_name}, ids={"site_id": "site"},
    ),
    Shot(
        "site-setup", "/sites/{site_id}/setup", "admin",
        lambda t, x: {"h1": f"{t('setup.title')}: {x.site_name}"}, ids={"site_id": "site"},
    ),
    Shot(
        "gateway", "/gateways/{gateway_id}", "admin",
        lambda t, _: {"h1": t("gateway.title", serial="GW-A1")}, ids={"gateway_id": "gateway"},
    ),
    Shot("graphs", "/graphs", "admin", h1("graphs.title"), ready="body[data-drawn]"),
    Shot(
        "meter", "/meters/{meter_id}", "admin",
        lambda t, x: {"h1": t("meter.title", code=x.service_codes[x.ids["meter"]])},
        ids={"meter_id": "meter"}, ready="body[data-energy-loaded='1']",
    ),
    Shot(
        "retail", "/retail", "admin",
        lambda t, _: {"h1": t("retail.day_title", date=t.date(jst_today()))},
        ready="body[data-drawn]",
    ),
    Shot(
        "plants", "/plants", "admin_b",
        lambda t, _: {"h1": t("plants.month_title", month=this_month(t))},
        ready="body[data-drawn='1']",
    ),
    Shot(
        "plant", "/plants/{meter_id}", "admin_b",
        lambda t, x: {"h1": t("plant.title", name=x.plant_names[x.ids["plant"]])},
        ids={"meter_id": "plant"}, ready="body[data-energy='drawn'][data-peaks='drawn']",
    ),
    Shot("alerts", "/alerts", "admin", h1("alerts.title")),
    Shot("rollouts", "/rollouts", "admin", h1("rollouts.title"), ready="body[data-drawn]"),
    Shot(
        "rollout", "/rollouts/{rollout_id}", "admin",
        lambda t, _: {"h1": t("rollouts.one_title", version="1.5.0")},
        ids={"rollout_id": "rollout"}, ready="body[data-drawn]",
    ),
    Shot("dr", "/dr", "admin", h1("dr.title")),
    Shot(
        "dr-event", "/dr/{event_id}", "admin", lambda t, _: {"h1": "夕方の節電"},
        ids={"event_id": "dr_event"}, ready="body[data-drawn]",
    ),
    Shot(
        "dr-opt-out", "/dr/opt-out/{token}", None, h1("dr.opt_out.title"),
        ids={"token": "opt_out"},
    ),
    Shot("export", "/export", "admin", h1("settle.title")),
    Shot("onboard", "/onboard", "admin", h1("onboard.title")),
    *(admin(area) for area in web.admin.AREAS),
    Shot("platform-tenants", "/platform/tenants", "platform_admin", h1("platform.title")),
)  # fmt: skip

# Every GET route of the web package is a page unless it is here, with why: a route's
# response class says nothing (each returns a Response of its own), so a new route that
# answers no page is named here on purpose. POST routes (/login, /logout: the forms'
# targets) are never pages and are not listed.
NOT_PAGES = {
    "/admin": "a redirect to /admin/users",
    "/export/settlement": "a redirect to the settlement CSV of the JSON API (a download)",
    "/gateways/{gateway_id}/live.json": "the JSON the gateway page polls",
    web.apidocs.DOCS_PATH: "the JSON API's Swagger UI (its own layout, test_admin_pages.py)",
}


def page_routes() -> set[str]:
    """The paths of the GET routes declared in the web package, on the routers of its
    modules: each area's (web/__init__.py includes them in `web.router`) and the API
    docs' (the app includes it on its own). Read where they are declared: a router that
    includes others holds them as FastAPI's own lazily resolved entries, not as routes."""
    modules = [web.__name__] + [
        module.name for module in pkgutil.walk_packages(web.__path__, f"{web.__name__}.")
    ]
    routers: dict[int, APIRouter] = {}
    for name in modules:
        for value in vars(importlib.import_module(name)).values():
            if isinstance(value, APIRouter):
                routers[id(value)] = value
    return {
        route.path
        for router in routers.values()
        for route in router.routes
        if isinstance(route, APIRoute) and "GET" in route.methods
    }


def test_every_page_is_drawn_here() -> None:
    routes = page_routes()
    assert set(NOT_PAGES) <= routes, "an exclusion of a route no longer there"
    drawn = {shot.route for shot in PAGES}
    assert routes - set(NOT_PAGES) == drawn, (
        "pages without screenshots (add them to PAGES)",
        sorted(routes - set(NOT_PAGES) - drawn),
        "or drawn but gone",
        sorted(drawn - routes),
    )
    names = [shot.name for shot in PAGES]
    assert len(set(names)) == len(names)


# -- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def weather_source(tmp_path_factory) -> Iterator[None]:
    """The plant page's weather chart, as test_plants.py has it: the module's servers read
    the weather from a CSV. Autouse: set before `panel` builds the app."""
    path = write_weather_csv(tmp_path_factory.mktemp("weather") / "weather.csv")
    original = conftest.create_app

    def create_app(settings):
        return original(settings.model_copy(update={"weather_csv": path}))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conftest, "create_app", create_app)
        yield


@pytest.fixture(scope="module")
def seeded(panel: Panel) -> Seeded:
    """Tenant A's day (the retailer's plan and forecast) and tenant B's plants with their
    history, as test_retail.py and test_plants.py have them; the ids of GW-A1's pages."""
    fill_retail(panel)
    plants = fill_plants(panel)
    meter = panel.meters["GW-A1"]
    with panel.engine.connect() as conn:
        site = conn.execute(
            select(s.sites).join(s.meters, s.meters.c.site_id == s.sites.c.id)
            .where(s.meters.c.id == meter)
        ).one()  # fmt: skip
    ids = {"site": site.id, "gateway": panel.gateways["GW-A1"], "meter": meter}
    ids["plant"] = min(plants.meters)
    with panel.engine.begin() as conn:
        ids["rollout"] = rollouts.create(
            conn, panel.world.tenant_a, version="1.5.0", actor="system"
        )
        start = jst_midnight(jst_today() + timedelta(days=1)) + timedelta(hours=17)
        event_id = dr.create_event(
            conn, panel.world.tenant_a, name="夕方の節電", start=start, end=start + SLOT,
            actor="system", targets_w=[500],
        )  # fmt: skip
        ids["dr_event"] = event_id
        ids["opt_out"] = participations(conn, event_id)[0].opt_out_token
    return Seeded(ids, site.name or site.customer_id, {meter: site.service_code}, plants.names)


@pytest.fixture(scope="module")
def size(request: pytest.FixtureRequest) -> str:
    """Module scope: each size is a group of its own under ``--dist loadgroup``, with its
    own browser contexts."""
    return request.param


@pytest.fixture(scope="module")
def sessions(browser, panel: Panel) -> Callable[[str], dict]:
    """A role's session (its cookies), logged in once for the module whatever the order
    of the sizes a worker is given: far from the login limit (10 a minute an account)."""
    states: dict[str, dict] = {}

    def session(role: str) -> dict:
        if role not in states:
            context = browser.new_context(base_url=panel.url)
            answer = context.request.post(
                "/api/v1/auth/login", data={"email": LOGINS[role], "password": PASSWORD}
            )
            assert answer.ok, answer.text()
            states[role] = context.storage_state()
            context.close()
        return states[role]

    return session


@pytest.fixture(scope="module")
def contexts(browser, panel: Panel, sessions, size: str) -> Iterator[Callable[..., Any]]:
    """The browser context of a role (None: signed out) in a language at the module's
    size, made on first use and kept for the size's pages (its cache keeps plotly.js)."""
    options, _ = SIZES[size]
    made: dict[tuple[str | None, str], Any] = {}

    def context(role: str | None, lang: str):
        if (role, lang) not in made:
            state = sessions(role) if role is not None else None
            made[role, lang] = new = browser.new_context(
                base_url=panel.url, storage_state=state, **options
            )
            new.add_cookies([{"name": "kenshin_lang", "value": lang, "url": panel.url}])
        return made[role, lang]

    yield context
    for each in made.values():
        each.close()


@pytest.mark.parametrize("panel", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("size", "lang"), SCREENS, indirect=["size"], scope="module")
@pytest.mark.parametrize("shot", PAGES, ids=lambda shot: shot.name)
def test_the_page_is_drawn(
    contexts, panel: Panel, seeded: Seeded, size: str, lang: str, shot: Shot
) -> None:
    _, width = SIZES[size]
    page = contexts(shot.role, lang).new_page()
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda error: problems.append(f"script: {error}"))
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith((panel.url, "data:"))
            else problems.append(f"request off the server: {r.url}")
        ),
    )
    page.set_default_timeout(WAIT_MS)
    try:
        path = shot.path(seeded)
        response = page.goto(path)
        assert response is not None and response.status == 200, (path, response and response.status)
        assert page.url == panel.url + path, page.url  # not sent elsewhere (the login page)
        for selector, text in shot.texts(translator(lang), seeded).items():
            expect(page.locator(selector)).to_contain_text(text, timeout=WAIT_MS)
        if shot.ready is not None:
            expect(page.locator(shot.ready).first).to_be_attached(timeout=WAIT_MS)
        no_sideways_page(page, width)
        screenshot(page, f"{shot.name}-{size}-{lang}")
        assert not problems, problems
    finally:
        page.close()
