"""Lists: search (Japanese too), filters, sort both ways, cursors that walk every row
exactly once while rows are added and refuse what they did not make, power now or "not
measured" (through the real ingest), tenants apart."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, update

from kenshin.gateway.identity import Identity, new_claim_code
from kenshin.jst import JST
from kenshin.server import ingest
from kenshin.server import schema as s
from kenshin.server.devices import registry
from kenshin.server.metering.current import CURRENT_WINDOW
from kenshin.server.metering.rollups import day_start
from kenshin.server.security import CredentialBox
from kenshin.wire import FixedTimeValue, InstantSample, MeterScale, ReadingsBatch, encode_publish
from kenshin.wire.enrollment import b64encode

from .conftest import KEY, assert_problem, login, udp_meter


def _sites(engine, tenant_id: int, count: int, start: int = 0) -> list[int]:
    with engine.begin() as conn:
        return [
            registry.add_site(
                conn,
                tenant_id,
                "system",
                customer_id=f"C{n:04d}",
                service_code=f"pss{n:08d}",
                address=f"東京都港区{n}丁目" if n % 2 else f"大阪府{n}",
                phone=f"03-5555-{n:04d}",
            ).id
            for n in range(start, start + count)
        ]


def _gateways(engine, tenant_id: int, serials: list[str], site_id: int | None = None) -> list:
    """Manufactured, imported and claimed by `tenant_id` (onto `site_id`, if given)."""
    codes = {serial: new_claim_code() for serial in serials}
    text = "serial,model,public_key,claim_code\n" + "".join(
        f"{sn},HEMS-1,{b64encode(Identity.generate(sn, 'http://x').public_key)},{codes[sn]}\n"
        for sn in serials
    )
    with engine.begin() as conn:
        assert registry.import_identities(conn, text, KEY, "system").added == len(serials)
        return [
            registry.claim_gateway(
                conn, tenant_id, key=KEY, actor="system", claim_code=code, site_id=site_id
            )
            for code in codes.values()
        ]


def _walk(client, url: str, **params) -> list[dict]:
    seen, cursor = [], params.pop("cursor", None)
    while True:
        page = client.get(url, params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= params.get("limit", 50)
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def _cursor(*parts) -> str:
    raw = json.dumps(parts).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


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
    newest = _walk(viewer, "/api/v1/sites", limit=4, sort="-created_at")
    assert [x["id"] for x in newest] == sorted((x["id"] for x in forward), reverse=True)
    assert len(_walk(viewer, "/api/v1/sites", limit=500, sort="customer_id")) == 23

    # Rows added while walking: every row present at the start still comes exactly once,
    # whether the new rows sort before or after the page already read.
    first = viewer.get("/api/v1/sites", params={"limit": 10}).json()
    _sites(engine, world.tenant_a, 3, start=50)
    rest = _walk(viewer, "/api/v1/sites", limit=10, cursor=first["next_cursor"])
    walked = [x["id"] for x in first["items"] + rest]
    assert len(walked) == len(set(walked)) == 26
    first = viewer.get("/api/v1/sites", params={"limit": 6, "sort": "-id"}).json()
    late = _sites(engine, world.tenant_a, 2, start=60)
    rest = _walk(viewer, "/api/v1/sites", limit=6, sort="-id", cursor=first["next_cursor"])
    walked = [x["id"] for x in first["items"] + rest]
    assert len(walked) == len(set(walked)) == 26 and not set(late) & set(walked)

    other = login(new_client(), "viewer@b.test")
    theirs = _walk(other, "/api/v1/sites", limit=2)
    assert [x["customer_id"] for x in theirs] == [f"C{n:04d}" for n in range(100, 105)]


def test_search_finds_japanese_text_and_any_identifier(new_client, engine, world):
    _sites(engine, world.tenant_a, 12)
    _sites(engine, world.tenant_b, 12, start=200)
    viewer = login(new_client(), "viewer@a.test")
    tokyo = _walk(viewer, "/api/v1/sites", q="東京都港区", limit=4)
    assert len(tokyo) == 6 and all("東京都港区" in x["address"] for x in tokyo)
    assert [x["customer_id"] for x in _walk(viewer, "/api/v1/sites", q="港区7丁")] == ["C0007"]
    assert [x["customer_id"] for x in _walk(viewer, "/api/v1/sites", q="c0007")] == ["C0007"]
    assert [x["service_code"] for x in _walk(viewer, "/api/v1/sites", q="PSS00000011")] == [
        "pss00000011"
    ]
    assert [x["phone"] for x in _walk(viewer, "/api/v1/sites", q="5555-0003")] == ["03-5555-0003"]
    assert _walk(viewer, "/api/v1/sites", q="大阪府20") == []  # tenant B's, not listed
    assert _walk(viewer, "/api/v1/sites", q="100%_") == []  # wildcards are plain text
    assert _walk(viewer, "/api/v1/sites", q="C00_1") == []


def test_bad_requests_are_problems(new_client, engine, world):
    _sites(engine, world.tenant_a, 4)
    viewer = login(new_client(), "viewer@a.test")
    by_code = viewer.get("/api/v1/sites", params={"limit": 2}).json()["next_cursor"]
    refused = {
        "not base64 json": "bm9wZQ",
        "garbage": "!!!",
        "another sort's": by_code,  # used below with sort=id
        "a text for an id": _cursor("id", "abc", 1),
        "past any id": _cursor("id", 2**70, 1),
        "a date without its zone": _cursor("created_at", "2026-01-01T00:00:00", 1),
    }
    for what, cursor in refused.items():
        answer = viewer.get("/api/v1/sites", params={"sort": "id", "cursor": cursor})
        if what == "a date without its zone":
            answer = viewer.get("/api/v1/sites", params={"sort": "created_at", "cursor": cursor})
        assert_problem(answer, 400)
    # A well-formed cursor only moves the start, within the caller's own rows.
    page = viewer.get("/api/v1/sites", params={"sort": "id", "cursor": _cursor("id", 0, 1)})
    assert len(page.json()["items"]) == 4
    no_nul = viewer.get(
        "/api/v1/sites", params={"sort": "address", "cursor": _cursor("address", "a\x00", 1)}
    )
    assert_problem(no_nul, 400)
    assert_problem(viewer.get("/api/v1/sites", params={"q": "港区\x00"}), 422)
    assert_problem(viewer.get("/api/v1/sites", params={"sort": "phone"}), 400)
    assert_problem(viewer.get("/api/v1/meters", params={"sort": "-secret"}), 400)
    assert_problem(viewer.get("/api/v1/sites", params={"limit": 501}), 422)
    assert_problem(viewer.get("/api/v1/sites", params={"limit": 0}), 422)
    assert_problem(viewer.get("/api/v1/gateways", params={"state": "asleep"}), 422)
    assert len(viewer.get("/api/v1/sites", params={"limit": 500}).json()["items"]) == 4
    assert len(viewer.get("/api/v1/sites").json()["items"]) == 4  # default 50


def test_gateways_and_meters_lists_filter_search_and_page(new_client, engine, world, fleet):
    sites = _sites(engine, world.tenant_a, 3, start=10)
    mine = _gateways(engine, world.tenant_a, [f"GW-A{n}" for n in range(5)], site_id=sites[0])
    _gateways(engine, world.tenant_b, ["GW-THEIRS"])
    with engine.begin() as conn:
        conn.execute(
            update(s.gateways).where(s.gateways.c.id == mine[1].id).values(state="lost_contact")
        )
        box = CredentialBox(KEY)
        for n, site_id in enumerate(sites):
            registry.add_meter(
                conn,
                world.tenant_a,
                box,
                "system",
                site_id=site_id,
                link="wisun" if n else "udp",
                udp_host=None if n else "127.0.1.1",
                device="/dev/ttyUSB0" if n else None,
                broute_id=f"{n:032d}" if n else None,
                broute_password="PASSWORD1234" if n else None,
                serial=f"SM-{n}",
                gateway_id=mine[n].id,
            )
    viewer = login(new_client(), "viewer@a.test")

    gateways = _walk(viewer, "/api/v1/gateways", limit=2, sort="-serial")
    serials = [g["serial"] for g in gateways]
    assert serials == sorted(["GW-A", *(f"GW-A{n}" for n in range(5))], reverse=True)
    assert [g["serial"] for g in _walk(viewer, "/api/v1/gateways", q="gw-a3")] == ["GW-A3"]
    assert [g["id"] for g in _walk(viewer, "/api/v1/gateways", state="lost_contact")] == [
        mine[1].id
    ]
    both = _walk(viewer, "/api/v1/gateways", state=["lost_contact", "never_seen"], limit=1)
    assert len(both) == 6
    assert len(_walk(viewer, "/api/v1/gateways", site_id=sites[0], sort="state")) == 5
    assert _walk(viewer, "/api/v1/gateways", q="THEIRS") == []

    meters = _walk(viewer, "/api/v1/meters", limit=1, sort="-serial")
    assert [m["serial"] for m in meters] == ["SM-2", "SM-1", "SM-0"]
    assert [m["serial"] for m in _walk(viewer, "/api/v1/meters", link="wisun")] == ["SM-1", "SM-2"]
    assert [m["serial"] for m in _walk(viewer, "/api/v1/meters", q="c0011")] == ["SM-1"]
    assert [m["serial"] for m in _walk(viewer, "/api/v1/meters", q="pss00000012")] == ["SM-2"]
    assert [m["serial"] for m in _walk(viewer, "/api/v1/meters", q="ttyusb")] == ["SM-1", "SM-2"]
    assert [m["serial"] for m in _walk(viewer, "/api/v1/meters", state="lost_contact")] == ["SM-1"]
    assert [m["serial"] for m in _walk(viewer, "/api/v1/meters", gateway_id=mine[2].id)] == ["SM-2"]
    assert [m["serial"] for m in _walk(viewer, "/api/v1/meters", site_id=sites[0])] == ["SM-0"]
    assert all(set(m) >= {"has_broute_credentials"} and "broute_id" not in m for m in meters)
    assert _walk(login(new_client(), "viewer@b.test"), "/api/v1/meters") == []


def test_a_site_with_two_gateways_is_one_row(new_client, engine, world, fleet):
    (second,) = _gateways(engine, world.tenant_a, ["GW-A2"], site_id=fleet["site"].id)
    with engine.begin() as conn:  # the second is the one that lost contact
        conn.execute(
            update(s.gateways).where(s.gateways.c.id == second.id).values(state="lost_contact")
        )
    viewer = login(new_client(), "viewer@a.test")
    (row,) = _walk(viewer, "/api/v1/sites", limit=1)
    assert (row["gateway_id"], row["gateway_state"]) == (fleet["gateway"].id, "never_seen")
    # Filtered by state, the row shows the gateway in that state.
    (lost,) = _walk(viewer, "/api/v1/sites", state="lost_contact")
    assert (lost["id"], lost["gateway_id"], lost["gateway_state"]) == (
        row["id"],
        second.id,
        "lost_contact",
    )
    (either,) = _walk(viewer, "/api/v1/sites", state=["lost_contact", "never_seen"])
    assert either["gateway_id"] == fleet["gateway"].id
    assert _walk(viewer, "/api/v1/sites", state="working") == []


def test_power_is_summed_over_the_meters_measured_in_the_window(new_client, engine, world, fleet):
    fresh, stale = udp_meter(engine, world, fleet), udp_meter(engine, world, fleet)
    now = s.utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(s.meter_latest),
            [
                {"meter_id": fresh.id, "at": now - timedelta(minutes=1), "power_w": 1234,
                 "current_r_da": 60, "current_t_da": 4},
                {"meter_id": stale.id, "at": now - CURRENT_WINDOW - timedelta(minutes=1),
                 "power_w": 999, "current_r_da": 40, "current_t_da": None},
            ],
        )  # fmt: skip
    viewer = login(new_client(), "viewer@a.test")
    (row,) = viewer.get("/api/v1/sites").json()["items"]
    assert (row["power_w"], row["measured"]) == (1234, True)
    assert datetime.fromisoformat(row["power_at"]) == now - timedelta(minutes=1)
    stale_now = viewer.get(f"/api/v1/meters/{stale.id}/current").json()
    assert (stale_now["measured"], stale_now["power_w"], stale_now["current_r_da"]) == (
        False,
        None,
        None,
    )
    assert stale_now["at"] is not None  # when it was last heard, however old
    with engine.begin() as conn:  # the gateway went quiet
        conn.execute(update(s.meter_latest).values(at=now - timedelta(minutes=20)))
    (row,) = viewer.get("/api/v1/sites").json()["items"]
    assert (row["power_w"], row["measured"]) == (None, False) and row["power_at"]


def _send(engine, meter_id: int, seq: int, **readings) -> None:
    batch = ReadingsBatch(seq, f"m{meter_id}", scale=MeterScale(1, 0x01, 6), **readings)
    topic, payload = encode_publish(batch, "GW-A")
    with engine.begin() as conn:
        assert ingest.handle(conn, topic, payload).kind == "readings"


def test_the_site_row_and_meter_now_from_the_real_ingest(new_client, engine, world, fleet):
    meter = udp_meter(engine, world, fleet)
    viewer = login(new_client(), "viewer@a.test")
    (row,) = viewer.get("/api/v1/sites", params={"state": "never_seen"}).json()["items"]
    assert (row["gateway_state"], row["customer_id"], row["service_code"]) == (
        "never_seen",
        "C1",
        "pss12345678",
    )
    assert (row["power_w"], row["measured"], row["power_at"]) == (None, False, None)
    assert (row["today_bought_wh"], row["today_sold_wh"]) == (None, None)
    before = viewer.get(f"/api/v1/meters/{meter.id}/current").json()
    assert (before["measured"], before["power_w"], before["at"]) == (False, None, None)

    # The last closed half hour: 0.7 kWh bought, 0.2 kWh sold (counts of 0.1 kWh).
    now = datetime.now(UTC)
    closed = int(now.timestamp()) // 1800 * 1800
    _send(
        engine,
        meter.id,
        0,
        fixed=(FixedTimeValue(closed - 1800, 1000, 500), FixedTimeValue(closed, 1007, 502)),
    )
    _send(engine, meter.id, 1, instant=(InstantSample(int(now.timestamp()) - 30, 812, 83, 7),))
    # Today's (JST) energy holds that half hour unless it began yesterday (at 00:00-00:30).
    today = datetime.fromtimestamp(closed - 1800, UTC) >= day_start(now)
    bought, sold = (700, 200) if today else (None, None)

    for listing in (
        viewer.get("/api/v1/sites").json(),
        viewer.get("/api/v1/sites", params={"q": "pss1234", "state": "working"}).json(),
    ):
        (row,) = listing["items"]
        assert row["gateway_state"] == "working"  # the ingest heard from the gateway
        assert (row["power_w"], row["measured"]) == (812, True)
        assert (row["today_bought_wh"], row["today_sold_wh"]) == (bought, sold)
    current = viewer.get(f"/api/v1/meters/{meter.id}/current").json()
    assert current["measured"] and current["power_w"] == 812
    assert (current["current_r_da"], current["current_t_da"]) == (83, 7)
    assert datetime.fromisoformat(current["at"]).timestamp() == int(now.timestamp()) - 30
    assert current["today"] == now.astimezone(JST).date().isoformat()
    assert (current["today_bought_wh"], current["today_sold_wh"]) == (bought, sold)

    other = login(new_client(), "viewer@b.test")
    assert other.get("/api/v1/sites").json() == {"items": [], "next_cursor": None}
    assert_problem(other.get(f"/api/v1/meters/{meter.id}/current"), 404)
    assert_problem(viewer.get("/api/v1/meters/999999/current"), 404)


def test_every_role_of_the_tenant_may_list(new_client, world):
    for role in ("viewer@a.test", "operator@a.test", "admin@a.test"):
        client = login(new_client(), role)
        for path in ("/api/v1/sites", "/api/v1/meters", "/api/v1/gateways"):
            assert client.get(path).json() == {"items": [], "next_cursor": None}
