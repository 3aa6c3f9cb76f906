"""The demand-response pages in real headless Chromium, in both languages: an operator
makes an energy-saving request through /dr's form (the JSON API behind it), sees it
listed, opens it (its homes, counts and chart) and cancels it; a request the API refuses
says why in the form; a viewer reads without forms or buttons; a rule's proposal is
confirmed from the list; a final event shows its results and their CSV; the Demand page's
slots at risk open the form filled in; another tenant's event is a 404 page."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from kenshin.jst import JST, SLOT, jst_midnight
from kenshin.server import schema as s
from kenshin.server.dr import results, rules, service
from kenshin.server.dr.queries import get_event, tenant_homes
from kenshin.server.web.i18n import translator

from .analytics_fixtures import api_client, fill_retail, jst_today, plan_csv, plan_wh
from .conftest import EMAILS, LANGS, Panel, download_csv, screenshot


def _event(panel: Panel, event_id: int):
    with panel.engine.connect() as conn:
        return get_event(conn, panel.world.tenant_a, event_id)


def _homes(panel: Panel) -> int:
    with panel.engine.connect() as conn:
        return len(tenant_homes(conn, panel.world.tenant_a))


def _confirming(page):
    """Every confirm() on the page answered OK."""
    page.on("dialog", lambda dialog: dialog.accept())
    return page


@pytest.mark.parametrize("lang", LANGS)
def test_an_operator_makes_a_request_sees_it_listed_opens_and_cancels_it(visit, panel, lang):
    t = translator(lang)
    page = _confirming(visit("operator", lang))
    page.goto("/dr")
    expect(page.locator("h1")).to_have_text(t("dr.title"))
    expect(page.locator("nav.nav a[aria-current=page]")).to_have_text(t("nav.dr"))
    day = jst_today() + timedelta(days=2)
    name = f"夕方の節電 {lang}"
    form = page.locator("#dr-form")
    form.locator("input[name=name]").fill(name)
    form.locator("#dr-date").fill(day.isoformat())
    form.locator("#dr-start").select_option("36")  # 18:00
    form.locator("#dr-end").select_option("39")  # 19:30
    slots = form.locator("#dr-slots input")
    expect(slots).to_have_count(3)
    form.locator("#dr-every").fill("1.5")
    slots.nth(2).fill("0.75")
    form.locator("input[name=price_jpy_kwh]").fill("30.5")
    form.locator("button[type=submit]").click()

    page.wait_for_url(re.compile(r"/dr/\d+$"))
    event_id = int(page.url.rsplit("/", 1)[1])
    start = datetime.combine(day, time(18), JST)
    row = _event(panel, event_id)
    assert (row.name, row.start_at, row.end_at) == (name, start, start + 3 * SLOT)
    assert (row.targets_w, row.shed_level, row.price_jpy_kwh) == ([1500, 1500, 750], None, 30.5)
    assert row.state == "scheduled" and row.created_by.startswith("user:")  # the operator
    expect(page.locator("h1")).to_contain_text(name)
    expect(page.locator("#dr-state")).to_have_text(t("dr.state.scheduled"))
    expect(page.locator("#dr-when")).to_have_text(t.span(start, start + 3 * SLOT))
    homes = _homes(panel)
    expect(page.locator("#dr-count-total")).to_have_text(str(homes))
    expect(page.locator("#dr-count-opted_out")).to_have_text("0")
    expect(page.locator("table.dr-homes tbody tr")).to_have_count(homes)
    expect(page.locator("table.dr-homes tbody tr").first).to_contain_text(
        t("dr.home_state.pending")
    )
    link = page.locator("a.opt-out-link").first
    expect(link).to_have_attribute("href", re.compile(r"^/dr/opt-out/[A-Za-z0-9_-]{40,}$"))
    page.wait_for_selector("body[data-drawn]")
    expect(page.locator("#dr-chart .main-svg").first).to_be_attached()  # plotly, no CDN
    screenshot(page, f"dr-event-{lang}")

    page.goto("/dr")
    listed = page.locator(f"table.dr-events tr[data-event-id='{event_id}']")
    expect(listed).to_contain_text(name)
    expect(listed).to_contain_text(t("dr.state.scheduled"))
    expect(listed).to_contain_text(t.span(start, start + 3 * SLOT))
    expect(listed).to_contain_text("1.500 kW")  # 0.750–1.500 kW
    screenshot(page, f"dr-{lang}")
    listed.locator("a").first.click()
    page.wait_for_url(f"**/dr/{event_id}")
    page.locator("#dr-actions button[data-action=cancel]").click()
    expect(page.locator("#dr-state")).to_have_text(t("dr.state.cancelled"))
    assert _event(panel, event_id).state == "cancelled"
    expect(page.locator("#dr-actions")).to_have_count(0)
    visit.check()


def test_a_request_the_api_refuses_says_why_in_the_form(visit, panel):
    t = translator("en")
    page = visit("operator", "en")
    page.goto("/dr")
    form = page.locator("#dr-form")
    form.locator("input[name=name]").fill("too early")
    form.locator("#dr-date").fill(jst_today().isoformat())
    form.locator("#dr-start").select_option("0")  # today 00:00: past
    form.locator("#dr-end").select_option("1")
    form.locator("#dr-every").fill("1")
    form.locator("button[type=submit]").click()
    error = form.locator(".form-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text(t("form.failed", reason="start must be in the future"))
    form.locator("#dr-kind").select_option("shed")
    expect(form.locator("#dr-slots")).to_be_hidden()
    form.locator("#dr-date").fill((jst_today() + timedelta(days=1)).isoformat())
    form.locator("#dr-start").select_option("40")
    form.locator("#dr-end").select_option("38")  # the end before the start
    form.locator("button[type=submit]").click()
    expect(error).to_contain_text("end must follow start")
    assert page.url.endswith("/dr")
    with panel.engine.connect() as conn:
        names = conn.execute(select(s.dr_events.c.name)).scalars().all()
    assert "too early" not in names
    visit.check("400")


@pytest.fixture(scope="module")
def proposal(panel: Panel) -> int:
    """An imbalance rule's proposal for tomorrow evening, waiting for an operator."""
    tenant = panel.world.tenant_a
    start = jst_midnight(jst_today() + timedelta(days=1)) + timedelta(hours=19)
    with panel.engine.begin() as conn:
        rule = rules.add_rule(
            conn, tenant, name="夕方の不足", threshold_w=1000, slots=[38, 39], target_w=800,
            auto=False, actor="system",
        )  # fmt: skip
        return service.create_event(
            conn, tenant, name="夕方の不足 19:00-20:00", start=start, end=start + 2 * SLOT,
            actor=f"dr_rule:{rule}", targets_w=[800, 800], rule_id=rule, proposed=True,
        )  # fmt: skip


@pytest.mark.parametrize("lang", LANGS)
def test_a_viewer_reads_without_forms_or_buttons(visit, panel, proposal, lang):
    t = translator(lang)
    page = visit("viewer", lang)
    page.goto("/dr")
    expect(page.locator(f"#dr-proposals li[data-event-id='{proposal}']")).to_contain_text(
        "夕方の不足"
    )
    expect(page.locator(f"table.dr-events tr[data-event-id='{proposal}']")).to_contain_text(
        t("dr.state.proposed")
    )
    expect(page.locator("#dr-form")).to_have_count(0)
    expect(page.locator("button.api-action")).to_have_count(0)
    page.goto(f"/dr/{proposal}")
    expect(page.locator("h1")).to_contain_text("夕方の不足")
    expect(page.locator("table.dr-homes tbody tr")).to_have_count(_homes(panel))
    expect(page.locator("a.opt-out-link")).to_have_count(0)  # the links are the operators'
    expect(page.locator("button.api-action")).to_have_count(0)
    page.wait_for_selector("body[data-drawn]")
    visit.check()


def test_an_operator_confirms_a_rules_proposal_from_the_list(visit, panel, proposal):
    t = translator("ja")
    page = _confirming(visit("operator", "ja"))
    page.goto("/dr")
    item = page.locator(f"#dr-proposals li[data-event-id='{proposal}']")
    item.locator("button[data-action=confirm]").click()
    row = page.locator(f"table.dr-events tr[data-event-id='{proposal}']")
    expect(row).to_contain_text(t("dr.state.scheduled"))
    expect(page.locator(f"#dr-proposals li[data-event-id='{proposal}']")).to_have_count(0)
    assert _event(panel, proposal).state == "scheduled"
    visit.check()


@pytest.mark.parametrize("lang", LANGS)
def test_a_final_event_shows_its_results_and_their_csv(visit, panel, lang):
    t = translator(lang)
    tenant = panel.world.tenant_a
    start = jst_midnight(jst_today() - timedelta(days=4)) + timedelta(hours=17)
    with panel.engine.begin() as conn:
        event_id = service.create_event(
            conn, tenant, name=f"先週の節電 {lang}", start=start, end=start + 2 * SLOT,
            actor="system", targets_w=[400, 400], now=start - timedelta(hours=1),
        )  # fmt: skip
        service.advance(conn, start + 2 * SLOT)  # ended
    assert event_id in results.finalize(panel.engine, s.utcnow())  # past its 2 days' wait
    page = visit("operator", lang)
    page.goto(f"/dr/{event_id}")
    expect(page.locator("#dr-state")).to_have_text(t("dr.state.final"))
    homes = _homes(panel)
    rows = page.locator("table.dr-results tbody tr")
    expect(rows).to_have_count(homes)
    # No reading four days ago: every home is listed as without a baseline, never as zero.
    expect(rows.first).to_contain_text(t("dr.status.missing"))
    expect(rows.first).to_contain_text(t("dr.reason.no_baseline"))
    expect(page.locator("#dr-total-reduction")).to_have_text(t.kwh(0))
    expect(page.locator("#dr-no-baseline")).to_be_visible()
    name, table = download_csv(page, "#dr-csv")
    assert name == f"dr-event-{event_id}-results.csv"
    assert table[0][:3] == ["site_id", "state", "status"] and len(table) == 1 + homes
    page.wait_for_selector("body[data-drawn]")
    screenshot(page, f"dr-results-{lang}")
    visit.check()


def test_the_demand_pages_slots_at_risk_open_the_form_filled_in(visit, panel):
    fill_retail(panel)  # today's plan and actuals, the forecast of today and tomorrow
    tomorrow = jst_today() + timedelta(days=1)
    with api_client(panel, EMAILS["admin"]) as client:  # tomorrow 18:00-21:00 short
        stored = client.put(
            "/api/v1/procurement-plan.csv", content=plan_csv(tomorrow, plan_wh).encode(),
            headers={"Content-Type": "text/csv"},
        )  # fmt: skip
        assert stored.status_code == 200, stored.text
        outlook = client.get("/api/v1/imbalance", params={"day": str(tomorrow)}).json()
    at_risk = [k for k, slot in enumerate(outlook["slots"]) if slot["at_risk"]]
    assert at_risk == list(range(36, 42))
    page = visit("operator", "en")
    page.goto(f"/retail?day={tomorrow}")
    link = page.locator("#raise-dr a")
    expect(link).to_have_text(translator("en")("retail.raise_dr", slots="18:00–21:00"))
    link.click()
    page.wait_for_url(re.compile(r"/dr\?date="))
    form = page.locator("#dr-form")
    expect(form.locator("#dr-date")).to_have_value(str(tomorrow))
    expect(form.locator("#dr-start")).to_have_value("36")
    expect(form.locator("#dr-end")).to_have_value("42")
    slots = form.locator("#dr-slots input")
    expect(slots).to_have_count(6)
    for k, slot in zip(range(36, 42), slots.all(), strict=True):
        expect(slot).to_have_value(f"{outlook['slots'][k]['imbalance_wh'] * 2 / 1000:.3f}")
    viewer = visit("viewer", "en")
    viewer.goto(f"/retail?day={tomorrow}")
    viewer.wait_for_selector("body[data-drawn]")
    expect(viewer.locator("#raise-dr")).to_have_count(0)  # a viewer cannot make one
    visit.check()


@pytest.mark.parametrize("lang", LANGS)
def test_another_tenants_event_is_a_404_page(visit, panel, proposal, lang):
    page = visit("viewer_b", lang)
    for path in (f"/dr/{proposal}", "/dr/not-a-number", "/dr/999999"):
        answer = page.goto(path)
        assert answer is not None and answer.status == 404, path
        expect(page.locator("h1")).to_have_text(translator(lang)("error.not_found"))
    visit.check("404")
