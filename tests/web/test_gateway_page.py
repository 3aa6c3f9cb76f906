"""The gateway page a field engineer trusts (issue 17 item 2): its status follows the
gateway's reports without a reload, with the LQI in dBm and over a day; command results
in words (a property by name with its unit, times as JST dates, never JSON or epoch
seconds); the panel's live-trace leases folded into one line; usable on a 390 px phone."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from playwright.sync_api import expect
from sqlalchemy import insert

from kenshin.server import schema as s
from kenshin.server.web.i18n import translator
from kenshin.wire import LinkState, Status

from .conftest import Panel, screenshot, send

PHONE = {"width": 390, "height": 844}
UNTIL_S = 1796430221  # the realtime lease's answer the issue saw on the page as JSON


def _commands(panel: Panel, serial: str) -> None:
    """What the gateway ran: a property read, a backfill, and two live-trace leases."""
    now = datetime.now(UTC)
    tenant, gateway_id = panel.world.tenant_a, panel.gateways[serial]
    rows = [
        ("realtime", {"interval_s": 3, "duration_s": 60}, {"until_s": UNTIL_S}),
        ("realtime", {"interval_s": 3, "duration_s": 0}, {"until_s": UNTIL_S - 60}),
        ("read_property", {"epc": "0xE7"}, {"epc": "0xE7", "value": 1140}),
        ("read_property", {"epc": "0xE8"}, {"epc": "0xE8", "value": {"r_da": 52, "t_da": 31}}),
        ("backfill", {"from_s": UNTIL_S - 86400, "to_s": UNTIL_S}, {"slots": 48}),
    ]
    with panel.engine.begin() as conn:
        for n, (name, args, result) in enumerate(rows):
            at = now - timedelta(minutes=10 - n)
            conn.execute(
                insert(s.commands).values(
                    tenant_id=tenant, gateway_id=gateway_id, name=name, args=args,
                    state="done", result=result, created_at=at, done_at=at, created_by="system",
                )
            )  # fmt: skip


def test_the_gateway_page_follows_the_gateway_on_a_phone_and_a_desktop(visit, panel):
    serial = "GW-A2"
    gateway_id = panel.gateways[serial]
    _commands(panel, serial)
    ja, en = translator("ja"), translator("en")

    page = visit("operator", "ja", viewport=PHONE)
    page.goto(f"/gateways/{gateway_id}")
    expect(page.locator("#link")).to_have_text(ja("link.joined"))
    rows = page.locator("#command-rows tr")
    expect(rows).to_have_count(3)  # the leases are not commands a person ran
    expect(page.locator("#leases")).to_contain_text("2 件")
    expect(rows.nth(1).locator(".result")).to_have_text("0xE8 瞬時電流計測値: R 5.2 A / T 3.1 A")
    expect(rows.nth(2).locator(".result")).to_have_text("0xE7 瞬時電力計測値: 1,140 W")
    expect(rows.nth(0).locator(".result")).to_have_text("48 コマ取得")
    lease_end = ja.datetime(datetime.fromtimestamp(UNTIL_S, UTC))
    expect(rows.nth(0).locator("td").nth(2)).to_have_text(re.compile(f"〜 {lease_end}$"))
    text = page.locator("main").inner_text()
    assert "{" not in text and str(UNTIL_S) not in text and not re.search(r"\b1\d{9}\b", text)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    # The gateway reports its meter gone quiet and a weaker radio: the open page follows.
    sent = time.monotonic()
    send(panel.engine, serial, Status(int(time.time()), "1.4.2", 7200, LinkState.NO_METER, 70))
    expect(page.locator("#link")).to_have_text(ja("link.no_meter"), timeout=20_000)
    expect(page.locator("#state")).to_have_text(ja("state.meter_link_down"))
    expect(page.locator("#lqi")).to_have_text(
        ja("gw.lqi_value", lqi=70, dbm="-85.0", quality=ja("gw.quality_fair"))
    )
    assert time.monotonic() - sent < 60
    points = page.locator("#lqi-line").get_attribute("points").split()
    assert len(points) >= 4  # two reports (the fleet's and this one), held as steps
    expect(page.locator("#uptime")).to_have_text(re.compile("^2時間"))
    screenshot(page, "gateway-phone-ja")

    desktop = visit("operator", "en")
    desktop.goto(f"/gateways/{gateway_id}")
    expect(desktop.locator("#link")).to_have_text(en("link.no_meter"))
    expect(desktop.locator("#command-rows tr").nth(2).locator(".result")).to_have_text(
        "0xE7 Instantaneous power: 1,140 W"
    )
    expect(desktop.locator("#leases")).to_contain_text("2 reads for the panel's live power")
    expect(desktop.locator("#state-history")).to_contain_text(en("link.no_meter"))
    assert desktop.evaluate("document.documentElement.scrollWidth") <= 1280
    screenshot(desktop, "gateway-desktop-en")

    # Back to normal, for the other tests of the module.
    send(panel.engine, serial, Status(int(time.time()), "1.4.2", 7300, LinkState.JOINED, 198))
    visit.check()
