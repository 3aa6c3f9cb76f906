"""Tenants: the platform administrator's business only."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from .conftest import World, assert_problem, login


def test_platform_admin_creates_and_lists_tenants(client: TestClient, world: World) -> None:
    login(client, "root@kenshin.test")
    created = client.post("/api/v1/tenants", json={"name": "Solar Co", "kind": "generator"})
    assert created.status_code == 201
    tenant = created.json()
    assert (tenant["name"], tenant["kind"]) == ("Solar Co", "generator")
    names = [t["name"] for t in client.get("/api/v1/tenants").json()["items"]]
    assert names == ["Tenant A", "Tenant B", "Solar Co"]
    assert client.get(f"/api/v1/tenants/{tenant['id']}").json() == tenant
    assert_problem(client.get("/api/v1/tenants/999999"), 404)
    duplicate = client.post("/api/v1/tenants", json={"name": "Solar Co", "kind": "retailer"})
    assert_problem(duplicate, 409)
    assert_problem(client.post("/api/v1/tenants", json={"name": "X", "kind": "bank"}), 422)


@pytest.mark.parametrize("email", ["admin@a.test", "viewer@b.test"])
def test_tenant_users_cannot_touch_tenants(client: TestClient, world: World, email: str) -> None:
    login(client, email)
    assert_problem(client.get("/api/v1/tenants"), 403)
    assert_problem(client.post("/api/v1/tenants", json={"name": "Mine", "kind": "retailer"}), 403)
    assert_problem(client.get(f"/api/v1/tenants/{world.tenant_a}"), 403)
