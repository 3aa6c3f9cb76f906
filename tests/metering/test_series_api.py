"""Every series over the API, against what went in through the real ingest.

Tenant A has two meters on its site: X, a simulated PV house read every minute and every
half hour over three JST days (30 Mar .. 1 Apr 2026, across a month end) with two lost
boundaries, and Y, a plain 100 Wh a half hour on the first day only. Each answer is
checked against a figure the test works out itself from the simulator's registers:
slot values exactly, every rollup as the sum of its JST-bounded slots (a JST day starts
at 15:00 UTC), power buckets as the mean/min/max of their readings. Then the limits, and
the tenant wall: tenant B's viewer gets 404 for each of A's meters, never data.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from itertools import islice

import pytest

from kenshin.jst import JST
from kenshin.server import ingest
from kenshin.server.devices.registry import meter_ref
from kenshin.server.metering import series
from kenshin.sim.load import HouseholdProfile, LoadModel
from kenshin.sim.registers import MeterRegisters
from kenshin.wire import FixedTimeValue, InstantSample, MeterScale, ReadingsBatch, encode_publish
from kenshin.wire.codec import MAX_FIXED_VALUES
from tests.server.conftest import assert_problem, login, udp_meter

START = datetime(2026, 3, 30, tzinfo=JST)  # = 2026-03-29T15:00Z
SLOT = timedelta(minutes=30)
DAYS = 3
SCALE = MeterScale(1, 0x03, 8)  # 0.001 kWh: one count is one Wh
LOST = {20, 100}  # boundaries never received: slots 19, 20, 99 and 100 have no value
Y_WH = 100


def send(engine, meter_id: int, fixed: Iterable[FixedTimeValue] = (),
         samples: Iterable[InstantSample] = ()) -> None:  # fmt: skip
    """Through the real ingest, in batches a gateway could send, one transaction."""
    fixed, samples = iter(fixed), iter(samples)
    work = []
    while True:
        f, s = tuple(islice(fixed, MAX_FIXED_VALUES)), tuple(islice(samples, 1000))
        if not (f or s):
            break
        batch = ReadingsBatch(len(work), meter_ref(meter_id), s, f, SCALE if f else None)
        work.append(encode_publish(batch, "GW-A"))
    with engine.begin() as conn:
        assert {o.kind for o in ingest.handle_group(conn, work)} == {"readings"}


class Record:
    """What the test fed, and what each series must therefore say."""

    def __init__(self, regs: MeterRegisters) -> None:
        self.regs = regs
        self.boundaries = [START + i * SLOT for i in range(DAYS * 48 + 1) if i not in LOST]
        self.samples = [START + timedelta(seconds=60 * k + 15) for k in range(DAYS * 1440)]
        self.power = {at: regs.instant_power_w(at) for at in self.samples}

    def slot_wh(self, direction: int) -> dict[datetime, int]:
        """The simulator's energy of every slot with both its boundaries received."""
        have = set(self.boundaries)
        return {
            at: (self.regs.raw(at + SLOT)[direction] - self.regs.raw(at)[direction]) % 10**8
            for at in self.boundaries
            if at + SLOT in have
        }


@pytest.fixture
def data(engine, world, fleet):
    x, y = udp_meter(engine, world, fleet), udp_meter(engine, world, fleet)
    regs = MeterRegisters(
        LoadModel(HouseholdProfile.from_seed(5, pv=True)), install=START - timedelta(days=1),
        anchor=START, unit_code=SCALE.unit_code, digits=SCALE.digits,
    )  # fmt: skip
    record = Record(regs)
    send(
        engine, x.id,
        (FixedTimeValue(int(at.timestamp()), *regs.raw(at)) for at in record.boundaries),
        (InstantSample(int(at.timestamp()), w) for at, w in record.power.items()),
    )  # fmt: skip
    send(engine, y.id, (FixedTimeValue(int((START + i * SLOT).timestamp()), 5000 + Y_WH * i)
                        for i in range(49)))  # fmt: skip
    return x, y, record


def _get(client, url: str, **params) -> dict:
    answer = client.get(url, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _sums(slots: dict[datetime, int], start: datetime, end: datetime) -> tuple[int | None, int]:
    inside = [wh for at, wh in slots.items() if start <= at < end]
    return (sum(inside) if inside else None), len(inside)


def test_slots_and_rollups_equal_the_simulators_record(new_client, data):
    x, _, record = data
    viewer = login(new_client(), "viewer@a.test")
    url = f"/api/v1/meters/{x.id}/energy"
    span = {"from": "2026-03-30", "to": "2026-04-01"}
    for direction, name in ((0, "normal"), (1, "reverse")):
        truth = record.slot_wh(direction)
        slots = _get(viewer, url, **span, direction=name)
        assert len(slots["values"]) == DAYS * 48
        for v in slots["values"]:
            at = datetime.fromisoformat(v["start"])
            assert v["wh"] == truth.get(at), v
            assert v["status"] == ("measured" if at in truth else "missing")
            assert (v["slots"], v["expected_slots"]) == (int(at in truth), 1)
        assert slots["total_wh"] == sum(truth.values()) and not slots["complete"]

        for period, step in (("hour", timedelta(hours=1)), ("day", timedelta(days=1))):
            answer = _get(viewer, url, **span, period=period, direction=name)
            starts = [START + k * step for k in range(DAYS * 24 if period == "hour" else DAYS)]
            assert [datetime.fromisoformat(v["start"]) for v in answer["values"]] == starts
            for v, start in zip(answer["values"], starts, strict=True):
                wh, count = _sums(truth, start, start + step)
                assert (v["wh"], v["slots"]) == (wh, count), (period, v)
                assert v["complete"] == (count == step / SLOT)

        months = _get(viewer, url, **span, period="month", direction=name)["values"]
        assert [m["start"] for m in months] == ["2026-03-01T00:00:00+09:00",
                                                "2026-04-01T00:00:00+09:00"]  # fmt: skip
        assert [m["expected_slots"] for m in months] == [31 * 48, 30 * 48]
        assert months[0]["wh"] == _sums(truth, START, START + 2 * timedelta(days=1))[0]
        assert months[1]["slots"] == 48 - 2


def test_a_jst_day_starts_at_1500_utc(new_client, data):
    x, _, record = data
    viewer = login(new_client(), "viewer@a.test")
    truth = record.slot_wh(0)
    url = f"/api/v1/meters/{x.id}/energy"
    last_of_30 = datetime(2026, 3, 30, 14, 30, tzinfo=UTC)  # 23:30 JST
    first_of_31 = datetime(2026, 3, 30, 15, 0, tzinfo=UTC)  # 00:00 JST
    day_30 = _get(viewer, url, **{"from": "2026-03-30", "to": "2026-03-30"})["values"]
    day_31 = _get(viewer, url, **{"from": "2026-03-31", "to": "2026-03-31"})["values"]
    assert day_30[-1]["start"] == "2026-03-30T23:30:00+09:00"
    assert day_30[-1]["wh"] == truth[last_of_30]
    assert day_31[0]["start"] == "2026-03-31T00:00:00+09:00"
    assert day_31[0]["wh"] == truth[first_of_31]
    hours_31 = _get(viewer, url, period="hour", **{"from": "2026-03-31", "to": "2026-03-31"})
    assert hours_31["values"][0]["wh"] == truth[first_of_31] + truth[first_of_31 + SLOT]
    days = _get(viewer, url, period="day", **{"from": "2026-03-30", "to": "2026-03-31"})
    assert [d["wh"] for d in days["values"]] == [
        _sums(truth, first_of_31 - timedelta(days=1), first_of_31)[0],
        _sums(truth, first_of_31, first_of_31 + timedelta(days=1))[0],
    ]
    # Day 31 is whole: its total is exactly its 48 slots, not one from the 30th.
    assert days["values"][1]["complete"] and days["values"][1]["slots"] == 48


def test_the_tenants_totals_and_peak_demand(new_client, data):
    _, _, record = data
    viewer = login(new_client(), "viewer@a.test")
    truth = record.slot_wh(0)
    day1 = _get(viewer, "/api/v1/energy", **{"from": "2026-03-30", "to": "2026-03-30"})
    assert day1["meter_id"] is None and day1["meters"] == 2
    for v in day1["values"]:
        at = datetime.fromisoformat(v["start"])
        x_wh = truth.get(at)
        assert v["wh"] == (x_wh or 0) + Y_WH
        assert (v["slots"], v["expected_slots"]) == (1 + (x_wh is not None), 2)
        assert v["complete"] == (x_wh is not None)
        assert v["status"] is None
    day2 = _get(viewer, "/api/v1/energy", **{"from": "2026-03-31", "to": "2026-03-31"})
    assert all(v["slots"] == 1 and not v["complete"] for v in day2["values"])  # Y: no data

    by_day = _get(viewer, "/api/v1/energy", period="day", **{"from": "2026-03-30",
                                                            "to": "2026-04-01"})  # fmt: skip
    assert [d["slots"] for d in by_day["values"]] == [46 + 48, 48, 46]
    assert by_day["total_wh"] == sum(truth.values()) + 48 * Y_WH

    peak = _get(viewer, "/api/v1/energy/peak", day="2026-03-30")
    top = max(day1["values"], key=lambda v: v["wh"])
    assert (peak["start"], peak["wh"], peak["slots"]) == (top["start"], top["wh"], top["slots"])
    assert peak["average_w"] == 2 * top["wh"]
    assert _get(viewer, "/api/v1/energy/peak", day="2026-03-20") is None

    csv = viewer.get("/api/v1/energy", params={"from": "2026-03-30", "to": "2026-03-30",
                                               "format": "csv"})  # fmt: skip
    lines = csv.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "start_jst,direction,wh,slots,expected_slots,refilled,status"
    assert lines[1] == f"2026-03-30T00:00:00+09:00,normal,{day1['values'][0]['wh']},2,2,0,"


def test_power_raw_when_short_in_buckets_when_long(new_client, data):
    x, _, record = data
    viewer = login(new_client(), "viewer@a.test")
    url = f"/api/v1/meters/{x.id}/power"
    raw = _get(viewer, url, start="2026-03-30T06:00", end="2026-03-30T08:00")
    assert raw["bucket_s"] == 0 and raw["start"] == "2026-03-30T06:00:00+09:00"
    fed = [(at, w) for at, w in record.power.items()
           if START + timedelta(hours=6) <= at < START + timedelta(hours=8)]  # fmt: skip
    assert [(datetime.fromisoformat(v["at"]), v["mean_w"], v["count"]) for v in raw["values"]] == [
        (at, w, 1) for at, w in fed
    ]
    # The same instant written in UTC gives the same answer.
    assert _get(viewer, url, start="2026-03-29T21:00:00Z", end="2026-03-29T23:00:00Z") == raw

    long = _get(viewer, url, start="2026-03-30T00:00", end="2026-04-02T00:00", max_points=100)
    assert long["bucket_s"] == 3600  # 3 days / 100 points = 2,592 s: the next round width
    assert len(long["values"]) == DAYS * 24
    for v in long["values"]:
        at = datetime.fromisoformat(v["at"])
        inside = [w for t, w in record.power.items() if at <= t < at + timedelta(hours=1)]
        assert (v["min_w"], v["max_w"], v["count"]) == (min(inside), max(inside), len(inside))
        assert v["mean_w"] == pytest.approx(sum(inside) / len(inside), abs=0.051)  # 1 decimal

    widest = _get(viewer, url, start="2026-03-10T00:00", end="2026-04-10T00:00", max_points=10)
    assert widest["bucket_s"] == 4 * 86400 and len(widest["values"]) <= 10
    assert sum(v["count"] for v in widest["values"]) == len(record.power)

    csv = viewer.get(url, params={"start": "2026-03-30T06:00", "end": "2026-03-30T08:00",
                                  "format": "csv"})  # fmt: skip
    lines = csv.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "at_jst,mean_w,min_w,max_w,count" and len(lines) == 1 + len(fed)
    assert lines[1].startswith(fed[0][0].astimezone(JST).isoformat() + ",")


def test_daily_peaks_every_day_of_the_range(new_client, data):
    x, _, record = data
    viewer = login(new_client(), "viewer@a.test")
    url = f"/api/v1/meters/{x.id}/peaks"
    peaks = _get(viewer, url, **{"from": "2026-03-29", "to": "2026-04-01"})["items"]
    assert [p["day"] for p in peaks] == ["2026-03-29", "2026-03-30", "2026-03-31", "2026-04-01"]
    assert peaks[0] == {"day": "2026-03-29", "import_w": None, "import_at": None,
                        "export_w": None, "export_at": None}  # fmt: skip
    for p in peaks[1:]:
        day = datetime.fromisoformat(p["day"]).replace(tzinfo=JST)
        power = {at: w for at, w in record.power.items() if day <= at < day + timedelta(days=1)}
        assert p["import_w"] == max(power.values())
        assert power[datetime.fromisoformat(p["import_at"])] == p["import_w"]
        sold = [-w for w in power.values() if w < 0]
        assert p["export_w"] == (max(sold) if sold else None)
        if sold:
            assert -power[datetime.fromisoformat(p["export_at"])] == p["export_w"]
    csv = viewer.get(url, params={"from": "2026-03-29", "to": "2026-03-30", "format": "csv"})
    lines = csv.content.decode("utf-8-sig").splitlines()
    assert lines[:2] == ["day,import_w,import_at_jst,export_w,export_at_jst", "2026-03-29,,,,"]
    assert lines[2].startswith(f"2026-03-30,{peaks[1]['import_w']},2026-03-30T")


def test_limits_are_stated_and_enforced(new_client, data, app):
    x, _, _ = data
    viewer = login(new_client(), "viewer@a.test")
    energy = f"/api/v1/meters/{x.id}/energy"

    def span(days: int) -> dict:
        first = date(2020, 1, 1)
        return {"from": str(first), "to": str(first + timedelta(days=days - 1))}

    for period in ("slot", "hour", "day", "month"):
        limit = series.MAX_DAYS[period]
        assert viewer.get(energy, params={**span(limit), "period": period}).status_code == 200
        problem = assert_problem(viewer.get(energy, params={**span(limit + 1), "period": period}),
                                 400)  # fmt: skip
        assert f"at most {limit:,} days" in problem["detail"]
    assert_problem(viewer.get(energy, params={"from": "2026-04-02", "to": "2026-04-01"}), 400)
    assert_problem(viewer.get("/api/v1/energy", params=span(series.MAX_DAYS["slot"] + 1)), 400)
    assert_problem(viewer.get(f"/api/v1/meters/{x.id}/peaks", params=span(3661)), 400)
    csv_url = "/api/v1/energy/meters.csv"
    assert viewer.get(csv_url, params=span(series.MAX_TENANT_CSV_DAYS)).status_code == 200
    assert_problem(viewer.get(csv_url, params=span(series.MAX_TENANT_CSV_DAYS + 1)), 400)

    power = f"/api/v1/meters/{x.id}/power"
    month = {"start": "2026-03-01T00:00", "end": "2026-04-01T00:00"}  # 31 days
    assert viewer.get(power, params=month).status_code == 200
    assert_problem(viewer.get(power, params={**month, "end": "2026-04-01T00:00:01"}), 400)
    assert_problem(viewer.get(power, params={**month, "end": month["start"]}), 400)
    assert_problem(viewer.get(power, params={**month, "max_points": 5001}), 422)
    assert_problem(viewer.get(power, params={**month, "max_points": 9}), 422)
    assert_problem(viewer.get(energy, params={"from": "2026-13-01", "to": "2026-13-02"}), 422)
    assert_problem(viewer.get(energy, params={**span(1), "period": "week"}), 422)

    paths = app.openapi()["paths"]
    described = {
        "/api/v1/meters/{meter_id}/energy": ("93", "3,660"),
        "/api/v1/energy": ("93", "3,660"),
        "/api/v1/energy/meters.csv": (str(series.MAX_TENANT_CSV_DAYS),),
        "/api/v1/meters/{meter_id}/power": ("31 days", "5,000"),
        "/api/v1/meters/{meter_id}/peaks": ("3,660",),
    }
    for path, figures in described.items():
        text = paths[path]["get"]["description"]
        assert all(f in text for f in figures), (path, text)
        ok = paths[path]["get"]["responses"]["200"]["content"]
        assert "text/csv" in ok
        if path != "/api/v1/energy/meters.csv":  # the JSON answer is a described model
            schema = ok["application/json"]["schema"]
            assert "$ref" in schema or "$ref" in schema.get("items", {}), (path, schema)


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_another_tenants_meter_is_404_on_every_series(new_client, data, fmt):
    x, _, _ = data
    other = login(new_client(), "viewer@b.test")
    day = {"from": "2026-03-30", "to": "2026-03-30", "format": fmt}
    asks = {
        "energy": day,
        "slots": {"day": "2026-03-30", "format": fmt},
        "power": {"start": "2026-03-30T00:00", "end": "2026-03-31T00:00", "format": fmt},
        "peaks": day,
        "current": {},
    }
    for what, params in asks.items():
        assert_problem(other.get(f"/api/v1/meters/{x.id}/{what}", params=params), 404)
    # Tenant B's own totals hold none of A's energy.
    theirs = _get(other, "/api/v1/energy", **{"from": "2026-03-30", "to": "2026-03-30"})
    assert theirs["meters"] == 0 and theirs["total_wh"] == 0
    assert all(v["wh"] is None for v in theirs["values"])
    assert _get(other, "/api/v1/energy/peak", day="2026-03-30") is None
