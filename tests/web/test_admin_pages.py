"""Onboarding and administration in real headless Chromium, on SQLite and PostgreSQL, in
both languages (one on a phone, the other on a desktop):

- an operator onboards a home from the panel alone (the site, the gateway claimed by its
  printed code, a Wi-SUN meter with its B-route credentials, write-only) and watches its
  first reading arrive; a CSV of homes is previewed with per-row errors;
- a tenant administrator uses every admin page (users, API keys, webhooks, alert rules
  and channels, audit log), each action found in the audit log;
- the admin pages are absent for an operator, the onboarding ones for a viewer; the
  platform administrator lands on the tenants page and creates one; the API docs render
  with every file from the server.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from kenshin.server import schema as s
from kenshin.server.web.i18n import translator
from kenshin.wire import FixedTimeValue, InstantSample, ReadingsBatch

from .conftest import (
    LANGS,
    SCALE,
    Panel,
    factory_gateway,
    no_sideways_page,
    screenshot,
    send,
)

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
BROUTE_ID = "00112233445566778899AABBCCDDEEFF"
BROUTE_PASSWORD = "0123ABCDwxyz"


def _screen(lang: str) -> tuple[dict, int]:
    """Japanese on a phone, English on a desktop: both sizes, both languages."""
    return (PHONE, 390) if lang == "ja" else ({}, 1280)


def _audited(panel: Panel, tenant_id: int, action: str) -> list:
    a = s.audit_log.c
    with panel.engine.connect() as conn:
        return conn.execute(
            select(s.audit_log).where(a.tenant_id == tenant_id, a.action == action)
        ).all()


@pytest.mark.parametrize("lang", LANGS)
def test_a_home_onboarded_in_the_panel_reports_its_first_reading(visit, panel: Panel, lang):
    t = translator(lang)
    options, width = _screen(lang)
    n = LANGS.index(lang) + 1
    serial = f"GW-NEW-{lang.upper()}"
    code = factory_gateway(visit("platform_admin", lang), serial)

    page = visit("operator", lang, **options)
    page.goto("/onboard")
    expect(page.locator("h1")).to_have_text(t("onboard.title"))
    no_sideways_page(page, width)
    screenshot(page, f"onboard-{lang}")

    # The CSV preview: the good row ready, the bad one's reason; nothing kept.
    page.fill(
        "#csv-text",
        "customer_id,service_code,link,udp_host\n"
        f"CSV{n},pss7000000{n},udp,10.0.0.{n}\nCSV{n}b,pss7,udp,10.0.0.9\n",
    )
    page.click("#preview")
    expect(page.locator("#import-rows tr[data-line='2']")).to_have_class("good")
    expect(page.locator("#import-rows tr[data-line='3'] td").last).to_contain_text("service_code")
    expect(page.locator("#import-summary")).to_contain_text(
        t("onboard.previewed", added=1, errors=1)[:6]
    )
    expect(page.locator("#import-now")).to_be_disabled()

    # A new site, then its set-up page.
    new = page.locator("#new-site form")
    new.locator("[name=customer_id]").fill(f"NEW-{lang}")
    new.locator("[name=service_code]").fill(f"pss8000000{n}")
    new.locator("[name=name]").fill("新居 太郎")
    page.click("#create-site")
    page.wait_for_url("**/setup")
    site_id = int(page.url.rsplit("/", 2)[-2])
    expect(page.locator("h1")).to_contain_text("新居 太郎")

    # Its details changed; the gateway claimed by the code on the box (typed loosely).
    page.locator("#step-site [name=address]").fill("東京都港区1-1")
    with page.expect_navigation():
        page.locator("#step-site button[type=submit]").click()
    expect(page.locator("#step-site [name=address]")).to_have_value("東京都港区1-1")
    page.locator("#claim [name=claim_code]").fill("nope-nope")
    page.locator("#claim button").click()
    expect(page.locator("#claim .form-error")).to_contain_text("no unclaimed gateway")
    page.locator("#claim [name=claim_code]").fill(code.lower())
    page.locator("#claim button").click()
    expect(page.locator(f"[data-gateway='{serial}']")).to_contain_text(t("state.never_seen"))

    # A Wi-SUN meter: a B-route ID one short is refused by the API, with its reason.
    meter = page.locator("#new-meter")
    meter.locator("[name=broute_id]").fill(BROUTE_ID[:-1])
    meter.locator("[name=broute_password]").fill(BROUTE_PASSWORD)
    meter.locator("[name=supply_point]").fill(f"03-0011-1122-2233-3344-4{n}5{n}")
    meter.locator("button[type=submit]").click()
    expect(meter.locator(".form-error")).to_contain_text("broute_id")
    meter.locator("[name=broute_id]").fill(BROUTE_ID)
    meter.locator("button[type=submit]").click()
    card = page.locator(".meter")
    expect(card).to_have_count(1)
    meter_id = int(card.get_attribute("data-meter"))
    expect(card.locator("[name=supply_point]")).to_have_value(f"0300111122223333444{n}5{n}")
    expect(card.locator(".credentials-state")).to_contain_text(
        t("setup.credentials_set_on", at="")[:8]
    )
    html = page.content()
    assert BROUTE_ID not in html and BROUTE_PASSWORD not in html  # never shown again
    assert len(_audited(panel, panel.world.tenant_a, "meter.broute_credentials")) >= 1

    # Replaced: both again, the date again, still never shown.
    card.locator("[name=broute_id]").fill(BROUTE_ID.lower())
    card.locator("[name=broute_password]").fill(BROUTE_PASSWORD[::-1])
    with page.expect_navigation():
        card.locator(".credentials button").click()
    expect(page.locator(".meter .credentials-state")).to_contain_text(
        t("setup.credentials_set_on", at="")[:8]
    )
    assert BROUTE_PASSWORD[::-1] not in page.content()

    # The first reading: waiting, then there as the gateway sends it.
    reading = page.locator(f"[data-first-reading='{meter_id}']")
    expect(reading).to_have_text(t("setup.reading_waiting"))
    no_sideways_page(page, width)
    screenshot(page, f"setup-waiting-{lang}")
    now = int(time.time())
    send(
        panel.engine,
        serial,
        ReadingsBatch(
            1,
            f"m{meter_id}",
            (InstantSample(now - 5, 1_357, 14),),
            (FixedTimeValue(now // 1800 * 1800, 12_345, None),),
            SCALE,
        ),
    )
    expect(reading).to_have_class("first-reading arrived", timeout=20_000)
    expect(reading).to_contain_text("1,357 W")
    screenshot(page, f"setup-arrived-{lang}")

    # The site page links here; it shows what was entered.
    page.goto(f"/sites/{site_id}")
    expect(page.locator("#site-setup")).to_be_visible()
    expect(page.locator("#site-gateways")).to_contain_text(serial)
    visit.check("status of 422", "status of 404")


@pytest.mark.parametrize("lang", LANGS)
def test_every_admin_page_works_for_a_tenant_admin(visit, panel: Panel, lang):
    t = translator(lang)
    options, width = _screen(lang)
    page = visit("admin", lang, **options)
    page.on("dialog", lambda dialog: dialog.accept())
    if options:  # on a phone the menu folds behind its button
        page.goto("/")
        page.locator(".nav-burger").click()
    else:
        page.goto("/")
    page.locator("#nav-admin").click()
    page.wait_for_url("**/admin/users")
    expect(page.locator("#admin-tabs a")).to_have_count(5)

    # Users: one added, its role changed.
    email = f"new-{lang}@a.test"
    form = page.locator("#new-user form")
    form.locator("[name=email]").fill(email)
    form.locator("[name=password]").fill("a long enough password")
    form.locator("[name=role]").select_option("operator")
    form.locator("button").click()
    row = page.locator(f"[data-user='{email}']")
    expect(row).to_contain_text(email)
    row.locator("select[name=role]").select_option("viewer")
    with page.expect_navigation():
        row.locator("button").click()
    expect(page.locator(f"[data-user='{email}'] select[name=role]")).to_have_value("viewer")
    no_sideways_page(page, width)
    screenshot(page, f"admin-users-{lang}")

    # API keys: shown once, works, revoked.
    page.locator("#admin-tabs a[href='/admin/api-keys']").click()
    form = page.locator("#new-key form")
    form.locator("[name=name]").fill(f"billing-{lang}")
    form.locator("button").click()
    key = page.locator("#new-key-value")
    expect(key).to_contain_text("ksk_")
    secret = key.inner_text()
    bearer = {"Authorization": f"Bearer {secret}"}
    assert page.request.get("/api/v1/auth/me", headers=bearer).ok
    screenshot(page, f"admin-keys-{lang}")
    page.goto("/admin/api-keys")
    assert secret not in page.content()
    page.locator(f"[data-key='billing-{lang}'] button").click()
    expect(page.locator(f"[data-key='billing-{lang}'] .revoked")).to_be_visible()
    assert page.request.get("/api/v1/auth/me", headers=bearer).status == 401
    no_sideways_page(page, width)

    # Webhooks: added (its secret shown once), a test ping in its delivery log.
    page.locator("#admin-tabs a[href='/admin/webhooks']").click()
    url = f"https://8.8.8.8/kenshin-{lang}"
    form = page.locator("#new-hook form")
    form.locator("[name=url]").fill(url)
    form.locator("[name=kinds][value='slot.closed']").check()
    form.locator("button[type=submit]").click()
    expect(page.locator("#new-hook-secret")).to_contain_text("whsec_")
    page.goto("/admin/webhooks")
    hook = page.locator(f"[data-hook='{url}']")
    expect(hook).to_contain_text(t("admin.hooks.no_deliveries"))
    with page.expect_navigation():
        hook.locator("button.ping").click()
    expect(page.locator(f"[data-hook='{url}'] tr[data-state='pending']")).to_contain_text("ping")
    no_sideways_page(page, width)
    screenshot(page, f"admin-webhooks-{lang}")

    # Alert rules: one switched off and back; bad JSON explained; a channel added.
    page.locator("#admin-tabs a[href='/admin/alert-rules']").click()
    rule = page.locator("[data-rule]").first
    name = rule.get_attribute("data-rule")
    rule.locator("[name=params]").fill("{not json")
    rule.locator("button").click()
    expect(rule.locator(".form-error")).to_have_text(t("form.bad_json"))
    rule.locator("[name=params]").fill("{}")
    rule.locator("[name=enabled]").uncheck()
    rule.locator("[name=severity]").select_option("critical")
    with page.expect_navigation():
        rule.locator("button").click()
    rule = page.locator(f"[data-rule='{name}']")
    expect(rule.locator("[name=enabled]")).not_to_be_checked()
    expect(rule.locator("[name=severity]")).to_have_value("critical")
    form = page.locator("#new-channel")
    form.locator("[name=target]").fill(f"ops-{lang}@a.test")
    form.locator("button").click()
    expect(page.locator(f"[data-channel='ops-{lang}@a.test']")).to_be_visible()
    no_sideways_page(page, width)
    screenshot(page, f"admin-rules-{lang}")
    page.locator(f"[data-channel='ops-{lang}@a.test'] button").click()
    expect(page.locator(f"[data-channel='ops-{lang}@a.test']")).to_have_count(0)

    # The audit log has each of them.
    page.locator("#admin-tabs a[href='/admin/audit']").click()
    for action in (
        "user.create", "user.update", "api_key.create", "api_key.revoke", "webhook.add",
        "alert_rule.set", "alert_subscription.add", "alert_subscription.delete",
    ):  # fmt: skip
        expect(page.locator(f"tr[data-action='{action}']").first).to_be_visible()
    page.fill("input[name=action]", "api_key.*")
    page.locator("#audit button").click()
    page.wait_for_url("**action=api_key*")
    assert set(
        page.locator("tr[data-action]").evaluate_all("rows => rows.map(r => r.dataset.action)")
    ) == {"api_key.create", "api_key.revoke"}
    no_sideways_page(page, width)
    screenshot(page, f"admin-audit-{lang}")
    visit.check()


@pytest.mark.parametrize("lang", LANGS)
def test_admin_pages_absent_below_their_role_and_the_platform_admins_pages(
    visit, panel: Panel, lang
):
    t = translator(lang)
    operator = visit("operator", lang)
    operator.goto("/")
    expect(operator.locator("nav.nav a[href='/onboard']")).to_be_visible()
    expect(operator.locator("#nav-admin")).to_have_count(0)
    for path in ("/admin", "/admin/users", "/admin/api-keys", "/admin/webhooks",
                 "/admin/alert-rules", "/admin/audit"):  # fmt: skip
        assert operator.goto(path).status == 403, path
        expect(operator.locator("h1")).to_have_text(t("error.needs_admin"))
    assert operator.goto("/platform/tenants").status == 404
    viewer = visit("viewer", lang)
    viewer.goto("/")
    expect(viewer.locator("nav.nav a[href='/onboard']")).to_have_count(0)
    theirs = panel.meters["GW-A1"]
    for path in ("/onboard", f"/sites/{theirs}/setup"):
        assert viewer.goto(path).status == 403, path
    other = visit("viewer_b", lang)
    assert other.goto("/admin/users").status == 403

    # The platform administrator: the tenants page is home; a tenant made there.
    options, width = _screen(lang)
    root = visit("platform_admin", lang, **options)
    root.goto("/")
    root.wait_for_url("**/platform/tenants")
    expect(root.locator("h1")).to_have_text(t("platform.title"))
    expect(root.locator("[data-tenant='Tenant A']")).to_contain_text(t("platform.kind.retailer"))
    form = root.locator("#new-tenant form")
    form.locator("[name=name]").fill(f"Solar {lang}")
    form.locator("[name=kind]").select_option("generator")
    form.locator("button").click()
    expect(root.locator(f"[data-tenant='Solar {lang}']")).to_contain_text(
        t("platform.kind.generator")
    )
    assert _audited(panel, None, "tenant.create") is not None
    no_sideways_page(root, width)
    screenshot(root, f"platform-tenants-{lang}")
    assert root.goto("/list").status == 403  # a tenant's page: the way back is there
    root.locator("a", has_text=t("error.back_home")).click()
    root.wait_for_url("**/platform/tenants")

    # The API docs, every file from this server (Visit fails any other request).
    root.goto("/api/v1/docs")
    # Slow on a loaded machine: a 1.4 MB script, then the whole OpenAPI document.
    expect(root.locator(".swagger-ui .info .title")).to_contain_text("Kenshin", timeout=60_000)
    expect(root.locator(".opblock-tag-section").first).to_be_visible()
    screenshot(root, f"api-docs-{lang}")
    visit.check("status of 403", "status of 404")
