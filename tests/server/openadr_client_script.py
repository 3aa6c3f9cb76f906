"""OpenADR 3.0.1 through openadr3-client (ElaadNL), the independent client of issue 20.

Run by tests/server/test_openadr_client.py with the interpreter of .venv-openadr (Python
3.12 or newer, as the library needs; the server runs on 3.11), never imported by Kenshin's
tests and importing nothing of Kenshin: only the library's own factories and models speak
to the VTN here, no HTTP is written by hand.

Reads a JSON object on stdin (secrets stay out of the process list):

    {"vtn": base URL, "bl": {"client_id", "client_secret"},
     "ven": {"client_id", "client_secret"}, "callback_url": ..., "callback_token": ...}

and goes round as business logic (a program, then an event with intervals and payloads)
and as a VEN (a subscription to the program's events with a callbackUrl, reading the
event, a report for it), business logic reading the report back and renaming the event. Or, with
``{"vtn", "ven", "foreign_event", "foreign_program"}``, tries as that VEN to read another
tenant's objects and says what the library raised. Prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta

import requests
from openadr3_client.bl.http_factory import BusinessLogicHttpClientFactory
from openadr3_client.oadr301.models.event.event import (
    EventUpdate,
    Interval,
    IntervalPeriod,
    NewEvent,
)
from openadr3_client.oadr301.models.event.event_payload import (
    EventPayload,
    EventPayloadDescriptor,
    EventPayloadType,
)
from openadr3_client.oadr301.models.program.program import NewProgram
from openadr3_client.oadr301.models.report.report import NewReport, ReportResource
from openadr3_client.oadr301.models.report.report_payload import (
    ReportDescriptor,
    ReportPayload,
    ReportPayloadType,
    ReportReadingType,
)
from openadr3_client.oadr301.models.subscriptions.subscription import (
    NewSubscription,
    Object,
    ObjectOperation,
    Operation,
)
from openadr3_client.oadr301.models.unit import Unit
from openadr3_client.ven.http_factory import VirtualEndNodeHttpClientFactory
from openadr3_client.version import OADRVersion

# The test's VTN is plain HTTP on the loopback: oauthlib refuses to send client
# credentials over it unless told this is a test (openadr3-client's 3.0.1 clients have
# no HTTPS rule of their own; `allow_insecure_http` is for 3.1).
os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

PRICE_JPY_KWH = 45.5
REDUCTION_W = -500
USAGE_KWH = 0.42
START = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def clients(config: dict, role: str):
    factory = {
        "bl": BusinessLogicHttpClientFactory.create_http_bl_client,
        "ven": VirtualEndNodeHttpClientFactory.create_http_ven_client,
    }[role]
    return factory(
        config["vtn"],
        config[role]["client_id"],
        config[role]["client_secret"],
        token_url=f"{config['vtn']}/auth/token",
        allow_insecure_http=True,
        version=OADRVersion.OADR_301,
    )


def round_trip(config: dict) -> dict:
    bl = clients(config, "bl")
    ven = clients(config, "ven")
    price = EventPayloadDescriptor(
        payload_type=EventPayloadType.PRICE, units=Unit.KWH, currency="JPY"
    )
    program = bl.programs.create_program(
        NewProgram(
            program_name="kenshin-dr-lib",
            program_long_name="デモ電力 省エネ要請",
            retailer_name="demo-denryoku",
            country="JP",
            payload_descriptors=(price,),
        )
    )
    subscription = ven.subscriptions.create_subscription(
        NewSubscription(
            client_name="ven-lib",
            program_id=program.id,
            object_operations=(
                ObjectOperation(
                    objects=(Object.EVENT,),
                    operations=(Operation.POST, Operation.PUT),
                    callback_url=config["callback_url"],
                    bearer_token=config["callback_token"],
                ),
            ),
        )
    )
    event = bl.events.create_event(
        NewEvent(
            program_id=program.id,
            event_name="evening peak",
            priority=0,
            payload_descriptors=(price,),
            report_descriptors=(
                ReportDescriptor(
                    payload_type=ReportPayloadType.USAGE,
                    reading_type=ReportReadingType.DIRECT_READ,
                    units=Unit.KWH,
                ),
            ),
            interval_period=IntervalPeriod(start=START, duration=timedelta(minutes=30)),
            intervals=tuple(
                Interval(
                    id=i,
                    payloads=(
                        EventPayload(type=EventPayloadType.PRICE, values=(PRICE_JPY_KWH,)),
                        EventPayload(
                            type=EventPayloadType.DISPATCH_SETPOINT_RELATIVE,
                            values=(REDUCTION_W,),
                        ),
                    ),
                )
                for i in range(4)
            ),
        )
    )

    # The VEN reads what its notification points at: the program's events, then the one.
    listed = ven.events.get_events(target=None, pagination=None, program_id=program.id)
    read = ven.events.get_event_by_id(event.id)
    # No payloadDescriptors on the report: the library types a report's descriptors as
    # *event* payload descriptors (objectType EVENT_PAYLOAD_DESCRIPTOR), which the spec's
    # report (reportPayloadDescriptor) does not take.
    report = ven.reports.create_report(
        NewReport(
            program_id=program.id,
            event_id=read.id,
            client_name="ven-lib",
            report_name="evening peak usage",
            resources=(
                ReportResource(
                    resource_name="home-1",
                    intervals=(
                        Interval(
                            id=0,
                            payloads=(
                                ReportPayload(type=ReportPayloadType.USAGE, values=(USAGE_KWH,)),
                            ),
                        ),
                    ),
                ),
            ),
        )
    )
    reports = bl.reports.get_reports(
        pagination=None, program_id=None, event_id=event.id, client_name=None
    )
    # Business logic moves the event: the subscription's PUT.
    moved = bl.events.update_event_by_id(
        event.id, event.update(EventUpdate(event_name="evening peak, moved"))
    )
    first = read.intervals[0]
    return {
        "program_id": program.id,
        "subscription_id": subscription.id,
        "event_id": event.id,
        "report_id": report.id,
        "moved_event_name": moved.event_name,
        "listed_event_ids": [e.id for e in listed],
        "read": {
            "event_name": read.event_name,
            "program_id": read.program_id,
            "start": read.interval_period.start.isoformat(),
            "duration_s": read.interval_period.duration.total_seconds(),
            "intervals": len(read.intervals),
            "payloads": {str(p.type): list(p.values) for p in first.payloads},
        },
        "reports_of_event": [
            {
                "id": r.id,
                "event_id": r.event_id,
                "client_name": r.client_name,
                "usage": list(r.resources[0].intervals[0].payloads[0].values),
            }
            for r in reports
        ],
    }


def foreign(config: dict) -> dict:
    """As a VEN of another tenant: what the library says reading those objects."""
    ven = clients(config, "ven")
    answer: dict = {"listed_programs": [p.id for p in ven.programs.get_programs(None, None)]}
    for kind, read in (
        ("event", lambda: ven.events.get_event_by_id(config["foreign_event"])),
        ("program", lambda: ven.programs.get_program_by_id(config["foreign_program"])),
    ):
        try:
            got = read()
        except requests.HTTPError as err:
            answer[kind] = {"error": type(err).__name__, "status": err.response.status_code}
        else:
            answer[kind] = {"read": got.id}
    return answer


def main() -> None:
    config = json.load(sys.stdin)
    try:
        summary = foreign(config) if "foreign_event" in config else round_trip(config)
    except requests.HTTPError as err:  # what the VTN said, for the test's failure message
        sys.exit(f"{err}\n{err.response.text}")
    json.dump(summary, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
