"""The settlement export, the missing-slots report and the demand peaks, fed through the real
ingest: the export's kWh are the slot series' Wh digit for digit in both layouts and both
languages, gaps are empty cells, times are what Excel reads as dates, each tenant sees only
its own meters, and every range has its limit."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from kenshin.jst import JST
from kenshin.server.devices import registry
from kenshin.server.security import CredentialBox

from .conftest import KEY, assert_problem, login, udp_meter
from .test_series_api import DAYS, _feed

SPAN = {"from": "2026-05-30", "to": "2026-06-01"}
NUMBER = "0300111122223333444455"


@pytest.fixture
def metered(engine, world, fleet):
    """Tenant A: a meter with a supply point number and one lost boundary, a meter with
    three lost in a row, a meter without any data on a site whose customer id is a
    formula; tenant B: one meter of its own with the same days."""
    full, gappy = udp_meter(engine, world, fleet), udp_meter(engine, world, fleet)
    with engine.begin() as conn:
        registry.set_supply_point(conn, world.tenant_a, full.id, NUMBER, "system")
        evil = registry.add_site(
            conn, world.tenant_a, "system", customer_id="=HYPERLINK(1)", service_code="pss00000009"
        )
        silent = registry.add_meter(
            conn, world.tenant_a, CredentialBox(KEY), "system", site_id=evil.id, link="udp",
            udp_host="127.0.1.2",
        )  # fmt: skip
        site_b = registry.add_site(
            conn, world.tenant_b, "system", customer_id="B-ONLY", service_code="pss00000001"
        )
        gateway_b = registry.claim_gateway(
            conn, world.tenant_b, key=KEY, actor="system",
            claim_code=fleet["codes"]["GW-B"], site_id=site_b.id,
        )  # fmt: skip
        theirs = registry.add_meter(
            conn, world.tenant_b, CredentialBox(KEY), "system", site_id=site_b.id, link="udp",
            gateway_id=gateway_b.id, udp_host="127.0.1.3",
        )  # fmt: skip
    _feed(engine, full.id, skip={60})  # 2026-05-31 05:30 and 06:00 missing
    _feed(engine, gappy.id, skip={60, 61, 62})  # 05:30 to 07:00 missing
    _feed(engine, theirs.id, gateway="GW-B")
    return {"full": full.id, "gappy": gappy.id, "silent": silent.id, "theirs": theirs.id}


def _rows(answer) -> list[list[str]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.content.startswith("\ufeff".encode())  # Excel reads UTF-8 Japanese right
    assert b"\r\n" in answer.content
    return list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"), newline="")))


def _slots(client, meter_id: int, direction: str) -> dict[str, int | None]:
    """The slot series of the API: Excel's text of each slot's start -> Wh."""
    answer = client.get(
        f"/api/v1/meters/{meter_id}/energy", params={**SPAN, "direction": direction}
    )
    assert answer.status_code == 200, answer.text
    return {
        f"{datetime.fromisoformat(v['start']):%Y/%m/%d %H:%M}": v["wh"]
        for v in answer.json()["values"]
    }


def _wh(cell: str) -> int | None:
    """A kWh cell as the Wh it must be: exactly (three decimals), empty for none."""
    if cell == "":
        return None
    assert len(cell.split(".")[1]) == 3, cell
    return int(Decimal(cell) * 1000)


def test_the_export_is_the_slot_series_in_either_layout(new_client, metered):
    viewer = login(new_client(), "viewer@a.test")
    mine = (metered["full"], metered["gappy"], metered["silent"])
    api = {(m, d): _slots(viewer, m, d) for m in mine for d in ("normal", "reverse")}

    long = _rows(viewer.get("/api/v1/settlement.csv", params={**SPAN, "lang": "en"}))
    assert long[0] == [
        "Service code", "Customer ID", "Supply point number", "Meter ID", "Start", "End",
        "Bought (kWh)", "Sold (kWh)",
    ]  # fmt: skip
    assert len(long) == 1 + len(mine) * DAYS * 48
    assert [int(r[3]) for r in long[1 :: DAYS * 48]] == sorted(mine)  # meter by meter
    for _code, customer, point, meter, start, end, bought, sold in long[1:]:
        assert (_wh(bought), _wh(sold)) == (
            api[int(meter), "normal"][start],
            api[int(meter), "reverse"][start],
        ), (meter, start)
        slot = datetime.strptime(start, "%Y/%m/%d %H:%M")
        assert end == f"{slot + timedelta(minutes=30):%Y/%m/%d %H:%M}"
        assert point == (NUMBER if int(meter) == metered["full"] else "")
        if int(meter) == metered["silent"]:  # no data at all: empty, never 0; the
            assert (customer, bought, sold) == ("'=HYPERLINK(1)", "", "")  # formula quoted
    assert long[1][4:6] == ["2026/05/30 00:00", "2026/05/30 00:30"]
    assert long[DAYS * 48][4:6] == ["2026/06/01 23:30", "2026/06/02 00:00"]
    gaps = [r[4] for r in long[1:] if int(r[3]) == metered["gappy"] and r[6] == ""]
    assert gaps == ["2026/05/31 05:30", "2026/05/31 06:00", "2026/05/31 06:30", "2026/05/31 07:00"]

    wide = _rows(viewer.get("/api/v1/settlement.csv", params={**SPAN, "layout": "wide"}))
    assert wide[0][:7] == [
        "サービスコード", "お客様ID", "供給地点特定番号", "メーターID", "日付", "区分",
        "欠測コマ数",
    ]  # fmt: skip
    assert (wide[0][7], wide[0][-1], len(wide[0])) == ("00:00-00:30", "23:30-24:00", 7 + 48)
    assert len(wide) == 1 + len(mine) * DAYS * 2
    for row in wide[1:]:
        meter, day, direction = int(row[3]), row[4], {"買電": "normal", "売電": "reverse"}[row[5]]
        values = [_wh(c) for c in row[7:]]
        expected = [api[meter, direction][f"{day} {h[:5]}"] for h in wide[0][7:]]
        assert values == expected, (meter, day, direction)
        assert int(row[6]) == expected.count(None)
    assert [r[6] for r in wide[1:] if int(r[3]) == metered["gappy"]] == [
        "0", "0", "4", "4", "0", "0"
    ]  # fmt: skip

    bought = _rows(
        viewer.get(
            "/api/v1/settlement.csv",
            params={**SPAN, "direction": "normal", "q": "0300-1111-2222"},
        )
    )
    assert bought[0][-1] == "買電量(kWh)" and len(bought[0]) == 7
    assert {r[3] for r in bought[1:]} == {str(metered["full"])}
    by_site = viewer.get(
        "/api/v1/settlement.csv", params={**SPAN, "site_id": [999_999], "layout": "wide"}
    )
    assert len(_rows(by_site)) == 1  # the header alone

    # Another tenant's export holds its own meter only, whatever it asks for.
    other = login(new_client(), "viewer@b.test")
    theirs = _rows(other.get("/api/v1/settlement.csv", params=SPAN))
    assert {r[3] for r in theirs[1:]} == {str(metered["theirs"])}
    assert {r[1] for r in theirs[1:]} == {"B-ONLY"}
    for asked in ({"q": "C1"}, {"q": NUMBER}, {"site_id": [metered["full"]]}):
        assert len(_rows(other.get("/api/v1/settlement.csv", params={**SPAN, **asked}))) == 1

    limit = viewer.get("/api/v1/settlement.csv", params={"from": "2026-02-28", "to": "2026-06-01"})
    assert "93 days" in assert_problem(limit, 400)["detail"]
    assert_problem(
        viewer.get("/api/v1/settlement.csv", params={"from": "2026-06-01", "to": "2026-05-31"}),
        400,
    )
    assert_problem(viewer.get("/api/v1/settlement.csv", params={**SPAN, "layout": "tall"}), 422)


def test_missing_slots_per_meter_with_their_runs(new_client, metered):
    viewer = login(new_client(), "viewer@a.test")
    report = viewer.get("/api/v1/missing-slots", params=SPAN).json()
    assert report["expected_slots"] == DAYS * 48 and report["direction"] == "normal"
    by_meter = {m["meter_id"]: m for m in report["meters"]}
    assert set(by_meter) == {metered["full"], metered["gappy"], metered["silent"]}
    assert by_meter[metered["full"]]["supply_point"] == NUMBER
    assert by_meter[metered["full"]]["ranges"] == [
        {"start": "2026-05-31T05:30:00+09:00", "end": "2026-05-31T06:30:00+09:00", "slots": 2}
    ]
    assert by_meter[metered["gappy"]]["missing"] == 4
    assert by_meter[metered["gappy"]]["ranges"][0]["end"] == "2026-05-31T07:30:00+09:00"
    silent = by_meter[metered["silent"]]
    assert silent["missing"] == DAYS * 48 and len(silent["ranges"]) == 1
    # The report agrees with the slot series it is about.
    for meter_id, entry in by_meter.items():
        assert entry["missing"] == list(_slots(viewer, meter_id, "normal").values()).count(None)

    found = viewer.get("/api/v1/missing-slots", params={**SPAN, "q": "=HYPER"}).json()
    assert [m["meter_id"] for m in found["meters"]] == [metered["silent"]]
    sheet = _rows(
        viewer.get("/api/v1/missing-slots", params={**SPAN, "format": "csv", "lang": "en"})
    )
    assert sheet[0][4:] == ["Expected slots", "Missing slots", "Start", "End"]
    runs = [r for r in sheet[1:] if r[3] == str(metered["full"])]
    assert runs == [
        ["pss12345678", "C1", NUMBER, str(metered["full"]), "144", "2", "2026/05/31 05:30",
         "2026/05/31 06:30"]
    ]  # fmt: skip

    # Yesterday by default: whole, with nothing in it (the data is in May).
    yesterday = viewer.get("/api/v1/missing-slots").json()
    day = (datetime.now(JST) - timedelta(days=1)).date().isoformat()
    assert (yesterday["first"], yesterday["last"], yesterday["expected_slots"]) == (day, day, 48)
    assert {m["missing"] for m in yesterday["meters"]} == {48}
    # A day still running counts only the slots that have ended.
    today = datetime.now(JST)
    now_day = viewer.get("/api/v1/missing-slots", params={"from": today.date().isoformat()})
    assert now_day.json()["expected_slots"] <= (today.hour * 60 + today.minute) // 30

    other = login(new_client(), "viewer@b.test")
    theirs = other.get("/api/v1/missing-slots", params=SPAN).json()
    assert [(m["meter_id"], m["missing"]) for m in theirs["meters"]] == [(metered["theirs"], 0)]
    assert_problem(
        viewer.get("/api/v1/missing-slots", params={"from": "2026-01-01", "to": "2026-06-01"}),
        400,
    )


def test_demand_peak_is_the_largest_slot_twice(new_client, metered):
    viewer = login(new_client(), "viewer@a.test")
    meter_id = metered["gappy"]
    for direction in ("normal", "reverse"):
        slots = _slots(viewer, meter_id, direction)
        answer = viewer.get(
            f"/api/v1/meters/{meter_id}/demand", params={**SPAN, "direction": direction}
        )
        assert answer.status_code == 200, answer.text
        demand = answer.json()
        top = max(wh for wh in slots.values() if wh is not None)
        first_top = next(at for at, wh in slots.items() if wh == top)  # earliest on a tie
        peak = demand["peak"]
        assert (peak["wh"], peak["demand_w"]) == (top, 2 * top), direction
        assert f"{datetime.fromisoformat(peak['start']):%Y/%m/%d %H:%M}" == first_top
        assert [d["day"] for d in demand["days"]] == ["2026-05-30", "2026-05-31", "2026-06-01"]
        for day in demand["days"]:
            of_day = [wh for at, wh in slots.items() if at.startswith(day["day"].replace("-", "/"))]
            assert day["demand_w"] == 2 * max(wh for wh in of_day if wh is not None)
    assert viewer.get(f"/api/v1/meters/{metered['silent']}/demand", params=SPAN).json()[
        "peak"
    ] is None  # fmt: skip

    other = login(new_client(), "viewer@b.test")
    assert_problem(other.get(f"/api/v1/meters/{meter_id}/demand", params=SPAN), 404)
    year = {"from": "2025-05-30", "to": "2026-06-01"}  # 368 days: past the 366 allowed
    assert (
        "366 days"
        in assert_problem(viewer.get(f"/api/v1/meters/{meter_id}/demand", params=year), 400)[
            "detail"
        ]
    )
