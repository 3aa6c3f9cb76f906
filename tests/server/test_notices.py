"""Notices: who writes them, who reads them, and when they show."""

from __future__ import annotations

from datetime import timedelta

from kenshin.server.schema import utcnow

from .conftest import assert_problem, login


def _iso(delta: timedelta) -> str:
    return (utcnow() + delta).isoformat()


def test_a_tenants_readers_see_their_own_and_every_tenants_notices(world, new_client):
    admin_a = login(new_client(), "admin@a.test")
    viewer_a = login(new_client(), "viewer@a.test")
    viewer_b = login(new_client(), "viewer@b.test")
    root = login(new_client(), "root@kenshin.test")

    mine = admin_a.post("/api/v1/notices", json={"kind": "failure", "title": "uplink down"})
    assert mine.status_code == 201, mine.text
    everyone = root.post(
        "/api/v1/notices",
        json={"kind": "maintenance", "title": "全体メンテナンス", "every_tenant": True,
              "starts_at": _iso(timedelta(days=2)), "ends_at": _iso(timedelta(days=2, hours=1))},
    )  # fmt: skip
    assert everyone.status_code == 201 and everyone.json()["every_tenant"], everyone.text
    far = admin_a.post(  # maintenance too far ahead to show yet
        "/api/v1/notices",
        json={"kind": "maintenance", "title": "next month", "starts_at": _iso(timedelta(days=30))},
    )
    later_info = admin_a.post(  # an info notice shows only once it has begun
        "/api/v1/notices",
        json={"kind": "info", "title": "tomorrow", "starts_at": _iso(timedelta(days=1))},
    )
    assert far.status_code == later_info.status_code == 201

    titles_a = [n["title"] for n in viewer_a.get("/api/v1/notices").json()["items"]]
    assert titles_a == ["uplink down", "全体メンテナンス"]  # failures first
    assert [n["title"] for n in viewer_b.get("/api/v1/notices").json()["items"]] == [
        "全体メンテナンス"
    ]

    # Ended: gone from the current list, still in the history.
    ended = admin_a.patch(
        f"/api/v1/notices/{mine.json()['id']}", json={"ends_at": _iso(timedelta())}
    )
    assert ended.status_code == 200, ended.text
    assert [n["title"] for n in viewer_a.get("/api/v1/notices").json()["items"]] == [
        "全体メンテナンス"
    ]
    history = viewer_a.get("/api/v1/notices", params={"ended": "true"}).json()["items"]
    assert "uplink down" in [n["title"] for n in history]


def test_only_platform_administrators_write_for_every_tenant(world, new_client):
    admin_a = login(new_client(), "admin@a.test")
    root = login(new_client(), "root@kenshin.test")
    refused = admin_a.post(
        "/api/v1/notices", json={"kind": "info", "title": "x", "every_tenant": True}
    )
    assert_problem(refused, 403)
    everyone = root.post(
        "/api/v1/notices", json={"kind": "info", "title": "for all", "every_tenant": True}
    ).json()
    # A tenant's administrator reads it but cannot change or remove it.
    assert_problem(admin_a.delete(f"/api/v1/notices/{everyone['id']}"), 403)
    assert_problem(admin_a.patch(f"/api/v1/notices/{everyone['id']}", json={"title": "y"}), 403)
    assert_problem(root.post("/api/v1/notices", json={"kind": "info", "title": "which?"}), 400)
    for_a = root.post(
        "/api/v1/notices",
        params={"tenant_id": world.tenant_a},
        json={"kind": "info", "title": "for A only"},
    )
    assert for_a.status_code == 201, for_a.text
    assert "for A only" in [n["title"] for n in admin_a.get("/api/v1/notices").json()["items"]]


def test_a_notice_must_end_after_it_starts(world, new_client):
    admin_a = login(new_client(), "admin@a.test")
    bad = admin_a.post(
        "/api/v1/notices",
        json={"kind": "maintenance", "title": "x", "starts_at": _iso(timedelta(hours=2)),
              "ends_at": _iso(timedelta(hours=1))},
    )  # fmt: skip
    assert_problem(bad, 422)
    naive = admin_a.post(
        "/api/v1/notices", json={"kind": "info", "title": "x", "starts_at": "2026-11-24T10:00"}
    )
    assert_problem(naive, 422)  # a time without its zone is ambiguous: refused
