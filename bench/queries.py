"""What the panel and a retailer's systems ask, at fleet scale: `.venv/bin/python bench/queries.py`.

PostgreSQL (127.0.0.1:5432) holds one tenant of 10,000 meters with 90 days of 30-minute
data (slot energy, hourly/daily/monthly rollups per meter and per tenant, daily peaks) and
one day of 60-second instant power, written with COPY into a database of its own
(`kenshin_bench_queries`, kept for later runs; --rebuild makes it again). Then each query
runs repeatedly through the real HTTP API in this process (the FastAPI app, an API key,
no network), and the table gives p50 and p95:

- the tenant's 30-minute totals for a day        goal p95 < 100 ms
- one meter's 90 days of daily totals            goal p95 < 100 ms
- a page of the site list (power now, today's kWh) goal p95 < 100 ms
- one meter's month of 30-minute slots as CSV    goal < 1 s

    --meters N --days D   the fleet (10,000 × 90)
    --quick               200 meters × 3 days, a few runs: the smoke test's
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from fastapi.testclient import TestClient

from kenshin.echonet.edt import JST
from kenshin.server import accounts
from kenshin.server.app import create_app
from kenshin.server.db import make_engine, migrate
from kenshin.server.metering.partitions import ensure_partitions
from kenshin.server.settings import Settings

ADMIN = os.environ.get("KENSHIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SLOT = timedelta(minutes=30)
TODAY = datetime(2026, 11, 24, tzinfo=JST)  # the data's "today" (fixed: runs compare)


def _wh(meter: int, slot: int) -> int:
    """A cheap, deterministic household half hour (Wh): a daily shape plus noise."""
    hour = slot % 48 / 2
    shape = 120 + 180 * (7 <= hour < 9) + 260 * (18 <= hour < 23)
    return shape + (meter * 7919 + slot * 104729) % 97


def _progress(what: str, done: int, total: int, started: float) -> None:
    print(f"  {what}: {done:,}/{total:,} ({time.monotonic() - started:.0f} s)",
          file=sys.stderr, flush=True)  # fmt: skip


def _copy(cur, table: str, columns: str):
    return cur.copy(f"COPY {table} ({columns}) FROM STDIN")


def build(url: str, meters: int, days: int) -> None:
    """Tenant 1 with `meters` sites, gateways and meters, and their data."""
    engine = make_engine(url)
    migrate(engine)
    first_day = TODAY - timedelta(days=days - 1)
    with engine.begin() as conn:
        ensure_partitions(conn, first_day)
        ensure_partitions(conn, TODAY)
    engine.dispose()
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    started = time.monotonic()
    with psycopg.connect(plain) as conn, conn.cursor() as cur:
        now = datetime.now(UTC)
        cur.execute(
            "INSERT INTO tenants (id, name, kind, created_at) VALUES (1, 'Bench', 'retailer', %s)",
            (now,),
        )
        with _copy(
            cur, "sites", "id, tenant_id, customer_id, service_code, address, phone, created_at"
        ) as copy:
            for m in range(1, meters + 1):
                copy.write_row(
                    (m, 1, f"C{m:07d}", f"pss{m:08d}", f"東京都港区{m}", f"03-{m:08d}", now)
                )
        with _copy(
            cur,
            "gateways",
            "id, serial, model, public_key, tenant_id, site_id, state, state_since, created_at",
        ) as copy:
            for m in range(1, meters + 1):
                state = "working" if m % 50 else "lost_contact"
                copy.write_row((m, f"GW{m:08d}", "bench", bytes(32), 1, m, state, now, now))
        with _copy(
            cur, "meters", "id, tenant_id, site_id, gateway_id, link, udp_host, created_at"
        ) as copy:
            for m in range(1, meters + 1):
                copy.write_row((m, 1, m, m, "udp", "127.0.1.1", now))
        for table in ("tenants", "sites", "gateways", "meters"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {meters + 1})")
        first_slot = int(first_day.timestamp()) // 1800
        slots = days * 48
        tenant_slot = [0] * slots
        energy_rows = []
        with _copy(
            cur, "slot_energy", "meter_id, slot_start, direction, status, milliwatt_hours, wh"
        ) as copy:
            for m in range(1, meters + 1):
                hours: dict = {}
                for k in range(slots):
                    wh = _wh(m, k)
                    at = datetime.fromtimestamp((first_slot + k) * 1800, UTC)
                    copy.write_row((m, at, 0, "measured", wh * 1000, wh))
                    tenant_slot[k] += wh
                    hour = at.replace(minute=0)
                    hours[hour] = hours.get(hour, 0) + wh
                energy_rows.append((m, hours))
                if m % max(1, meters // 10) == 0:
                    _progress("30-minute slots, meters", m, meters, started)
        with _copy(
            cur, "meter_energy", "meter_id, period, direction, start, wh, slots, refilled"
        ) as copy:
            for m, hours in energy_rows:
                daily: dict = {}
                for hour, wh in hours.items():
                    copy.write_row((m, "hour", 0, hour, wh, 2, 0))
                    day = hour.astimezone(JST).replace(hour=0)
                    daily[day] = daily.get(day, 0) + wh
                monthly: dict = {}
                for day, wh in daily.items():
                    copy.write_row((m, "day", 0, day, wh, 48, 0))
                    month = day.replace(day=1)
                    monthly[month] = monthly.get(month, 0) + wh
                for month, wh in monthly.items():
                    copy.write_row((m, "month", 0, month, wh, 48 * 31, 0))
        _progress("rollups", meters, meters, started)
        with _copy(
            cur, "tenant_energy", "tenant_id, period, direction, start, wh, slots, refilled"
        ) as copy:
            daily = {}
            for k, wh in enumerate(tenant_slot):
                at = datetime.fromtimestamp((first_slot + k) * 1800, UTC)
                copy.write_row((1, "slot", 0, at, wh, meters, 0))
                day = at.astimezone(JST).replace(hour=0, minute=0)
                daily[day] = daily.get(day, 0) + wh
            for day, wh in daily.items():
                copy.write_row((1, "day", 0, day, wh, meters * 48, 0))
        day_start = TODAY.astimezone(UTC)
        with _copy(
            cur, "readings_instant", "meter_id, at, power_w, current_r_da, current_t_da"
        ) as copy:
            for m in range(1, meters + 1):
                for minute in range(24 * 60):
                    w = 200 + (m * 31 + minute * 17) % 900
                    copy.write_row((m, day_start + timedelta(minutes=minute), w, w // 10, w // 10))
                if m % max(1, meters // 10) == 0:
                    _progress("a day of 60-s power, meters", m, meters, started)
        with _copy(
            cur, "meter_latest", "meter_id, at, power_w, current_r_da, current_t_da"
        ) as copy:
            for m in range(1, meters + 1):
                copy.write_row((m, now, 500 + m % 300, 50, 50))
        with _copy(cur, "meter_daily_peak", "meter_id, day, import_w, import_at") as copy:
            for m in range(1, meters + 1):
                for d in range(days):
                    day = first_day + timedelta(days=d)
                    copy.write_row((m, day, 3000 + m % 500, day + timedelta(hours=19)))
        cur.execute("CREATE TABLE bench_complete (meters int, days int)")
        cur.execute("INSERT INTO bench_complete VALUES (%s, %s)", (meters, days))
        conn.commit()
        cur.execute("ANALYZE")
    _progress("all written", meters, meters, started)


def database(name: str, meters: int, days: int, rebuild: bool) -> str:
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        url = ADMIN.rsplit("/", 1)[0] + "/" + name
        if exists and not rebuild:
            try:
                with psycopg.connect(url) as conn:
                    done = conn.execute("SELECT meters, days FROM bench_complete").fetchone()
                if done == (meters, days):
                    return url
            except psycopg.Error:
                pass
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    print(
        f"building {meters:,} meters × {days} days in {name} (kept for later runs)", file=sys.stderr
    )
    build(url, meters, days)
    return url


def timed(client: TestClient, runs: int, path: str, **params) -> list[float]:
    client.get(path, params=params)  # warm: plans cached, pages in memory
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = client.get(path, params=params)
        _ = answer.content
        out.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text[:300]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.meters, args.days, args.runs = 200, 3, 5
    name = "kenshin_bench_queries" + ("_quick" if args.quick else "")
    url = database(name, args.meters, args.days, args.rebuild)
    app = create_app(
        Settings(database_url=url, secret_key=base64.b64encode(os.urandom(32)).decode(),
                 devices=False, jobs=False, auto_migrate=False)
    )  # fmt: skip
    with app.state.engine.begin() as conn:
        _, key = accounts.insert_api_key(conn, 1, "bench", "viewer")
    day = TODAY.date()
    first = day - timedelta(days=args.days - 1)
    month_first = max(first, day - timedelta(days=30))
    meter = args.meters // 2
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        rows = [
            ("tenant-day 30-minute totals", 100, timed(
                client, args.runs, "/api/v1/energy", period="slot", **{"from": day, "to": day})),
            (f"one meter's {args.days} days of daily totals", 100, timed(
                client, args.runs, f"/api/v1/meters/{meter}/energy", period="day",
                **{"from": first, "to": day})),
            ("site list page (50, power now, today)", 100, timed(
                client, args.runs, "/api/v1/sites", limit=50)),
            ("site list, searched", 100, timed(
                client, args.runs, "/api/v1/sites", limit=50, q="港区77")),
            ("one meter's month of slots as CSV", 1000, timed(
                client, max(3, args.runs // 5), f"/api/v1/meters/{meter}/energy", period="slot",
                format="csv", **{"from": month_first, "to": day})),
        ]  # fmt: skip
    print(f"queries on PostgreSQL: {args.meters:,} meters × {args.days} days of 30-minute data, "
          "one day of 60-s power; through the HTTP API in process")  # fmt: skip
    print(f"{'query':<42} {'runs':>5} {'p50 ms':>8} {'p95 ms':>8} {'goal':>12}")
    for label, goal_ms, samples in rows:
        p50 = statistics.median(samples)
        p95 = statistics.quantiles(samples, n=20)[18] if len(samples) >= 2 else samples[0]
        verdict = "ok" if p95 < goal_ms else "MISSED"
        goal = f"< {goal_ms} ms"
        print(f"{label:<42} {len(samples):>5} {p50:>8.1f} {p95:>8.1f} {goal:>9} {verdict}")
    app.state.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
