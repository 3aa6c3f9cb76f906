"""Browser fixtures: the real server on a port, a fleet sent through the real ingest, and
headless Chromium (Debian's ``/usr/bin/chromium``) driven by Playwright.

`panel` starts the whole server (uvicorn in a thread, the device side off) once per module
and backend, SQLite and PostgreSQL, and fills it with two tenants: tenant A has gateways
in every state a claimed gateway can be in, tenant B one working gateway (the other side
of the tenant wall). Chromium missing: the browser tests are skipped, or fail under
``CI=true``, where ``make test`` (scripts/ensure-chromium) must have installed it.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import os
import re
import shutil
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import Engine, func, select

from kenshin.gateway.identity import Identity, new_claim_code
from kenshin.ports import free_tcp_port
from kenshin.server import ingest, security
from kenshin.server import schema as s
from kenshin.server.app import create_app
from kenshin.server.devices import registry
from kenshin.server.security import CredentialBox
from kenshin.server.settings import Settings
from kenshin.wire import (
    Event,
    FixedTimeValue,
    InstantSample,
    LinkState,
    MeterScale,
    ReadingsBatch,
    Status,
    encode_publish,
)
from kenshin.wire.enrollment import b64encode
from tests.server.conftest import KEY, PASSWORD, PG_ADMIN_URL, PostgresDatabases, World

CHROMIUM = os.environ.get("KENSHIN_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
ROLES = ("admin", "operator", "viewer")
LANGS = ("ja", "en")
EMAILS = {  # tenant A's users by role, and a few others by who they are
    "admin": "admin@a.test",
    "operator": "operator@a.test",
    "viewer": "viewer@a.test",
    "viewer_b": "viewer@b.test",
    "platform_admin": "root@kenshin.test",
}


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI=true (make test installs it)")
    pytest.skip(f"{what} unavailable")


# -- the browser -----------------------------------------------------------------------


# Package scope: sync Playwright keeps an event loop running in this thread until it
# stops, and the later packages' asyncio.run() would find it ("cannot be called from a
# running event loop").
@pytest.fixture(scope="package")
def browser():
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        _missing(f"Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright (pip install playwright)")
    playwright = sync_playwright().start()
    # Debian's build, never a downloaded one: `playwright install` needs the internet.
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
    yield chromium
    chromium.close()
    playwright.stop()


# -- the server and its fleet -------------------------------------------------------------


class ServerThread:
    """uvicorn serving `app` on a free port, in a thread (Playwright's sync API owns the
    test's own thread)."""

    def __init__(self, app) -> None:
        self.port = free_tcp_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@dataclass
class Panel:
    """The running server, its database, and who and what is in it."""

    url: str
    engine: Engine
    credential_box: CredentialBox
    world: World
    gateways: dict[str, int] = field(default_factory=dict)  # serial -> id
    meters: dict[str, int] = field(default_factory=dict)  # gateway serial -> meter id

    def state_counts(self, tenant_id: int) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(s.gateways.c.state, func.count())
                .where(s.gateways.c.tenant_id == tenant_id)
                .group_by(s.gateways.c.state)
            )
            return dict(rows.all())


# Tenant A's fleet: (serial, what happened to it) -> the state it ends in.
FLEET_A = {
    "GW-A1": "working",
    "GW-A2": "working",
    "GW-A3": "working",
    "GW-A4": "never_seen",
    "GW-A5": "never_seen",
    "GW-A6": "lost_contact",
    "GW-A7": "meter_link_down",
}
FLEET_B = {"GW-B1": "working"}
SCALE = MeterScale(1, 0x01, 6)  # 0.1 kWh a count


def send(engine: Engine, serial: str, message) -> None:
    """Through the real ingest, as the MQTT side would hand it over."""
    topic, payload = encode_publish(message, serial)
    with engine.begin() as conn:
        outcome = ingest.handle(conn, topic, payload)
    assert outcome.kind != "quarantined", outcome.reason


def _build_fleet(panel: Panel) -> None:
    engine, world = panel.engine, panel.world
    fleet = {sn: (world.tenant_a, st) for sn, st in FLEET_A.items()}
    fleet |= {sn: (world.tenant_b, st) for sn, st in FLEET_B.items()}
    identities = {sn: Identity.generate(sn, "http://x") for sn in fleet}
    codes = {sn: new_claim_code() for sn in fleet}
    csv = "serial,model,public_key,claim_code\n" + "".join(
        f"{sn},kenshin-gw,{b64encode(i.public_key)},{codes[sn]}\n" for sn, i in identities.items()
    )
    box = panel.credential_box
    with engine.begin() as conn:
        assert registry.import_identities(conn, csv, KEY, "system").added == len(fleet)
        for n, (serial, (tenant_id, _)) in enumerate(fleet.items(), start=1):
            site = registry.add_site(
                conn,
                tenant_id,
                "system",
                customer_id=f"C{n:04d}",
                service_code=f"pss{n:08d}",
                address=f"東京都千代田区丸の内{n}-{n}",
                phone=f"03-1234-{n:04d}",
            )
            gateway = registry.claim_gateway(
                conn, tenant_id, key=KEY, actor="system", claim_code=codes[serial], site_id=site.id
            )
            panel.gateways[serial] = gateway.id
            meter = registry.add_meter(
                conn,
                tenant_id,
                box,
                "system",
                site_id=site.id,
                link="udp",
                gateway_id=gateway.id,
                udp_host="127.0.1.1",
            )
            panel.meters[serial] = meter.id
    now = int(time.time())
    midnight = (now + 9 * 3600) // 86400 * 86400 - 9 * 3600  # JST: today's first slot
    for n, (serial, (_, state)) in enumerate(fleet.items(), start=1):
        if state == "never_seen":
            continue
        link = LinkState.AUTH_FAILED if state == "meter_link_down" else LinkState.JOINED
        report = Status(now, "1.4.2", 3600 * n, link, lqi=200 - n, queue_depth=n)
        send(engine, serial, report)
        if state == "lost_contact":
            send(engine, serial, Event("offline", now, {"reason": "connection lost"}))
        if state != "working":
            continue
        meter = f"m{panel.meters[serial]}"
        sold = serial == "GW-A3"  # a rooftop PV site: sells as well as buys
        fixed = tuple(
            FixedTimeValue(midnight + k * 1800, 10_000 + k * (n + 2), 500 + k * 3 if sold else None)
            for k in range(3)
        )
        instant = (InstantSample(now - 60, 1_000 * n + 234, 10 * n),)
        send(engine, serial, ReadingsBatch(n, meter, instant, fixed, SCALE))


@pytest.fixture(scope="module", params=("sqlite", "postgresql"))
def panel(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Panel]:
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path_factory.mktemp('panel') / 'kenshin.db'}"
        postgres = None
    else:
        postgres = PostgresDatabases(PG_ADMIN_URL)
        try:
            postgres.check()
        except Exception as err:  # psycopg.OperationalError
            _missing(f"PostgreSQL ({str(err).strip().splitlines()[0]})")
        database_url = postgres.create().render_as_string(hide_password=False)
    settings = Settings(
        database_url=database_url,
        secret_key=base64.b64encode(KEY).decode(),
        devices=False,  # the pages and the API; no broker
        jobs=False,  # nor periodic jobs adding events while a test counts them
    )
    app = create_app(settings)
    with pytest.MonkeyPatch.context() as patch, ServerThread(app) as server:
        patch.setattr(security, "_SCRYPT_N", 2**10)  # test-friendly hashes, same format
        engine = app.state.engine
        panel = Panel(server.url, engine, app.state.credential_box, World(engine))
        _build_fleet(panel)
        yield panel
    if postgres is not None:
        postgres.drop_all()


# -- pages in the browser -------------------------------------------------------------------


class Visit:
    """Pages for one test, signed in as a role (or not), closed after.

    A role's browser context (its session, and its cache, which keeps plotly.js after the
    first page) lives for the module; options a page cannot change (a phone's touch
    screen) get a fresh context. Every page is watched: a console error (a CSP refusal, a
    script error) or a request leaving the server (a CDN) fails the test at `check`."""

    def __init__(self, browser, panel: Panel, shared: dict) -> None:
        self.browser, self.panel, self.shared = browser, panel, shared
        self.pages: list = []
        self.contexts: list = []
        self.problems: list[str] = []

    def _context(self, role: str | None, options: dict):
        if role is not None and not options and role in self.shared:
            return self.shared[role]
        context = self.browser.new_context(base_url=self.panel.url, **options)
        if role is not None:
            answer = context.request.post(
                "/api/v1/auth/login", data={"email": EMAILS[role], "password": PASSWORD}
            )
            assert answer.ok, answer.text()
        if role is not None and not options:
            self.shared[role] = context
        else:
            self.contexts.append(context)
        return context

    def __call__(self, role: str | None = None, lang: str = "ja", viewport=None, **options):
        context = self._context(role, options)
        context.add_cookies([{"name": "kenshin_lang", "value": lang, "url": self.panel.url}])
        page = context.new_page()
        self.pages.append(page)
        page.set_viewport_size(viewport or {"width": 1280, "height": 900})
        page.set_default_timeout(15_000)
        page.on(
            "console",
            lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None,
        )
        page.on(
            "request",
            lambda r: (
                None
                if r.url.startswith(self.panel.url) or r.url.startswith("data:")
                else self.problems.append(f"request off the server: {r.url}")
            ),
        )
        return page

    def check(self, *expected: str) -> None:
        """No problems but the `expected` ones (e.g. the status of a refused request)."""
        unexpected = [p for p in self.problems if not any(e in p for e in expected)]
        assert not unexpected, unexpected

    def close(self) -> None:
        for page in self.pages:
            page.close()
        for context in self.contexts:
            context.close()


@pytest.fixture(scope="module")
def signed_in(browser, panel: Panel) -> Iterator[dict]:
    """Each role's browser context, signed in once for the module."""
    contexts: dict = {}
    yield contexts
    for context in contexts.values():
        context.close()


@pytest.fixture
def visit(browser, panel: Panel, signed_in: dict) -> Iterator[Visit]:
    v = Visit(browser, panel, signed_in)
    yield v
    v.close()


def largest_slot(page, meter_id: int, direction: str, first: date, last: date) -> dict | None:
    """The meter's largest 30-minute slot of the JST days (earliest on a tie) as the
    energy API gives the slots, asked with the page's session a slot API's range at a
    time; None when no slot has a value. Its Wh × 2 is the page's peak demand in W."""
    values, start = [], first
    while start <= last:
        end = min(last, start + timedelta(days=92))  # the slot series' 93-day limit
        answer = page.request.get(
            f"/api/v1/meters/{meter_id}/energy",
            params={"from": str(start), "to": str(end), "period": "slot", "direction": direction},
        )
        assert answer.ok, answer.text()
        values += [v for v in answer.json()["values"] if v["wh"] is not None]
        start = end + timedelta(days=1)
    return max(values, key=lambda v: v["wh"], default=None)  # in time order: the earliest


def screenshot(page, name: str) -> None:
    """Save a picture for review. It is no assertion: Chromium on a loaded machine at
    times cannot capture one (a protocol error), so it is tried again, then warned of."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):
        try:
            page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
            return
        except PlaywrightError as err:
            if "capture" not in str(err):
                raise
            last = err
    warnings.warn(f"no screenshot {name}.png: {last}", stacklevel=2)


def download_csv(page, click: str) -> tuple[str, list[list[str]]]:
    """Click `click` (a selector) and read the CSV the browser downloads: its file name and
    rows (checked to be UTF-8 with the BOM Excel needs)."""
    with page.expect_download() as started:
        page.click(click)
    download = started.value
    data = Path(download.path()).read_bytes()
    assert data.startswith("\ufeff".encode()), data[:20]
    text = data.decode("utf-8-sig")
    return download.suggested_filename, list(csv.reader(io.StringIO(text, newline="")))


def factory_gateway(page, serial: str) -> str:
    """A new gateway made at the factory and imported by the platform administrator
    through the API (`page`: signed in as one), unclaimed; its printed claim code."""
    code = new_claim_code()
    key = b64encode(Identity.generate(serial, "http://x").public_key)
    token = page.request.get("/api/v1/auth/me").headers["x-csrf-token"]
    answer = page.request.post(
        "/api/v1/gateways/import",
        data=f"serial,model,public_key,claim_code\n{serial},kenshin-gw,{key},{code}\n",
        headers={"Content-Type": "text/csv", "X-CSRF-Token": token},
    )
    assert answer.ok and answer.json()["added"] == 1, answer.text()
    return code


def no_sideways_page(page, width: int) -> None:
    """Nothing wider than the screen: the page never scrolls sideways."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width, page.url


# -- charts as drawn ---------------------------------------------------------------------------

_CHART_TEXT = """(selector) => {
  const chart = document.querySelector(selector);
  const read = (css) => [...chart.querySelectorAll(css)]
    .filter((e) => e.getBoundingClientRect().width > 0 && getComputedStyle(e).display !== "none");
  const axes = {};
  for (const name of ["x", "y", "y2", "y3"]) {
    axes[name] = read(`.${name}tick text`).map((e) => e.textContent);
  }
  const boxes = read(".xtick text, .ytick text, .y2tick text, .y3tick text, .g-xtitle text, "
    + ".g-ytitle text, .g-y2title text, .g-y3title text, .annotation-text")
    .map((e) => [e.textContent, e.getBoundingClientRect()]);
  const overlaps = [];
  boxes.forEach(([a, r], i) => boxes.slice(i + 1).forEach(([b, s]) => {
    const apart = r.right - 1 <= s.left || s.right - 1 <= r.left
      || r.bottom - 1 <= s.top || s.bottom - 1 <= r.top;
    if (!apart) {
      overlaps.push(`${a} / ${b}`);
    }
  }));
  return { axes, overlaps, annotations: read(".annotation-text").map((e) => e.textContent) };
}"""
UNITS = {"Wh": ("Wh", "kWh", "MWh", "GWh"), "W": ("W", "kW", "MW", "GW")}


def readable_chart(page, selector: str, base: str = "Wh") -> dict:
    """The chart as plotly drew it (tick labels read from its SVG) reads at a glance: no
    two labels or titles on top of each other, no x label twice in a row, and every y
    label distinct, in one unit fitting the magnitude (the top tick below 1,000 of it,
    and not under 1 of a unit above the base), or one "0 Wh" for an axis of nothing.
    Returns the labels by axis ("x", "y", "y2") and the annotations."""
    drawn = page.evaluate(_CHART_TEXT, selector)
    assert not drawn["overlaps"], (selector, drawn["overlaps"])
    x = drawn["axes"]["x"]
    assert x, selector
    assert all(a != b for a, b in itertools.pairwise(x)), (selector, x)
    y = drawn["axes"]["y"]
    assert y and len(set(y)) == len(y), (selector, y)
    units = {label.rsplit(" ", 1)[-1] for label in y}
    assert len(units) == 1 and units <= set(UNITS[base]), (selector, y)
    (unit,) = units
    top = max(abs(float(label.rsplit(" ", 1)[0].replace(",", ""))) for label in y)
    if top == 0:
        assert y == [f"0 {base}"], (selector, y)
    else:
        assert top < 1000 and (unit == base or top >= 1), (selector, y)
    return drawn


def no_negative_power(page) -> None:
    """Power is bought or sold, never written as negative watts ("-850 W")."""
    text = page.locator("body").inner_text()
    negative = re.findall(r"[-−]\s?[\d,.]+\s?k?W\b", text)
    assert not negative, (page.url, negative)
