"""/api/v1/dr over HTTP on SQLite and PostgreSQL: events made by operators and read by
viewers in JST, the tenant wall (404), bad input as typed problems, the live view and the
results as JSON and CSV with the numbers of the slot data written here."""

from __future__ import annotations

import csv
import io
from datetime import datetime, time, timedelta

from kenshin.jst import JST, SLOT
from kenshin.server.dr import dispatch, service
from kenshin.server.dr.job import run_dr

from ..conftest import assert_problem, login
from .homes import BEFORE, SLOTS, make_homes, store_days

API = "/api/v1/dr"


def _tomorrow(hour: int, minute: int = 0) -> str:
    day = datetime.now(JST).date() + timedelta(days=1)
    return datetime.combine(day, time(hour, minute)).isoformat()  # no offset: JST


def test_events_are_made_read_cancelled_and_walled_per_tenant(engine, client, new_client, world):
    make_homes(engine, world.tenant_a, 2, "HA")
    operator = login(client, "operator@a.test")
    made = operator.post(f"{API}/events", json={
        "name": "夕方の節電", "start": _tomorrow(17), "end": _tomorrow(18, 30),
        "targets_w": [100, 200, 300], "price_jpy_kwh": 25,
    })  # fmt: skip
    assert made.status_code == 201, made.text
    event = made.json()
    assert event["start"].endswith("+09:00") and event["start"].startswith(_tomorrow(17))
    assert (event["state"], event["homes"]["pending"]) == ("scheduled", 2)
    assert event["opt_out_deadline"] == event["start"]
    event_id = event["id"]

    viewer = login(new_client(), "viewer@a.test")
    listed = viewer.get(f"{API}/events").json()
    assert [e["id"] for e in listed["items"]] == [event_id] and listed["next_cursor"] is None
    live = viewer.get(f"{API}/events/{event_id}/live").json()
    assert [s["target_w"] for s in live["slots"]] == [100, 200, 300]
    assert live["slots"][0]["start"] == event["start"]
    homes = viewer.get(f"{API}/events/{event_id}/homes").json()["items"]
    assert [h["opt_out_path"] for h in homes] == [None, None]  # the links are operators'
    paths = [
        h["opt_out_path"] for h in operator.get(f"{API}/events/{event_id}/homes").json()["items"]
    ]
    assert all(p.startswith("/dr/opt-out/") and len(p) > 50 for p in paths)
    assert_problem(viewer.post(f"{API}/events/{event_id}/cancel"), 403)

    other = login(new_client(), "viewer@b.test")
    for path in ("", "/live", "/homes", "/results", "/results.csv"):
        assert_problem(other.get(f"{API}/events/{event_id}{path}"), 404)
    assert other.get(f"{API}/events").json()["items"] == []

    assert operator.post(f"{API}/events/{event_id}/cancel").json()["state"] == "cancelled"
    assert (
        "cancelled"
        in assert_problem(operator.post(f"{API}/events/{event_id}/cancel"), 409)["detail"]
    )


def test_a_home_whose_gateway_acked_over_mqtt_is_listed(engine, client, world):
    """A DrAck says how many devices (dr_link.on_ack passes the count): the homes' list
    shows it, as it was stored, rather than failing on it."""
    [home, other] = make_homes(engine, world.tenant_a, 2, "HD")
    operator = login(client, "operator@a.test")
    made = operator.post(f"{API}/events", json={
        "name": "x", "start": _tomorrow(17), "end": _tomorrow(18), "target_w": 100,
    })  # fmt: skip
    event_id = made.json()["id"]
    with engine.begin() as conn:
        assert dispatch.on_ack(conn, home.gateway_id, event_id, "acknowledged", 3)
        assert dispatch.on_ack(conn, other.gateway_id, event_id, "acknowledged", ["aircon"])
    answer = operator.get(f"{API}/events/{event_id}/homes")
    assert answer.status_code == 200, answer.text
    listed = {h["site_id"]: (h["state"], h["devices"]) for h in answer.json()["items"]}
    assert listed == {home.site_id: ("acknowledged", {"count": 3}),
                      other.site_id: ("acknowledged", ["aircon"])}  # fmt: skip


def test_bad_events_are_typed_problems(engine, client, world):
    make_homes(engine, world.tenant_a, 1, "HB")
    operator = login(client, "operator@a.test")
    good = {"name": "x", "start": _tomorrow(17), "end": _tomorrow(18), "target_w": 10}

    def problem(status: int, **change) -> str:
        body = {k: v for k, v in (good | change).items() if v is not None}
        return assert_problem(operator.post(f"{API}/events", json=body), status).get("detail") or ""

    assert "half hour" in problem(400, start=_tomorrow(17, 10))
    assert "end must follow" in problem(400, end=_tomorrow(16))
    assert "future" in problem(400, start="2020-01-01T17:00", end="2020-01-01T18:00")
    assert "deadline" in problem(400, opt_out_deadline=_tomorrow(17, 30))
    assert "not homes" in problem(400, site_ids=[10**9])
    problem(422, shed_level=2)  # a target and a shed level
    problem(422, target_w=-1)
    problem(422, shed_level=4, target_w=None)
    problem(422, name="")
    rule = {"name": "r", "threshold_kw": 1, "slots": [48], "target_w": 1}
    assert_problem(operator.post(f"{API}/rules", json=rule), 422)


def test_results_as_json_and_csv(engine, client, world):
    homes = make_homes(engine, world.tenant_a, 2, "HC")
    for home, normal, during in zip(homes, (100, 300), (70, 200), strict=True):
        store_days(engine, home.meter_id, normal, during)
    with engine.begin() as conn:
        event_id = service.create_event(
            conn, world.tenant_a, name="過去", start=SLOTS[0], end=SLOTS[-1] + SLOT,
            actor="t", targets_w=[200] * 4, now=BEFORE,
        )  # fmt: skip
    assert run_dr(engine, SLOTS[-1] + SLOT).final == [event_id]  # ended, every slot in
    viewer = login(client, "viewer@a.test")
    out = viewer.get(f"{API}/events/{event_id}/results").json()
    assert out["final"] is True
    assert out["totals"]["reduction_wh"] == 4 * ((100 - 70) + (300 - 200))
    assert [h["reduction_wh"] for h in out["homes"]] == [120, 400]
    first = {"start": SLOTS[0].isoformat(), "target_w": 200, "baseline_wh": 400,
             "actual_wh": 270, "reduction_wh": 130}  # fmt: skip
    assert out["slots"][0] == first
    answer = viewer.get(f"{API}/events/{event_id}/results.csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0] == ["site_id", "state", "status", "slot_start_jst", "baseline_wh",
                       "actual_wh", "reduction_wh"]  # fmt: skip
    assert rows[1] == [str(homes[0].site_id), "pending", "measured", SLOTS[0].isoformat(),
                       "100", "70", "30"]  # fmt: skip
    assert len(rows) == 1 + 2 * 4
