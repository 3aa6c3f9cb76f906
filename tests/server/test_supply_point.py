"""The supply point number (供給地点特定番号) a retailer settles on: typed with hyphens or
spaces and kept as 22 digits, unique within a tenant (not across), searched in the meter
and site lists, set one by one or from a CSV with per-row errors; the database refuses
what the API would."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from kenshin.server import schema as s

from .conftest import assert_problem, login, udp_meter

NUMBER = "0300111122223333444455"
TYPED = "03-0011-1122-2233 3344 4455"  # as printed on a notice, a space or two in it
FULL_WIDTH = "０３００１１１１２２２２３３３３４４４４５５"


def test_typed_kept_as_digits_unique_per_tenant_and_searchable(new_client, engine, world, fleet):
    operator = login(new_client(), "operator@a.test")
    site_id = fleet["site"].id
    made = operator.post(
        "/api/v1/meters",
        json={"site_id": site_id, "link": "udp", "udp_host": "h1", "supply_point": TYPED},
    )
    assert made.status_code == 201, made.text
    assert made.json()["supply_point"] == NUMBER
    meter_id = made.json()["id"]
    for wrong in ("0300111122223333", "03001111222233334444555", "0300-1111-2222-3333-4444-5x"):
        body = {"site_id": site_id, "link": "udp", "udp_host": "h2", "supply_point": wrong}
        assert_problem(operator.post("/api/v1/meters", json=body), 422)
    again = {"site_id": site_id, "link": "udp", "udp_host": "h2", "supply_point": FULL_WIDTH}
    assert_problem(operator.post("/api/v1/meters", json=again), 409)

    for q in ("1111-2222", "03001111", "１１１１２２"):
        found = operator.get("/api/v1/meters", params={"q": q}).json()["items"]
        assert [m["id"] for m in found] == [meter_id], q
        sites = operator.get("/api/v1/sites", params={"q": q}).json()["items"]
        assert [x["id"] for x in sites] == [site_id], q
    assert operator.get("/api/v1/meters", params={"q": "9999-0000"}).json()["items"] == []

    # Another tenant may hold the same number (it is unique per tenant); it sees none of A's.
    admin_b = login(new_client(), "admin@b.test")
    site_b = admin_b.post(
        "/api/v1/sites", json={"customer_id": "B1", "service_code": "pss00000001"}
    ).json()
    theirs = admin_b.post(
        "/api/v1/meters",
        json={"site_id": site_b["id"], "link": "udp", "udp_host": "h", "supply_point": NUMBER},
    )
    assert theirs.status_code == 201, theirs.text
    found_b = admin_b.get("/api/v1/meters", params={"q": "0300"}).json()["items"]
    assert [m["id"] for m in found_b] == [theirs.json()["id"]]
    assert_problem(admin_b.patch(f"/api/v1/meters/{meter_id}", json={"supply_point": None}), 404)

    # Changed and cleared one at a time.
    other = udp_meter(engine, world, fleet)
    assert_problem(operator.patch(f"/api/v1/meters/{other.id}", json={"supply_point": TYPED}), 409)
    cleared = operator.patch(f"/api/v1/meters/{meter_id}", json={"supply_point": ""})
    assert cleared.json()["supply_point"] is None
    moved = operator.patch(f"/api/v1/meters/{other.id}", json={"supply_point": TYPED})
    assert moved.json()["supply_point"] == NUMBER
    viewer = login(new_client(), "viewer@a.test")
    assert_problem(viewer.patch(f"/api/v1/meters/{other.id}", json={"supply_point": ""}), 403)


def test_csv_import_sets_numbers_and_reports_bad_rows(new_client, engine, world, fleet):
    first, second = udp_meter(engine, world, fleet), udp_meter(engine, world, fleet)
    operator = login(new_client(), "operator@a.test")
    text = (
        "\ufeffmeter_id,service_code,supply_point\r\n"
        f"{first.id},,{TYPED}\r\n"
        f"{second.id},,{NUMBER}\r\n"  # first's number: refused, the row skipped
        f"{second.id},,0400-0000-0000-0000-0000-01\r\n"
        "999999,,0400000000000000000002\r\n"  # no such meter (of this tenant)
        f"{first.id},,{NUMBER}\r\n"  # already so
        f"{second.id},,=1+2\r\n"
        ",pss12345678,0400000000000000000003\r\n"  # the site has two meters: which?
    )
    answer = operator.post(
        "/api/v1/meters/supply-points", content=text, headers={"Content-Type": "text/csv"}
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["set"], report["already_known"]) == (2, 1)
    assert [e.split(":")[0] for e in report["errors"]] == ["line 3", "line 5", "line 7", "line 8"]
    assert "several meters" in report["errors"][-1]
    numbers = {m["id"]: m["supply_point"] for m in operator.get("/api/v1/meters").json()["items"]}
    assert numbers == {first.id: NUMBER, second.id: "0400000000000000000001"}
    no_key = operator.post(
        "/api/v1/meters/supply-points",
        content="supply_point\n" + NUMBER,
        headers={"Content-Type": "text/csv"},
    )
    assert "meter_id" in assert_problem(no_key, 422)["detail"]
    viewer = login(new_client(), "viewer@a.test")
    refused = viewer.post(
        "/api/v1/meters/supply-points", content=text, headers={"Content-Type": "text/csv"}
    )
    assert_problem(refused, 403)


@pytest.mark.parametrize("stored", ["0300-1111-2222-3333-44", "030011112222333344445x", "1" * 21])
def test_the_database_holds_only_22_digits(engine, world, fleet, stored):
    meter = udp_meter(engine, world, fleet)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(update(s.meters).where(s.meters.c.id == meter.id).values(supply_point=stored))
