"""The retailer view in real headless Chromium, on SQLite and PostgreSQL: the day's plan,
forecast band, actual and projected imbalance as the API reports them, the slots past the
threshold, the plan upload (operators and administrators only), and the tenant wall."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from kenshin.server import schema as s
from kenshin.server.web.i18n import translator

from .analytics_fixtures import fill_retail, jst_today, plan_csv, plan_wh
from .conftest import (
    LANGS,
    ROLES,
    Panel,
    no_negative_power,
    no_sideways_page,
    readable_chart,
    screenshot,
)

TRACES = ("low", "high", "mid", "plan", "actual", "imbalance")
KEYS = {
    "low": "low_wh",
    "high": "high_wh",
    "mid": "mid_wh",
    "plan": "plan_wh",
    "actual": "actual_wh",
}


@pytest.fixture(scope="module")
def retail(panel: Panel) -> Panel:
    fill_retail(panel)
    return panel


def wait_drawn(page, times: int = 1) -> None:
    page.wait_for_function(
        "(n) => Number(document.body.dataset.drawn || 0) >= n"
        " && document.getElementById('chart').data !== undefined",
        arg=times,
    )


def traces(page) -> dict[str, dict]:
    data = page.evaluate(
        "document.getElementById('chart').data.map(t => ({uid: t.uid, x: t.x, y: t.y}))"
    )
    return {trace["uid"]: trace for trace in data}


def api_outlook(page, day) -> dict:
    """The JSON API's answer, asked with the page's own session."""
    return page.evaluate("(day) => Kenshin.api('/api/v1/imbalance?day=' + day)", day.isoformat())


def kwh(wh):
    return None if wh is None else wh / 1000


def assert_chart_is_the_apis(page, outlook: dict) -> None:
    plotted = traces(page)
    assert set(plotted) == set(TRACES)
    starts = [slot["start"] for slot in outlook["slots"]]
    assert len(starts) == 48
    for uid, key in KEYS.items():
        assert plotted[uid]["x"] == starts, uid
        assert plotted[uid]["y"] == [kwh(slot[key]) for slot in outlook["slots"]], uid
    # The bars: the projected imbalance, only where the slot is still to come.
    bars = plotted["imbalance"]["y"]
    for value, slot in zip(bars, outlook["slots"], strict=True):
        if value is not None:
            assert value == kwh(slot["imbalance_wh"])
            assert slot["actual_wh"] is None


def assert_readable(page) -> None:
    """Both axes in a unit by magnitude, labels once each and apart (the helper reads the
    energy axis; the imbalance axis, signed, is read here)."""
    drawn = readable_chart(page, "#chart")
    imbalance = drawn["axes"]["y2"]
    assert imbalance and len(set(imbalance)) == len(imbalance), imbalance
    assert len({label.rsplit(" ", 1)[-1] for label in imbalance}) == 1, imbalance
    assert {label.rsplit(" ", 1)[-1] for label in imbalance} <= {"Wh", "kWh", "MWh"}, imbalance


@pytest.mark.parametrize("lang", LANGS)
def test_on_a_phone_the_retailer_view_fits(visit, retail, lang):
    """390 px: the chart's labels apart, the page never sideways (the at-risk table
    scrolls inside its own box), no negative watts."""
    page = visit(
        "operator", lang, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page.goto("/retail")
    wait_drawn(page)
    assert_readable(page)
    no_sideways_page(page, 390)
    no_negative_power(page)
    box = page.locator("#at-risk .table-wrap")
    assert box.evaluate("e => e.getBoundingClientRect().right") <= 390
    screenshot(page, f"retail-{lang}-phone")
    visit.check()


@pytest.mark.parametrize(("role", "lang"), [(r, lang) for r in ROLES for lang in LANGS])
def test_the_retailer_sees_plan_forecast_actual_and_imbalance(visit, retail, role, lang):
    t = translator(lang)
    today = jst_today()
    page = visit(role, lang)
    response = page.goto("/retail")
    assert response.status == 200
    wait_drawn(page)
    expect(page.locator("h1")).to_have_text(t("retail.day_title", date=t.date(today)))
    expect(page.locator("nav.nav a[aria-current=page]")).to_have_text(t("nav.retail"))

    # What the page drew (the outlook it came with), and the API's answer asked after it:
    # the same day and plan. Which slots are still to come (and so at risk) may differ
    # if a half hour ended in between, so the page is checked against what it drew.
    outlook = page.evaluate("() => Kenshin.readJSON('client').outlook")
    api = api_outlook(page, today)
    assert outlook["day"] == api["day"] == today.isoformat()
    assert [(slot["start"], slot["plan_wh"]) for slot in outlook["slots"]] == [
        (slot["start"], slot["plan_wh"]) for slot in api["slots"]
    ]
    assert_chart_is_the_apis(page, outlook)
    assert_readable(page)
    # And the API's numbers are the database's: the plan the admin uploaded, the actuals.
    with retail.engine.connect() as conn:
        plan = dict(
            conn.execute(
                select(s.procurement_plan.c.slot_start, s.procurement_plan.c.wh).where(
                    s.procurement_plan.c.tenant_id == retail.world.tenant_a
                )
            ).all()
        )
        actual = dict(
            conn.execute(
                select(s.tenant_energy.c.start, s.tenant_energy.c.wh).where(
                    s.tenant_energy.c.tenant_id == retail.world.tenant_a,
                    s.tenant_energy.c.period == "slot",
                    s.tenant_energy.c.direction == 0,
                )
            ).all()
        )
    plotted = traces(page)
    for n, slot in enumerate(outlook["slots"]):
        at = datetime.fromisoformat(slot["start"])
        assert plotted["plan"]["y"][n] == kwh(plan.get(at))
        if plotted["actual"]["y"][n] is not None:
            assert plotted["actual"]["y"][n] == kwh(actual[at])

    # The slots past the threshold: the API's at-risk slots, in order.
    at_risk = [slot for slot in outlook["slots"] if slot["at_risk"]]
    rows = page.locator("#at-risk-rows tr")
    expect(rows).to_have_count(len(at_risk))
    for row, slot in zip(rows.all(), at_risk, strict=True):
        assert row.get_attribute("data-start") == slot["start"]
        expect(row.locator(".plan")).to_have_text(t.kwh(slot["plan_wh"]))
        expect(row.locator(".projected")).to_have_text(t.kwh(slot["projected_wh"]))
        expect(row.locator(".request")).to_have_text(t("retail.request_energy_saving"))
    expect(page.locator("#at-risk-title")).to_have_text(
        t("retail.at_risk_title", pct=t.number(outlook["threshold_pct"], 1))
    )
    if not at_risk:
        expect(page.locator("#at-risk-none")).to_have_text(t("retail.at_risk_none"))
    expect(page.locator("#plan-total")).to_have_text(
        t.kwh(sum(slot["plan_wh"] for slot in outlook["slots"]))
    )

    if role == "viewer":  # no upload for viewers, and the API refuses them anyway
        expect(page.locator("#plan-form")).to_have_count(0)
        expect(page.locator("#viewer-note")).to_have_text(t("retail.viewer_note"))
        status = page.evaluate(
            """() => fetch('/api/v1/procurement-plan.csv', {method: 'PUT',
                headers: {'Content-Type': 'text/csv'},
                body: 'slot_start,kwh\\n2026-01-01T00:00,1\\n'}).then(r => r.status)"""
        )
        assert status == 403
    else:
        expect(page.locator("#plan-form input[type=file]")).to_be_visible()
    if role == "operator":
        screenshot(page, f"retail-{lang}")
    visit.check("status of 403 (Forbidden)")


def test_an_operator_uploads_a_plan_and_the_chart_shows_it(visit, retail):
    t = translator("en")
    today = jst_today()
    page = visit("operator", "en")
    page.goto("/retail")
    wait_drawn(page)

    def new_plan(k: int) -> int:
        return 1_000 + 100 * k  # easy to tell from the fixture's plan

    page.set_input_files(
        "#plan-file",
        files=[
            {
                "name": "plan.csv",
                "mimeType": "text/csv",
                "buffer": plan_csv(today, new_plan).encode(),
            }
        ],
    )
    page.click("#plan-form button[type=submit]")
    expect(page.locator("#plan-message")).to_have_text(t("retail.upload_done", slots="48"))
    wait_drawn(page, 2)
    plotted = traces(page)
    assert plotted["plan"]["y"] == [new_plan(k) / 1000 for k in range(48)]
    assert_chart_is_the_apis(page, api_outlook(page, today))
    with retail.engine.connect() as conn:
        stored = conn.execute(
            select(s.procurement_plan.c.wh, s.procurement_plan.c.uploaded_by)
            .where(s.procurement_plan.c.tenant_id == retail.world.tenant_a)
            .order_by(s.procurement_plan.c.slot_start)
        ).all()
    assert [row.wh for row in stored[-48:]] == [new_plan(k) for k in range(48)]
    assert stored[-1].uploaded_by == f"user:{retail.world.operator_a}"

    # A wrong file: the API's problem detail, and nothing stored.
    page.set_input_files(
        "#plan-file",
        files=[
            {
                "name": "bad.csv",
                "mimeType": "text/csv",
                "buffer": f"date,slot,kwh\n{today},1,1.5\n{today},49,2\n".encode(),
            }
        ],
    )
    page.click("#plan-form button[type=submit]")
    expect(page.locator("#plan-message")).to_have_text(
        t("retail.upload_refused", detail="line 3: slot must be 1 to 48, not 49")
    )
    expect(page.locator("#plan-message")).to_have_class("notice error")
    assert traces(page)["plan"]["y"][0] == new_plan(0) / 1000

    # Back to the fixture's plan, for the other tests of the module.
    page.set_input_files(
        "#plan-file",
        files=[
            {
                "name": "plan.csv",
                "mimeType": "text/csv",
                "buffer": plan_csv(today, plan_wh).encode(),
            }
        ],
    )
    page.click("#plan-form button[type=submit]")
    wait_drawn(page, 3)
    assert traces(page)["plan"]["y"] == [plan_wh(k) / 1000 for k in range(48)]
    visit.check("status of 400 (Bad Request)")


@pytest.mark.parametrize("lang", LANGS)
def test_the_day_picker_moves_a_day_at_a_time(visit, retail, lang):
    t = translator(lang)
    today = jst_today()
    page = visit("viewer", lang)
    page.goto("/retail")
    wait_drawn(page)
    page.click("#next-day")
    page.wait_for_url(f"**/retail?day={today + timedelta(days=1)}")
    wait_drawn(page)
    expect(page.locator("h1")).to_have_text(
        t("retail.day_title", date=t.date(today + timedelta(days=1)))
    )
    tomorrow = api_outlook(page, today + timedelta(days=1))
    assert_chart_is_the_apis(page, tomorrow)
    assert all(v is not None for v in traces(page)["mid"]["y"])  # the forecast of tomorrow
    page.click("#prev-day")
    page.click("#prev-day")
    page.wait_for_url(f"**/retail?day={today - timedelta(days=1)}")
    wait_drawn(page)
    expect(page.locator("#no-data")).to_be_visible()  # nothing stored for yesterday
    page.click("#to-today")
    page.wait_for_url("**/retail")
    wait_drawn(page)
    visit.check()


@pytest.mark.parametrize("lang", LANGS)
def test_a_generator_has_no_retailer_view(visit, retail, lang):
    t = translator(lang)
    page = visit("viewer_b", lang)
    page.goto("/")
    expect(page.locator("nav.nav a[href='/retail']")).to_have_count(0)  # ("Demand response" is)
    response = page.goto("/retail")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text(t("error.not_found"))
    visit.check("status of 404 (Not Found)")
