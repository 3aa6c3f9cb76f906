"""Every operation of the API, every kind of principal: another tenant's ids give 404 or
403 and never a byte of its data; each role reaches exactly what it should; nobody
unauthenticated gets anything. The operations are read from the OpenAPI document, so a
new endpoint without an entry in ROLES fails this test until someone decides its rules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from kenshin.gateway.identity import Identity, new_claim_code
from kenshin.server import accounts
from kenshin.server import schema as s
from kenshin.server.devices import commands, registry
from kenshin.server.security import CredentialBox
from kenshin.wire.enrollment import b64encode

from .conftest import KEY, PASSWORD, bearer, login

# The least role each operation needs: viewer < operator < admin; "platform": platform
# administrators only; "public": no login (enrollment, login itself, health).
ROLES = {
    "GET /healthz": "public",
    "POST /api/v1/auth/login": "public",
    "POST /api/v1/auth/logout": "public",  # ends the session if there is one: 204 either way
    "GET /api/v1/auth/me": "viewer",
    "GET /api/v1/tenants": "platform",
    "POST /api/v1/tenants": "platform",
    "GET /api/v1/tenants/{tenant_id}": "platform",
    "PATCH /api/v1/tenants/{tenant_id}/retention": "platform",
    "POST /api/v1/users": "admin",
    "GET /api/v1/users": "admin",
    "GET /api/v1/users/{user_id}": "admin",
    "PATCH /api/v1/users/{user_id}": "admin",
    "POST /api/v1/api-keys": "admin",
    "GET /api/v1/api-keys": "admin",
    "GET /api/v1/api-keys/{key_id}": "admin",
    "DELETE /api/v1/api-keys/{key_id}": "admin",
    "POST /api/v1/enroll/challenge": "public",
    "POST /api/v1/enroll": "public",
    "POST /api/v1/gateways/import": "platform",
    "POST /api/v1/gateways/claim": "operator",
    "GET /api/v1/gateways": "viewer",
    "GET /api/v1/gateways/{gateway_id}": "viewer",
    "POST /api/v1/sites": "operator",
    "GET /api/v1/sites": "viewer",
    "POST /api/v1/meters": "operator",
    "GET /api/v1/meters": "viewer",
    "PATCH /api/v1/settings/default": "operator",
    "PATCH /api/v1/gateways/{gateway_id}/settings": "operator",
    "GET /api/v1/gateways/{gateway_id}/settings": "viewer",
    "POST /api/v1/gateways/{gateway_id}/commands": "operator",
    "GET /api/v1/commands/{command_id}": "viewer",
    "GET /api/v1/events": "viewer",
    "GET /api/v1/meters/{meter_id}/energy": "viewer",
    "GET /api/v1/meters/{meter_id}/slots": "viewer",
    "GET /api/v1/energy": "viewer",
    "GET /api/v1/energy/peak": "viewer",
    "GET /api/v1/energy/meters.csv": "viewer",
    "GET /api/v1/meters/{meter_id}/current": "viewer",
    "GET /api/v1/meters/{meter_id}/power": "viewer",
    "GET /api/v1/meters/{meter_id}/peaks": "viewer",
    "GET /api/v1/forecast": "viewer",
    "PUT /api/v1/procurement-plan": "operator",
    "PUT /api/v1/procurement-plan.csv": "operator",
    "GET /api/v1/imbalance": "viewer",
    "POST /api/v1/meters/{meter_id}/prices": "operator",
    "GET /api/v1/meters/{meter_id}/prices": "viewer",
    "DELETE /api/v1/meters/{meter_id}/prices/{price_id}": "operator",
    "GET /api/v1/meters/{meter_id}/sales": "viewer",
    "GET /api/v1/sites/{site_id}/weather": "viewer",
    "GET /api/v1/alerts": "viewer",
    "GET /api/v1/alerts/{alert_id}": "viewer",
    "POST /api/v1/alerts/{alert_id}/acknowledge": "operator",
    "POST /api/v1/alerts/{alert_id}/resolve": "operator",
    "GET /api/v1/alert-rules": "viewer",
    "PUT /api/v1/alert-rules/{rule}": "admin",
    "POST /api/v1/alert-subscriptions": "admin",
    "GET /api/v1/alert-subscriptions": "admin",
    "DELETE /api/v1/alert-subscriptions/{subscription_id}": "admin",
    "POST /api/v1/webhooks": "admin",
    "GET /api/v1/webhooks": "admin",
    "GET /api/v1/webhooks/{hook_id}": "admin",
    "PATCH /api/v1/webhooks/{hook_id}": "admin",
    "DELETE /api/v1/webhooks/{hook_id}": "admin",
    "POST /api/v1/webhooks/{hook_id}/rotate-secret": "admin",
    "POST /api/v1/webhooks/{hook_id}/ping": "admin",
    "GET /api/v1/webhooks/{hook_id}/deliveries": "admin",
    "POST /api/v1/webhook-deliveries/{delivery_id}/redeliver": "admin",
}
RANK = {"viewer": 0, "operator": 1, "admin": 2}

# A body each writing operation accepts (given ids it may see), so that what is tested is
# the tenant wall and the role, not validation.
BODIES = {
    "PATCH /api/v1/users/{user_id}": {"role": "viewer"},
    "PATCH /api/v1/gateways/{gateway_id}/settings": {"values": {}},
    "POST /api/v1/gateways/{gateway_id}/commands": {"name": "restart"},
    "POST /api/v1/meters/{meter_id}/prices": {"yen_per_kwh": 10, "valid_from": "2026-01-01"},
    "PUT /api/v1/alert-rules/{rule}": {"params": {}},
    "PATCH /api/v1/webhooks/{hook_id}": {"active": False},
    "POST /api/v1/users": {"email": "new@a.test", "password": PASSWORD, "role": "viewer"},
    "POST /api/v1/api-keys": {"name": "k", "role": "viewer"},
    "POST /api/v1/sites": {"customer_id": "NEW", "service_code": "pss99999999"},
    "PATCH /api/v1/settings/default": {"values": {}},
    "PUT /api/v1/procurement-plan": [{"slot_start": "2026-07-01T00:00", "wh": 1}],
    "POST /api/v1/alert-subscriptions": {"channel": "webhook"},
    "POST /api/v1/webhooks": {"url": "http://127.0.0.1:9/x", "kinds": ["event"]},
}
QUERY = {
    "from": "2026-07-01", "to": "2026-07-02", "day": "2026-07-01",
    "start": "2026-07-01T00:00", "end": "2026-07-01T06:00",
}  # fmt: skip
MARKERS = ("B-CUSTOMER-7731", "B-ADDRESS-7731", "GW-B-7731", "viewer@b.test", "b-hook-7731")


def _objects(conn, tenant_id: int, tag: str, key_box: CredentialBox) -> dict[str, object]:
    """One of everything a tenant owns, with its ids by path parameter name."""
    identity = Identity.generate(f"GW-{tag}-7731", "http://x")
    code = new_claim_code()
    registry.import_identities(
        conn, f"serial,model,public_key,claim_code\n{identity.serial},m,"
        f"{b64encode(identity.public_key)},{code}\n", KEY, "system",
    )  # fmt: skip
    site = registry.add_site(
        conn, tenant_id, "system", customer_id=f"{tag}-CUSTOMER-7731",
        service_code="pss77310000" if tag == "B" else "pss77310001",
        address=f"{tag}-ADDRESS-7731",
    )  # fmt: skip
    gateway = registry.claim_gateway(
        conn, tenant_id, key=KEY, actor="system", claim_code=code, site_id=site.id
    )
    meter = registry.add_meter(
        conn, tenant_id, key_box, "system", site_id=site.id, link="udp",
        gateway_id=gateway.id, udp_host="127.0.1.1",
    )  # fmt: skip
    command = commands.create(conn, tenant_id, gateway.id, "restart", {}, actor="system")
    user = accounts.insert_user(
        conn, tenant_id=tenant_id, email=f"extra@{tag.lower()}.test", password=PASSWORD,
        role="viewer",
    )  # fmt: skip
    key, _ = accounts.insert_api_key(conn, tenant_id, "k", "viewer")
    now = s.utcnow()

    def add(table, **values):
        return conn.execute(insert(table).values(**values).returning(table.c.id)).scalar_one()

    hook = add(s.webhooks, tenant_id=tenant_id, url=f"http://127.0.0.1:9/{tag.lower()}-hook-7731",
               kinds=["event"], secret_enc=b"x", created_at=now)  # fmt: skip
    return {
        "tenant_id": tenant_id,
        "site_id": site.id,
        "gateway_id": gateway.id,
        "meter_id": meter.id,
        "command_id": command.id,
        "user_id": user.id,
        "key_id": key.id,
        "hook_id": hook,
        "delivery_id": add(s.webhook_deliveries, tenant_id=tenant_id, webhook_id=hook,
                           kind="ping", payload={"kind": "ping"}, created_at=now),
        "alert_id": add(s.alerts, tenant_id=tenant_id, rule="no_data", subject=f"m:{tag}",
                        severity="warning", state="open", opened_at=now, last_seen_at=now),
        "subscription_id": add(s.alert_subscriptions, tenant_id=tenant_id, channel="webhook",
                               min_severity="warning", created_at=now),
        "price_id": add(s.plant_prices, tenant_id=tenant_id, meter_id=meter.id,
                        yen_per_kwh_milli=16000, valid_from=(now - timedelta(days=1)).date(),
                        created_at=now),
        "rule": "no_data",
    }  # fmt: skip


def _operations(app) -> list[tuple[str, str, str]]:
    out = []
    for path, ops in app.openapi()["paths"].items():
        for method in ops:
            out.append((f"{method.upper()} {path}", method.upper(), path))
    missing = [op for op, _, _ in out if op not in ROLES]
    assert not missing, f"operations without rules in ROLES (decide who may call them): {missing}"
    return out


def _call(client: TestClient, method: str, path: str, ids: dict, op: str):
    url = path.format(**{k: ids[k] for k in ids if "{" + k + "}" in path})
    body = BODIES.get(op)
    if op == "PUT /api/v1/procurement-plan.csv":
        return client.request(method, url, content="date,slot,kwh\n2026-07-01,1,1\n",
                              headers={"content-type": "text/csv"}, params=QUERY)  # fmt: skip
    return client.request(method, url, json=body, params=QUERY)


@pytest.fixture
def allow_private_hooks(app, tmp_path):
    """Loopback webhook URLs allowed, and a weather source, as on a test installation."""
    from kenshin.server.analytics.generation import CsvWeather

    app.state.settings = app.state.settings.model_copy(update={"webhooks_allow_private": True})
    weather = tmp_path / "weather.csv"
    weather.write_text("time,irradiance_w_m2,temperature_c\n2026-07-01T12:00,800,30\n")
    app.state.weather = CsvWeather(weather)


@pytest.fixture
def two_tenants(engine, world):
    box = CredentialBox(b"k" * 32)
    with engine.begin() as conn:
        mine = _objects(conn, world.tenant_a, "A", box)
        theirs = _objects(conn, world.tenant_b, "B", box)
        keys = {
            role: accounts.insert_api_key(conn, world.tenant_a, f"matrix-{role}", role)[1]
            for role in RANK
        }
    return mine, theirs, keys


def _principals(new_client, app, keys) -> dict[str, tuple[str, TestClient]]:
    """Tenant A's principals: a session per role and an API key per role."""
    out = {}
    for role, email in (("admin", "admin@a.test"), ("operator", "operator@a.test"),
                        ("viewer", "viewer@a.test")):  # fmt: skip
        out[f"user:{role}"] = (role, login(new_client(), email))
        client = new_client()
        client.headers.update(bearer(keys[role]))
        out[f"key:{role}"] = (role, client)
    return out


def test_another_tenants_ids_are_never_found_by_any_principal(
    new_client, app, two_tenants, allow_private_hooks
):
    _, theirs, keys = two_tenants
    calls = 0
    for name, (_, client) in _principals(new_client, app, keys).items():
        for op, method, path in _operations(app):
            if ROLES[op] in ("public", "platform") or op == "POST /api/v1/auth/logout":
                continue
            if "{" not in path and method != "GET":
                continue  # creating rows for one's own tenant: covered below
            answer = _call(client, method, path, theirs, op)
            calls += 1
            where = f"{name} {op}: {answer.status_code} {answer.text[:200]}"
            if "{" in path and path != "/api/v1/alert-rules/{rule}":
                assert answer.status_code in (403, 404), where
            else:
                assert answer.status_code < 500, where
            assert not any(marker in answer.text for marker in MARKERS), where
    assert calls >= 6 * 45  # six principals, every operation that can name an id or list


def test_each_role_reaches_exactly_its_operations(
    new_client, app, two_tenants, allow_private_hooks
):
    mine, _, keys = two_tenants
    for name, (role, client) in _principals(new_client, app, keys).items():
        for op, method, path in _operations(app):
            needed = ROLES[op]
            if needed in ("public", "platform") or op.startswith("POST /api/v1/auth"):
                continue
            if method == "DELETE" or op.endswith("/rotate-secret"):
                continue  # destroys what later calls use: the wall is checked above
            answer = _call(client, method, path, mine, op)
            where = f"{name} {op}: {answer.status_code} {answer.text[:200]}"
            if RANK[role] < RANK[needed]:
                assert answer.status_code == 403, where
            else:
                assert answer.status_code not in (401, 403, 404) and answer.status_code < 500, where


def test_nobody_unauthenticated_gets_anything(app, client, two_tenants):
    mine, _, _ = two_tenants
    for op, method, path in _operations(app):
        if ROLES[op] == "public":
            continue
        answer = _call(client, method, path, mine, op)
        assert answer.status_code == 401, f"{op}: {answer.status_code}"


def test_ids_inside_bodies_are_walled_too(new_client, two_tenants):
    mine, theirs, _ = two_tenants
    ops = login(new_client(), "operator@a.test")
    for body in (
        {"site_id": theirs["site_id"], "link": "udp", "udp_host": "127.0.0.1"},
        {"site_id": mine["site_id"], "gateway_id": theirs["gateway_id"], "link": "udp",
         "udp_host": "127.0.0.1"},
    ):  # fmt: skip
        answer = ops.post("/api/v1/meters", json=body)
        assert answer.status_code in (404, 422) and "7731" not in answer.text
    claim = ops.post(
        "/api/v1/gateways/claim", json={"serial": "GW-B-7731", "site_id": mine["site_id"]}
    )
    assert claim.status_code in (404, 422) and "B-CUSTOMER" not in claim.text
