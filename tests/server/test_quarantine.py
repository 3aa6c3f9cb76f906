"""Quarantine is bounded (a row's payload, rows by age and count) and visible to platform
administrators."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from kenshin.server import ingest
from kenshin.server import schema as s

from .conftest import assert_problem, login


def _count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(s.quarantine)).scalar_one()


def test_a_huge_payload_is_kept_cut_and_says_so(engine, client):
    with engine.begin() as conn:
        ingest.quarantine(conn, "k/GW-X/d", b"\x00" * (8 << 20), "undecodable: test")
        row = conn.execute(select(s.quarantine)).one()
    assert len(row.payload) == ingest.QUARANTINE_MAX_BYTES
    assert row.reason == "undecodable: test (payload of 8388608 bytes, first 65536 kept)"


def test_rows_are_trimmed_by_age_and_by_count(engine, client):
    with engine.begin() as conn:
        for i in range(12):
            ingest.quarantine(conn, f"k/GW-{i}/d", b"x", "test")
        now = s.utcnow()
        conn.execute(
            update(s.quarantine).where(s.quarantine.c.topic.in_(["k/GW-0/d", "k/GW-1/d"]))
            .values(at=now - timedelta(days=31))
        )  # fmt: skip
        assert ingest.trim_quarantine(conn, now, keep_days=30, max_rows=5) == 7
        kept = conn.execute(select(s.quarantine.c.topic).order_by(s.quarantine.c.id)).scalars()
        assert list(kept) == [f"k/GW-{i}/d" for i in range(7, 12)]  # the newest five


def test_platform_administrators_see_it_and_nobody_else(engine, client, new_client, world):
    with engine.begin() as conn:
        for i in range(3):
            ingest.quarantine(conn, "k/GW-Q/d", bytes([i]) * 3, f"reason {i}")
    root = login(new_client(), "root@kenshin.test")
    listed = root.get("/api/v1/quarantine", params={"limit": 2}).json()
    assert listed["total"] == 3
    assert [item["reason"] for item in listed["items"]] == ["reason 2", "reason 1"]
    assert listed["items"][0]["size"] == 3 and listed["items"][0]["payload_b64"] == "AgIC"
    older = root.get("/api/v1/quarantine", params={"cursor": listed["next_cursor"]}).json()
    assert [item["reason"] for item in older["items"]] == ["reason 0"]
    assert older["next_cursor"] is None
    tenant_admin = login(new_client(), "admin@a.test")
    assert_problem(tenant_admin.get("/api/v1/quarantine"), 403)
