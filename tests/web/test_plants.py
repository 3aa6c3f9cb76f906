"""The generator pack in real headless Chromium, on SQLite and PostgreSQL: the cross-plant
list and comparison, one plant's sold energy (hourly with the weather beside it, daily,
monthly), its 30-minute sold demand peaks and its sales estimate, each checked against the JSON API
and the database; prices added by an administrator, never by a viewer; the tenant wall."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from kenshin.server import schema as s
from kenshin.server.metering.series import jst_midnight
from kenshin.server.web.i18n import translator
from kenshin.server.web.plants import month_text

from . import conftest
from .analytics_fixtures import Plants, fill_plants, jst_today, write_weather_csv
from .conftest import (
    EMAILS,
    LANGS,
    Panel,
    largest_slot,
    no_negative_power,
    no_sideways_page,
    readable_chart,
    screenshot,
)

ROLES_B = ("admin_b", "viewer_b")  # the generator tenant's users
APPS: list = []  # every app the module's panels made, to reach their weather source


@pytest.fixture(scope="module", autouse=True)
def weather_source(tmp_path_factory) -> Iterator[None]:
    """The module's servers read the weather from a CSV (settings: weather_csv), as an
    installation with the built-in offline provider does. Autouse: set before `panel`."""
    path = write_weather_csv(tmp_path_factory.mktemp("weather") / "weather.csv")
    original = conftest.create_app

    def create_app(settings):
        app = original(settings.model_copy(update={"weather_csv": path}))
        APPS.append(app)
        return app

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conftest, "create_app", create_app)
        yield


def app_of(panel: Panel):
    return next(app for app in APPS if app.state.engine is panel.engine)


@pytest.fixture(scope="module")
def plants(panel: Panel) -> Plants:
    return fill_plants(panel)


@pytest.fixture(autouse=True)
def generator_admin(monkeypatch) -> None:
    """Tenant B's administrator, for the Visit helper (logged in through the API)."""
    monkeypatch.setitem(EMAILS, "admin_b", "admin@b.test")


def api(page, path: str):
    """The JSON API's answer, asked with the page's own session."""
    return page.evaluate("(url) => Kenshin.api(url)", path)


def chart(page, element_id: str) -> dict[str, dict]:
    data = page.evaluate(
        "(id) => document.getElementById(id).data.map(t => ({uid: t.uid, x: t.x, y: t.y}))",
        element_id,
    )
    return {trace["uid"]: trace for trace in data}


def month_bounds(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)


def sold_now_w(panel: Panel, meter_id: int) -> int:
    with panel.engine.connect() as conn:
        power = conn.execute(
            select(s.meter_latest.c.power_w).where(s.meter_latest.c.meter_id == meter_id)
        ).scalar_one()
    return max(0, -power)


# -- the cross-plant list ------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "lang"), [(r, lang) for r in ROLES_B for lang in LANGS])
def test_the_plant_list_shows_each_plants_energy_sales_and_power(visit, panel, plants, role, lang):
    t = translator(lang)
    today = jst_today()
    first, last = month_bounds(today)
    page = visit(role, lang)
    assert page.goto("/plants").status == 200
    page.wait_for_function("() => document.body.dataset.drawn === '1'")
    expect(page.locator("h1")).to_have_text(t("plants.month_title", month=month_text(t, first)))
    expect(page.locator("nav.nav a[aria-current=page]")).to_have_text(t("nav.plants"))

    rows = page.locator("#rows tr")
    expect(rows).to_have_count(len(plants.meters))
    plotted = chart(page, "compare-chart")
    days = [(first + timedelta(days=n)).isoformat() for n in range((today - first).days + 1)]
    total_yen = 0.0
    for row, meter_id in zip(rows.all(), sorted(plants.meters), strict=True):
        assert row.get_attribute("data-meter-id") == str(meter_id)
        expect(row.locator("a")).to_have_attribute("href", f"/plants/{meter_id}")
        expect(row.locator("a")).to_have_text(plants.names[meter_id])
        sales = api(page, f"/api/v1/meters/{meter_id}/sales?from={first}&to={last}")
        now = api(page, f"/api/v1/meters/{meter_id}/current")
        expect(row.locator(".today")).to_have_text(t.kwh(now["today_sold_wh"] or 0))
        expect(row.locator(".month")).to_have_text(t.kwh(sales["sold_wh"]))
        expect(row.locator(".sales")).to_have_text(f"¥{t.number(sales['yen'])}")
        expect(row.locator(".power")).to_have_text(t.watts(sold_now_w(panel, meter_id)))
        total_yen += sales["yen"]
        # The comparison graph: one line a plant, the days' sold kWh as the API has them.
        # Today is not over: its energy so far is a point apart, not the line's fall.
        trace = plotted[f"plant-{meter_id}"]
        assert trace["x"] == days
        by_day = {d["day"]: d["sold_wh"] for d in sales["days"]}
        assert trace["y"] == [by_day[d] / 1000 for d in days[:-1]] + [None]
        assert plotted[f"today-{meter_id}"]["x"] == [today.isoformat()]
        assert plotted[f"today-{meter_id}"]["y"] == [by_day[today.isoformat()] / 1000]
    expect(page.locator("#month-sales")).to_have_text(f"¥{t.number(total_yen)}")
    readable_chart(page, "#compare-chart")
    if role == "admin_b":
        screenshot(page, f"plants-{lang}")
    visit.check()


def test_the_list_moves_a_month_back(visit, panel, plants):
    t = translator("en")
    first, _ = month_bounds(jst_today())
    previous = (first - timedelta(days=1)).replace(day=1)
    page = visit("viewer_b", "en")
    page.goto("/plants")
    page.click("#prev-month")
    page.wait_for_url(f"**/plants?month={previous:%Y-%m}")
    expect(page.locator("h1")).to_have_text(t("plants.month_title", month=month_text(t, previous)))
    page.wait_for_function("() => document.body.dataset.drawn === '1'")
    meter_id = min(plants.meters)
    _, last = month_bounds(previous)
    sales = api(page, f"/api/v1/meters/{meter_id}/sales?from={previous}&to={last}")
    trace = chart(page, "compare-chart")[f"plant-{meter_id}"]
    assert trace["y"] == [d["sold_wh"] / 1000 for d in sales["days"]]
    assert sales["sold_wh"] > 0 and sales["yen"] > 0  # the history covers its end at least
    expect(page.locator("#rows tr .month").first).to_have_text(t.kwh(sales["sold_wh"]))
    visit.check()


# -- one plant ------------------------------------------------------------------------------------


def wait_charts(page) -> None:
    page.wait_for_function(
        "() => document.body.dataset.energy === 'drawn' && document.body.dataset.peaks === 'drawn'"
    )


@pytest.mark.parametrize(("role", "lang"), [(r, lang) for r in ROLES_B for lang in LANGS])
def test_a_plant_shows_sold_energy_weather_peaks_and_sales(visit, panel, plants, role, lang):
    t = translator(lang)
    today = jst_today()
    first, last = month_bounds(today)
    meter_id = min(plants.meters)
    site_id = plants.meters[meter_id]
    page = visit(role, lang)
    assert page.goto(f"/plants/{meter_id}").status == 200
    wait_charts(page)
    expect(page.locator("h1")).to_have_text(t("plant.title", name=plants.names[meter_id]))
    expect(page.locator("#realtime")).to_have_attribute("href", f"/meters/{meter_id}")

    # Hourly sold energy of today, and the weather beside it on its own axes.
    energy = api(
        page,
        f"/api/v1/meters/{meter_id}/energy?period=hour&from={today}&to={today}&direction=reverse",
    )
    plotted = chart(page, "energy-chart")
    assert plotted["sold"]["x"] == [v["start"] for v in energy["values"]]
    assert plotted["sold"]["y"] == [
        None if v["wh"] is None else v["wh"] / 1000 for v in energy["values"]
    ]
    expect(page.locator("#energy-total")).to_have_text(
        t("plant.total", kwh=t.kwh(energy["total_wh"]))
    )
    weather = api(page, f"/api/v1/sites/{site_id}/weather?day={today}")["items"]
    assert len(weather) == 24
    assert plotted["irradiance"]["y"] == [h["irradiance_w_m2"] for h in weather]
    assert plotted["temperature"]["y"] == [h["temperature_c"] for h in weather]
    assert plotted["irradiance"]["x"] == [h["at"] for h in weather]
    expect(page.locator("#weather-note")).to_be_hidden()
    # The weather still to come is labelled a forecast (the rest of today is).
    drawn = readable_chart(page, "#energy-chart")
    assert drawn["annotations"] == [t("plant.forecast")]

    # Each day's highest 30-minute demand sold over the month, and the month's: its
    # largest slot from the API × 2 with the slot's time; the instant peak labelled apart.
    demand = api(page, f"/api/v1/meters/{meter_id}/demand?from={first}&to={last}&direction=reverse")
    plotted = chart(page, "peak-chart")
    assert plotted["peak"]["y"] == [
        None if d["demand_w"] is None else d["demand_w"] / 1000 for d in demand["days"]
    ]
    top = largest_slot(page, meter_id, "reverse", first, last)
    assert top is not None and demand["peak"]["demand_w"] == top["wh"] * 2
    expect(page.locator("#peak-summary")).to_have_text(
        t("plant.peak_of_month", kw=t.kw(top["wh"] * 2),
          slot=t.slot(datetime.fromisoformat(top["start"])))
    )  # fmt: skip
    expect(page.locator("#peak-summary")).to_have_attribute("data-w", str(top["wh"] * 2))
    readable_chart(page, "#peak-chart", base="W")
    with panel.engine.connect() as conn:
        stored = conn.execute(
            select(func.max(s.meter_daily_peak.c.export_w)).where(
                s.meter_daily_peak.c.meter_id == meter_id,
                s.meter_daily_peak.c.day >= jst_midnight(first),
            )
        ).scalar()
    if stored is None:
        expect(page.locator("#instant-summary")).to_have_text(t("plant.no_instant"))
    else:
        expect(page.locator("#instant-summary")).to_contain_text(t.watts(stored))

    # The estimate, with its prices and their validity.
    sales = api(page, f"/api/v1/meters/{meter_id}/sales?from={first}&to={last}")
    expect(page.locator("#month-sales")).to_have_text(f"¥{t.number(sales['yen'])}")
    expect(page.locator("#month-sold")).to_have_text(t.kwh(sales["sold_wh"]))
    expect(page.locator("#power-now")).to_have_text(t.watts(sold_now_w(panel, meter_id)))
    prices = api(page, f"/api/v1/meters/{meter_id}/prices")["items"]
    rows = page.locator("#price-rows tr")
    expect(rows).to_have_count(len(prices))
    for row, price in zip(rows.all(), prices, strict=True):
        expect(row.locator(".price")).to_have_text(
            t("plant.per_kwh", price=f"¥{t.number(price['yen_per_kwh'], 2)}")
        )
        expect(row.locator(".from")).to_have_text(t.date(date.fromisoformat(price["valid_from"])))
        valid_to = price["valid_to"]
        expect(row.locator(".to")).to_have_text(
            t.date(date.fromisoformat(valid_to)) if valid_to else t("plant.open_ended")
        )

    if role == "viewer_b":  # no price form, and the API refuses a viewer's price anyway
        expect(page.locator("#price-form")).to_have_count(0)
        expect(page.locator("#viewer-note")).to_have_text(t("plant.viewer_note"))
        status = page.evaluate(
            """(url) => fetch(url, {method: 'POST',
                headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({yen_per_kwh: 1, valid_from: '2026-01-01'}),
            }).then(r => r.status)""",
            f"/api/v1/meters/{meter_id}/prices",
        )
        assert status == 403
    else:
        expect(page.locator("#price-form")).to_be_visible()
        screenshot(page, f"plant-{lang}")
    visit.check("status of 403 (Forbidden)")


@pytest.mark.parametrize("lang", LANGS)
def test_a_plant_by_day_of_the_month_and_by_month_of_the_year(visit, panel, plants, lang):
    today = jst_today()
    meter_id = max(plants.meters)
    page = visit("viewer_b", lang)
    page.goto(f"/plants/{meter_id}")
    wait_charts(page)
    for view, first, last in (
        ("day", *month_bounds(today)),
        ("month", date(today.year, 1, 1), date(today.year, 12, 31)),
    ):
        page.click(f'a[data-view="{view}"]')
        page.wait_for_url(f"**/plants/{meter_id}?view={view}*")
        wait_charts(page)
        energy = api(
            page,
            f"/api/v1/meters/{meter_id}/energy?period={view}&from={first}&to={last}"
            "&direction=reverse",
        )
        plotted = chart(page, "energy-chart")
        assert set(plotted) == {"sold"}  # the weather goes with the hourly view
        assert plotted["sold"]["y"] == [
            None if v["wh"] is None else v["wh"] / 1000 for v in energy["values"]
        ]
        expect(page.locator("#weather-note")).to_have_text(translator(lang)("plant.weather_daily"))
        readable_chart(page, "#energy-chart")  # no "12/1 12/1 12/2", a year not in Wh
    page.click("#prev")
    page.wait_for_url(f"**/plants/{meter_id}?view=month&day={today.year - 1}-01-01")
    wait_charts(page)
    page.click("#prev")  # two years back: nothing sold then, and the chart says so truly
    page.wait_for_url(f"**/plants/{meter_id}?view=month&day={today.year - 2}-01-01")
    wait_charts(page)
    assert all(v is None for v in chart(page, "energy-chart")["sold"]["y"])
    assert readable_chart(page, "#energy-chart")["axes"]["y"] == ["0 Wh"]  # not "1 Wh 1 Wh 0 Wh"

    # The previous month by day: the history's days, sold energy on them.
    first, last = month_bounds(today.replace(day=1) - timedelta(days=1))
    page.goto(f"/plants/{meter_id}?view=day&day={first}")
    wait_charts(page)
    energy = api(
        page,
        f"/api/v1/meters/{meter_id}/energy?period=day&from={first}&to={last}&direction=reverse",
    )
    sold = chart(page, "energy-chart")["sold"]["y"]
    assert sold == [None if v["wh"] is None else v["wh"] / 1000 for v in energy["values"]]
    assert sum(v or 0 for v in sold) > 0
    visit.check()


@pytest.mark.parametrize("lang", LANGS)
def test_on_a_phone_the_plants_read_and_fit(visit, panel, plants, lang):
    """390 px: the list and a plant's hourly (with the weather and its forecast) and daily
    charts fit the screen, their labels and titles apart, power never negative."""
    page = visit(
        "viewer_b", lang, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page.goto("/plants")
    page.wait_for_function("() => document.body.dataset.drawn === '1'")
    readable_chart(page, "#compare-chart")
    no_sideways_page(page, 390)
    no_negative_power(page)
    screenshot(page, f"plants-{lang}-phone")
    meter_id = min(plants.meters)
    for view in ("hour", "day"):
        page.goto(f"/plants/{meter_id}?view={view}")
        wait_charts(page)
        readable_chart(page, "#energy-chart")
        readable_chart(page, "#peak-chart", base="W")
        no_sideways_page(page, 390)
        no_negative_power(page)
        screenshot(page, f"plant-{view}-{lang}-phone")
    visit.check()


def test_without_a_weather_source_the_plant_page_says_so(visit, panel, plants):
    t = translator("ja")
    app = app_of(panel)
    source, app.state.weather = app.state.weather, None
    try:
        page = visit("viewer_b", "ja")
        page.goto(f"/plants/{min(plants.meters)}")
        wait_charts(page)
        expect(page.locator("#weather-note")).to_have_text(t("plant.weather_off"))
        assert set(chart(page, "energy-chart")) == {"sold"}
    finally:
        app.state.weather = source
    visit.check()


def test_an_administrator_adds_a_price_and_the_estimate_follows(visit, panel, plants):
    t = translator("en")
    today = jst_today()
    first, last = month_bounds(today)
    meter_id = max(plants.meters)
    page = visit("admin_b", "en")
    page.goto(f"/plants/{meter_id}")
    wait_charts(page)
    previous = (first - timedelta(days=1)).replace(day=1)  # sold energy there, surely
    before = api(page, f"/api/v1/meters/{meter_id}/sales?from={previous}&to={last}")
    count = page.locator("#price-rows tr").count()

    page.fill("#price-form input[name=yen_per_kwh]", "30.5")
    page.fill("#price-form input[name=valid_from]", previous.isoformat())
    page.click("#price-form button[type=submit]")
    expect(page.locator("#price-message")).to_have_text(t("plant.price_added"))
    expect(page.locator("#price-rows tr")).to_have_count(count + 1)
    with panel.engine.connect() as conn:
        newest = conn.execute(
            select(s.plant_prices)
            .where(s.plant_prices.c.meter_id == meter_id)
            .order_by(s.plant_prices.c.id.desc())
        ).first()
    assert (newest.yen_per_kwh_milli, newest.valid_from, newest.valid_to) == (
        30_500,
        previous,
        None,
    )
    after = api(page, f"/api/v1/meters/{meter_id}/sales?from={previous}&to={last}")
    assert after["yen"] > before["yen"]  # the newest price wins on the days it covers
    month = api(page, f"/api/v1/meters/{meter_id}/sales?from={first}&to={last}")
    expect(page.locator("#month-sales")).to_have_text(f"¥{t.number(month['yen'])}")

    # A price ending before it starts: the API's problem, shown; nothing stored.
    page.fill("#price-form input[name=yen_per_kwh]", "10")
    page.fill("#price-form input[name=valid_from]", today.isoformat())
    page.fill("#price-form input[name=valid_to]", (today - timedelta(days=1)).isoformat())
    page.click("#price-form button[type=submit]")
    expect(page.locator("#price-message")).to_contain_text(
        t("plant.price_refused", detail="").strip()
    )
    expect(page.locator("#price-message")).to_contain_text("valid_to is before valid_from")
    expect(page.locator("#price-rows tr")).to_have_count(count + 1)
    visit.check("status of 422 (Unprocessable")


# -- the wall -------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_another_tenants_meter_is_not_a_plant_here(visit, panel, plants, lang):
    t = translator(lang)
    page = visit("admin_b", lang)
    for path in (
        f"/plants/{plants.other_tenant_meter}",  # tenant A's meter
        "/plants/999999",
        "/plants/not-a-number",
        f"/plants/{min(plants.meters)}?view=week",
    ):
        response = page.goto(path)
        assert response.status == 404, path
        expect(page.locator("h1")).to_have_text(t("error.not_found"))

    # A retailer has no plants at all, not even the generator's by id.
    retailer = visit("admin", lang)
    retailer.goto("/")
    expect(retailer.locator("nav.nav")).not_to_contain_text(t("nav.plants"))
    for path in ("/plants", f"/plants/{min(plants.meters)}"):
        response = retailer.goto(path)
        assert response.status == 404, path
        expect(retailer.locator("h1")).to_have_text(t("error.not_found"))
        expect(retailer.locator("main")).not_to_contain_text(plants.names[min(plants.meters)])
    visit.check("status of 404 (Not Found)")
