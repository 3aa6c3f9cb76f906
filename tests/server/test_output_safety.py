"""Output safety (issue 16 item 3): CSV cells a spreadsheet would run as formulas are
neutralised; inputs that gave 500s (NUL characters, dates in year 1 or 9999, numbers like
1e400) are 4xx problems; a CSV is checked before its first byte and an error after that
breaks the download instead of ending a 200 early."""

from __future__ import annotations

import asyncio
import csv
import io

import pytest
from fastapi.testclient import TestClient

from kenshin.server.metering.csvout import csv_chunks, csv_response

from .conftest import World, assert_problem, login, udp_meter


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def test_formula_cells_are_neutralised_but_numbers_stay_numbers() -> None:
    row = ["=cmd|' /C calc'!A0", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "＝1", "ok", -1, -2.5, 0]
    _header, written = _rows(b"".join(csv_chunks(["h"] * len(row), [row])))
    assert written == [
        "'=cmd|' /C calc'!A0", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "'＝1", "ok",
        "-1", "-2.5", "0",
    ]  # fmt: skip


def test_the_tenants_slot_csv_neutralises_a_customer_id(
    client: TestClient, world: World, fleet
) -> None:
    """The attacker's customer id came out of meters.csv as it was, a formula for Excel."""
    login(client, "operator@a.test")
    evil = "=cmd|' /C calc'!A0"
    site = client.post("/api/v1/sites", json={"customer_id": evil, "service_code": "pss99999999"})
    assert site.status_code == 201, site.text
    meter = {"site_id": site.json()["id"], "link": "udp", "udp_host": "127.0.0.9"}
    assert client.post("/api/v1/meters", json=meter).status_code == 201
    answer = client.get(
        "/api/v1/energy/meters.csv", params={"from": "2026-06-01", "to": "2026-06-01"}
    )
    assert answer.status_code == 200
    customers = {row[2] for row in _rows(answer.content)[1:]}
    assert "'" + evil in customers and evil not in customers


NUL_BODIES = [
    ("post", "/api/v1/notices", {"kind": "info", "title": "a\x00b"}),
    ("post", "/api/v1/api-keys", {"name": "key\x00", "role": "viewer"}),
    ("post", "/api/v1/users", {"email": "a\x00@a.test", "password": "a long password"}),
    ("post", "/api/v1/sites", {"customer_id": "C\x00", "service_code": "pss11111111"}),
    ("patch", "/api/v1/settings/default", {"values": {"poll": {"note\x00": 1}}}),
    ("post", "/api/v1/webhooks", {"url": "https://example.com/\x00", "kinds": ["event"]}),
]


@pytest.mark.parametrize(("method", "path", "body"), NUL_BODIES, ids=[p for _, p, _ in NUL_BODIES])
def test_nul_characters_are_refused_with_422(
    client: TestClient, world: World, method: str, path: str, body: dict
) -> None:
    login(client, "admin@a.test")
    answer = getattr(client, method)(path, json=body)
    assert "NUL" in assert_problem(answer, 422)["detail"]


def test_nul_in_a_query_or_form_is_refused(client: TestClient, world: World) -> None:
    login(client, "admin@a.test")
    assert_problem(client.get("/api/v1/meters", params={"q": "a\x00"}), 422)
    form = {"email": "viewer@a.test\x00", "password": "x"}
    assert_problem(client.post("/login", data=form), 422)
    # A backslash followed by "u0000" is text like any other.
    notice = client.post("/api/v1/notices", json={"kind": "info", "title": "a\\u0000b"})
    assert notice.status_code == 201 and notice.json()["title"] == "a\\u0000b"


@pytest.mark.parametrize(
    "params",
    [
        {"period": "day", "from": "0001-01-01", "to": "0001-01-02"},
        {"period": "day", "from": "9999-12-30", "to": "9999-12-31"},
        {"period": "month", "from": "9999-12-01", "to": "9999-12-31"},
    ],
)
def test_dates_at_the_ends_of_the_calendar_are_422(
    client: TestClient, world: World, fleet, params: dict
) -> None:
    login(client, "viewer@a.test")
    assert_problem(client.get("/api/v1/energy", params=params), 422)


def test_the_tenant_csv_for_a_far_date_is_refused_before_its_first_byte(
    client: TestClient, world: World, fleet, engine
) -> None:
    """It answered 200 and then stopped mid-stream."""
    login(client, "viewer@a.test")
    for first, last in (("9999-12-01", "9999-12-31"), ("0001-01-01", "0001-01-02")):
        answer = client.get("/api/v1/energy/meters.csv", params={"from": first, "to": last})
        assert_problem(answer, 422)
    power = {"start": "0001-01-01T00:00", "end": "0001-01-02T00:00"}
    meter = udp_meter(engine, world, fleet)
    assert_problem(client.get(f"/api/v1/meters/{meter.id}/power", params=power), 422)


def test_plans_with_numbers_past_any_plan_are_refused(client: TestClient, world: World) -> None:
    login(client, "operator@a.test")
    for kwh in ("1e400", "1e15", "Infinity", "NaN"):
        plan = f"slot_start,kwh\n2026-11-25T00:00,{kwh}\n"
        assert_problem(client.put("/api/v1/procurement-plan.csv", content=plan), 400)
    for start in ("0001-01-01T00:00", "9999-12-31T23:30"):
        plan = f"slot_start,kwh\n{start},1\n"
        assert_problem(client.put("/api/v1/procurement-plan.csv", content=plan), 400)
    as_json = '[{"slot_start": "2026-11-25T00:00", "wh": 1e400}]'
    headers = {"Content-Type": "application/json"}
    assert_problem(client.put("/api/v1/procurement-plan", content=as_json, headers=headers), 422)
    year_one = '[{"slot_start": "0001-01-01T00:00", "wh": 1}]'
    assert_problem(client.put("/api/v1/procurement-plan", content=year_one, headers=headers), 422)


def _run(response) -> tuple[list[dict], BaseException | None]:
    sent: list[dict] = []

    async def receive() -> dict:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "method": "GET"}
    try:
        asyncio.run(response(scope, receive, send))
    except BaseException as err:
        return sent, err
    return sent, None


def test_a_csv_that_fails_before_its_first_byte_raises_in_the_handler() -> None:
    def broken():
        raise OverflowError("date value out of range")
        yield  # a generator

    with pytest.raises(OverflowError):
        csv_response("x.csv", ["a"], broken())


def test_a_csv_that_fails_mid_stream_is_aborted_not_ended() -> None:
    """Past the first chunk the error reaches the HTTP server, which drops the connection
    (uvicorn: no final chunk): never a body that ends as if it were whole."""

    def rows():
        for n in range(1200):
            if n == 900:
                raise RuntimeError("the database went away")
            yield [n]

    sent, error = _run(csv_response("x.csv", ["n"], rows()))
    assert isinstance(error, RuntimeError) or (
        isinstance(error, BaseExceptionGroup) and error.subgroup(RuntimeError) is not None
    )
    assert sent[0]["status"] == 200
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert bodies and all(m.get("more_body", False) for m in bodies)  # never the end


def test_csv_uploads_that_are_not_csv_are_400_and_422(client: TestClient, world: World) -> None:
    """schemathesis: a bare CR inside a field made the CSV reader raise (a 500); a short
    row of the factory's CSV had no public_key (None.strip(), a 500)."""
    login(client, "operator@a.test")
    fuzzed = "Å\x1f lý\r*-x\x84".encode()
    assert_problem(client.put("/api/v1/procurement-plan.csv", content=fuzzed), 400)
    assert_problem(
        client.put("/api/v1/procurement-plan.csv", content=b'slot_start,kwh\n"a\rb'), 400
    )
    root = login(client, "root@kenshin.test")
    short = "serial,model,public_key,claim_code\nGW-Z,m\n"
    answer = root.post(
        "/api/v1/gateways/import", content=short, headers={"Content-Type": "text/csv"}
    )
    assert answer.status_code == 200 and answer.json()["errors"], answer.text
