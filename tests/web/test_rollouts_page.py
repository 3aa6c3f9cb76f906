"""The rollouts pages in real headless Chromium: the list with the fleet's version donut,
and one rollout with its stages and each gateway's update state (reported through the
real ingest), in both languages; viewers get no actions, operators pause from the page
(through the JSON API), another tenant's rollout is a 404 page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from kenshin.server import schema as s
from kenshin.server.rollouts import service
from kenshin.server.web.i18n import translator
from kenshin.wire import Event

from .conftest import FLEET_A, LANGS, Panel, screenshot, send


@pytest.fixture(scope="module")
def rollout(panel: Panel) -> int:
    """Tenant A's rollout of 1.5.0 in two stages over its seven gateways: the first stage
    asked, one gateway healthy and one rolled back (if stage 1 has two)."""
    tenant = panel.world.tenant_a
    with panel.engine.begin() as conn:
        rollout_id = service.create(
            conn, tenant, version="1.5.0", actor="system", stages=[30, 100],
            failure_threshold_pct=50, window_s=600,
        )  # fmt: skip
        service.step(conn, tenant, rollout_id, s.utcnow(), service.StepReport())
        first = (
            conn.execute(
                select(s.rollout_gateways.c.gateway_id).where(
                    s.rollout_gateways.c.rollout_id == rollout_id, s.rollout_gateways.c.stage == 0
                )
            )
            .scalars()
            .all()
        )
    serial = {gid: sn for sn, gid in panel.gateways.items()}
    outcomes = ("healthy", "rolled_back")
    for gateway_id, state in zip(sorted(first), outcomes, strict=False):
        reason = "watchdog: no meter read" if state == "rolled_back" else ""
        detail = {"version": "1.5.0", "state": state, "from_version": "1.4.2", "reason": reason}
        send(panel.engine, serial[gateway_id], Event("update_state", 1_790_000_000, detail))
    return rollout_id


@pytest.mark.parametrize("lang", LANGS)
def test_a_viewer_sees_the_rollouts_their_stages_and_the_versions(visit, panel, rollout, lang):
    t = translator(lang)
    page = visit("viewer", lang)
    page.goto("/rollouts")
    expect(page.locator("h1")).to_have_text(t("rollouts.title"))
    row = page.locator(f"tr[data-rollout-id='{rollout}']")
    expect(row).to_contain_text("1.5.0")
    expect(row).to_contain_text(t("rollouts.rollout_state.running"))
    expect(page.locator("#version-donut .slice").first).to_be_visible()  # plotly's, no CDN
    expect(page.locator("#version-donut")).to_contain_text("1.4.2")  # the fleet's reports
    row.locator("a").first.click()
    expect(page.locator("h1")).to_contain_text(t("rollouts.one_title", version="1.5.0"))
    stages = page.locator("table.stages tbody tr")
    expect(stages).to_have_count(2)
    expect(stages.nth(0)).to_have_attribute("aria-current", "step")
    gateways = page.locator("table.rollout-gateways tbody tr")
    expect(gateways).to_have_count(len(FLEET_A))
    expect(page.locator("tr[data-state='rolled_back']")).to_contain_text("watchdog")
    expect(page.locator("tr[data-state='healthy']")).to_contain_text(t("rollouts.state.healthy"))
    expect(page.locator("button[data-action]")).to_have_count(0)
    page.wait_for_selector("body[data-drawn]")
    screenshot(page, f"rollout-{lang}")
    visit.check()


def test_an_operator_pauses_from_the_page_and_another_tenant_gets_a_404(visit, panel, rollout):
    t = translator("ja")
    page = visit("operator", "ja")
    page.goto(f"/rollouts/{rollout}")
    page.locator("button[data-action=pause]").click()
    expect(page.locator("#rollout-state")).to_have_text(t("rollouts.rollout_state.paused"))
    expect(page.locator("button[data-action=resume]")).to_have_count(1)
    with panel.engine.connect() as conn:
        state = conn.execute(
            select(s.rollouts.c.state).where(s.rollouts.c.id == rollout)
        ).scalar_one()
    assert state == "paused"
    page.locator("button[data-action=resume]").click()
    expect(page.locator("#rollout-state")).to_have_text(t("rollouts.rollout_state.running"))
    visit.check()
    other = visit("viewer_b", "en")
    answer = other.goto(f"/rollouts/{rollout}")
    assert answer.status == 404
    visit.check("404")
