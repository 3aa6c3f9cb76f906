"""Alerts and notices in the panel, in real headless Chromium: Home shows the current notices
and the unresolved alerts, /alerts lists them, operators acknowledge and resolve them from
the page, viewers cannot."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from kenshin.server import schema as s
from kenshin.server.alerts.engine import run_rules
from kenshin.server.web.i18n import translator

from .conftest import EMAILS, LANGS, PASSWORD, ROLES, Panel, screenshot


@contextmanager
def _api(panel: Panel, email: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=panel.url, timeout=30) as client:
        login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        login.raise_for_status()
        client.headers["X-CSRF-Token"] = login.headers["X-CSRF-Token"]
        yield client


@pytest.fixture(scope="module")
def alerting(panel: Panel):
    """Tenant A's meters silent for a day (no_data alerts), a notice of its own, one for
    every tenant, and one of tenant B's."""
    with panel.engine.begin() as conn:
        opened = run_rules(conn, panel.world.tenant_a, s.utcnow() + timedelta(days=1)).opened
    assert opened
    notices = {}
    with _api(panel, "admin@a.test") as admin_a:
        notices["a"] = admin_a.post(
            "/api/v1/notices",
            json={"kind": "failure", "title": "関東の回線障害", "body": "復旧作業中です。"},
        ).json()
    with _api(panel, EMAILS["platform_admin"]) as root:
        notices["all"] = root.post(
            "/api/v1/notices",
            json={"kind": "maintenance", "title": "Planned maintenance", "every_tenant": True,
                  "starts_at": (s.utcnow() + timedelta(days=1)).isoformat(),
                  "ends_at": (s.utcnow() + timedelta(days=1, hours=1)).isoformat()},
        ).json()  # fmt: skip
    with _api(panel, "admin@b.test") as admin_b:
        notices["b"] = admin_b.post(
            "/api/v1/notices", json={"kind": "info", "title": "B only"}
        ).json()
    return notices  # the panel is this module's own: nothing to undo


def _unresolved(panel: Panel, tenant_id: int) -> int:
    a = s.alerts.c
    with panel.engine.connect() as conn:
        return conn.execute(
            select(func.count()).where(
                a.tenant_id == tenant_id, a.state.in_(("open", "acknowledged"))
            )
        ).scalar_one()


@pytest.mark.parametrize(("role", "lang"), [(r, lang) for r in ROLES for lang in LANGS])
def test_home_shows_the_notices_and_the_unresolved_alerts(visit, panel, alerting, role, lang):
    t = translator(lang)
    page = visit(role, lang)
    page.goto("/")
    notices = page.locator("#notices .notice-item")
    expect(notices).to_have_count(2)  # its own and every tenant's; never tenant B's
    expect(notices.nth(0)).to_contain_text("関東の回線障害")  # the failure first
    expect(notices.nth(0)).to_contain_text(t("notices.kind.failure"))
    expect(notices.nth(1)).to_contain_text(t("notices.every_tenant"))
    count = _unresolved(panel, panel.world.tenant_a)
    expect(page.locator("#open-alert-count")).to_have_text(
        t("alerts.open_count", count=f"{count:,}")
    )
    expect(page.locator("#open-alerts tr[data-alert-id]")).to_have_count(min(count, 5))
    expect(page.locator("#open-alerts button")).to_have_count(0)  # actions live on /alerts
    if role == "viewer":
        screenshot(page, f"home-notices-{lang}")
    visit.check()


def test_another_tenants_readers_see_only_their_notices(visit, panel, alerting):
    page = visit("viewer_b", "en")
    page.goto("/")
    expect(page.locator("#notices .notice-item")).to_have_count(2)
    expect(page.locator("#notices")).not_to_contain_text("関東の回線障害")
    expect(page.locator("#notices")).to_contain_text("B only")
    visit.check()


@pytest.mark.parametrize("lang", LANGS)
def test_a_viewer_sees_alerts_but_no_actions(visit, panel, alerting, lang):
    page = visit("viewer", lang)
    page.goto("/alerts")
    rows = page.locator("tr[data-alert-id]")
    expect(rows).to_have_count(_unresolved(panel, panel.world.tenant_a))
    expect(page.locator("button[data-action]")).to_have_count(0)
    expect(rows.first).to_contain_text(translator(lang)("rule.no_data"))
    screenshot(page, f"alerts-{lang}")
    visit.check()


def test_an_operator_acknowledges_then_resolves_an_alert(visit, panel, alerting):
    t = translator("ja")
    page = visit("operator", "ja")
    page.goto("/alerts?state=open")
    row = page.locator("tr[data-alert-id]").first
    alert_id = int(row.get_attribute("data-alert-id"))
    row.locator("button[data-action=acknowledge]").click()
    expect(row.locator(".alert-state")).to_have_text(t("alert_state.acknowledged"))
    expect(row.locator("button[data-action=acknowledge]")).to_have_count(0)
    row.locator("button[data-action=resolve]").click()
    expect(row.locator(".alert-state")).to_have_text(t("alert_state.resolved"))
    with panel.engine.connect() as conn:
        alert = conn.execute(select(s.alerts).where(s.alerts.c.id == alert_id)).one()
    assert alert.state == "resolved" and alert.acknowledged_by and alert.resolved_at
    page.goto("/alerts?state=resolved")
    expect(page.locator(f"tr[data-alert-id='{alert_id}']")).to_have_count(1)
    visit.check()
