"""The retailer's plan and imbalance, the generator's prices and sales, weather: through
the API, on both databases, each tenant behind its own wall."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import insert, select

from kenshin.jst import JST
from kenshin.server import schema as s
from kenshin.server.analytics import retail
from kenshin.server.analytics.generation import CsvWeather, WeatherError

from .conftest import assert_problem, login, udp_meter

DAY = date(2026, 11, 25)
MIDNIGHT = datetime.combine(DAY, time(0), JST)


def test_plan_csv_in_both_shapes_and_errors_name_their_line():
    by_start = retail.parse_plan_csv("\ufeffslot_start,kwh\n2026-11-25T00:00,1.5\n")
    by_number = retail.parse_plan_csv("date,slot,wh\n2026-11-25,1,1500\n2026-11-25,48,7\n")
    assert by_start == {MIDNIGHT.astimezone(UTC): 1500}
    assert by_number[MIDNIGHT.astimezone(UTC)] == 1500
    assert by_number[(MIDNIGHT + timedelta(hours=23, minutes=30)).astimezone(UTC)] == 7
    for text, message in [
        ("when,kwh\n", "header"),
        ("slot_start,kwh\n2026-11-25T00:10,1\n", "line 2"),
        ("date,slot,kwh\n2026-11-25,49,1\n", "slot must be 1 to 48"),
        ("date,slot,kwh\n2026-11-25,1,1\n2026-11-25,1,2\n", "line 3: slot"),
        ("slot_start,kwh\n2026-11-25T00:00,abc\n", "line 2: energy"),
        ("slot_start,kwh\n2026-11-25T00:00,-1\n", "negative"),
        ("slot_start,kwh\n", "no rows"),
    ]:
        with pytest.raises(retail.PlanError, match=message):
            retail.parse_plan_csv(text)


def _energy_rows(tenant_id: int, hours: int, wh: int) -> list[dict]:
    return [
        {
            "tenant_id": tenant_id,
            "period": "slot",
            "direction": 0,
            "start": MIDNIGHT + i * timedelta(minutes=30),
            "wh": wh,
            "slots": 10,
            "refilled": 0,
        }
        for i in range(hours * 2)
    ]


def test_the_days_outlook_projects_imbalance_and_raises_one_event_per_slot(
    new_client, engine, world
):
    ops = login(new_client(), "operator@a.test")
    plan = "date,slot,kwh\n" + "".join(f"{DAY},{i},10\n" for i in range(1, 49))
    answer = ops.put(
        "/api/v1/procurement-plan.csv", content=plan, headers={"content-type": "text/csv"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"slots": 48}
    forecast = [
        {
            "tenant_id": world.tenant_a,
            "slot_start": MIDNIGHT + i * timedelta(minutes=30),
            "direction": 0,
            "low_wh": 9000,
            "mid_wh": 12_000 if i >= 40 else 10_000,  # the evening runs 20 % over plan
            "high_wh": 13_000,
        }
        for i in range(48)
    ]
    with engine.begin() as conn:
        conn.execute(insert(s.tenant_forecast), forecast)
        conn.execute(insert(s.tenant_energy), _energy_rows(world.tenant_a, 10, 9_500))
        now = MIDNIGHT + timedelta(hours=10, minutes=1)
        outlook = retail.day_outlook(conn, world.tenant_a, DAY, now)
        raised = retail.check_imbalance(conn, world.tenant_a, now)
        again = retail.check_imbalance(conn, world.tenant_a, now)
        events = conn.execute(
            select(s.events).where(s.events.c.code == "imbalance_projected")
        ).all()
    closed = outlook[:20]
    assert all(o.actual_wh == 9_500 and o.imbalance_wh == -500 for o in closed)
    assert not any(o.at_risk for o in closed)
    assert [o.start for o in outlook if o.at_risk] == [o.start for o in outlook[40:]]
    assert len(raised) == 8 and again == [] and len(events) == 8
    assert events[0].detail["request"] == "energy_saving"
    assert events[0].detail["deviation_pct"] == 20.0

    viewer = login(new_client(), "viewer@a.test")
    day = viewer.get("/api/v1/imbalance", params={"day": DAY.isoformat()}).json()
    assert day["threshold_pct"] == 10.0 and len(day["slots"]) == 48
    assert day["slots"][45]["plan_wh"] == 10_000
    assert_problem(viewer.put("/api/v1/procurement-plan", json=[]), 403)
    other = login(new_client(), "viewer@b.test")
    assert all(
        x["plan_wh"] is None
        for x in other.get("/api/v1/imbalance", params={"day": str(DAY)}).json()["slots"]
    )
    assert other.get("/api/v1/forecast", params={"day": str(DAY)}).json()["items"] == []


def test_plan_as_json_refuses_what_is_not_a_half_hour(new_client, world):
    ops = login(new_client(), "operator@a.test")
    good = ops.put(
        "/api/v1/procurement-plan", json=[{"slot_start": "2026-11-25T09:30:00", "wh": 5}]
    )
    assert good.json() == {"slots": 1}
    assert_problem(
        ops.put("/api/v1/procurement-plan", json=[{"slot_start": "2026-11-25T09:31", "wh": 5}]),
        422,
    )
    bad_csv = ops.put(
        "/api/v1/procurement-plan.csv",
        content="slot_start,kwh\nnope,1\n",
        headers={"content-type": "text/csv"},
    )
    assert "line 2" in assert_problem(bad_csv, 400)["detail"]


def test_sale_prices_and_sales_estimate_per_plant(new_client, engine, world, fleet):
    meter = udp_meter(engine, world, fleet)
    ops = login(new_client(), "operator@a.test")
    base = f"/api/v1/meters/{meter.id}"
    assert (
        ops.post(
            f"{base}/prices", json={"yen_per_kwh": 16.5, "valid_from": "2026-11-01"}
        ).status_code
        == 201
    )
    newer = ops.post(
        f"{base}/prices",
        json={"yen_per_kwh": 8.5, "valid_from": "2026-11-20", "valid_to": "2026-11-21"},
    ).json()
    assert_problem(
        ops.post(
            f"{base}/prices",
            json={"yen_per_kwh": 1, "valid_from": "2026-11-02", "valid_to": "2026-11-01"},
        ),
        422,
    )
    with engine.begin() as conn:
        conn.execute(
            insert(s.meter_energy),
            [
                {
                    "meter_id": meter.id,
                    "period": "day",
                    "direction": 1,
                    "start": datetime.combine(date(2026, 10, 31) + timedelta(days=i), time(0), JST),
                    "wh": 10_000,
                    "slots": 48,
                    "refilled": 0,
                }
                for i in range(23)
            ],
        )
    sales = ops.get(f"{base}/sales", params={"from": "2026-10-31", "to": "2026-11-22"}).json()
    assert sales["unpriced_days"] == 1  # 31 October: no price yet
    by_day = {d["day"]: d for d in sales["days"]}
    assert by_day["2026-11-20"]["yen"] == 85.0 and by_day["2026-11-22"]["yen"] == 165.0
    assert sales["yen"] == 20 * 165.0 + 2 * 85.0
    assert sales["sold_wh"] == 230_000
    assert ops.delete(f"{base}/prices/{newer['id']}").status_code == 204
    assert len(ops.get(f"{base}/prices").json()["items"]) == 1
    other = login(new_client(), "admin@b.test")
    for answer in (
        other.get(f"{base}/prices"),
        other.get(f"{base}/sales", params={"from": "2026-11-01", "to": "2026-11-02"}),
        other.post(f"{base}/prices", json={"yen_per_kwh": 1, "valid_from": "2026-11-01"}),
    ):
        assert_problem(answer, 404)


def test_weather_from_a_csv_beside_production(new_client, app, tmp_path, world, fleet):
    path = tmp_path / "weather.csv"
    path.write_text(
        "time,irradiance_w_m2,temperature_c,site_id\n"
        "2026-11-25T11:00,610,14.5,\n"
        f"2026-11-25T11:00,580,14.0,{fleet['site'].id}\n"
        "2026-11-25T12:00,,15.0,\n"
        "2026-11-26T12:00,1,1,\n",
        encoding="utf-8",
    )
    viewer = login(new_client(), "viewer@a.test")
    url = f"/api/v1/sites/{fleet['site'].id}/weather"
    assert "weather_csv" in assert_problem(viewer.get(url), 404)["detail"]
    app.state.weather = CsvWeather(path)
    hours = viewer.get(url, params={"day": "2026-11-25"}).json()["items"]
    assert [(h["irradiance_w_m2"], h["temperature_c"]) for h in hours] == [
        (580.0, 14.0),
        (None, 15.0),
    ]
    assert_problem(login(new_client(), "viewer@b.test").get(url), 404)
    path.write_text("time,irradiance_w_m2\nyesterday,1\n", encoding="utf-8")
    with pytest.raises(WeatherError, match="line 2"):
        CsvWeather(path).hourly(1, MIDNIGHT, MIDNIGHT + timedelta(days=1))
