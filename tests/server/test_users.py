"""A tenant's users: roles enforced, tenants kept apart, audit kept."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kenshin.server import schema as s

from .conftest import PASSWORD, World, assert_problem, login

NEW_USER = {"email": "new@a.test", "password": "a long password", "role": "operator"}


def test_admin_manages_users(client: TestClient, world: World, engine) -> None:
    login(client, "admin@a.test")
    created = client.post("/api/v1/users", json=NEW_USER)
    assert created.status_code == 201
    user = created.json()
    assert (user["email"], user["role"], user["tenant_id"]) == (
        "new@a.test",
        "operator",
        world.tenant_a,
    )
    listed = client.get("/api/v1/users").json()["items"]
    assert {u["email"] for u in listed} == {
        "admin@a.test",
        "operator@a.test",
        "viewer@a.test",
        "new@a.test",
    }
    assert client.get(f"/api/v1/users/{user['id']}").json() == user
    promoted = client.patch(f"/api/v1/users/{user['id']}", json={"role": "admin"})
    assert promoted.json()["role"] == "admin"
    with engine.connect() as conn:
        actions = conn.execute(
            select(s.audit_log.c.action, s.audit_log.c.actor, s.audit_log.c.tenant_id).where(
                s.audit_log.c.target == f"user:{user['id']}"
            )
        ).all()
    actor = f"user:{client.get('/api/v1/auth/me').json()['id']}"
    assert [tuple(a) for a in actions] == [
        ("user.create", actor, world.tenant_a),
        ("user.update", actor, world.tenant_a),
    ]


def test_a_new_user_can_log_in(client: TestClient, world: World, new_client) -> None:
    login(client, "admin@a.test")
    client.post("/api/v1/users", json=NEW_USER)
    me = login(new_client(), "new@a.test", NEW_USER["password"]).get("/api/v1/auth/me").json()
    assert me["role"] == "operator"


@pytest.mark.parametrize("email", ["viewer@a.test", "operator@a.test"])
def test_only_admins_manage_users(client: TestClient, world: World, email: str) -> None:
    login(client, email)
    body = assert_problem(client.post("/api/v1/users", json=NEW_USER), 403)
    assert "admin" in body["detail"]
    assert_problem(client.get("/api/v1/users"), 403)
    assert_problem(client.patch(f"/api/v1/users/{world.viewer_a}", json={"role": "admin"}), 403)


def test_an_email_is_used_once_per_tenant(client: TestClient, world: World) -> None:
    login(client, "admin@a.test")
    taken = {**NEW_USER, "email": "Viewer@A.test"}  # this tenant's, in other letters
    body = assert_problem(client.post("/api/v1/users", json=taken), 409)
    assert "this tenant" in body["detail"]


def test_adding_a_user_tells_nothing_of_other_tenants(
    client: TestClient, world: World, new_client: Callable[[], TestClient]
) -> None:
    """Issue 16: a 409 for another tenant's address told a tenant's admin who had an
    account elsewhere. An address is now unique per tenant: the other tenant's, and the
    platform administrator's, are added like any new one."""
    login(client, "admin@a.test")
    for address in ("Viewer@B.test", "admin@b.test", "root@kenshin.test"):
        added = client.post("/api/v1/users", json={**NEW_USER, "email": address})
        assert added.status_code == 201, added.text
    # Both viewer@b.test accounts log in, each with its own password.
    login(new_client(), "viewer@b.test")  # tenant B's, with PASSWORD; tenant A's has another
    user = login(new_client(), "viewer@b.test", "a long password").get("/api/v1/auth/me")
    assert user.json()["tenant"]["id"] == world.tenant_a


@pytest.fixture
def same_address(client: TestClient, world: World) -> None:
    """viewer@b.test, with tenant B's viewer's password, made a user of tenant A too."""
    login(client, "admin@a.test")
    same = {**NEW_USER, "email": "viewer@b.test", "password": PASSWORD}
    assert client.post("/api/v1/users", json=same).status_code == 201


def test_one_address_and_password_in_two_tenants_asks_for_the_tenant(
    world: World, new_client: Callable[[], TestClient], same_address: None
) -> None:
    anonymous = new_client()
    ambiguous = {"email": "viewer@b.test", "password": PASSWORD}
    body = assert_problem(anonymous.post("/api/v1/auth/login", json=ambiguous), 401)
    assert body["tenant_required"] is True
    for tenant, tenant_id in (("Tenant A", world.tenant_a), ("Tenant B", world.tenant_b)):
        answer = anonymous.post("/api/v1/auth/login", json={**ambiguous, "tenant": tenant})
        assert answer.status_code == 200 and answer.json()["tenant_id"] == tenant_id
    # A wrong password says nothing of how many accounts the address has.
    wrong = anonymous.post("/api/v1/auth/login", json={**ambiguous, "password": "not it!"})
    assert "tenant_required" not in assert_problem(wrong, 401)


def test_another_tenants_users_do_not_exist(client: TestClient, world: World) -> None:
    login(client, "admin@a.test")
    other = world.viewer_b
    assert_problem(client.get(f"/api/v1/users/{other}"), 404)
    assert_problem(client.patch(f"/api/v1/users/{other}", json={"disabled": True}), 404)
    assert_problem(client.get(f"/api/v1/users?tenant_id={world.tenant_b}"), 404)
    assert_problem(client.post(f"/api/v1/users?tenant_id={world.tenant_b}", json=NEW_USER), 404)
    assert_problem(client.get("/api/v1/users/999999"), 404)
    emails = {u["email"] for u in client.get("/api/v1/users").json()["items"]}
    assert "viewer@b.test" not in emails and "admin@b.test" not in emails


def test_disabling_ends_the_users_sessions(
    client: TestClient, world: World, new_client: Callable[[], TestClient]
) -> None:
    viewer = login(new_client(), "viewer@a.test")
    assert viewer.get("/api/v1/auth/me").status_code == 200
    login(client, "admin@a.test")
    response = client.patch(f"/api/v1/users/{world.viewer_a}", json={"disabled": True})
    assert response.json()["disabled"] is True
    assert_problem(viewer.get("/api/v1/auth/me"), 401)
    client.patch(f"/api/v1/users/{world.viewer_a}", json={"disabled": False})
    login(viewer, "viewer@a.test")


def test_a_password_reset_ends_sessions(client: TestClient, world: World, new_client) -> None:
    viewer = login(new_client(), "viewer@a.test")
    login(client, "admin@a.test")
    client.patch(f"/api/v1/users/{world.viewer_a}", json={"password": "another password"})
    assert_problem(viewer.get("/api/v1/auth/me"), 401)
    login(viewer, "viewer@a.test", "another password")


def test_the_last_admin_stays(client: TestClient, world: World) -> None:
    login(client, "admin@a.test")
    me = client.get("/api/v1/auth/me").json()["id"]
    assert_problem(client.patch(f"/api/v1/users/{me}", json={"role": "viewer"}), 409)
    assert_problem(client.patch(f"/api/v1/users/{me}", json={"disabled": True}), 409)
    client.patch(f"/api/v1/users/{world.operator_a}", json={"role": "admin"})
    assert client.patch(f"/api/v1/users/{me}", json={"role": "viewer"}).status_code == 200


def test_platform_admin_names_the_tenant(client: TestClient, world: World) -> None:
    login(client, "root@kenshin.test")
    assert_problem(client.get("/api/v1/users"), 400)
    assert_problem(client.get("/api/v1/users?tenant_id=999999"), 404)
    listed = client.get(f"/api/v1/users?tenant_id={world.tenant_b}").json()["items"]
    assert {u["email"] for u in listed} == {"admin@b.test", "viewer@b.test"}
    created = client.post(f"/api/v1/users?tenant_id={world.tenant_b}", json=NEW_USER)
    assert created.status_code == 201 and created.json()["tenant_id"] == world.tenant_b


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "no-at-sign", "password": "a long password"}, "email"),
        ({"email": "x@a.test", "password": "7chars!"}, "password"),
        ({"email": "x@a.test", "password": "a long password", "role": "owner"}, "role"),
    ],
)
def test_bad_users_are_422_without_echoing_input(
    client: TestClient, world: World, body: dict, field: str
) -> None:
    login(client, "admin@a.test")
    problem = assert_problem(client.post("/api/v1/users", json=body), 422)
    assert [e["loc"] for e in problem["errors"]] == [["body", field]]
    assert body["password"] not in str(problem)


def test_passwords_are_stored_hashed(client: TestClient, world: World, engine) -> None:
    with engine.connect() as conn:
        hashes = conn.execute(select(s.users.c.password_hash)).scalars().all()
    assert all(h.startswith("scrypt$") and PASSWORD not in h for h in hashes)
    assert len(set(hashes)) == len(hashes)  # one password, a salt each


def test_the_panels_login_form_asks_for_the_tenant_when_it_must(
    world: World, new_client: Callable[[], TestClient], same_address: None
) -> None:
    browser = new_client()
    page = browser.get("/login")
    assert 'name="tenant"' not in page.text
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    form = {"email": "viewer@b.test", "password": PASSWORD, "csrf_token": token}
    asked = browser.post("/login", data=form, follow_redirects=False)
    assert asked.status_code == 200 and 'name="tenant"' in asked.text
    assert "kenshin_session" not in asked.cookies
    done = browser.post("/login", data={**form, "tenant": "Tenant B"}, follow_redirects=False)
    assert done.status_code == 303
    assert browser.get("/api/v1/auth/me").json()["tenant"]["id"] == world.tenant_b
