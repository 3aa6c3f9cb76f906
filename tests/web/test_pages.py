"""The control panel in real headless Chromium, against the real server on SQLite and on
PostgreSQL: every page in both languages as each role, what it shows checked against the
database, and a screenshot of each under build/screenshots/ for review."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from kenshin.server import schema as s
from kenshin.server.metering.rollups import day_start
from kenshin.server.web.assets import PLOTLY_URL
from kenshin.server.web.i18n import translator
from kenshin.server.web.queries import PANEL_STATES
from kenshin.wire import CommandResult, InstantSample, ReadingsBatch

from .conftest import EMAILS, FLEET_A, LANGS, PASSWORD, ROLES, Panel, screenshot, send

each_role_and_language = pytest.mark.parametrize(
    ("role", "lang"), [(role, lang) for role in ROLES for lang in LANGS]
)


def path_of(page) -> str:
    return urlparse(page.url).path


def wait_for_donut(page) -> None:
    page.wait_for_function("document.getElementById('donut')?.data !== undefined")


def today_wh(panel: Panel, *, tenant_id: int | None = None, meter_id: int | None = None):
    """Today's (JST) bought and sold Wh, from the rollup the page must show."""
    table = s.tenant_energy if tenant_id is not None else s.meter_energy
    owner = (
        table.c.tenant_id == tenant_id if tenant_id is not None else table.c.meter_id == meter_id
    )
    with panel.engine.connect() as conn:
        rows = conn.execute(
            select(table.c.direction, table.c.wh).where(
                owner, table.c.period == "day", table.c.start == day_start(s.utcnow())
            )
        )
        by_direction = dict(rows.all())
    return by_direction.get(0), by_direction.get(1)


# -- login and logout -----------------------------------------------------------------------


@each_role_and_language
def test_login_and_logout(visit, panel, role, lang):
    t = translator(lang)
    page = visit(lang=lang)
    page.goto("/list?state=working")
    assert path_of(page) == "/login"  # no session: to the login page, and back after
    expect(page.locator("h1")).to_have_text(t("login.title"))
    if role == "operator":
        screenshot(page, f"login-{lang}")

    page.fill("input[name=email]", EMAILS[role])
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text(t("login.failed"))

    page.fill("input[name=email]", EMAILS[role].upper())  # as the API: case does not matter
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/list?state=working")
    expect(page.locator(".who")).to_have_text(
        t("nav.signed_in_as", name=EMAILS[role], role=t(f"role.{role}"))
    )

    page.click("form.logout button")
    page.wait_for_url("**/login?out=true*")
    expect(page.locator(".notice")).to_have_text(t("login.logged_out"))
    page.goto("/")
    assert path_of(page) == "/login"  # the session is over on the server too
    visit.check()


def test_login_never_sends_anyone_off_the_server(visit, panel):
    page = visit(lang="en")
    page.goto("/login?next=//evil.example/")
    page.fill("input[name=email]", EMAILS["viewer"])
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{panel.url}/")
    visit.check()


# -- Home ---------------------------------------------------------------------------------


@each_role_and_language
def test_home_shows_the_fleet_by_state_todays_energy_and_the_latest_events(
    visit, panel, role, lang
):
    t = translator(lang)
    tenant_id = panel.world.tenant_a
    page = visit(role, lang)
    page.goto("/")
    wait_for_donut(page)

    counts = panel.state_counts(tenant_id)
    assert counts == {state: list(FLEET_A.values()).count(state) for state in PANEL_STATES}
    donut = page.evaluate("document.getElementById('donut').data[0]")
    assert donut["values"] == [counts[state] for state in PANEL_STATES]
    assert donut["labels"] == [t(f"state.{state}") for state in PANEL_STATES]
    for state in PANEL_STATES:
        legend = page.locator(f'.legend li[data-state="{state}"]')
        expect(legend.locator(".count")).to_have_text(t.number(counts[state]) + t("home.units"))
        expect(legend.locator("a")).to_have_attribute("href", f"/list?state={state}")

    bought, sold = today_wh(panel, tenant_id=tenant_id)
    assert bought and sold  # the fleet did buy and sell today
    expect(page.locator("#bought")).to_have_text(t.kwh(bought))
    expect(page.locator("#sold")).to_have_text(t.kwh(sold))

    with panel.engine.connect() as conn:
        newest = conn.execute(
            select(s.events)
            .where(s.events.c.tenant_id == tenant_id)
            .order_by(s.events.c.at.desc(), s.events.c.id.desc())
            .limit(20)
        ).all()
    rows = page.locator("#events tbody tr")
    expect(rows).to_have_count(len(newest))
    for row, event in zip(rows.all()[:5], newest, strict=False):
        assert row.get_attribute("data-event-id") == str(event.id)
        expect(row.locator("td").nth(0)).to_have_text(t.datetime(event.at))
        expect(row.locator("td").nth(1)).to_have_text(t.get(f"event.{event.code}", event.code))
    if role == "operator":
        screenshot(page, f"home-{lang}")
    visit.check()


def _click_slice(page, index: int) -> None:
    """A real mouse click inside the donut's `index`th segment (found by asking the page
    which element lies under points around the ring)."""
    point = page.evaluate(
        """(index) => {
            const target = document.querySelectorAll('#donut g.slice')[index];
            const box = document.querySelector('#donut .pielayer').getBoundingClientRect();
            const cx = box.left + box.width / 2, cy = box.top + box.height / 2;
            const r = box.width / 2 * 0.8;
            for (let degrees = 0; degrees < 360; degrees += 3) {
                const a = degrees * Math.PI / 180;
                const x = cx + r * Math.sin(a), y = cy - r * Math.cos(a);
                if (document.elementFromPoint(x, y)?.closest('g.slice') === target) return [x, y];
            }
            return null;
        }""",
        index,
    )
    assert point, f"no point inside segment {index}"
    page.mouse.click(*point)


@pytest.mark.parametrize("lang", LANGS)
def test_a_donut_segment_opens_the_list_of_its_state(visit, panel, lang):
    t = translator(lang)
    page = visit("viewer", lang)
    for index, state in enumerate(PANEL_STATES):
        page.goto("/")
        wait_for_donut(page)
        _click_slice(page, index)  # every state has gateways, so every segment is drawn
        page.wait_for_url(f"**/list?state={state}")
        rows = page.locator("#rows tr")
        expect(rows).to_have_count(list(FLEET_A.values()).count(state))
        for badge in page.locator("#rows .badge").all():
            expect(badge).to_have_text(t(f"state.{state}"))
    visit.check()


# -- List ---------------------------------------------------------------------------------


@each_role_and_language
def test_the_list_shows_one_row_per_site_of_the_tenant(visit, panel, role, lang):
    t = translator(lang)
    page = visit(role, lang)
    page.goto("/list")
    client = page.evaluate("JSON.parse(document.getElementById('client').textContent)")
    assert client["refresh_ms"] == 20_000  # the default: every 20 seconds

    rows = page.locator("#rows tr")
    expect(rows).to_have_count(len(FLEET_A))  # tenant A's sites; never tenant B's
    for n, (serial, state) in enumerate(FLEET_A.items(), start=1):
        row = page.locator("#rows tr").nth(n - 1)  # sorted by service code
        cells = row.locator("td")
        expect(cells.nth(0)).to_have_text(f"pss{n:08d}")
        expect(cells.nth(1)).to_have_text(f"C{n:04d}")
        expect(cells.nth(2)).to_have_text(f"東京都千代田区丸の内{n}-{n}")
        expect(cells.nth(3)).to_have_text(f"03-1234-{n:04d}")
        expect(cells.nth(4)).to_have_text(t(f"state.{state}"))
        expect(cells.nth(4).locator("a")).to_have_attribute(
            "href", f"/gateways/{panel.gateways[serial]}"
        )
        bought, _ = today_wh(panel, meter_id=panel.meters[serial])
        if state == "working":  # only those sent readings
            with panel.engine.connect() as conn:
                power_w = conn.execute(
                    select(s.meter_latest.c.power_w).where(
                        s.meter_latest.c.meter_id == panel.meters[serial]
                    )
                ).scalar_one()
            expect(cells.nth(5)).to_have_text(t.watts(power_w))
            assert bought
            expect(cells.nth(6)).to_have_text(t.kwh(bought))
        else:
            expect(cells.nth(5)).to_have_text(t("list.not_measured"))
            expect(cells.nth(6)).to_have_text("—")
    if role == "operator":
        screenshot(page, f"list-{lang}")
    visit.check()


def test_the_list_refreshes_itself_without_reloading_or_losing_the_scroll(visit, panel):
    t = translator("ja")
    page = visit("operator", "ja", viewport={"width": 900, "height": 360})
    page.goto("/list?refresh=2")  # the interval is injectable; 20 s by default
    rows = page.locator("#rows tr")
    expect(rows).to_have_count(len(FLEET_A))
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 0
    page.evaluate("window.stillTheSamePage = true")

    started = time.monotonic()
    now = int(time.time())
    meter = panel.meters["GW-A2"]
    send(panel.engine, "GW-A2", ReadingsBatch(100, f"m{meter}", (InstantSample(now, 4321, 99),)))
    power = rows.nth(1).locator("td").nth(5)
    expect(power).to_have_text(t.watts(4321), timeout=25_000)
    print(f"\nthe list showed the new power {time.monotonic() - started:.1f} s after the write")
    # Selling is said in words, as on Plants, never as negative watts (issue 17 item 6).
    send(panel.engine, "GW-A2", ReadingsBatch(101, f"m{meter}", (InstantSample(now + 1, -850),)))
    expect(power).to_have_text(t("list.selling", watts=t.watts(850)), timeout=25_000)
    send(panel.engine, "GW-A2", ReadingsBatch(102, f"m{meter}", (InstantSample(now + 2, 4321),)))
    expect(power).to_have_text(t.watts(4321), timeout=25_000)

    assert page.evaluate("window.stillTheSamePage") is True  # not reloaded
    assert page.evaluate("window.scrollY") == scrolled
    assert int(page.evaluate("document.body.dataset.loads")) >= 2
    visit.check()


def test_the_list_searches_and_pages(visit, panel):
    page = visit("viewer", "en")
    page.goto("/list?q=丸の内3-")
    expect(page.locator("#rows tr")).to_have_count(1)
    expect(page.locator("#rows tr td").nth(1)).to_have_text("C0003")
    page.goto("/list?state=never_seen&state=working")
    expect(page.locator("#rows tr")).to_have_count(5)
    visit.check()


# -- the gateway page -------------------------------------------------------------------------


@each_role_and_language
def test_the_gateway_page_shows_state_status_settings_and_commands(visit, panel, role, lang):
    t = translator(lang)
    gateway_id = panel.gateways["GW-A1"]
    page = visit(role, lang)
    response = page.goto(f"/gateways/{gateway_id}")
    assert response.status == 200
    expect(page.locator("h1")).to_contain_text(t("gateway.title", serial="GW-A1"))
    expect(page.locator("#state")).to_have_text(t("state.working"))
    with panel.engine.connect() as conn:
        report = conn.execute(
            select(s.gateway_reports)
            .where(s.gateway_reports.c.gateway_id == gateway_id)
            .order_by(s.gateway_reports.c.id.desc())
        ).first()
        gateway = conn.execute(select(s.gateways).where(s.gateways.c.id == gateway_id)).one()
    expect(page.locator("#link")).to_have_text(t(f"link.{report.link}"))
    dbm = t.number(round(0.275 * report.lqi - 104.27, 1), 1)
    expect(page.locator("#lqi")).to_contain_text(f"{report.lqi}")
    expect(page.locator("#lqi")).to_contain_text(f"{dbm} dBm")
    expect(page.locator("#queue-depth")).to_have_text(t.number(report.queue_depth))
    expect(page.locator("#agent-version")).to_have_text(report.agent_version)
    expect(page.locator("#settings")).to_contain_text("poll.instant_interval_s")
    expect(page.locator("#state-history")).to_contain_text(
        t("gateway.from_to", from_state=t("state.never_seen"), to_state=t("state.working"))
    )
    expect(page.locator("#gateway-events")).to_contain_text(t("event.gateway_claimed"))
    assert gateway.state == "working"

    buttons = page.locator("#command-buttons form")
    if role == "viewer":
        expect(buttons).to_have_count(0)
        # Nor can a viewer go round the page: the API refuses them too.
        status = page.evaluate(
            """(url) => fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({name: 'restart'})}).then(r => r.status)""",
            f"/api/v1/gateways/{gateway_id}/commands",
        )
        assert status == 403
    else:
        expect(buttons).to_have_count(4)
    if role == "operator":
        screenshot(page, f"gateway-{lang}")
    visit.check("status of 403 (Forbidden)")


def test_an_operator_runs_commands_and_sees_their_results(visit, panel):
    t = translator("en")
    serial = "GW-A2"
    gateway_id = panel.gateways[serial]
    page = visit("operator", "en")
    page.on("dialog", lambda dialog: dialog.accept())  # "Restart the gateway?" — yes
    page.goto(f"/gateways/{gateway_id}")

    def run(name: str) -> dict:
        before = page.locator("#command-rows tr").count()
        page.locator(f'form[data-command="{name}"] button').click()
        expect(page.locator("#command-message")).to_have_text(t("command.queued"))
        expect(page.locator("#command-rows tr")).to_have_count(before + 1)
        newest = page.locator("#command-rows tr").first
        expect(newest.locator("td").nth(1)).to_have_text(t(f"command.{name}"))
        expect(newest.locator(".state")).to_have_text(t("command_state.pending"))
        with panel.engine.connect() as conn:
            command = conn.execute(
                select(s.commands).where(
                    s.commands.c.id == int(newest.get_attribute("data-command-id"))
                )
            ).one()
        assert (command.gateway_id, command.name) == (gateway_id, name)
        assert command.created_by == f"user:{panel.world.operator_a}"
        return command

    page.fill('form[data-command="read_property"] input[name=epc]', "0xD3")
    assert run("read_property").args == {"epc": "0xD3"}
    backfill = run("backfill").args
    assert backfill["to_s"] - backfill["from_s"] == 24 * 3600
    assert run("rejoin").args == {}
    restart = run("restart")

    # The gateway answers (through the real ingest); the page follows without a reload.
    send(panel.engine, serial, CommandResult(restart.id, True, {"restarting": True}))
    row = page.locator(f'#command-rows tr[data-command-id="{restart.id}"]')
    expect(row.locator(".state")).to_have_text(t("command_state.done"), timeout=10_000)
    expect(row.locator(".result")).to_have_text(t("gw.result_restarting"))
    visit.check()


@pytest.mark.parametrize("lang", LANGS)
def test_another_tenants_gateway_is_not_found(visit, panel, lang):
    t = translator(lang)
    theirs = panel.gateways["GW-B1"]
    page = visit("admin", lang)
    for path in (f"/gateways/{theirs}", "/gateways/999999", "/gateways/not-a-number"):
        response = page.goto(path)
        assert response.status == 404, path
        expect(page.locator("h1")).to_have_text(t("error.not_found"))
        expect(page.locator("main")).not_to_contain_text("GW-B1")
    screenshot(page, f"not-found-{lang}")

    # The page is there for its own tenant: the 404 is the wall, not a broken page.
    own = visit("viewer_b", lang)
    assert own.goto(f"/gateways/{theirs}").status == 200
    expect(own.locator("h1")).to_contain_text("GW-B1")
    own.goto("/")
    wait_for_donut(own)
    assert own.evaluate("document.getElementById('donut').data[0].values") == [1, 0, 0, 0]
    visit.check("status of 404 (Not Found)")


def test_a_platform_administrator_is_sent_to_the_api(visit, panel):
    page = visit("platform_admin", "en")
    response = page.goto("/list")  # "/" is theirs: the tenants page (test_admin_pages.py)
    assert response.status == 403
    expect(page.locator("h1")).to_have_text(translator("en")("error.platform_admin"))
    visit.check("status of 403 (Forbidden)")


# -- phone, static files, headers -----------------------------------------------------------


def test_on_a_phone_the_navigation_folds_behind_a_menu_button(visit, panel):
    page = visit(
        "operator", "ja", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page.goto("/")
    wait_for_donut(page)
    nav = page.locator("nav.nav")
    expect(nav).to_be_hidden()
    page.locator(".nav-burger").click()
    expect(nav).to_be_visible()
    expect(nav.get_by_role("link", name=translator("ja")("nav.list"))).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways page
    screenshot(page, "home-ja-phone")
    page.goto("/list")
    expect(page.locator("#rows tr")).to_have_count(len(FLEET_A))
    screenshot(page, "list-ja-phone")
    visit.check()


@pytest.mark.parametrize("lang", LANGS)
def test_the_pages_javascript_formats_as_the_server_does(visit, panel, lang):
    t = translator(lang)
    page = visit(lang=lang, timezone_id="America/New_York")  # JST whatever the browser's zone
    page.goto("/login")
    at = datetime(2026, 1, 4, 23, 5, tzinfo=UTC)
    shown = page.evaluate(
        """([instant, lang]) => [
            Kenshin.datetime(instant, lang), Kenshin.kwh(1234500, lang), Kenshin.watts(1234, lang)
        ]""",
        [at.isoformat(), lang],
    )
    assert shown == [t.datetime(at), t.kwh(1_234_500), t.watts(1234)]
    visit.check()


def test_plotly_comes_from_the_server_itself_cached_for_a_year(panel):
    answer = httpx.get(panel.url + PLOTLY_URL, headers={"Accept-Encoding": "gzip"})
    assert answer.status_code == 200
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert answer.text.startswith("/**\n* plotly.js v")
    own = httpx.get(panel.url + "/static/app.js")
    assert own.headers["cache-control"] == "no-cache" and "etag" in own.headers


def test_pages_are_never_cached_and_allow_only_their_own_scripts(panel):
    with httpx.Client(base_url=panel.url) as client:
        login = client.get("/login", params={"next": "/"})
        assert login.headers["cache-control"] == "no-store"
        assert "script-src 'self';" in login.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in login.headers["content-security-policy"]
        token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)[1]
        form = f"email={EMAILS['viewer']}&password={PASSWORD.replace(' ', '+')}&next=/list"
        answer = client.post(
            "/login",
            content=f"{form}&csrf_token={token}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/list"
        assert client.get("/").headers["cache-control"] == "no-store"
        switched = client.get("/", params={"lang": "en"})
        assert '<html lang="en">' in switched.text
        assert '<html lang="en">' in client.get("/list").text  # remembered in a cookie
