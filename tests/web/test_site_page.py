"""A customer's site page in real headless Chromium: reached from the list, it shows the
site's meters (power now, today's energy) and gateways; another tenant's site is a 404."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from kenshin.server import schema as s
from kenshin.server.metering.current import meter_now
from kenshin.server.web.i18n import translator

from .conftest import LANGS, ROLES, Panel, screenshot


def _site_of(panel: Panel, serial: str) -> int:
    with panel.engine.connect() as conn:
        return conn.execute(
            select(s.gateways.c.site_id).where(s.gateways.c.id == panel.gateways[serial])
        ).scalar_one()


@pytest.mark.parametrize(("role", "lang"), [(r, lang) for r in ROLES for lang in LANGS])
def test_a_site_shows_its_meters_and_gateways(visit, panel, role, lang):
    t = translator(lang)
    page = visit(role, lang)
    page.goto(f"/sites/{_site_of(panel, 'GW-A3')}")
    meter_id = panel.meters["GW-A3"]
    row = page.locator(f"#site-meters tr[data-meter-id='{meter_id}']")
    with panel.engine.connect() as conn:
        now = meter_now(conn, meter_id, s.utcnow())
    expect(row).to_contain_text(t.watts(now["power_w"]))
    expect(row).to_contain_text(t.kwh(now["today_bought_wh"]))
    expect(row).to_contain_text(t.kwh(now["today_sold_wh"]))  # a PV site sells too
    expect(page.locator("#site-gateways")).to_contain_text("GW-A3")
    expect(page.locator("#site-gateways")).to_contain_text(t("state.working"))
    if role == "viewer":
        screenshot(page, f"site-{lang}")
    row.locator("a").click()
    page.wait_for_url(f"**/meters/{meter_id}")
    visit.check()


def test_the_list_links_each_site_to_its_page(visit, panel):
    page = visit("viewer", "en")
    page.goto("/list")
    site_id = _site_of(panel, "GW-A1")
    page.locator(f"tr[data-site-id='{site_id}'] a[href='/sites/{site_id}']").click()
    page.wait_for_url(f"**/sites/{site_id}")
    visit.check()


@pytest.mark.parametrize("lang", LANGS)
def test_another_tenants_site_is_not_found(visit, panel, lang):
    t = translator(lang)
    page = visit("admin", lang)
    for path in (f"/sites/{_site_of(panel, 'GW-B1')}", "/sites/999999", "/sites/x"):
        answer = page.goto(path)
        assert answer.status == 404, path
        expect(page.locator("h1")).to_have_text(t("error.not_found"))
        expect(page.locator("body")).not_to_contain_text("GW-B1")
    visit.check("404")
