"""The OpenADR VTN's objects at the door: malformed ones are the spec's 400 problem,
callback URLs into private networks are refused unless allowed, VENs and their resources
are the VEN's own (issue 20, first slice). In process (TestClient): no callback is sent."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from kenshin.server.app import create_app
from kenshin.server.openadr.queries import parse_id

from .conftest import PASSWORD, World, assert_problem, login
from .test_openadr import PROGRAM, event_for

BASE = "/openadr3/3.0.1"


def _token(client: TestClient, made: dict) -> dict[str, str]:
    answer = client.post(
        f"{BASE}/auth/token", data={"grant_type": "client_credentials"},
        auth=(made["client_id"], made["client_secret"]),
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@pytest.fixture
def vtn(settings):
    """(client, headers of a bl client, headers of VEN ven-1, of VEN ven-2) in tenant A."""
    app = create_app(settings)  # webhooks_allow_private off, as in production
    with TestClient(app) as client:
        World(app.state.engine)
        login(client, "admin@a.test", PASSWORD)
        made = {
            name: client.post("/api/v1/openadr/clients", json={"role": role, "name": name})
            for role, name in (("bl", "desk"), ("ven", "ven-1"), ("ven", "ven-2"))
        }
        client.cookies.clear()
        yield client, *(_token(client, m.json()) for m in made.values())


def test_malformed_objects_are_a_400_problem(vtn):
    client, bl, *_ = vtn
    program = client.post(f"{BASE}/programs", json=PROGRAM, headers=bl).json()
    good = event_for(program["id"])
    bad = [
        {**good, "intervals": None},  # intervals are required
        {k: v for k, v in good.items() if k != "programID"},
        {**good, "intervalPeriod": {"start": "2026-12-06T08:00:00Z", "duration": "P"}},
        {**good, "intervalPeriod": {"start": "tomorrow"}},
        {**good, "priority": -1},
        {**good, "intervals": [{"id": 0, "payloads": [{"type": "", "values": [1]}]}]},
        {**good, "intervals": [{"id": 2**40, "payloads": []}]},
        [good],
    ]
    for body in bad:
        problem = assert_problem(client.post(f"{BASE}/events", json=body, headers=bl), 400)
        assert problem["detail"].startswith("invalid request")
    json_header = {**bl, "Content-Type": "application/json"}
    not_json = client.post(f"{BASE}/programs", content=b"{", headers=json_header)
    assert_problem(not_json, 400)
    assert_problem(client.post(f"{BASE}/programs", json={"programName": ""}, headers=bl), 400)
    assert_problem(client.get(f"{BASE}/programs", params={"limit": 51}, headers=bl), 400)
    assert_problem(client.get(f"{BASE}/programs/no-such", headers=bl), 404)
    nonsense = client.post(f"{BASE}/events", json={**good, "programID": "999999"}, headers=bl)
    assert_problem(nonsense, 400)


def test_callbacks_into_private_networks_are_refused(vtn):
    client, bl, ven, _ = vtn
    program = client.post(f"{BASE}/programs", json=PROGRAM, headers=bl).json()
    for url in ("http://127.0.0.1:9/x", "http://10.0.0.1/x", "ftp://example.com/x", "nope"):
        body = {
            "clientName": "ven-1", "programID": program["id"],
            "objectOperations": [{"objects": ["EVENT"], "operations": ["POST"],
                                  "callbackUrl": url}],
        }  # fmt: skip
        refused = client.post(f"{BASE}/subscriptions", json=body, headers=ven)
        assert "callbackUrl" in assert_problem(refused, 400)["detail"]


def test_vens_and_resources_are_their_vens_own(vtn):
    client, bl, ven1, ven2 = vtn
    ven = client.post(f"{BASE}/vens", json={"venName": "ven-1"}, headers=ven1)
    assert ven.status_code == 201, ven.text
    ven = ven.json()
    assert ven["objectType"] == "VEN"
    resource = client.post(
        f"{BASE}/vens/{ven['id']}/resources",
        json={"resourceName": "battery-1",
              "attributes": [{"type": "MAX_POWER_EXPORT", "values": [3000]}]},
        headers=ven1,
    )  # fmt: skip
    assert resource.status_code == 201, resource.text
    resource = resource.json()
    assert resource["venID"] == ven["id"] and resource["objectType"] == "RESOURCE"

    # Business logic sees every VEN; another VEN sees neither the VEN nor its resources.
    assert [v["venName"] for v in client.get(f"{BASE}/vens", headers=bl).json()] == ["ven-1"]
    listed = client.get(f"{BASE}/vens/{ven['id']}/resources", headers=bl).json()
    assert listed == [resource]
    assert client.get(f"{BASE}/vens", headers=ven2).json() == []
    assert_problem(client.get(f"{BASE}/vens/{ven['id']}", headers=ven2), 404)
    path = f"{BASE}/vens/{ven['id']}/resources/{resource['id']}"
    assert_problem(client.get(path, headers=ven2), 404)
    assert_problem(client.delete(path, headers=ven2), 404)

    # venName is unique in the VTN; a resource's name within its VEN.
    assert_problem(client.post(f"{BASE}/vens", json={"venName": "ven-1"}, headers=bl), 409)
    again = client.post(f"{BASE}/vens/{ven['id']}/resources",
                        json={"resourceName": "battery-1"}, headers=ven1)  # fmt: skip
    assert_problem(again, 409)
    renamed = client.put(path, json={"resourceName": "battery-2"}, headers=ven1)
    assert renamed.status_code == 200 and renamed.json()["resourceName"] == "battery-2"
    assert client.delete(f"{BASE}/vens/{ven['id']}", headers=ven1).status_code == 200
    assert_problem(client.get(path, headers=bl), 404)  # gone with its VEN


def test_a_ven_sees_its_own_reports_and_subscriptions_only(vtn):
    client, bl, ven1, ven2 = vtn
    program = client.post(f"{BASE}/programs", json=PROGRAM, headers=bl).json()
    event = client.post(f"{BASE}/events", json=event_for(program["id"]), headers=bl).json()
    report = client.post(f"{BASE}/reports", headers=ven1, json={
        "programID": program["id"], "eventID": event["id"], "clientName": "ven-1",
        "resources": [{"resourceName": "home-1", "intervals": [
            {"id": 0, "payloads": [{"type": "USAGE", "values": [1.5]}]}]}],
    }).json()  # fmt: skip
    assert client.get(f"{BASE}/reports", headers=ven2).json() == []
    assert_problem(client.get(f"{BASE}/reports/{report['id']}", headers=ven2), 404)
    assert client.get(f"{BASE}/reports/{report['id']}", headers=ven1).json() == report
    assert_problem(client.delete(f"{BASE}/programs/{program['id']}", headers=bl), 409)
    # A report's event must be of its program.
    other = client.post(f"{BASE}/programs", json={**PROGRAM, "programName": "other"},
                        headers=bl).json()  # fmt: skip
    wrong = client.post(f"{BASE}/reports", headers=ven1, json={
        "programID": other["id"], "eventID": event["id"], "clientName": "ven-1",
        "resources": [{"resourceName": "r", "intervals": []}]})  # fmt: skip
    assert_problem(wrong, 400)


@given(st.text(max_size=24))
def test_an_object_id_is_ascii_digits_or_none_of_ours(text):
    """'²' is a digit to str.isdigit() but not to int(): a 500 schemathesis found."""
    parsed = parse_id(text)
    assert parsed is None or (str(parsed) == text.lstrip("0") or parsed == 0)
    assert parse_id("²") is None and parse_id("١٢") is None and parse_id("42") == 42
