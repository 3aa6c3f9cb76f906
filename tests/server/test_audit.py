"""The audit log: who did what to which object, when and from where; read by a tenant's
administrators through GET /api/v1/audit, never another tenant's; kept audit_keep_days."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, insert, select

from kenshin.server import schema as s
from kenshin.server.metering.retention import apply_retention

from .conftest import assert_problem, bearer, login

AUDIT = "/api/v1/audit"


def _walk(client, **params) -> list[dict]:
    """Every entry, page by page (two a page: the cursor must carry the walk)."""
    items, cursor = [], None
    while True:
        paging = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(AUDIT, params={**params, **paging})
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            assert body["total"] == len(items)
            return items


def test_logins_failures_changes_commands_and_exports_are_recorded_with_where_from(
    client, new_client, world, fleet
):
    admin = new_client()
    admin.headers["X-Request-ID"] = "req-login-1"
    login(admin, "admin@a.test")
    del admin.headers["X-Request-ID"]
    wrong = new_client().post(
        "/api/v1/auth/login",
        json={"email": "operator@a.test", "password": "not it"},
        headers={"X-Request-ID": "req-bad-1"},
    )
    assert_problem(wrong, 401)
    assert wrong.headers["X-Request-ID"] == "req-bad-1"  # echoed, even on a refusal
    ops = login(new_client(), "operator@a.test")
    assert ops.patch("/api/v1/settings/default", json={"values": {"heartbeat_s": 600}}).is_success
    gateway_id = fleet["gateway"].id
    command = ops.post(f"/api/v1/gateways/{gateway_id}/commands", json={"name": "restart"})
    assert command.status_code == 201, command.text
    key = admin.post("/api/v1/api-keys", json={"name": "exporter", "role": "viewer"}).json()
    exported = client.get(
        "/api/v1/energy", params={"from": "2026-01-01", "to": "2026-01-02", "format": "csv"},
        headers=bearer(key["key"]),
    )  # fmt: skip
    assert exported.status_code == 200, exported.text
    assert client.get(  # JSON is reading, not taking data out: not logged
        "/api/v1/energy", params={"from": "2026-01-01", "to": "2026-01-02"},
        headers=bearer(key["key"]),
    ).is_success  # fmt: skip

    entries = _walk(admin)
    by_action = {e["action"]: e for e in entries}
    operator = f"user:{world.operator_a}"
    logins = [e for e in entries if e["action"] == "auth.login"]
    assert {e["client"] for e in logins} == {"testclient"}  # the address the server saw
    assert "req-login-1" in {e["request_id"] for e in logins}  # the client's X-Request-ID
    failed = by_action["auth.login_failed"]
    assert failed["actor"] == "anonymous" and failed["target"] == operator
    assert failed["detail"] == {"email": "operator@a.test", "reason": "wrong password"}
    assert failed["request_id"] == "req-bad-1" and failed["client"] == "testclient"
    assert by_action["settings.update"]["actor"] == operator
    assert by_action["command.restart"]["target"] == f"gateway:{gateway_id}"
    assert by_action["api_key.create"]["target"] == f"api_key:{key['id']}"
    export = by_action["export.csv"]
    assert export["actor"] == f"api_key:{key['id']}"
    assert export["detail"]["path"] == "/api/v1/energy"
    assert [e["action"] for e in entries].count("export.csv") == 1
    # Newest first, each entry once across the pages.
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
    assert len({e["id"] for e in entries}) == len(entries)


def test_filters_by_actor_action_and_time(client, new_client, world, fleet):
    admin = login(new_client(), "admin@a.test")
    ops = login(new_client(), "operator@a.test")
    for heartbeat in (600, 900):
        assert ops.patch(
            "/api/v1/settings/default", json={"values": {"heartbeat_s": heartbeat}}
        ).is_success
    operator = f"user:{world.operator_a}"
    mine = _walk(admin, actor=operator)
    assert mine and {e["actor"] for e in mine} == {operator}
    assert [e["action"] for e in mine].count("settings.update") == 2
    auth = _walk(admin, action="auth.*")
    assert auth and {e["action"] for e in auth} <= {"auth.login", "auth.login_failed"}
    both = _walk(admin, action=["settings.update", "auth.login"])
    assert {e["action"] for e in both} == {"settings.update", "auth.login"}
    newest = mine[0]["at"]
    assert _walk(admin, actor=operator, start=newest) == [mine[0]]
    assert mine[0] not in _walk(admin, actor=operator, end=newest)
    assert_problem(admin.get(AUDIT, params={"start": newest, "end": newest}), 400)
    assert_problem(admin.get(AUDIT, params={"actor": "user 3; drop"}), 422)


def test_never_across_tenants(client, new_client, world, fleet):
    admin_a = login(new_client(), "admin@a.test")
    admin_b = login(new_client(), "admin@b.test")
    ops_a = login(new_client(), "operator@a.test")
    assert ops_a.patch("/api/v1/settings/default", json={"values": {"heartbeat_s": 600}}).is_success
    a_entries = _walk(admin_a)
    assert any(e["action"] == "settings.update" for e in a_entries)
    b_entries = _walk(admin_b)
    assert b_entries  # B's own logins
    assert not {e["id"] for e in a_entries} & {e["id"] for e in b_entries}
    assert all(e["actor"] != f"user:{world.operator_a}" for e in b_entries)
    # Acting as the other tenant: another tenant's id is a 404, as ids that do not exist.
    assert_problem(admin_b.get(AUDIT, params={"tenant_id": world.tenant_a}), 404)
    # Not for operators or viewers: the log names users, keys and addresses.
    assert_problem(ops_a.get(AUDIT), 403)
    assert_problem(login(new_client(), "viewer@a.test").get(AUDIT), 403)
    # A platform administrator names the tenant, and sees only that one's.
    root = login(new_client(), "root@kenshin.test")
    assert_problem(root.get(AUDIT), 400)
    assert {e["id"] for e in _walk(root, tenant_id=world.tenant_a)} >= {e["id"] for e in a_entries}
    assert not {e["id"] for e in _walk(root, tenant_id=world.tenant_b)} & {
        e["id"] for e in a_entries
    }


def test_the_retention_job_trims_old_entries(engine, world):
    now = s.utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(s.audit_log),
            [
                {"tenant_id": world.tenant_a, "actor": "system", "action": "old.one",
                 "at": now - timedelta(days=800)},
                {"tenant_id": None, "actor": "system", "action": "old.two",
                 "at": now - timedelta(days=731)},
                {"tenant_id": world.tenant_b, "actor": "system", "action": "recent",
                 "at": now - timedelta(days=700)},
            ],
        )  # fmt: skip

    def actions() -> set[str]:
        with engine.connect() as conn:
            return set(conn.execute(select(s.audit_log.c.action)).scalars())

    assert apply_retention(engine, now).deleted.get("audit_log") is None  # 0: forever
    assert apply_retention(engine, now, audit_keep_days=730, dry_run=True).deleted == {
        "audit_log": 2
    }
    assert {"old.one", "old.two"} <= actions()
    assert apply_retention(engine, now, audit_keep_days=730).deleted["audit_log"] == 2
    assert "recent" in actions() and not {"old.one", "old.two"} & actions()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.audit_log)).scalar_one() > 1
