"""Monthly partitions on PostgreSQL (made ahead, nothing lost to a missing month) and the
retention policy per tenant, on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, text, update

from kenshin.jst import JST
from kenshin.server import schema as s
from kenshin.server.metering.partitions import (
    PARTITIONED,
    drop_months_before,
    ensure_partitions,
    month_partitions,
)
from kenshin.server.metering.retention import apply_retention

from .conftest import assert_problem, login, udp_meter

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=JST)


def _instant(meter_id: int, *moments: datetime) -> list[dict]:
    return [{"meter_id": meter_id, "at": at, "power_w": 100, "current_r_da": 10} for at in moments]


def _count(conn, table, **where) -> int:
    query = select(func.count()).select_from(table)
    for name, value in where.items():
        query = query.where(table.c[name] == value)
    return conn.execute(query).scalar_one()


def test_months_are_made_ahead_and_stray_rows_moved_into_theirs(backend, engine, world, fleet):
    if backend != "postgresql":
        pytest.skip("partitions are PostgreSQL's")
    meter = udp_meter(engine, world, fleet)
    old = datetime(2026, 6, 15, tzinfo=JST)
    with engine.begin() as conn:
        # The session's database is shared: months an earlier test's jobs made for the
        # real today (any day, from December on, reaches past February) are not this one's.
        for table in PARTITIONED:
            drop_months_before(conn, table, datetime.max.replace(tzinfo=JST))
        # Before any month exists, rows land in the default partition: none is lost.
        conn.execute(insert(s.readings_instant), _instant(meter.id, old, NOW))
        made = ensure_partitions(conn, NOW)
        assert "readings_instant_p202606" in made and "readings_instant_p202602" not in made
        assert ensure_partitions(conn, NOW) == []  # idempotent
        months = [m for _, m in month_partitions(conn, "readings_instant")]
        assert months[0] == date(2026, 6, 1) and months[-1] == date(2027, 2, 1)
        assert len(months) == 9  # June to February: contiguous, three months ahead
        in_default = conn.execute(text("SELECT count(*) FROM readings_instant_default")).scalar()
        in_june = conn.execute(text("SELECT count(*) FROM readings_instant_p202606")).scalar()
        assert (in_default, in_june, _count(conn, s.readings_instant)) == (0, 1, 2)
        # A month boundary is JST midnight: 31 Oct 15:00 UTC is November.
        edge = datetime(2026, 10, 31, 15, 0, tzinfo=UTC)
        conn.execute(insert(s.readings_instant), _instant(meter.id, edge))
        in_november = conn.execute(text("SELECT count(*) FROM readings_instant_p202611")).scalar()
        assert in_november == 2


def test_retention_per_tenant_deletes_old_rows_and_drops_old_months(backend, engine, world, fleet):
    meter = udp_meter(engine, world, fleet)
    moments = [NOW - timedelta(days=d) for d in (1, 40, 100, 400)]
    slot_rows = [
        {"meter_id": meter.id, "slot_start": at.replace(minute=0), "direction": 0,
         "status": "measured", "milliwatt_hours": 1000, "wh": 1}
        for at in moments
    ]  # fmt: skip
    with engine.begin() as conn:
        ensure_partitions(conn, moments[-1])
        ensure_partitions(conn, NOW)
        conn.execute(insert(s.readings_instant), _instant(meter.id, *moments))
        conn.execute(insert(s.slot_energy), slot_rows)

    report = apply_retention(engine, NOW)  # every tenant keeps everything: nothing goes
    assert report.deleted == {} and report.dropped == []
    with engine.begin() as conn:
        conn.execute(
            update(s.tenants)
            .where(s.tenants.c.id == world.tenant_a)
            .values(instant_retention_days=30, energy_retention_days=365)
        )
    preview = apply_retention(engine, NOW, dry_run=True)
    assert preview.deleted["readings_instant"] == 3 and preview.deleted["slot_energy"] == 1
    with engine.connect() as conn:
        assert _count(conn, s.readings_instant) == 4  # a dry run changes nothing
    report = apply_retention(engine, NOW)
    assert report.deleted["readings_instant"] == 3 and report.deleted["slot_energy"] == 1
    assert report.dropped == []  # tenant B keeps forever: no month may go whole
    with engine.connect() as conn:
        assert _count(conn, s.readings_instant) == 1 and _count(conn, s.slot_energy) == 3

    with engine.begin() as conn:  # now every tenant has a retention: old months drop
        conn.execute(update(s.tenants).values(instant_retention_days=30))
    report = apply_retention(engine, NOW)
    if backend == "postgresql":
        assert "readings_instant_p202510" in report.dropped
        with engine.connect() as conn:
            months = [m for _, m in month_partitions(conn, "readings_instant")]
        assert months[0] >= date(2026, 10, 1)


def test_platform_admins_set_retention_and_the_cli_applies_it(
    new_client, engine, world, fleet, database_url, backend
):
    import json
    import subprocess
    import sys

    root = login(new_client(), "root@kenshin.test")
    url = f"/api/v1/tenants/{world.tenant_a}/retention"
    answer = root.patch(url, json={"instant_retention_days": 30, "energy_retention_days": None})
    assert answer.status_code == 200, answer.text
    assert answer.json()["instant_retention_days"] == 30
    assert answer.json()["energy_retention_days"] is None
    assert_problem(root.patch(url, json={"instant_retention_days": 0}), 422)
    assert_problem(root.patch("/api/v1/tenants/999999/retention", json={}), 404)
    assert_problem(login(new_client(), "admin@a.test").patch(url, json={}), 403)

    meter = udp_meter(engine, world, fleet)
    with engine.begin() as conn:
        ensure_partitions(conn, datetime.now(UTC) - timedelta(days=60))
        ensure_partitions(conn, datetime.now(UTC))
        conn.execute(insert(s.readings_instant), _instant(
            meter.id, datetime.now(UTC) - timedelta(days=40), datetime.now(UTC)))  # fmt: skip
    command = [sys.executable, "-m", "kenshin", "server", "retention", "--json"]
    env = {"KENSHIN_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    preview = subprocess.run([*command, "--dry-run"], env=env, capture_output=True, text=True)
    assert preview.returncode == 0, preview.stderr
    assert json.loads(preview.stdout)["deleted"]["readings_instant"] == 1
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert json.loads(done.stdout)["deleted"]["readings_instant"] == 1
    with engine.connect() as conn:
        assert _count(conn, s.readings_instant) == 1
