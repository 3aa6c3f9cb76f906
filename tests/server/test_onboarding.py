"""Onboarding through the API, as the panel does it: a site changed (PATCH /sites), a
meter's B-route credentials replaced (write-only: never answered, the audit log keeps
when), and homes from a CSV (a site, its gateway claimed by its printed code and its
meter a row) previewed with per-row errors, then imported all or nothing."""

from __future__ import annotations

from sqlalchemy import select

from kenshin.gateway.identity import Identity, new_claim_code
from kenshin.server import schema as s
from kenshin.server.devices import registry
from kenshin.server.security import meter_credential_ad
from kenshin.wire.enrollment import b64encode

from .conftest import assert_problem, login

BROUTE_ID = "0" * 31 + "1"
PASSWORD12 = "ABCDEFGHJKLM"
PUBLIC_KEY = Identity.generate("GW-H1", "http://x").public_key


def _audit(engine, tenant_id: int, action: str) -> list:
    a = s.audit_log.c
    with engine.connect() as conn:
        return conn.execute(
            select(s.audit_log).where(a.tenant_id == tenant_id, a.action == action).order_by(a.id)
        ).all()


def test_site_edit_and_credentials_write_only(app, new_client, engine, world, fleet):
    operator = login(new_client(), "operator@a.test")
    site_id = fleet["site"].id
    changed = operator.patch(f"/api/v1/sites/{site_id}", json={"name": "山田", "phone": None})
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "山田" and changed.json()["customer_id"] == "C1"
    other = operator.post(
        "/api/v1/sites", json={"customer_id": "C2", "service_code": "pss00000002"}
    )
    clash = operator.patch(f"/api/v1/sites/{other.json()['id']}", json={"customer_id": "C1"})
    assert_problem(clash, 409)
    assert_problem(operator.patch(f"/api/v1/sites/{site_id}", json={"customer_id": None}), 422)
    assert_problem(operator.patch(f"/api/v1/sites/{site_id}", json={"service_code": "x"}), 422)
    admin_b = login(new_client(), "admin@b.test")
    assert_problem(admin_b.patch(f"/api/v1/sites/{site_id}", json={"name": "x"}), 404)
    viewer = login(new_client(), "viewer@a.test")
    assert_problem(viewer.patch(f"/api/v1/sites/{site_id}", json={"name": "x"}), 403)
    [entry] = _audit(engine, world.tenant_a, "site.update")
    assert entry.detail == {"name": "山田", "phone": None}

    body = {"site_id": site_id, "gateway_id": fleet["gateway"].id, "link": "udp", "udp_host": "h"}
    meter = operator.post("/api/v1/meters", json=body).json()
    assert meter["has_broute_credentials"] is False
    url = f"/api/v1/meters/{meter['id']}"
    for wrong in (
        {"broute_id": BROUTE_ID[:-1], "broute_password": PASSWORD12},  # 31 characters
        {"broute_id": BROUTE_ID, "broute_password": PASSWORD12 + "X"},  # 13
        {"broute_id": BROUTE_ID},  # not both
    ):
        answer = operator.patch(url, json=wrong)
        assert_problem(answer, 422)
        assert PASSWORD12 not in answer.text
    done = operator.patch(url, json={"broute_id": BROUTE_ID, "broute_password": PASSWORD12})
    assert done.status_code == 200, done.text
    assert done.json()["has_broute_credentials"] is True
    assert BROUTE_ID not in done.text and PASSWORD12 not in done.text
    with engine.connect() as conn:
        row = registry.get_meter(conn, meter["id"], world.tenant_a)
        box = app.state.credential_box
        ad = meter_credential_ad(meter["id"], "broute_password")
        assert box.open(row.broute_password_enc, ad) == PASSWORD12
        when = registry.broute_credentials_set_at(conn, world.tenant_a, [meter["id"], 999])
    assert set(when) == {meter["id"]}
    [entry] = _audit(engine, world.tenant_a, registry.BROUTE_AUDIT)
    assert entry.detail is None and entry.target == f"meter:{meter['id']}"


def test_homes_csv_preview_then_import(new_client, engine, world):
    operator = login(new_client(), "operator@a.test")
    code = new_claim_code()  # a box from the factory, imported by the platform
    factory = f"serial,model,public_key,claim_code\nGW-H1,m,{b64encode(PUBLIC_KEY)},{code}\n"
    root = login(new_client(), "root@kenshin.test")
    imported = root.post(
        "/api/v1/gateways/import", content=factory, headers={"Content-Type": "text/csv"}
    )
    assert imported.json()["added"] == 1, imported.text
    good = (
        "\ufeffcustomer_id,service_code,name,link,udp_host,broute_id,broute_password,"
        "supply_point,claim_code\r\n"
        f"H1,pss20000001,佐藤,udp,10.0.0.1,,,0300-1111-2222-3333-4444-55,{code}\r\n"
        f"H2,pss20000002,,wisun,,{BROUTE_ID},{PASSWORD12},,\r\n"
    )
    bad = good + (
        "H3,pss2000003,,udp,10.0.0.3,,,,\r\n"  # service code one digit short
        "H1,pss20000004,,udp,10.0.0.4,,,,\r\n"  # H1 again (the row above)
        f"H5,pss20000005,,wisun,,{BROUTE_ID},short,,\r\n"  # a password of 5
        f"H6,pss20000006,,udp,10.0.0.6,,,,{code}\r\n"  # the code is H1's by now
    )

    def post(text: str, dry_run: bool):
        return operator.post(
            "/api/v1/homes/import",
            content=text.encode(),
            params={"dry_run": str(dry_run).lower()},
            headers={"Content-Type": "text/csv"},
        )

    preview = post(bad, True)
    assert preview.status_code == 200, preview.text
    report = preview.json()
    assert (report["added"], report["errors"]) == (2, 4)
    errors = {r["line"]: r["error"] for r in report["rows"]}
    assert errors[2] is None and errors[3] is None
    assert "service_code" in errors[4]
    assert "customer H1" in errors[5]
    assert "broute_password" in errors[6] and "short" not in errors[6]
    assert "no unclaimed gateway" in errors[7]
    refused = post(bad, False)
    assert_problem(refused, 422)
    assert refused.json()["report"]["errors"] == 4
    with engine.connect() as conn:  # neither the preview nor the refusal kept anything
        assert not conn.execute(select(s.sites).where(s.sites.c.customer_id == "H1")).first()

    imported = post(good, False)
    assert imported.status_code == 200, imported.text
    rows = imported.json()["rows"]
    assert [r["error"] for r in rows] == [None, None]
    assert rows[0]["gateway_id"] is not None and rows[1]["gateway_id"] is None
    meters = operator.get("/api/v1/meters", params={"site_id": rows[0]["site_id"]}).json()
    [m] = meters["items"]
    assert m["gateway_id"] == rows[0]["gateway_id"]
    assert m["supply_point"] == "0300111122223333444455"
    gateway = operator.get(f"/api/v1/gateways/{rows[0]['gateway_id']}").json()
    assert gateway["site_id"] == rows[0]["site_id"] and gateway["state"] == "never_seen"
    assert [e.detail for e in _audit(engine, world.tenant_a, "homes.import")] == [{"added": 2}]
    assert len(_audit(engine, world.tenant_a, registry.BROUTE_AUDIT)) == 1
    assert_problem(post("name\nx\n", True), 422)  # columns missing
    viewer = login(new_client(), "viewer@a.test")
    assert_problem(
        viewer.post(
            "/api/v1/homes/import", content=good.encode(), headers={"Content-Type": "text/csv"}
        ),
        403,
    )
