"""Series over the API, fed through the real ingest: every period sums its slots, JST
days start at 15:00 UTC, gaps stay gaps, CSVs open in Excel, tenants stay apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from kenshin.jst import JST
from kenshin.server import ingest
from kenshin.server import schema as s
from kenshin.sim.load import HouseholdProfile, LoadModel
from kenshin.sim.registers import MeterRegisters
from kenshin.wire import FixedTimeValue, InstantSample, MeterScale, ReadingsBatch, encode_publish

from .conftest import assert_problem, login, udp_meter

START = datetime(2026, 5, 30, 0, 0, tzinfo=JST)  # crosses into June on the third day
SLOT = timedelta(minutes=30)
DAYS = 3


def _feed(
    engine, meter_id: int, skip: set[int] = frozenset(), gateway: str = "GW-A"
) -> MeterRegisters:
    """Three days of a PV house's readings from START through the real ingest; `skip`:
    boundaries never sent (each leaves the two slots beside it missing)."""
    regs = MeterRegisters(
        LoadModel(HouseholdProfile.from_seed(11, pv=True)), install=START, anchor=START
    )
    for i in range(DAYS * 48 + 1):
        if i in skip:
            continue
        at = START + i * SLOT
        samples = tuple(
            InstantSample(
                int((at - timedelta(minutes=m)).timestamp()),
                regs.load.step_power_w(int((at - timedelta(minutes=m)).timestamp()) // 10),
            )
            for m in (20, 10)
        )
        fixed = (FixedTimeValue(int(at.timestamp()), *regs.raw(at)),)
        topic, payload = encode_publish(
            ReadingsBatch(i + 1, f"m{meter_id}", samples, fixed, MeterScale(1, 0x01, 6)), gateway
        )
        with engine.begin() as conn:
            assert ingest.handle(conn, topic, payload).kind == "readings"
    return regs


def test_every_period_sums_its_slots_on_jst_boundaries(new_client, engine, world, fleet):
    meter = udp_meter(engine, world, fleet)
    _feed(engine, meter.id, skip={60})  # one boundary lost: two slots missing
    viewer = login(new_client(), "viewer@a.test")
    url = f"/api/v1/meters/{meter.id}/energy"
    span = {"from": "2026-05-30", "to": "2026-06-01"}
    for direction in ("normal", "reverse"):
        slots = viewer.get(url, params={**span, "direction": direction}).json()
        assert len(slots["values"]) == DAYS * 48
        assert slots["values"][0]["start"] == "2026-05-30T00:00:00+09:00"
        missing = [v["start"] for v in slots["values"] if v["status"] == "missing"]
        assert missing == ["2026-05-31T05:30:00+09:00", "2026-05-31T06:00:00+09:00"]
        by = {}
        for period in ("hour", "day", "month"):
            by[period] = viewer.get(
                url, params={**span, "period": period, "direction": direction}
            ).json()
            assert by[period]["total_wh"] == slots["total_wh"], period
        assert len(by["hour"]["values"]) == DAYS * 24
        days = by["day"]["values"]
        assert [d["start"] for d in days] == [
            "2026-05-30T00:00:00+09:00", "2026-05-31T00:00:00+09:00", "2026-06-01T00:00:00+09:00"
        ]  # fmt: skip
        assert [d["complete"] for d in days] == [True, False, True]
        assert days[1]["slots"] == 46 and days[1]["expected_slots"] == 48
        for day in days:
            first = datetime.fromisoformat(day["start"])
            inside = [
                v["wh"] or 0
                for v in slots["values"]
                if first <= datetime.fromisoformat(v["start"]) < first + timedelta(days=1)
            ]
            assert day["wh"] == sum(inside)
        months = by["month"]["values"]
        assert [m["start"][:10] for m in months] == ["2026-05-01", "2026-06-01"]
        assert months[1]["wh"] == days[2]["wh"]

    tenant = viewer.get("/api/v1/energy", params={**span, "period": "day"}).json()
    mine = viewer.get(url, params={**span, "period": "day"}).json()
    assert [v["wh"] for v in tenant["values"]] == [v["wh"] for v in mine["values"]]
    peak = viewer.get("/api/v1/energy/peak", params={"day": "2026-05-30"}).json()
    day_slots = viewer.get(url, params={"from": "2026-05-30", "to": "2026-05-30"}).json()
    assert peak["wh"] == max(v["wh"] for v in day_slots["values"])
    assert peak["average_w"] == 2 * peak["wh"]

    csv = viewer.get(url, params={**span, "period": "day", "format": "csv"})
    assert csv.content.startswith("\ufeff".encode()) and csv.headers["content-type"].startswith(
        "text/csv"
    )
    lines = csv.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("start_jst,direction,wh") and len(lines) == 1 + DAYS

    other = login(new_client(), "viewer@b.test")
    assert_problem(other.get(url, params=span), 404)
    assert other.get("/api/v1/energy", params={**span, "period": "day"}).json()["total_wh"] == 0
    assert_problem(viewer.get(url, params={"from": "2026-06-01", "to": "2026-05-01"}), 400)
    assert_problem(viewer.get(url, params={"from": "2026-01-01", "to": "2026-06-01"}), 400)


def test_power_raw_or_in_buckets_and_daily_peaks(new_client, engine, world, fleet):
    meter = udp_meter(engine, world, fleet)
    _feed(engine, meter.id)
    viewer = login(new_client(), "viewer@a.test")
    url = f"/api/v1/meters/{meter.id}/power"
    raw = viewer.get(url, params={"start": "2026-05-30T00:00", "end": "2026-05-30T06:00"}).json()
    assert raw["bucket_s"] == 0 and len(raw["values"]) == 24  # two readings a half hour
    long = viewer.get(
        url, params={"start": "2026-05-30T00:00", "end": "2026-06-02T00:00", "max_points": 20}
    ).json()
    assert long["bucket_s"] > 0 and len(long["values"]) <= 20
    assert sum(v["count"] for v in long["values"]) == DAYS * 48 * 2
    every = viewer.get(url, params={"start": "2026-05-30T00:00", "end": "2026-06-02T00:00",
                                    "max_points": 5000}).json()  # fmt: skip
    assert max(v["max_w"] for v in long["values"]) == max(v["max_w"] for v in every["values"])
    assert_problem(viewer.get(url, params={"start": "2026-05-01T00:00", "end": "2026-07-01"}), 400)

    peaks = viewer.get(
        f"/api/v1/meters/{meter.id}/peaks", params={"from": "2026-05-30", "to": "2026-06-01"}
    ).json()["items"]
    assert len(peaks) == DAYS
    for peak in peaks:
        day = datetime.fromisoformat(f"{peak['day']}T00:00:00+09:00")
        readings = [
            v for v in every["values"]
            if day <= datetime.fromisoformat(v["at"]) < day + timedelta(days=1)
        ]  # fmt: skip
        assert peak["import_w"] == max(v["max_w"] for v in readings)
        if peak["export_w"] is not None:  # a PV house sells at noon
            assert peak["export_w"] == -min(v["min_w"] for v in readings)


def test_the_tenants_slot_csv_streams_every_meter_with_its_site(new_client, engine, world, fleet):
    meters = [udp_meter(engine, world, fleet) for _ in range(3)]
    with engine.begin() as conn:
        conn.execute(
            s.sites.update()
            .where(s.sites.c.id == fleet["site"].id)
            .values(customer_id="顧客-001")  # Japanese text must survive Excel
        )
        conn.execute(
            insert(s.slot_energy),
            [
                {
                    "meter_id": m.id,
                    "slot_start": (START + i * SLOT).astimezone(UTC),
                    "direction": 0,
                    "status": "measured",
                    "milliwatt_hours": 1000 * i,
                    "wh": i,
                }
                for m in meters
                for i in range(31 * 48)
            ],
        )
    viewer = login(new_client(), "viewer@a.test")
    with viewer.stream(
        "GET", "/api/v1/energy/meters.csv", params={"from": "2026-05-30", "to": "2026-06-29"}
    ) as answer:
        assert answer.status_code == 200
        chunks = list(answer.iter_bytes())
    text = b"".join(chunks).decode("utf-8-sig")
    lines = text.splitlines()
    assert lines[0] == "meter_id,service_code,customer_id,slot_start_jst,direction,status,wh"
    assert len(lines) == 1 + 3 * 31 * 48
    assert (
        lines[1]
        == f"{meters[0].id},pss12345678,顧客-001,2026-05-30T00:00:00+09:00,normal,measured,0"
    )
    assert len(chunks) > 1  # streamed, not built whole
    assert_problem(
        viewer.get("/api/v1/energy/meters.csv", params={"from": "2026-05-01", "to": "2026-06-30"}),
        400,
    )
    other = login(new_client(), "viewer@b.test")
    assert (
        other.get(
            "/api/v1/energy/meters.csv", params={"from": "2026-05-30", "to": "2026-06-01"}
        ).text.strip()
        == "\ufeffmeter_id,service_code,customer_id,slot_start_jst,direction,status,wh"
    )
