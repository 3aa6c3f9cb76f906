"""Lists: search (Japanese too), filters, sort both ways, cursors that walk every row
exactly once while rows are added, power now or "not measured", tenants apart."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, update

from kenshin.server import schema as s
from kenshin.server.devices import registry
from kenshin.server.metering.rollups import day_start

from .conftest import assert_problem, login, udp_meter


def _sites(engine, tenant_id: int, count: int, start: int = 0) -> list[int]:
    ids = []
    with engine.begin() as conn:
        for n in range(start, start + count):
            ids.append(
                registry.add_site(
                    conn,
                    tenant_id,
                    "system",
                    customer_id=f"C{n:04d}",
                    service_code=f"pss{n:08d}",
                    address=f"東京都港区{n}丁目" if n % 2 else f"大阪府{n}",
                    phone=None,
                ).id
            )
    return ids


def _walk(client, url: str, **params) -> list[dict]:
    seen, cursor = [], None
    while True:
        page = client.get(url, params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def test_cursors_walk_every_row_once_in_either_order(new_client, engine, world):
    _sites(engine, world.tenant_a, 23)
    _sites(engine, world.tenant_b, 5, start=100)
    viewer = login(new_client(), "viewer@a.test")
    forward = _walk(viewer, "/api/v1/sites", limit=5)
    codes = [x["service_code"] for x in forward]
    assert codes == sorted(codes) and len(codes) == 23
    backward = _walk(viewer, "/api/v1/sites", limit=7, sort="-address")
    addresses = [x["address"] for x in backward]
    assert addresses == sorted(addresses, reverse=True) and len(backward) == 23

    # Rows added while walking: every row present at the start still comes exactly once.
    first = viewer.get("/api/v1/sites", params={"limit": 10}).json()
    _sites(engine, world.tenant_a, 3, start=50)
    rest = _walk(viewer, "/api/v1/sites", limit=10, cursor=first["next_cursor"])
    walked = [x["id"] for x in first["items"] + rest]
    assert len(walked) == len(set(walked)) == 26

    tokyo = _walk(viewer, "/api/v1/sites", q="東京都港区", limit=4)
    assert tokyo and all("東京都港区" in x["address"] for x in tokyo)
    assert [x["customer_id"] for x in _walk(viewer, "/api/v1/sites", q="c0007")] == ["C0007"]
    assert _walk(viewer, "/api/v1/sites", q="100%_") == []  # wildcards are plain text
    assert_problem(viewer.get("/api/v1/sites", params={"cursor": "bm9wZQ"}), 400)
    assert_problem(viewer.get("/api/v1/sites", params={"sort": "phone"}), 400)
    assert_problem(viewer.get("/api/v1/sites", params={"limit": 501}), 422)
    other = login(new_client(), "viewer@b.test")
    assert len(_walk(other, "/api/v1/sites")) == 5


def test_the_site_row_shows_power_now_or_not_measured_and_todays_energy(
    new_client, engine, world, fleet
):
    meter = udp_meter(engine, world, fleet)
    viewer = login(new_client(), "viewer@a.test")
    (row,) = viewer.get("/api/v1/sites", params={"state": "never_seen"}).json()["items"]
    assert row["gateway_state"] == "never_seen"
    assert (row["power_w"], row["measured"], row["today_bought_wh"]) == (None, False, None)
    now = s.utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(s.meter_latest).values(
                meter_id=meter.id, at=now - timedelta(minutes=1), power_w=1234, current_r_da=60
            )
        )
        conn.execute(
            insert(s.meter_energy),
            [
                {"meter_id": meter.id, "period": "day", "direction": d, "start": day_start(now),
                 "wh": wh, "slots": 20, "refilled": 0}
                for d, wh in ((0, 5400), (1, 800))
            ],
        )  # fmt: skip
    (row,) = viewer.get("/api/v1/sites").json()["items"]
    assert (row["power_w"], row["measured"]) == (1234, True)
    assert (row["today_bought_wh"], row["today_sold_wh"]) == (5400, 800)
    now_answer = viewer.get(f"/api/v1/meters/{meter.id}/current").json()
    assert now_answer["power_w"] == 1234 and now_answer["today_sold_wh"] == 800
    with engine.begin() as conn:  # the gateway went quiet twenty minutes ago
        conn.execute(update(s.meter_latest).values(at=now - timedelta(minutes=20)))
    (row,) = viewer.get("/api/v1/sites").json()["items"]
    assert (row["power_w"], row["measured"]) == (None, False) and row["power_at"]
    assert viewer.get("/api/v1/sites", params={"state": "working"}).json()["items"] == []
    other = login(new_client(), "viewer@b.test")
    assert_problem(other.get(f"/api/v1/meters/{meter.id}/current"), 404)
    meters = viewer.get("/api/v1/meters", params={"link": "udp"}).json()
    assert [m["id"] for m in meters["items"]] == [meter.id]
    assert viewer.get("/api/v1/meters", params={"link": "wisun"}).json()["items"] == []
    gateways = viewer.get("/api/v1/gateways", params={"q": "gw-a"}).json()["items"]
    assert [g["serial"] for g in gateways] == ["GW-A"]
