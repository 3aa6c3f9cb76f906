"""What the panel and a retailer's systems ask, at fleet scale: `.venv/bin/python bench/queries.py`.

PostgreSQL (127.0.0.1:5432) holds one tenant of 10,000 meters with 90 days of 30-minute
data (slot energy, hourly/daily/monthly rollups per meter and per tenant, daily peaks) and
one day of 60-second instant power, written with COPY into a database of its own
(`kenshin_bench_queries`, kept for later runs; --rebuild makes it again). Then each query
runs repeatedly through the real HTTP API in this process (the FastAPI app, an API key,
no network), and the table gives p50 and p95:

- the tenant's 30-minute totals for a day        goal p95 < 100 ms
- one meter's 90 days of daily totals            goal p95 < 100 ms
- one meter's year of daily totals (365 d)       goal p95 < 100 ms (the last 90 hold data)
- a page of the site list (power now, today's kWh) goal p95 < 100 ms (also searched)
- one meter's day of 60-s power, every reading    goal p95 < 100 ms
- one meter's month of 30-minute slots as CSV    goal < 1 s

Each answer is checked once to be the full one (every value there, power measured) before
it is timed. The app's clock is pinned to the data's day (`data_clock`).

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
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psycopg
from fastapi.testclient import TestClient

from kenshin.jst import JST
from kenshin.server import accounts, schema, schema_base
from kenshin.server.app import create_app
from kenshin.server.db import make_engine, migrate
from kenshin.server.metering.partitions import ensure_partitions
from kenshin.server.settings import Settings

ADMIN = os.environ.get("KENSHIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SLOT = timedelta(minutes=30)
TODAY = datetime(2026, 11, 24, tzinfo=JST)  # the data's "today" (fixed: runs compare)
NOW = TODAY + timedelta(days=1, seconds=-30)  # the app's clock while measuring: `data_clock`

# Rollups derived in SQL from the rows written by COPY, the same sums the ingest keeps:
# a meter's JST months from its days, the tenant's hours, JST days and months from its slots.
DERIVED = {
    "meter_energy": ("meter_id", "day", [("month", "date_trunc('month', start, 'Asia/Tokyo')")]),
    "tenant_energy": ("tenant_id", "slot", [
        ("hour", "date_trunc('hour', start)"),
        ("day", "date_trunc('day', start, 'Asia/Tokyo')"),
        ("month", "date_trunc('month', start, 'Asia/Tokyo')"),
    ]),
}  # fmt: skip


def _wh(meter: int, slot: int) -> int:
    """A cheap, deterministic household half hour (Wh): a daily shape plus noise."""
    hour = slot % 48 / 2
    shape = 120 + 180 * (7 <= hour < 9) + 260 * (18 <= hour < 23)
    return shape + (meter * 7919 + slot * 104729) % 97


def _power(meter: int, minute: int) -> tuple[int, int, int]:
    """Instant power (W) and the two currents (dA) at `minute` of the data's day."""
    w = 200 + (meter * 31 + minute * 17) % 900
    return w, w // 10, w // 10


def _progress(what: str, done: int, total: int, started: float) -> None:
    print(f"  {what}: {done:,}/{total:,} ({time.monotonic() - started:.0f} s)",
          file=sys.stderr, flush=True)  # fmt: skip


def _copy(cur, table: str, columns: str):
    return cur.copy(f"COPY {table} ({columns}) FROM STDIN")


def derive_rollups(cur) -> None:
    """(Re)make the DERIVED periods from their source rows."""
    for table, (owner, source, periods) in DERIVED.items():
        for period, start in periods:
            cur.execute(f"DELETE FROM {table} WHERE period = %s", (period,))
            cur.execute(
                f"INSERT INTO {table} ({owner}, period, direction, start, wh, slots, refilled) "
                f"SELECT {owner}, %s, direction, {start}, sum(wh), sum(slots), sum(refilled) "
                f"FROM {table} WHERE period = %s GROUP BY {owner}, direction, {start}",
                (period, source),
            )


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
        # Slot k of the data starts at starts[k]; the first is a JST midnight, so slots
        # 2h, 2h+1 make hour h and slots 48d .. 48d+47 make day d.
        first_slot = int(first_day.timestamp()) // 1800
        starts = [datetime.fromtimestamp((first_slot + k) * 1800, UTC) for k in range(days * 48)]
        tenant_slot = [0] * len(starts)
        with _copy(
            cur, "slot_energy", "meter_id, slot_start, direction, status, milliwatt_hours, wh"
        ) as copy:
            for m in range(1, meters + 1):
                for k, at in enumerate(starts):
                    wh = _wh(m, k)
                    copy.write_row((m, at, 0, "measured", wh * 1000, wh))
                    tenant_slot[k] += wh
                if m % max(1, meters // 10) == 0:
                    _progress("30-minute slots, meters", m, meters, started)
        with _copy(
            cur, "meter_energy", "meter_id, period, direction, start, wh, slots, refilled"
        ) as copy:
            for m in range(1, meters + 1):  # _wh again: cheaper than holding 10^7 values
                hourly = [_wh(m, k) + _wh(m, k + 1) for k in range(0, len(starts), 2)]
                for h, wh in enumerate(hourly):
                    copy.write_row((m, "hour", 0, starts[2 * h], wh, 2, 0))
                for d in range(days):
                    copy.write_row(
                        (m, "day", 0, starts[48 * d], sum(hourly[24 * d : 24 * d + 24]), 48, 0)
                    )
                if m % max(1, meters // 10) == 0:
                    _progress("hourly and daily rollups, meters", m, meters, started)
        with _copy(
            cur, "tenant_energy", "tenant_id, period, direction, start, wh, slots, refilled"
        ) as copy:
            for at, wh in zip(starts, tenant_slot, strict=True):
                copy.write_row((1, "slot", 0, at, wh, meters, 0))
        derive_rollups(cur)
        day_start = TODAY.astimezone(UTC)
        today_peak = {}
        with _copy(
            cur, "readings_instant", "meter_id, at, power_w, current_r_da, current_t_da"
        ) as copy:
            for m in range(1, meters + 1):
                for minute in range(24 * 60):
                    copy.write_row((m, day_start + timedelta(minutes=minute), *_power(m, minute)))
                top = max(range(24 * 60), key=lambda minute, m=m: (_power(m, minute)[0], -minute))
                today_peak[m] = (_power(m, top)[0], day_start + timedelta(minutes=top))
                if m % max(1, meters // 10) == 0:
                    _progress("a day of 60-s power, meters", m, meters, started)
        last = 24 * 60 - 1  # the day's last reading is each meter's latest
        with _copy(
            cur, "meter_latest", "meter_id, at, power_w, current_r_da, current_t_da"
        ) as copy:
            for m in range(1, meters + 1):
                copy.write_row((m, day_start + timedelta(minutes=last), *_power(m, last)))
        with _copy(cur, "meter_daily_peak", "meter_id, day, import_w, import_at") as copy:
            for m in range(1, meters + 1):
                for d in range(days - 1):  # days before the one with instant readings
                    day = first_day + timedelta(days=d)
                    copy.write_row((m, day, 3000 + m % 500, day + timedelta(hours=19)))
                copy.write_row((m, TODAY, *today_peak[m]))
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
                    migrate(url)  # kept from an earlier schema: brought up to the newest
                    return url
            except psycopg.errors.UndefinedTable:  # a build that did not finish
                pass  # (any other error, e.g. no connection, must not drop the data)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    print(
        f"building {meters:,} meters × {days} days in {name} (kept for later runs)", file=sys.stderr
    )
    build(url, meters, days)
    return url


@contextmanager
def data_clock():
    """The app reads the time through `schema.utcnow` (the shared modules, the panel) and
    `schema_base.utcnow` (the rooms, which do not import schema.py): pinned to NOW while
    measuring, so "power now" and "today's energy" are the data's (the latest readings are
    30 s old) whatever day the bench runs on, and runs stay comparable."""
    real = schema.utcnow
    pin_clock()
    try:
        yield
    finally:
        schema.utcnow = schema_base.utcnow = real


def pin_clock() -> None:
    """The app's clock at NOW, in both modules it is read through."""
    schema.utcnow = schema_base.utcnow = lambda: NOW.astimezone(UTC)


@dataclass(frozen=True)
class Query:
    label: str
    goal_ms: int
    path: str
    params: dict
    check: Callable[[httpx.Response], bool]  # the answer is the full, real one
    runs_share: float = 1.0


def queries(meters: int, days: int) -> list[Query]:
    day = TODAY.date()
    first = day - timedelta(days=days - 1)
    month_first = max(first, day - timedelta(days=30))
    month_days = (day - month_first).days + 1
    meter = meters // 2
    span = lambda a, b: {"from": a, "to": b}  # noqa: E731

    def values(n: int) -> Callable[[httpx.Response], bool]:
        return lambda r: len(r.json()["values"]) == n and r.json()["complete"]

    def sites(r: httpx.Response) -> bool:
        items = r.json()["items"]
        return bool(items) and all(i["power_w"] is not None and i["today_bought_wh"] for i in items)

    return [
        Query("tenant-day 30-minute totals", 100, "/api/v1/energy",
              {"period": "slot", **span(day, day)}, values(48)),
        Query(f"one meter's {days} days of daily totals", 100, f"/api/v1/meters/{meter}/energy",
              {"period": "day", **span(first, day)}, values(days)),
        Query("one meter's year of daily totals (365 d)", 100, f"/api/v1/meters/{meter}/energy",
              {"period": "day", **span(day - timedelta(days=364), day)},
              lambda r: len(r.json()["values"]) == 365),
        Query("site list page (50, power now, today)", 100, "/api/v1/sites", {"limit": 50},
              sites),
        Query("site list, searched", 100, "/api/v1/sites", {"limit": 50, "q": "港区77"}, sites),
        Query("one meter's day of 60-s power", 100, f"/api/v1/meters/{meter}/power",
              {"start": TODAY.replace(tzinfo=None).isoformat(),
               "end": (TODAY + timedelta(days=1)).replace(tzinfo=None).isoformat(),
               "max_points": 1440},
              lambda r: len(r.json()["values"]) == 24 * 60),
        Query(f"one meter's month of slots as CSV ({month_days} d)", 1000,
              f"/api/v1/meters/{meter}/energy",
              {"period": "slot", "format": "csv", **span(month_first, day)},
              lambda r: len(r.text.splitlines()) == 1 + 48 * month_days, runs_share=0.2),
    ]  # fmt: skip


def timed(client: TestClient, runs: int, query: Query) -> list[float]:
    answer = client.get(query.path, params=query.params)  # warm: plans cached, pages in memory
    if answer.status_code != 200 or not query.check(answer):
        raise SystemExit(
            f"{query.label}: unexpected answer {answer.status_code} {answer.text[:300]}"
        )
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = client.get(query.path, params=query.params)
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
    rows = []
    with data_clock(), TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        for query in queries(args.meters, args.days):
            runs = max(3, round(args.runs * query.runs_share))
            rows.append((query, timed(client, runs, query)))
    print(f"queries on PostgreSQL: {args.meters:,} meters × {args.days} days of 30-minute data, "
          "one day of 60-s power; through the HTTP API in process")  # fmt: skip
    print(f"{'query':<46} {'runs':>5} {'p50 ms':>8} {'p95 ms':>8} {'goal':>12}")
    for query, samples in rows:
        p50 = statistics.median(samples)
        p95 = statistics.quantiles(samples, n=20)[18] if len(samples) >= 2 else samples[0]
        verdict = "ok" if p95 < query.goal_ms else "MISSED"
        goal = f"< {query.goal_ms} ms"
        print(f"{query.label:<46} {len(samples):>5} {p50:>8.1f} {p95:>8.1f} {goal:>9} {verdict}")
    app.state.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
