"""The Export page in real headless Chromium, on SQLite and PostgreSQL: the settlement CSV
the browser downloads holds the API's slots for the range (wide in Japanese on a phone,
long in English on a desktop), a range past the limit is explained on the page, and the
missing-slots report lists what the API reports."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from playwright.sync_api import expect

from kenshin.jst import JST
from kenshin.server.web.i18n import translator

from .conftest import FLEET_A, Panel, download_csv, screenshot

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def _api_slots(page, panel: Panel, day: str) -> dict[tuple[int, str, str], int | None]:
    """(meter id, direction, Excel's slot start) -> Wh, as the slot series gives them."""
    out = {}
    for serial in FLEET_A:
        meter_id = panel.meters[serial]
        for direction in ("normal", "reverse"):
            answer = page.request.get(
                f"/api/v1/meters/{meter_id}/energy",
                params={"from": day, "to": day, "direction": direction},
            )
            assert answer.ok, answer.text()
            for v in answer.json()["values"]:
                at = f"{datetime.fromisoformat(v['start']):%Y/%m/%d %H:%M}"
                out[meter_id, direction, at] = v["wh"]
    return out


def _wh(cell: str) -> int | None:
    return None if cell == "" else int(Decimal(cell) * 1000)


def test_export_downloads_the_api_slots_and_reports_missing_ones(visit, panel: Panel):
    today = datetime.now(JST).date().isoformat()
    ja, en = translator("ja"), translator("en")

    # A phone, in Japanese: yesterday's missing slots, then today's slots, wide.
    page = visit("operator", "ja", **PHONE)
    page.goto("/export")
    expect(page.locator("h1")).to_have_text(ja("settle.title"))
    report = page.request.get("/api/v1/missing-slots").json()  # yesterday, as the page
    lacking = {m["meter_id"]: m["missing"] for m in report["meters"] if m["missing"]}
    assert set(lacking) == {panel.meters[sn] for sn in FLEET_A}  # no data yesterday
    rows = page.locator("table.missing tbody tr")
    expect(rows).to_have_count(len(lacking))
    for meter_id, missing in lacking.items():
        cell = page.locator(f"tr[data-meter='{meter_id}'] td[data-missing]")
        expect(cell).to_have_attribute("data-missing", str(missing))
    expect(page.locator("#missing-counts")).to_contain_text(
        ja("settle.meters_missing", count=len(lacking))
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways page
    screenshot(page, "export-ja-phone")

    page.fill("#settlement input[name=from]", today)
    page.fill("#settlement input[name=to]", today)
    page.select_option("#settlement select[name=layout]", "wide")
    name, wide = download_csv(page, "#download")
    assert name == f"settlement-{today}-{today}-wide-ja.csv"
    api = _api_slots(page, panel, today)
    assert wide[0][:6] == [ja(f"settle.col.{c}") for c in (
        "service_code", "customer_id", "supply_point", "meter_id", "day", "direction"
    )]  # fmt: skip
    assert len(wide) == 1 + len(FLEET_A) * 2  # a meter's day, bought and sold
    sense = {ja("settle.direction.normal"): "normal", ja("settle.direction.reverse"): "reverse"}
    valued = 0
    for row in wide[1:]:
        for head, cell in zip(wide[0][7:], row[7:], strict=True):
            key = (int(row[3]), sense[row[5]], f"{row[4]} {head[:5]}")
            assert _wh(cell) == api[key], key
            valued += cell != ""
    assert valued == sum(wh is not None for wh in api.values()) > 0

    # A desktop, in English: today's slots, long; a range past the limit is explained.
    page = visit("viewer", "en")
    page.goto(f"/export?from={today}&to={today}")
    expect(page.locator("nav.nav a[aria-current=page]")).to_have_text(en("nav.export"))
    page.fill("#settlement input[name=from]", today)
    page.fill("#settlement input[name=to]", today)
    page.select_option("#settlement select[name=lang]", "en")
    name, long = download_csv(page, "#download")
    assert name == f"settlement-{today}-{today}-long-en.csv"
    assert long[0][4:] == ["Start", "End", "Bought (kWh)", "Sold (kWh)"]
    assert len(long) == 1 + len(FLEET_A) * 48
    for row in long[1:]:
        meter_id, start = int(row[3]), row[4]
        assert (_wh(row[6]), _wh(row[7])) == (
            api[meter_id, "normal", start],
            api[meter_id, "reverse", start],
        )
    screenshot(page, "export-en")

    first = datetime.now(JST).date() - timedelta(days=120)
    page.fill("#settlement input[name=from]", first.isoformat())
    page.click("#download")
    expect(page.locator("#export-error")).to_have_text(en("settle.error_long", days=93))
    expect(page.locator("#settlement input[name=from]")).to_have_value(first.isoformat())
    visit.check()
