"""Logging in and out, who am I, sessions and bearer keys."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from kenshin.server import schema as s
from kenshin.server.deps import SESSION_COOKIE

from .conftest import PASSWORD, World, assert_problem, bearer, login


def test_login_sets_a_safe_cookie_and_returns_the_user(client: TestClient, world: World) -> None:
    response = client.post(
        "/api/v1/auth/login", json={"email": " Admin@A.test ", "password": PASSWORD}
    )
    assert response.status_code == 200
    user = response.json()
    assert user["email"] == "admin@a.test" and user["role"] == "admin"
    assert user["tenant_id"] == world.tenant_a
    assert "password_hash" not in user
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for attribute in ("httponly", "samesite=lax", "path=/", "max-age=43200"):
        assert attribute in cookie


def test_me_then_logout(client: TestClient, world: World) -> None:
    login(client, "operator@a.test")
    me = client.get("/api/v1/auth/me").json()
    assert me == {
        "kind": "user",
        "id": world.operator_a,
        "name": "operator@a.test",
        "role": "operator",
        "tenant": {
            "id": world.tenant_a,
            "name": "Tenant A",
            "kind": "retailer",
            "created_at": me["tenant"]["created_at"],
            "instant_retention_days": None,  # kept forever until a platform admin says
            "energy_retention_days": None,
        },
    }
    token = client.cookies[SESSION_COOKIE]
    assert client.post("/api/v1/auth/logout").status_code == 204
    assert_problem(client.get("/api/v1/auth/me"), 401)
    client.cookies.set(SESSION_COOKIE, token)  # the old cookie is dead on the server too
    assert_problem(client.get("/api/v1/auth/me"), 401)
    assert client.post("/api/v1/auth/logout").status_code == 204  # idempotent


def test_platform_admin_has_no_tenant(client: TestClient, world: World) -> None:
    login(client, "root@kenshin.test")
    me = client.get("/api/v1/auth/me").json()
    assert (me["id"], me["role"], me["tenant"]) == (world.root_id, "admin", None)


def test_wrong_credentials_look_alike(client: TestClient, world: World) -> None:
    wrong_password = client.post(
        "/api/v1/auth/login", json={"email": "admin@a.test", "password": "not it at all"}
    )
    unknown_email = client.post(
        "/api/v1/auth/login", json={"email": "nobody@a.test", "password": PASSWORD}
    )
    assert assert_problem(wrong_password, 401) == assert_problem(unknown_email, 401)
    assert SESSION_COOKIE not in client.cookies


def test_a_disabled_user_cannot_log_in(client: TestClient, world: World, engine) -> None:
    with engine.begin() as conn:
        conn.execute(update(s.users).where(s.users.c.id == world.viewer_a).values(disabled=True))
    response = client.post(
        "/api/v1/auth/login", json={"email": "viewer@a.test", "password": PASSWORD}
    )
    assert_problem(response, 401)


def test_an_expired_session_is_refused(client: TestClient, world: World, engine) -> None:
    login(client, "viewer@a.test")
    with engine.begin() as conn:
        conn.execute(update(s.user_sessions).values(expires_at=s.utcnow() - timedelta(seconds=1)))
    assert_problem(client.get("/api/v1/auth/me"), 401)


def test_sessions_are_stored_as_hashes(client: TestClient, world: World, engine) -> None:
    login(client, "viewer@a.test")
    token = client.cookies[SESSION_COOKIE]
    with engine.connect() as conn:
        ids = conn.execute(select(s.user_sessions.c.id)).scalars().all()
    assert token not in ids and len(ids) == 1


def test_a_new_login_ends_the_old_session(client: TestClient, world: World, engine) -> None:
    login(client, "viewer@a.test")
    login(client, "viewer@a.test")
    with engine.connect() as conn:
        assert len(conn.execute(select(s.user_sessions)).all()) == 1


def test_unauthenticated_requests_get_401_with_a_challenge(client: TestClient) -> None:
    response = client.get("/api/v1/auth/me")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_only_bearer_authorization_is_understood(client: TestClient, world: World) -> None:
    login(client, "admin@a.test")
    # A wrong Authorization header is not silently replaced by the cookie.
    response = client.get("/api/v1/auth/me", headers={"Authorization": "Basic YTpi"})
    assert_problem(response, 401)
    assert_problem(client.get("/api/v1/auth/me", headers=bearer("ksk_nonsense")), 401)
