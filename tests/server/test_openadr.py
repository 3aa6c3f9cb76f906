"""The OpenADR 3 VTN (issue 20, first slice) through the real server under uvicorn: the
round trip of business logic and a VEN (program, event, subscription notification on a
real callback server, report), the tenant wall, tokens and their expiry, malformed objects.

These speak to the VTN with httpx, in the spec's shapes, as openadr3-client (ElaadNL)
does: its token request is requests-oauthlib's (client credentials in HTTP Basic, a form
body), its objects pydantic's camelCase dumps (durations as ISO 8601, `PT30M`). The
library itself, which needs Python 3.12, goes round in test_openadr_client.py."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import update

from kenshin.server import schema_base
from kenshin.server.app import create_app
from kenshin.server.openadr.tables import openadr_tokens

from .conftest import serving
from .openadr_support import BASE, World, admin, callback_server, make_client, token, until, vtn

PROGRAM = {
    "programName": "kenshin-dr",
    "programLongName": "デモ電力 省エネ要請",
    "retailerName": "demo-denryoku",
    "country": "JP",
    "payloadDescriptors": [
        {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "PRICE", "units": "KWH",
         "currency": "JPY"},
    ],
}  # fmt: skip


def event_for(program_id: str) -> dict:
    return {
        "programID": program_id,
        "eventName": "evening peak",
        "priority": 0,
        "payloadDescriptors": [
            {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "PRICE", "units": "KWH",
             "currency": "JPY"},
        ],
        "reportDescriptors": [{"payloadType": "USAGE", "readingType": "DIRECT_READ",
                               "units": "KWH"}],
        "intervalPeriod": {"start": "2026-12-06T08:00:00Z", "duration": "PT30M"},
        "intervals": [
            {"id": i, "payloads": [{"type": "PRICE", "values": [45.5]},
                                   {"type": "DISPATCH_SETPOINT_RELATIVE", "values": [-500]}]}
            for i in range(4)
        ],
    }  # fmt: skip


@pytest.fixture
def served(settings):
    app = create_app(settings.model_copy(update={"webhooks_allow_private": True}))
    world = World(app.state.engine)
    with serving(app) as base:
        yield app, world, base


def test_business_logic_and_a_ven_go_round(served):
    _app, _world, base = served
    with admin(base, "admin@a.test") as a:
        bl_made = make_client(a, "bl", "retail-desk")
        ven_made = make_client(a, "ven", "ven-1")
    bl = vtn(base, token(base, bl_made))
    ven = vtn(base, token(base, ven_made, basic=False))
    with callback_server() as hooks, bl, ven:
        program = bl.post("/programs", json=PROGRAM)
        assert program.status_code == 201, program.text
        program = program.json()
        assert program["objectType"] == "PROGRAM" and program["programName"] == "kenshin-dr"
        assert program["createdDateTime"].endswith("Z")

        subscription = ven.post("/subscriptions", json={
            "clientName": "ven-1", "programID": program["id"],
            "objectOperations": [{"objects": ["EVENT"], "operations": ["POST", "PUT"],
                                  "callbackUrl": hooks.url, "bearerToken": "cb-token"}],
        })  # fmt: skip
        assert subscription.status_code == 201, subscription.text

        event = bl.post("/events", json=event_for(program["id"]))
        assert event.status_code == 201, event.text
        event = event.json()
        until(lambda: len(hooks.received) == 1)
        note = hooks.received[0]
        assert note["headers"]["Authorization"] == "Bearer cb-token"
        assert note["body"]["objectType"] == "EVENT" and note["body"]["operation"] == "POST"
        assert note["body"]["object"] == event

        listed = ven.get("/events", params={"programID": program["id"]})
        assert listed.status_code == 200 and listed.json() == [event]
        read = ven.get(f"/events/{event['id']}").json()
        assert read["intervals"][0]["payloads"][1] == {
            "type": "DISPATCH_SETPOINT_RELATIVE", "values": [-500],
        }  # fmt: skip
        assert read["intervalPeriod"] == {"start": "2026-12-06T08:00:00Z", "duration": "PT30M",
                                          "randomizeStart": None}  # fmt: skip

        report = ven.post("/reports", json={
            "programID": program["id"], "eventID": event["id"], "clientName": "ven-1",
            "reportName": "evening peak usage",
            "payloadDescriptors": [{"objectType": "REPORT_PAYLOAD_DESCRIPTOR",
                                    "payloadType": "USAGE", "units": "KWH"}],
            "resources": [{"resourceName": "home-1", "intervals": [
                {"id": 0, "payloads": [{"type": "USAGE", "values": [0.42]}]}]}],
        })  # fmt: skip
        assert report.status_code == 201, report.text
        reports = bl.get("/reports", params={"eventID": event["id"]}).json()
        assert [r["id"] for r in reports] == [report.json()["id"]]
        assert reports[0]["resources"][0]["intervals"][0]["payloads"][0]["values"] == [0.42]

        # An update is notified too; the roles hold.
        changed = bl.put(f"/events/{event['id']}", json={**event_for(program["id"]),
                                                         "eventName": "moved"})  # fmt: skip
        assert changed.status_code == 200 and changed.json()["eventName"] == "moved"
        until(lambda: len(hooks.received) == 2)
        assert hooks.received[1]["body"]["operation"] == "PUT"
        assert ven.post("/programs", json={**PROGRAM, "programName": "x"}).status_code == 403
        assert bl.post("/reports", json={}).status_code in (400, 403)
        assert ven.delete(f"/events/{event['id']}").status_code == 403


def test_subscriptions_name_the_specs_operations(served):
    """3.0.1's objectOperations name HTTP methods (GET, POST, PUT, DELETE), as
    openadr3-client sends them; CREATE and UPDATE, this VTN's first names, still work."""
    _app, _world, base = served
    with admin(base, "admin@a.test") as a:
        bl = vtn(base, token(base, make_client(a, "bl", "desk")))
        ven = vtn(base, token(base, make_client(a, "ven", "ven-1")))
    with callback_server() as hooks, bl, ven:
        program = bl.post("/programs", json=PROGRAM).json()
        for name, operations in (
            ("post", ["POST"]),
            ("put", ["PUT"]),
            ("delete", ["DELETE"]),
            ("before", ["CREATE", "UPDATE"]),
        ):
            made = ven.post("/subscriptions", json={
                "clientName": "ven-1", "programID": program["id"],
                "objectOperations": [{"objects": ["EVENT"], "operations": operations,
                                      "callbackUrl": f"{hooks.url}?{name}"}],
            })  # fmt: skip
            assert made.status_code == 201, made.text
            assert made.json()["objectOperations"][0]["operations"] == operations
        unknown = ven.post("/subscriptions", json={
            "clientName": "ven-1", "programID": program["id"],
            "objectOperations": [{"objects": ["EVENT"], "operations": ["PATCH"],
                                  "callbackUrl": hooks.url}],
        })  # fmt: skip
        assert unknown.status_code == 400

        event = bl.post("/events", json=event_for(program["id"])).json()
        until(lambda: len(hooks.received) == 2)
        bl.put(f"/events/{event['id']}", json={**event_for(program["id"]), "eventName": "x"})
        until(lambda: len(hooks.received) == 4)
        assert bl.delete(f"/events/{event['id']}").status_code == 200
        until(lambda: len(hooks.received) == 5)
        told = sorted((c["path"].split("?")[1], c["body"]["operation"]) for c in hooks.received)
        assert told == [("before", "POST"), ("before", "PUT"), ("delete", "DELETE"),
                        ("post", "POST"), ("put", "PUT")]  # fmt: skip


def test_one_tenants_clients_never_see_anothers_objects(served):
    _app, _world, base = served
    with admin(base, "admin@a.test") as a, admin(base, "admin@b.test") as b:
        bl_a = vtn(base, token(base, make_client(a, "bl", "desk")))
        bl_b = vtn(base, token(base, make_client(b, "bl", "desk")))  # the same name: its own
        ven_b = vtn(base, token(base, make_client(b, "ven", "ven-1")))
    with bl_a, bl_b, ven_b:
        program = bl_a.post("/programs", json=PROGRAM).json()
        event = bl_a.post("/events", json=event_for(program["id"])).json()
        for client in (bl_b, ven_b):
            for path in (f"/programs/{program['id']}", f"/events/{event['id']}"):
                assert client.get(path).status_code == 404
            assert client.get("/programs").json() == []
            assert client.get("/events", params={"programID": program["id"]}).json() == []
        assert bl_b.put(f"/programs/{program['id']}", json=PROGRAM).status_code == 404
        assert bl_b.delete(f"/events/{event['id']}").status_code == 404
        refused = bl_b.post("/events", json=event_for(program["id"]))
        assert refused.status_code == 400 and "programID" in refused.json()["detail"]
        # B may have a program of the same name: each tenant its own VTN.
        assert bl_b.post("/programs", json=PROGRAM).status_code == 201
        assert bl_a.post("/programs", json=PROGRAM).status_code == 409


def test_tokens_expire_and_bad_secrets_get_none(served):
    app, _world, base = served
    url = f"{base}{BASE}/auth/token"
    with admin(base, "admin@a.test") as a:
        made = make_client(a, "bl", "desk")
        other = make_client(a, "ven", "ven-9")
        good = token(base, made)
        assert httpx_get(f"{base}{BASE}/programs", good).status_code == 200

        grant = {"grant_type": "client_credentials"}
        wrong = httpx_post(url, grant, (made["client_id"], "oas_wrong"))
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
        unknown = httpx_post(url, grant, ("oac_nobody", made["client_secret"]))
        assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
        bad_grant = httpx_post(url, {"grant_type": "password"}, (made["client_id"], "x"))
        assert bad_grant.status_code == 400
        assert bad_grant.json()["error"] == "unsupported_grant_type"
        assert httpx_get(f"{base}{BASE}/programs", "oat_made_up").status_code == 401
        assert httpx_get(f"{base}{BASE}/programs").status_code == 401

        with app.state.engine.begin() as conn:  # an hour on: the token has expired
            conn.execute(update(openadr_tokens).values(
                expires_at=schema_base.utcnow().replace(year=2000)))  # fmt: skip
        expired = httpx_get(f"{base}{BASE}/programs", good)
        assert expired.status_code == 401 and expired.json()["status"] == 401
        assert expired.headers["content-type"].startswith("application/problem+json")

        ven_token = token(base, other)
        revoked = a.delete(f"/api/v1/openadr/clients/{other['id']}")
        assert revoked.status_code == 204
        assert httpx_get(f"{base}{BASE}/programs", ven_token).status_code == 401
        assert (
            httpx_post(url, grant, (other["client_id"], other["client_secret"])).status_code == 401
        )
        listed = a.get("/api/v1/openadr/clients").json()["items"]
        assert [c["name"] for c in listed] == ["desk", "ven-9"]
        assert all("secret" not in str(c) for c in listed) and listed[1]["revoked_at"]

        # Guessing is counted like logins: past the limit, 429 with Retry-After.
        answers = [httpx_post(url, grant, (made["client_id"], "oas_guess")).status_code
                   for _ in range(12)]  # fmt: skip
        assert 429 in answers


def httpx_post(url: str, data: dict, auth: tuple[str, str]) -> httpx.Response:
    return httpx.post(url, data=data, auth=auth, timeout=10)


def httpx_get(url: str, bearer_token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else None
    return httpx.get(url, headers=headers, timeout=10)
