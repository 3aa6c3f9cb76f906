"""Webhooks end to end: slots from the real ingest and events, signed POSTs to a real HTTP
receiver on loopback that fails, goes away and comes back, and loses nothing."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from kenshin.echonet.edt import JST
from kenshin.ports import free_tcp_port
from kenshin.server import ingest
from kenshin.server import schema as s
from kenshin.server.events import record_event
from kenshin.server.webhooks.dispatcher import (
    BACKOFF,
    UnsafeTarget,
    check_target,
    collect,
    send_due,
)
from kenshin.server.webhooks.signing import WebhookSignatureError, sign, verify
from kenshin.wire import FixedTimeValue, MeterScale, ReadingsBatch, encode_publish

from .conftest import assert_problem, login, udp_meter

START = datetime(2026, 7, 1, 12, 0, tzinfo=JST)


class Receiver:
    """A retailer's server: checks each signature, answers `fail` times with 500 first."""

    def __init__(self, secret: str = "", fail: int = 0) -> None:
        self.secret, self.fail, self.got = secret, fail, []
        self.port = free_tcp_port()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                verify(receiver.secret, body, self.headers["X-Kenshin-Signature"],
                       tolerance_s=10**9)  # fmt: skip
                if receiver.fail > 0:
                    receiver.fail -= 1
                    self.send_response(500)
                else:
                    receiver.got.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/kenshin"


@pytest.fixture
def allow_loopback(app):
    app.state.settings = app.state.settings.model_copy(update={"webhooks_allow_private": True})


def _slots(engine, meter_id: int, boundaries: range, seq: int) -> None:
    values = tuple(
        FixedTimeValue(int((START + i * timedelta(minutes=30)).timestamp()), 1000 + 7 * i, 5)
        for i in boundaries
    )
    topic, payload = encode_publish(
        ReadingsBatch(seq, f"m{meter_id}", (), values, MeterScale(1, 0x01, 6)), "GW-A"
    )
    with engine.begin() as conn:
        assert ingest.handle(conn, topic, payload).kind == "readings"


def _dispatch(engine, app, now):
    with engine.begin() as conn:
        collect(conn, now)
    return send_due(engine, app.state.credential_box, now, allow_private=True)


def test_signatures_check_and_refuse():
    body = b'{"kind":"ping"}'
    header = sign("whsec_x", body, 1_700_000_000)
    assert verify("whsec_x", body, header, now=1_700_000_100) == 1_700_000_000
    for secret, data, now in (("other", body, 1_700_000_000), ("whsec_x", b"{}", 1_700_000_000),
                              ("whsec_x", body, 1_700_009_000)):  # fmt: skip
        with pytest.raises(WebhookSignatureError):
            verify(secret, data, header, now=now)
    with pytest.raises(UnsafeTarget):
        check_target("http://127.0.0.1/x", allow_private=False)
    with pytest.raises(UnsafeTarget):
        check_target("ftp://example.com/x", allow_private=True)


def test_slots_and_events_arrive_signed_through_failures_and_outages(
    new_client, app, engine, world, fleet, allow_loopback
):
    meter = udp_meter(engine, world, fleet)
    admin = login(new_client(), "admin@a.test")
    receiver = Receiver()
    hook = admin.post(
        "/api/v1/webhooks", json={"url": receiver.url, "kinds": ["slot.closed", "event"]}
    ).json()
    receiver.secret = hook["secret"]
    assert "secret" not in admin.get("/api/v1/webhooks").json()[0]

    now = datetime(2026, 7, 1, 4, 0, tzinfo=JST)
    receiver.start()
    receiver.fail = 2
    try:
        _slots(engine, meter.id, range(0, 3), 1)  # two slots get values
        with engine.begin() as conn:
            record_event(conn, tenant_id=world.tenant_a, code="gw_meter_swapped", severity="info")
        assert _dispatch(engine, app, now) == 0  # 500: the hook's later deliveries wait
        assert _dispatch(engine, app, now + timedelta(seconds=5)) == 0  # not due yet
        assert _dispatch(engine, app, now + BACKOFF[0]) == 0  # 500 again
        later = now + BACKOFF[0] + BACKOFF[1]
        assert _dispatch(engine, app, later) == 3
    finally:
        receiver.stop()
    event, *slots = receiver.got  # in the order they were made
    assert event["kind"] == "event" and event["code"] == "gw_meter_swapped"
    assert [x["kind"] for x in slots] == ["slot.closed"] * 2
    assert all(x["tenant_id"] == world.tenant_a for x in slots)
    for slot in slots:  # one delivery a half hour, every meter's values in it
        assert sorted((v["meter_id"], v["direction"], v["wh"], v["service_code"])
                      for v in slot["values"]) == [
            (meter.id, 0, 700, "pss12345678"), (meter.id, 1, 0, "pss12345678")
        ]  # fmt: skip
    assert [x["slot_start"] for x in slots] == ["2026-07-01T03:00:00+00:00",
                                                 "2026-07-01T03:30:00+00:00"]  # fmt: skip
    log = admin.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()
    first = log[-1]
    assert (first["state"], first["attempts"], first["last_status"]) == ("delivered", 3, 204)

    # The receiver is gone for a while: the delivery waits and arrives when it is back.
    _slots(engine, meter.id, range(3, 4), 2)
    later += timedelta(hours=1)
    assert _dispatch(engine, app, later) == 0
    (pending,) = admin.get(
        f"/api/v1/webhooks/{hook['id']}/deliveries", params={"state": "pending"}
    ).json()
    assert "ConnectError" in pending["last_error"] or "refused" in pending["last_error"]
    receiver.start()
    try:
        assert _dispatch(engine, app, later + BACKOFF[0]) == 1
    finally:
        receiver.stop()
    assert receiver.got[-1]["kind"] == "slot.closed"


def test_a_hook_that_never_answers_is_given_up_with_an_event(
    new_client, app, engine, world, allow_loopback
):
    admin = login(new_client(), "admin@a.test")
    dead_url = f"http://127.0.0.1:{free_tcp_port()}/nobody"
    hook = admin.post("/api/v1/webhooks", json={"url": dead_url, "kinds": ["event"]}).json()
    assert admin.post(f"/api/v1/webhooks/{hook['id']}/ping").status_code == 202
    now = s.utcnow()
    for delay in (timedelta(0), *BACKOFF):
        now += delay
        _dispatch(engine, app, now)
    (delivery,) = admin.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()
    assert delivery["state"] == "dead" and delivery["attempts"] == len(BACKOFF) + 1
    with engine.connect() as conn:
        codes = conn.execute(select(s.events.c.code)).scalars().all()
    assert codes.count("webhook_delivery_dead") == 1
    again = admin.post(f"/api/v1/webhook-deliveries/{delivery['id']}/redeliver").json()
    assert again["state"] == "pending" and again["attempts"] == 0


def test_hooks_are_for_admins_of_their_own_tenant(new_client, app, world):
    admin = login(new_client(), "admin@a.test")
    refused = admin.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "kinds": ["event"]}
    )
    assert "not a public address" in assert_problem(refused, 422)["detail"]
    assert_problem(admin.post("/api/v1/webhooks", json={"url": "ftp://x", "kinds": ["event"]}), 422)
    app.state.settings = app.state.settings.model_copy(update={"webhooks_allow_private": True})
    hook = admin.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "kinds": ["event"]}
    ).json()
    ops = login(new_client(), "operator@a.test")
    assert_problem(ops.get("/api/v1/webhooks"), 403)
    other = login(new_client(), "admin@b.test")
    for answer in (
        other.get(f"/api/v1/webhooks/{hook['id']}"),
        other.patch(f"/api/v1/webhooks/{hook['id']}", json={"active": False}),
        other.delete(f"/api/v1/webhooks/{hook['id']}"),
        other.get(f"/api/v1/webhooks/{hook['id']}/deliveries"),
        other.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret"),
    ):
        assert_problem(answer, 404)
    rotated = admin.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret").json()
    assert rotated["secret"] != hook["secret"]
    assert admin.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 204
