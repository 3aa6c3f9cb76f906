"""Webhooks end to end: slots from the real ingest and events from the real event sites,
signed POSTs to real HTTP(S) receivers on loopback that fail, stall, go away and come
back, and lose nothing; two dispatchers (two servers) sharing one database."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
import time
from concurrent.futures import wait
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from kenshin.jst import JST
from kenshin.ports import free_tcp_port
from kenshin.server import ingest
from kenshin.server import schema as s
from kenshin.server.devices import registry
from kenshin.server.events import record_event
from kenshin.server.jobs import server_jobs
from kenshin.server.security import CredentialBox
from kenshin.server.settings import Settings
from kenshin.server.webhooks import targets
from kenshin.server.webhooks.dispatcher import (
    BACKOFF,
    GIVE_UP_AFTER,
    SLOT_QUIET,
    Dispatcher,
    http_poster,
)
from kenshin.server.webhooks.signing import WebhookSignatureError, sign, verify
from kenshin.server.webhooks.targets import UnsafeTarget, resolve_target
from kenshin.wire import FixedTimeValue, MeterScale, ReadingsBatch, encode_publish

from .conftest import KEY, assert_problem, login, subscribe_webhook, udp_meter

START = datetime(2026, 7, 1, 12, 0, tzinfo=JST)


class Receiver:
    """A retailer's server: checks each signature (five minutes' tolerance, as a receiver
    would), answers 500 to the first `fail` requests, stalls while `hold` is clear, and
    keeps what it accepted with the Host it was sent to."""

    def __init__(self, secret: str = "", fail: int = 0, tls: ssl.SSLContext | None = None):
        self.secret, self.fail, self.tls = secret, fail, tls
        self.got: list[dict] = []
        self.hosts: list[str] = []
        self.hold = threading.Event()
        self.hold.set()
        self.port = free_tcp_port()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                verify(receiver.secret, body, self.headers["X-Kenshin-Signature"])
                receiver.hold.wait(10)
                payload = json.loads(body)
                assert self.headers["X-Kenshin-Delivery"] == str(payload["delivery_id"])
                assert self.headers["X-Kenshin-Kind"] == payload["kind"]
                if receiver.fail > 0:
                    receiver.fail -= 1
                    self.send_response(500)
                else:
                    receiver.got.append(payload)
                    receiver.hosts.append(self.headers["Host"])
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.hold.set()
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/kenshin"


class Clock:
    """The dispatcher's time, moved by the test (the outbox's own times are real)."""

    def __init__(self) -> None:
        self.now = s.utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def allow_loopback(app):
    app.state.settings = app.state.settings.model_copy(update={"webhooks_allow_private": True})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dispatch(app, engine, clock):
    """One round of a server's webhook job at the clock's time, waited for: delivered."""
    dispatcher = Dispatcher(app.state.credential_box, allow_private=True, clock=clock)

    def run(node: Dispatcher = dispatcher) -> int:
        return sum(f.result(timeout=30) for f in node(engine, clock()))

    return run


def _slots(engine, meter_id: int, boundaries: range, seq: int) -> None:
    """Fixed-time values of one meter through the real ingest: 700 Wh a slot bought."""
    values = tuple(
        FixedTimeValue(int((START + i * timedelta(minutes=30)).timestamp()), 1000 + 7 * i, 5)
        for i in boundaries
    )
    topic, payload = encode_publish(
        ReadingsBatch(seq, f"m{meter_id}", (), values, MeterScale(1, 0x01, 6)), "GW-A"
    )
    with engine.begin() as conn:
        assert ingest.handle(conn, topic, payload).kind == "readings"


def _add_hook(admin, url: str, kinds: list[str]) -> dict:
    answer = admin.post("/api/v1/webhooks", json={"url": url, "kinds": kinds})
    assert answer.status_code == 201, answer.text
    return answer.json()


def _log(admin, hook_id: int, **params) -> list[dict]:
    return admin.get(f"/api/v1/webhooks/{hook_id}/deliveries", params=params).json()["items"]


def test_signatures_check_and_targets_are_refused():
    body = b'{"kind":"ping"}'
    header = sign("whsec_x", body, 1_700_000_000)
    assert verify("whsec_x", body, header, now=1_700_000_100) == 1_700_000_000
    for secret, data, now in (
        ("other", body, 1_700_000_000),
        ("whsec_x", b"{}", 1_700_000_000),
        ("whsec_x", body, 1_700_009_000),
    ):
        with pytest.raises(WebhookSignatureError):
            verify(secret, data, header, now=now)
    with pytest.raises(WebhookSignatureError):
        verify("whsec_x", body, "v1=00")
    for url in (
        "http://127.0.0.1/x",
        "http://localhost:8080/x",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://[::ffff:7f00:1]/",
        "http://[64:ff9b::a00:1]/",
        "http://100.64.0.1/",
    ):
        with pytest.raises(UnsafeTarget, match="not a public address"):
            resolve_target(url, allow_private=False)
    for url in ("ftp://example.com/x", "http:///x", "http://example.com:99999/", "file:///etc"):
        with pytest.raises(UnsafeTarget):
            resolve_target(url, allow_private=True)
    with pytest.raises(UnsafeTarget, match="does not resolve"):
        resolve_target("http://no-such-host.invalid/x", allow_private=True)
    # The connection goes to the address that was checked; the name rides along.
    pinned = resolve_target("https://u:p@localhost:8443/in?x=1", allow_private=True)
    assert pinned.url == "https://u:p@127.0.0.1:8443/in?x=1"
    assert pinned.headers == {"Host": "localhost:8443"}
    assert pinned.extensions == {"sni_hostname": "localhost"}


@pytest.mark.parametrize(
    ("url", "why", "even_if_private_allowed"),
    [
        ("http://[::127.0.0.1]/", "not a public address", False),  # IPv4-compatible
        ("http://[::7f00:1]/", "not a public address", False),
        ("http://[::a00:1]/", "not a public address", False),  # compatible 10.0.0.1
        ("http://[::ffff:a9fe:a9fe]/", "not a public address", False),  # mapped metadata
        ("http://[64:ff9b::7f00:1]/", "not a public address", False),  # NAT64 well-known
        ("http://[64:ff9b:1::7f00:1]/", "local NAT64", False),  # NAT64 local-use /48
        ("http://[64:ff9b:1:ff::808:808]/", "local NAT64", False),  # whatever it embeds
        ("http://[2002:7f00:1::]/", "not a public address", False),  # 6to4 of 127.0.0.1
        ("http://224.0.0.1/", "multicast", True),
        ("http://239.255.255.250:1900/", "multicast", True),
        ("http://[ff02::1]/", "multicast", True),
        ("http://[::ffff:224.0.0.1]/", "multicast", True),  # mapped multicast
        ("http://0.0.0.0/", "unspecified", True),
        ("http://[::]/", "unspecified", True),
        ("http://255.255.255.255/", "broadcast", True),
        ("http://example.com:0/", "port 0", True),
        ("http://93.184.215.14:0/", "port 0", True),
    ],
)
def test_targets_hiding_a_private_or_no_host_are_refused(url, why, even_if_private_allowed):
    """Issue 16: these went through the check. Multicast, unspecified, broadcast and port 0
    name no one host and are refused even where private addresses are allowed."""
    with pytest.raises(UnsafeTarget, match=why):
        resolve_target(url, allow_private=False)
    if even_if_private_allowed:
        with pytest.raises(UnsafeTarget, match=why):
            resolve_target(url, allow_private=True)


def test_a_public_address_still_passes():
    for url in ("http://93.184.215.14/", "http://[2606:4700::1111]/", "http://[64:ff9b::808:808]/"):
        assert resolve_target(url, allow_private=False).url == url


def test_a_name_that_rebinds_to_loopback_is_refused_at_delivery(
    new_client, app, engine, world, clock, monkeypatch
):
    """Registered while the name pointed at a public address; by the time of delivery it
    points at 127.0.0.1: the dispatcher resolves again, checks, and sends nothing."""
    answers = {"now": "93.184.215.14"}

    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers["now"], port))]

    monkeypatch.setattr(targets.socket, "getaddrinfo", getaddrinfo)
    admin = login(new_client(), "admin@a.test")
    hook = _add_hook(admin, "http://rebinding.example/in", ["event"])
    assert admin.post(f"/api/v1/webhooks/{hook['id']}/ping").status_code == 202
    answers["now"] = "127.0.0.1"
    sent: list = []
    dispatcher = Dispatcher(
        app.state.credential_box,
        allow_private=False,
        clock=clock,
        post=lambda *a, **k: sent.append(a),
    )
    clock.now = s.utcnow()
    assert sum(f.result(timeout=30) for f in dispatcher(engine, clock())) == 0
    assert sent == []
    (refused,) = _log(admin, hook["id"])
    assert refused["last_error"].startswith("refused: rebinding.example is 127.0.0.1")


def test_slots_and_events_arrive_signed_through_failures_and_outages(
    new_client, app, engine, world, fleet, allow_loopback, clock, dispatch
):
    meter = udp_meter(engine, world, fleet)
    with engine.begin() as conn:
        other = registry.add_meter(
            conn,
            world.tenant_a,
            CredentialBox(KEY),
            "system",
            site_id=fleet["site"].id,
            link="udp",
            gateway_id=fleet["gateway"].id,
            udp_host="127.0.1.2",
        )
    admin = login(new_client(), "admin@a.test")
    receiver = Receiver()
    hook = _add_hook(admin, receiver.url, ["slot.closed", "event"])
    _add_hook(login(new_client(), "admin@b.test"), receiver.url, ["slot.closed", "event"])
    receiver.secret = hook["secret"]
    assert hook["secret"].startswith("whsec_")
    assert "secret" not in admin.get("/api/v1/webhooks").json()["items"][0]

    receiver.start()
    receiver.fail = 2
    try:
        _slots(engine, meter.id, range(0, 3), 1)  # two slots get values
        _slots(engine, other.id, range(1, 3), 2)  # the second of them
        topic, payload = encode_publish(
            ReadingsBatch(3, "m999999", (), (), MeterScale(1, 0x01, 6)), "GW-A"
        )
        with engine.begin() as conn:  # a real event site: the ingest's quarantine
            assert ingest.handle(conn, topic, payload).kind == "quarantined"
        assert dispatch() == 0  # 500: the hook's later deliveries wait behind the first
        assert dispatch() == 0  # not due yet
        clock.now += BACKOFF[0]
        assert dispatch() == 0  # 500 again
        assert {d["kind"] for d in _log(admin, hook["id"])} == {"event"}  # slots settling
        clock.now += BACKOFF[1]
        assert dispatch() == 4  # two events, then the two half hours
    finally:
        receiver.stop()
    *events, slot_1, slot_2 = receiver.got  # in the order they were made
    # Every event site feeds the webhooks: the gateway's state, the ingest. (The gateway
    # was claimed before the tenant had a webhook: no outbox row was written for it.)
    assert [(x["kind"], x["code"], x["gateway_id"]) for x in events] == [
        ("event", code, fleet["gateway"].id) for code in ("gateway_working", "payload_quarantined")
    ]
    assert {x["tenant_id"] for x in receiver.got} == {world.tenant_a}  # not tenant B's
    slots = [slot_1, slot_2]
    assert [x["slot_start"] for x in slots] == [
        "2026-07-01T03:00:00+00:00",
        "2026-07-01T03:30:00+00:00",
    ]
    for slot, meters in zip(slots, ([meter], [meter, other]), strict=True):
        assert slot["kind"] == "slot.closed"  # one delivery a half hour, every meter's values
        assert sorted(
            (v["meter_id"], v["direction"], v["wh"], v["status"], v["service_code"])
            for v in slot["values"]
        ) == sorted(
            (m.id, direction, wh, "measured", "pss12345678")
            for m in meters
            for direction, wh in ((0, 700), (1, 0))
        )
    first = _log(admin, hook["id"])[-1]
    assert (first["state"], first["attempts"], first["last_status"]) == ("delivered", 3, 204)

    # The receiver is gone for a while: the deliveries wait and arrive, in order, when back.
    _slots(engine, meter.id, range(3, 5), 4)
    with engine.begin() as conn:
        record_event(conn, tenant_id=world.tenant_a, code="gw_meter_swapped", severity="info")
    clock.now += SLOT_QUIET + timedelta(hours=1)
    assert dispatch() == 0
    pending = _log(admin, hook["id"], state="pending")
    assert len(pending) == 3 and pending[-1]["attempts"] == 1
    assert "ConnectError" in pending[-1]["last_error"]
    receiver.start()
    try:
        clock.now += BACKOFF[0]
        assert dispatch() == 3
    finally:
        receiver.stop()
    assert [x["kind"] for x in receiver.got[-3:]] == ["event", "slot.closed", "slot.closed"]
    assert [x["delivery_id"] for x in receiver.got] == sorted(
        x["delivery_id"] for x in receiver.got
    )
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.outbox)).scalar_one() == 0


def test_a_hook_that_never_answers_is_given_up_with_an_event(
    new_client, app, engine, world, allow_loopback, clock, dispatch
):
    admin = login(new_client(), "admin@a.test")
    hook = _add_hook(admin, f"http://127.0.0.1:{free_tcp_port()}/nobody", ["event"])
    for _ in range(2):
        assert admin.post(f"/api/v1/webhooks/{hook['id']}/ping").status_code == 202
    clock.now = s.utcnow()  # the pings were made now
    for delay in (timedelta(0), *BACKOFF):
        clock.now += delay
        dispatch()
    older, newest = _log(admin, hook["id"])[::-1]
    assert older["state"] == "dead" and older["attempts"] == len(BACKOFF) + 1
    # The second waited the whole schedule behind the first: given up at its first failure.
    assert (newest["state"], newest["attempts"]) == ("dead", 1)
    assert clock.now - datetime.fromisoformat(newest["created_at"]) >= GIVE_UP_AFTER
    with engine.connect() as conn:
        codes = conn.execute(select(s.events.c.code)).scalars().all()
    assert codes.count("webhook_delivery_dead") == 2
    again = admin.post(f"/api/v1/webhook-deliveries/{older['id']}/redeliver").json()
    assert (again["state"], again["attempts"], again["payload"]) == ("pending", 0, older["payload"])


def test_one_slow_receiver_holds_up_only_itself(
    new_client, app, engine, world, allow_loopback, clock, dispatch
):
    admin = login(new_client(), "admin@a.test")
    slow, fast = Receiver(), Receiver()
    for receiver in (slow, fast):
        receiver.secret = _add_hook(admin, receiver.url, ["event"])["secret"]
        receiver.start()
    slow.hold.clear()  # it takes the request and sits on it
    dispatcher = Dispatcher(app.state.credential_box, allow_private=True, clock=clock)
    try:
        with engine.begin() as conn:
            record_event(conn, tenant_id=world.tenant_a, code="test_event", severity="info")
        workers = dispatcher(engine, clock())
        done, stalled = wait(workers, timeout=5, return_when="FIRST_COMPLETED")
        assert [f.result() for f in done] == [1] and len(stalled) == 1
        assert len(fast.got) == 1 and slow.got == []
        with engine.begin() as conn:
            record_event(conn, tenant_id=world.tenant_a, code="test_event", severity="info")
        # A second round: the fast hook gets its next one; the slow one has its worker.
        (worker,) = dispatcher(engine, clock())
        assert worker.result(timeout=5) == 1 and len(fast.got) == 2
        slow.hold.set()
        assert stalled.pop().result(timeout=10) == 2  # and it then sends its second too
    finally:
        slow.stop()
        fast.stop()
    assert [x["code"] for x in slow.got] == ["test_event"] * 2


def test_two_servers_send_each_delivery_once_and_in_order(
    new_client, app, engine, world, allow_loopback, clock, dispatch
):
    admin = login(new_client(), "admin@a.test")
    receiver = Receiver()
    receiver.secret = _add_hook(admin, receiver.url, ["event"])["secret"]
    with engine.begin() as conn:
        for i in range(40):
            record_event(
                conn, tenant_id=world.tenant_a, code="test_event", severity="info", detail={"i": i}
            )
    nodes = [Dispatcher(app.state.credential_box, allow_private=True, clock=clock) for _ in "ab"]
    receiver.start()
    try:
        for _ in range(20):
            rounds = [threading.Thread(target=dispatch, args=(node,)) for node in nodes]
            for t in rounds:
                t.start()
            for t in rounds:
                t.join()
            if len(receiver.got) >= 40:
                break
    finally:
        receiver.stop()
    assert [x["detail"]["i"] for x in receiver.got] == list(range(40))  # once each, in order


def _tls_pair(tmp_path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for "localhost", and a client trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))


def test_https_goes_to_the_checked_address_under_the_hook_s_name(
    new_client, app, engine, world, allow_loopback, clock, tmp_path
):
    server_tls, client_tls = _tls_pair(tmp_path)
    admin = login(new_client(), "admin@a.test")
    receiver = Receiver(tls=server_tls)
    hook = _add_hook(admin, f"https://localhost:{receiver.port}/in", ["event"])
    receiver.secret = hook["secret"]
    assert admin.post(f"/api/v1/webhooks/{hook['id']}/ping").status_code == 202
    dispatcher = Dispatcher(
        app.state.credential_box,
        allow_private=True,
        clock=clock,
        post=http_poster(verify=client_tls),
    )
    clock.now = s.utcnow()  # the ping was made now
    receiver.start()
    try:
        sent = sum(f.result(timeout=30) for f in dispatcher(engine, clock()))
    finally:
        receiver.stop()
    assert sent == 1, _log(admin, hook["id"])
    assert receiver.hosts == [f"localhost:{receiver.port}"]  # TLS checked the name's certificate
    # At send time too, a private address is refused when the installation does not allow it.
    assert admin.post(f"/api/v1/webhooks/{hook['id']}/ping").status_code == 202
    clock.now = s.utcnow()
    strict = Dispatcher(app.state.credential_box, allow_private=False, clock=clock)
    assert sum(f.result(timeout=30) for f in strict(engine, clock())) == 0
    (refused, _) = _log(admin, hook["id"])
    assert refused["last_error"].startswith("refused: localhost is 127.0.0.1")


def test_hooks_are_for_admins_of_their_own_tenant(new_client, app, engine, world):
    admin = login(new_client(), "admin@a.test")
    refused = admin.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "kinds": ["event"]}
    )
    assert "not a public address" in assert_problem(refused, 422)["detail"]
    assert_problem(admin.post("/api/v1/webhooks", json={"url": "ftp://x", "kinds": ["event"]}), 422)
    app.state.settings = app.state.settings.model_copy(update={"webhooks_allow_private": True})
    short = admin.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/h", "kinds": ["event"], "secret": "s" * 31},
    )
    assert "s" * 31 not in assert_problem(short, 422)["detail"] + short.text  # never echoed
    own = "my-own-secret-of-at-least-32-chars"
    hook = admin.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "kinds": ["event"], "secret": own},
    ).json()
    assert hook["secret"] == own
    with engine.connect() as conn:
        sealed = conn.execute(select(s.webhooks.c.secret_enc)).scalar_one()
    assert own.encode() not in sealed

    # A null for a field that cannot be null leaves it be; description may be cleared.
    changed = admin.patch(
        f"/api/v1/webhooks/{hook['id']}",
        json={"url": None, "kinds": None, "active": False, "description": "x"},
    )
    assert (changed.json()["url"], changed.json()["active"]) == (hook["url"], False)
    assert (
        admin.patch(f"/api/v1/webhooks/{hook['id']}", json={"description": None}).json()[
            "description"
        ]
        is None
    )
    assert_problem(admin.patch(f"/api/v1/webhooks/{hook['id']}", json={"url": "gopher://x"}), 422)

    for _ in range(3):
        admin.post(f"/api/v1/webhooks/{hook['id']}/ping")
    page = admin.get(f"/api/v1/webhooks/{hook['id']}/deliveries", params={"limit": 2}).json()
    rest = admin.get(
        f"/api/v1/webhooks/{hook['id']}/deliveries",
        params={"limit": 2, "cursor": page["next_cursor"]},
    ).json()
    ids = [d["id"] for d in page["items"] + rest["items"]]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True) and rest["next_cursor"] is None

    for role in ("operator", "viewer"):
        staff = login(new_client(), f"{role}@a.test")
        assert_problem(staff.get("/api/v1/webhooks"), 403)
        assert_problem(staff.post(f"/api/v1/webhooks/{hook['id']}/ping"), 403)
    other = login(new_client(), "admin@b.test")
    for answer in (
        other.get(f"/api/v1/webhooks/{hook['id']}"),
        other.patch(f"/api/v1/webhooks/{hook['id']}", json={"active": True}),
        other.delete(f"/api/v1/webhooks/{hook['id']}"),
        other.get(f"/api/v1/webhooks/{hook['id']}/deliveries"),
        other.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret"),
        other.post(f"/api/v1/webhooks/{hook['id']}/ping"),
        other.post(f"/api/v1/webhook-deliveries/{ids[0]}/redeliver"),
    ):
        assert_problem(answer, 404)
    assert other.get("/api/v1/webhooks").json()["items"] == []
    rotated = admin.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret").json()
    assert rotated["secret"] != own and rotated["secret"].startswith("whsec_")
    mine = admin.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", json={"secret": own * 2})
    assert mine.json()["secret"] == own * 2
    assert admin.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 204
    assert_problem(admin.get(f"/api/v1/webhooks/{hook['id']}"), 404)


def test_the_running_server_sends_webhooks_as_one_of_its_jobs(settings, world, engine):
    """The real wiring: the app's lifespan starts the job runner, whose webhook job sends."""
    from fastapi.testclient import TestClient

    from kenshin.server.app import create_app
    from kenshin.server.jobs import server_jobs

    box = CredentialBox(KEY)
    assert "webhooks" not in [j.name for j in server_jobs(Settings(webhooks=False), box)]
    live = create_app(
        settings.model_copy(
            update={"jobs": True, "webhook_every_s": 0.2, "webhooks_allow_private": True}
        )
    )
    receiver = Receiver().start()
    try:
        with TestClient(live) as http:
            admin = login(http, "admin@a.test")
            hook = _add_hook(admin, receiver.url, ["event"])
            receiver.secret = hook["secret"]
            assert admin.post(f"/api/v1/webhooks/{hook['id']}/ping").status_code == 202
            deadline = time.monotonic() + 15
            while not receiver.got and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        receiver.stop()
    assert [x["kind"] for x in receiver.got] == ["ping"]


def _outbox(engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return conn.execute(select(s.outbox.c.tenant_id, s.outbox.c.kind)).all()


def test_the_outbox_is_written_only_for_a_tenant_with_a_matching_webhook(engine, world, fleet):
    """Issue 16: every slot value wrote an outbox row whether or not the tenant had a
    webhook."""
    meter = udp_meter(engine, world, fleet)
    with engine.begin() as conn:  # clear what the fleet fixture left (if anything)
        conn.execute(s.outbox.delete())
    _slots(engine, meter.id, range(0, 3), 1)
    with engine.begin() as conn:
        record_event(conn, tenant_id=world.tenant_a, code="something", severity="info")
    assert _outbox(engine) == []
    subscribe_webhook(engine, world.tenant_a, ["event"])  # events only
    subscribe_webhook(engine, world.tenant_b, ["slot.closed"])  # another tenant's slots
    _slots(engine, meter.id, range(3, 5), 2)
    with engine.begin() as conn:
        record_event(conn, tenant_id=world.tenant_a, code="something", severity="info")
    assert set(_outbox(engine)) == {(world.tenant_a, "event")}
    subscribe_webhook(engine, world.tenant_a, ["slot.closed"])
    _slots(engine, meter.id, range(5, 7), 3)
    assert _outbox(engine).count((world.tenant_a, "slot")) == 4  # 2 half hours, both ways


def test_the_retention_job_trims_outbox_and_delivery_log_on_every_node(engine, world):
    """Nothing deleted outbox rows on a node without the dispatcher: the retention job,
    which runs wherever jobs run, now trims the outbox and the finished deliveries."""
    hook = subscribe_webhook(engine, world.tenant_a, ["event"])
    now = s.utcnow()
    old, recent = now - timedelta(days=40), now - timedelta(hours=1)
    with engine.begin() as conn:
        for at in (old, now - timedelta(hours=25), recent):
            conn.execute(
                s.outbox.insert().values(tenant_id=world.tenant_a, kind="event", body={}, at=at)
            )
        for state, at in (
            ("delivered", old),
            ("dead", old),
            ("pending", old),
            ("delivered", recent),
        ):
            conn.execute(
                s.webhook_deliveries.insert().values(
                    tenant_id=world.tenant_a, webhook_id=hook, kind="event", payload={},
                    state=state, attempts=1, created_at=at,
                )
            )  # fmt: skip
    settings = Settings(database_url="sqlite://", webhooks=False)  # no dispatcher here
    (retention,) = [
        job for job in server_jobs(settings, CredentialBox(KEY)) if job.name == "retention"
    ]
    retention.run(engine, now)
    with engine.connect() as conn:
        assert conn.execute(select(s.outbox.c.at)).scalars().all() == [recent]
        left = conn.execute(select(s.webhook_deliveries.c.state, s.webhook_deliveries.c.created_at))
        assert sorted(left.all()) == [("delivered", recent), ("pending", old)]
