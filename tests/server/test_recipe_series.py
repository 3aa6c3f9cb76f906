"""A recipe's readings as the gateway's own series (metering/recipe_series.py, the ingest,
GET /gateways/{id}/series/{series}): stored once however often QoS 1 delivers them,
malformed details kept out of the series (a warning event instead), read in time order
behind the tenant wall."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from kenshin.server import ingest
from kenshin.server import schema as s
from kenshin.server.metering.retention import apply_retention
from kenshin.wire import Event, encode_publish

from .conftest import assert_problem, login
from .rollout_fleet import claimed_gateways

AT = 1_782_871_200  # 2026-07-01 11:00 JST


def _send(engine, serial: str, at_s: int, detail: dict) -> None:
    message = Event("recipe_readings", at_s, detail)
    with engine.begin() as conn:
        assert ingest.handle(conn, *encode_publish(message, serial)).kind == "event"


def test_recipe_readings_are_a_series_of_the_gateway_behind_the_tenant_wall(engine, client, world):
    (gateway_id, serial), *_ = claimed_gateways(engine, world.tenant_a, 1).items()
    pv = {"recipe": "pv-inverter", "series": "pv"}
    for n in range(3):
        _send(engine, serial, AT + 60 * n, pv | {"values": {"generation_w": 1000 + n}})
    _send(engine, serial, AT, pv | {"values": {"generation_w": 1000}})  # delivered twice
    _send(engine, serial, AT + 5, pv | {"values": {"generation_w": "a lot"}})
    _send(engine, serial, AT + 6, {"recipe": "../x", "series": "pv", "values": {"w": 1}})
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.recipe_samples)).scalar() == 3
        warnings = conn.execute(
            select(s.events.c.detail).where(
                s.events.c.code == "gw_recipe_readings", s.events.c.severity == "warning"
            )
        ).scalars().all()  # fmt: skip
    assert [w["error"].split(":")[0] for w in warnings] == ["values", "recipe"]

    url = f"/api/v1/gateways/{gateway_id}/series/pv"
    window = {"start": "2026-07-01T10:00", "end": "2026-07-01T12:00"}
    viewer = login(client, "viewer@a.test")
    answer = viewer.get(url, params=window | {"limit": 2})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["complete"] is False
    assert [x["values"]["generation_w"] for x in body["samples"]] == [1000, 1001]
    assert body["samples"][0]["at"] == "2026-07-01T11:00:00+09:00"
    assert len(viewer.get(url, params=window).json()["samples"]) == 3
    assert viewer.get(url.replace("/pv", "/battery"), params=window).json()["samples"] == []
    assert_problem(viewer.get(url, params={"start": window["end"], "end": window["start"]}), 400)
    other = login(client, "viewer@b.test")
    assert_problem(other.get(url, params=window), 404)


def test_recipe_series_are_kept_as_long_as_the_tenants_instant_power(engine, world):
    (_, serial), *_ = claimed_gateways(engine, world.tenant_a, 1).items()
    _send(engine, serial, AT, {"recipe": "pv", "series": "pv", "values": {"generation_w": 1}})
    later = datetime.fromtimestamp(AT, UTC) + timedelta(days=31)
    assert apply_retention(engine, later).deleted.get("recipe_samples", 0) == 0  # forever
    with engine.begin() as conn:
        conn.execute(
            update(s.tenants)
            .where(s.tenants.c.id == world.tenant_a)
            .values(instant_retention_days=30)
        )
    assert apply_retention(engine, later).deleted["recipe_samples"] == 1
