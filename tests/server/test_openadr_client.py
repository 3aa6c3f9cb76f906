"""The VTN against an independent OpenADR 3 client: openadr3-client (ElaadNL, from PyPI),
issue 20's "Done when". The library needs Python 3.12 and Kenshin runs on 3.11, so it
lives in an environment of its own, .venv-openadr (`make .venv-openadr/.stamp`, made by
`make test`), and speaks to the real server under uvicorn from a subprocess:
`openadr_client_script.py`, which uses only the library's factories and models.

As business logic it makes a program and an event (four half hours, a price and a
reduction each); as a VEN a subscription with a callbackUrl to a receiver here, reads the
event and reports on it; business logic then renames the event. Checked from Kenshin's
side: the objects in tenant A's VTN hold what the library sent, the receiver got the
VTN's notifications (POST, then PUT) with the subscription's bearer token, the report
names the event; and a VEN of tenant B, through the library too, is refused them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from unittest.mock import ANY

import pytest

from kenshin.server.app import create_app
from kenshin.server.openadr import queries

from .conftest import serving
from .openadr_support import BASE, World, admin, callback_server, make_client, until

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-openadr"
SCRIPT = Path(__file__).with_name("openadr_client_script.py")
CALLBACK_TOKEN = "cb-token-lib"


@pytest.fixture(scope="module")
def library_python() -> Path:
    if not (VENV / ".stamp").exists():
        reason = (
            f"openadr3-client's environment {VENV.name} is not made: `make {VENV.name}/.stamp` "
            "(it needs a Python 3.12 to 3.14; scripts/ensure-openadr-client says how to "
            "get one)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"required under CI=true: {reason}")
        pytest.skip(reason)
    return VENV / "bin" / "python"


def library(python: Path, config: dict) -> dict:
    """Run the script with `config` on its stdin; its JSON summary."""
    done = subprocess.run(
        [str(python), str(SCRIPT)], input=json.dumps(config), capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def credentials(made: dict) -> dict:
    return {"client_id": made["client_id"], "client_secret": made["client_secret"]}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_openadr3_client_goes_round_as_business_logic_and_ven(settings, library_python):
    app = create_app(settings.model_copy(update={"webhooks_allow_private": True}))
    world = World(app.state.engine)
    with serving(app) as base, callback_server() as hooks:
        with admin(base, "admin@a.test") as a, admin(base, "admin@b.test") as b:
            bl = make_client(a, "bl", "retail-desk")
            ven = make_client(a, "ven", "ven-lib")
            stranger = make_client(b, "ven", "ven-lib")  # the same name, in tenant B
        vtn = base + BASE
        seen = library(library_python, {
            "vtn": vtn, "bl": credentials(bl), "ven": credentials(ven),
            "callback_url": hooks.url, "callback_token": CALLBACK_TOKEN,
        })  # fmt: skip

        # What the VEN read through the library is what business logic sent.
        assert seen["listed_event_ids"] == [seen["event_id"]]
        assert seen["read"] == {
            "event_name": "evening peak", "program_id": seen["program_id"],
            "start": "2026-12-06T08:00:00+00:00", "duration_s": 1800.0, "intervals": 4,
            "payloads": {"PRICE": [45.5], "DISPATCH_SETPOINT_RELATIVE": [-500]},
        }  # fmt: skip
        assert seen["reports_of_event"] == [{
            "id": seen["report_id"], "event_id": seen["event_id"], "client_name": "ven-lib",
            "usage": [0.42],
        }]  # fmt: skip

        # In tenant A's VTN, as Kenshin keeps them.
        with app.state.engine.connect() as conn:

            def stored(kind: str, object_id: str) -> dict:
                row = queries.get_object(conn, world.tenant_a, kind, object_id)
                assert row is not None, (kind, object_id)
                return queries.spec_json(row)

            program = stored("PROGRAM", seen["program_id"])
            event = stored("EVENT", seen["event_id"])
            report = stored("REPORT", seen["report_id"])
            subscription = stored("SUBSCRIPTION", seen["subscription_id"])
            assert queries.get_object(conn, world.tenant_b, "EVENT", seen["event_id"]) is None
        assert program["programName"] == "kenshin-dr-lib" and program["country"] == "JP"
        assert program["programLongName"] == "デモ電力 省エネ要請"
        assert program["payloadDescriptors"] == [{
            "objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "PRICE", "units": "KWH",
            "currency": "JPY",
        }]  # fmt: skip
        assert event["programID"] == seen["program_id"]
        assert event["intervalPeriod"]["start"] == "2026-12-06T08:00:00Z"
        assert event["intervalPeriod"]["duration"] == "PT30M"
        assert [i["id"] for i in event["intervals"]] == [0, 1, 2, 3]
        assert all(
            [(p["type"], p["values"]) for p in i["payloads"]]
            == [("PRICE", [45.5]), ("DISPATCH_SETPOINT_RELATIVE", [-500])]
            for i in event["intervals"]
        )
        assert event["reportDescriptors"][0]["payloadType"] == "USAGE"
        assert report["eventID"] == seen["event_id"]
        assert report["programID"] == seen["program_id"]
        assert report["clientName"] == "ven-lib"
        usage = report["resources"][0]
        assert usage["resourceName"] == "home-1"
        assert usage["intervals"][0]["payloads"] == [{"type": "USAGE", "values": [0.42]}]
        assert subscription["objectOperations"][0] | {"bearerToken": None} == {
            "objects": ["EVENT"], "operations": ["POST", "PUT"], "callbackUrl": hooks.url,
            "bearerToken": None,
        }  # fmt: skip

        # The receiver: the VTN's notifications of the new event and of its renaming (which
        # is what Kenshin now holds), with the subscription's bearer token.
        until(lambda: len(hooks.received) >= 2)
        made, moved = sorted(hooks.received, key=lambda c: c["body"]["operation"])
        assert all(c["headers"]["Authorization"] == f"Bearer {CALLBACK_TOKEN}"
                   for c in hooks.received)  # fmt: skip
        assert made["body"]["objectType"] == "EVENT" and made["body"]["operation"] == "POST"
        assert made["body"]["object"] == {**event, "eventName": "evening peak",
                                          "modificationDateTime": ANY}  # fmt: skip
        assert moved["body"]["objectType"] == "EVENT" and moved["body"]["operation"] == "PUT"
        assert moved["body"]["object"] == event
        assert seen["moved_event_name"] == event["eventName"] == "evening peak, moved"

        # Tenant B's VEN, through the library: lists nothing, reads neither.
        refused = library(library_python, {
            "vtn": vtn, "ven": credentials(stranger),
            "foreign_event": seen["event_id"], "foreign_program": seen["program_id"],
        })  # fmt: skip
        assert refused == {
            "listed_programs": [],
            "event": {"error": "HTTPError", "status": 404},
            "program": {"error": "HTTPError", "status": 404},
        }
