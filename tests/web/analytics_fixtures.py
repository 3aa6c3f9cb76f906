"""Data for the retailer view and the generator pack, on top of the `panel` fleet.

Readings go through the real ingest (`send`), plans and prices through the real JSON API;
only the forecast, which the server's periodic job would compute (jobs are off in the
browser tests), is written straight into its table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert

from kenshin.jst import JST
from kenshin.server import schema as s
from kenshin.server.devices import registry
from kenshin.wire import FixedTimeValue, InstantSample, ReadingsBatch

from .conftest import EMAILS, PASSWORD, SCALE, Panel, send

SLOT_S = 1800
DAY_S = 86_400
COUNT_WH = 100  # SCALE: 0.1 kWh a count


def jst_midnight_s(at_s: float) -> int:
    """The epoch second of JST midnight starting the JST day holding `at_s`."""
    return int((at_s + 9 * 3600) // DAY_S * DAY_S - 9 * 3600)


def jst_today() -> date:
    return datetime.now(JST).date()


@contextmanager
def api_client(panel: Panel, email: str) -> Iterator[httpx.Client]:
    """An httpx client logged in through /api/v1/auth/login (the session cookie)."""
    with httpx.Client(base_url=panel.url, timeout=30) as client:
        answer = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.headers["X-CSRF-Token"]
        yield client


# -- the retailer (tenant A) -------------------------------------------------------------------

RETAIL_METERS = ("GW-A1", "GW-A2", "GW-A3")  # tenant A's working gateways (n = 1, 2, 3)


def _bump(k: int) -> int:
    """Extra counts a home uses in slot `k` of the day: a morning and an evening peak."""
    hour = k // 2
    return 2 if 7 <= hour < 9 else 4 if 18 <= hour < 22 else 0


def expected_tenant_wh(k: int) -> int:
    """Tenant A's demand in slot k as the fleet sends it: meter n uses n + 2 counts a slot
    (the conftest's first two slots) plus the peaks."""
    return sum((n + 2 + (_bump(k) if k >= 2 else 0)) * COUNT_WH for n in (1, 2, 3))


def at_risk_slot(k: int) -> bool:
    """The plan of these slots (18:00-21:00) is a quarter short: past the 10 % threshold."""
    return 36 <= k < 42


def plan_wh(k: int) -> int:
    return round(expected_tenant_wh(k) * (0.75 if at_risk_slot(k) else 1.0))


def plan_csv(day: date, wh_of_slot) -> str:
    """The `date,slot,kwh` shape (slots 1 to 48)."""
    return "date,slot,kwh\n" + "".join(
        f"{day.isoformat()},{k + 1},{wh_of_slot(k) / 1000}\n" for k in range(48)
    )


def fill_retail(panel: Panel) -> None:
    """Today's actuals so far for tenant A, its forecast for today and tomorrow, and a
    procured plan for today (uploaded through the API by the tenant's administrator)."""
    now = time.time()
    midnight = jst_midnight_s(now)
    closed = min(48, int((now - midnight) // SLOT_S))  # boundaries 0..closed are in the past
    for n, serial in enumerate(RETAIL_METERS, start=1):
        raw = 10_000 + 2 * (n + 2)  # the conftest's third boundary (k = 2)
        fixed = []
        for k in range(3, closed + 1):
            raw += n + 2 + _bump(k - 1)
            fixed.append(FixedTimeValue(midnight + k * SLOT_S, raw))
        for chunk in range(0, len(fixed), 48):
            batch = ReadingsBatch(
                1000 + chunk,
                f"m{panel.meters[serial]}",
                (),
                tuple(fixed[chunk : chunk + 48]),
                SCALE,
            )
            send(panel.engine, serial, batch)

    made = datetime.now(UTC)
    rows = []
    for day in (0, 1):
        for k in range(48):
            mid = expected_tenant_wh(k)
            rows.append(
                {
                    "tenant_id": panel.world.tenant_a,
                    "slot_start": datetime.fromtimestamp(midnight + day * DAY_S + k * SLOT_S, UTC),
                    "direction": 0,
                    "low_wh": round(mid * 0.85),
                    "mid_wh": mid,
                    "high_wh": round(mid * 1.15),
                    "made_at": made,
                }
            )
    with panel.engine.begin() as conn:
        conn.execute(insert(s.tenant_forecast), rows)

    with api_client(panel, EMAILS["admin"]) as client:
        answer = client.put(
            "/api/v1/procurement-plan.csv",
            content=plan_csv(jst_today(), plan_wh).encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"slots": 48}


# -- the generator (tenant B) ------------------------------------------------------------------

HISTORY_DAYS = 40


@dataclass
class Plants:
    """Tenant B's plants: meter id -> (site id, peak counts a slot, current power)."""

    meters: dict[int, int] = field(default_factory=dict)  # meter id -> site id
    names: dict[int, str] = field(default_factory=dict)  # meter id -> service code
    other_tenant_meter: int = 0


def _sun(hour: float) -> float:
    """0 at night, 1 at noon."""
    return max(0.0, math.sin(math.pi * (hour - 6) / 12)) if 6 <= hour <= 18 else 0.0


def _cloud(day_index: int) -> float:
    return 0.45 + 0.55 * ((day_index * 7) % 5) / 4


def _history(panel: Panel, serial: str, meter_id: int, peak_counts: int, now_w: int) -> None:
    """Forty days of sold energy (30-minute reverse registers) and instant power (for the
    peaks), then a reading of `now_w` (negative: selling) a minute ago."""
    now = time.time()
    today = jst_midnight_s(now)
    first = today - HISTORY_DAYS * DAY_S
    raw = 50_000
    for d in range(HISTORY_DAYS + 1):
        midnight = first + d * DAY_S
        fixed, instant = [], []
        for k in range(48):
            at = midnight + k * SLOT_S
            if at > now:
                break
            fixed.append(FixedTimeValue(at, None, raw))
            raw += round(peak_counts * _sun(k / 2 + 0.25) * _cloud(d))
        for hour in range(24):
            at = midnight + hour * 3600 + 1200
            if at > now - 120:
                break
            sold = round(peak_counts * 2 * COUNT_WH * _sun(hour + 0.33) * _cloud(d))
            instant.append(InstantSample(at, -sold if sold else 180, 20))
        if fixed or instant:
            send(
                panel.engine,
                serial,
                ReadingsBatch(2000 + d, f"m{meter_id}", tuple(instant), tuple(fixed), SCALE),
            )
    send(
        panel.engine,
        serial,
        ReadingsBatch(3000, f"m{meter_id}", (InstantSample(int(now) - 30, now_w, 40),)),
    )


def fill_plants(panel: Panel) -> Plants:
    """Tenant B's two plants (its conftest meter, and a second site read by the same
    gateway), forty days of history, and sale prices added through the API."""
    plants = Plants(other_tenant_meter=panel.meters["GW-A1"])
    tenant = panel.world.tenant_b
    first_meter = panel.meters["GW-B1"]
    with panel.engine.begin() as conn:
        site = registry.add_site(
            conn,
            tenant,
            "system",
            customer_id="C0100",
            service_code="pss00000100",
            address="千葉県木更津市太陽1-1",
            phone="0438-00-0100",
        )
        second = registry.add_meter(
            conn,
            tenant,
            panel.credential_box,
            "system",
            site_id=site.id,
            link="udp",
            gateway_id=panel.gateways["GW-B1"],
            udp_host="127.0.1.2",
        )
        first_site = (
            conn.execute(s.meters.select().where(s.meters.c.id == first_meter)).one().site_id
        )
    plants.meters = {first_meter: first_site, second.id: site.id}
    plants.names = {first_meter: "pss00000008", second.id: "pss00000100"}
    _history(panel, "GW-B1", first_meter, 20, -3210)
    _history(panel, "GW-B1", second.id, 12, -1500)

    today = jst_today()
    with api_client(panel, "admin@b.test") as client:
        for meter_id, body in (
            (
                first_meter,
                {
                    "yen_per_kwh": 16.0,
                    "valid_from": str(today - timedelta(days=90)),
                    "valid_to": str(today - timedelta(days=6)),
                },
            ),
            (first_meter, {"yen_per_kwh": 18.5, "valid_from": str(today - timedelta(days=5))}),
            (second.id, {"yen_per_kwh": 12.25, "valid_from": str(today - timedelta(days=90))}),
        ):
            answer = client.post(f"/api/v1/meters/{meter_id}/prices", json=body)
            assert answer.status_code == 201, answer.text
    return plants


def write_weather_csv(path: Path) -> Path:
    """Hourly irradiance and temperature for every site, the last forty days and today."""
    today = jst_today()
    lines = ["time,irradiance_w_m2,temperature_c"]
    for d in range(-HISTORY_DAYS, 2):
        day = today + timedelta(days=d)
        for hour in range(24):
            irradiance = round(850 * _sun(hour + 0.5), 1)
            temperature = round(12 + 8 * _sun(hour + 0.5) + (d % 3), 1)
            lines.append(f"{day.isoformat()}T{hour:02d}:00,{irradiance},{temperature}")
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path
