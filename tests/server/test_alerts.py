"""Each anomaly rule, end to end: a fault injected into simulated meters (fed through the
real ingest), exactly one alert, an e-mail to a real SMTP server on loopback and a
webhook event, and the alert resolved once the fault ends."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import insert, select

from kenshin.jst import JST
from kenshin.ports import free_tcp_port
from kenshin.server import ingest
from kenshin.server import schema as s
from kenshin.server.alerts.engine import run_rules
from kenshin.server.alerts.notify import SmtpConfig, send_due
from kenshin.server.analytics.anomalies import RULES
from kenshin.server.devices import registry, status
from kenshin.server.security import CredentialBox
from kenshin.sim.load import HouseholdProfile, LoadModel
from kenshin.sim.registers import MeterRegisters
from kenshin.wire import (
    FixedTimeValue,
    InstantSample,
    LinkState,
    MeterScale,
    ReadingsBatch,
    Status,
    ValueSource,
    encode_publish,
)
from tests.support import eventually

from .conftest import KEY, assert_problem, login, subscribe_webhook

START = datetime(2026, 6, 9, 0, 0, tzinfo=JST)  # a sunny June Tuesday
SLOT = timedelta(minutes=30)
SCALE = MeterScale(1, 0x01, 6)  # 0.1 kWh a count


class Inbox:
    """A real SMTP server on a free loopback port that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes, policy

        with self.lock:
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_tcp_port())
    controller.start()
    try:
        yield inbox, SmtpConfig("127.0.0.1", controller.port, sender="alerts@kenshin.test")
    finally:
        controller.stop()


@dataclass
class Home:
    """A simulated meter behind gateway GW-A, and the faults injected into it."""

    meter_id: int
    registers: MeterRegisters
    frozen: dict[int, tuple[int, int]] = field(default_factory=dict)  # boundary → raw
    power: Callable[[datetime, int], int] | None = None
    silent: set[int] = field(default_factory=set)  # boundaries it sends nothing for

    def raw(self, i: int) -> tuple[int, int]:
        return self.frozen.get(i) or self.registers.raw(START + i * SLOT)


class Street:
    """Homes on one gateway, fed slot by slot through the real ingest."""

    def __init__(self, engine, world, fleet, pv: tuple[bool, ...], rule: str) -> None:
        self.engine, self.tenant_id, self.seq = engine, world.tenant_a, 0
        with engine.begin() as conn:  # the rule under test alone, so alerts are its own
            conn.execute(
                insert(s.alert_rules),
                [
                    {"tenant_id": world.tenant_a, "rule": name, "params": {}, "enabled": False}
                    for name in RULES
                    if name != rule
                ],
            )
        self.gateway = fleet["gateway"]
        self.homes = []
        for n, has_pv in enumerate(pv):
            with engine.begin() as conn:
                meter = registry.add_meter(
                    conn,
                    world.tenant_a,
                    CredentialBox(KEY),
                    "system",
                    site_id=fleet["site"].id,
                    link="udp",
                    gateway_id=fleet["gateway"].id,
                    udp_host=f"127.0.1.{n + 1}",
                )
                conn.execute(  # installed well before the simulated days
                    s.meters.update()
                    .where(s.meters.c.id == meter.id)
                    .values(created_at=START - timedelta(days=30))
                )
            profile = HouseholdProfile.from_seed(20 + n, pv=has_pv)
            registers = MeterRegisters(LoadModel(profile), install=START, anchor=START)
            self.homes.append(Home(meter.id, registers))

    def feed(self, first: int, last: int) -> None:
        """Boundaries first..last (inclusive), each with the 20 minutes of power before it."""
        for i in range(first, last + 1):
            at = START + i * SLOT
            for home in self.homes:
                if i in home.silent:
                    continue
                samples = []
                for minutes in (20, 10, 0):
                    t = at - timedelta(minutes=minutes)
                    watts = home.registers.load.step_power_w(int(t.timestamp()) // 10)
                    if home.power is not None:
                        watts = home.power(t, watts)
                    samples.append(InstantSample(int(t.timestamp()), watts, 100, 100))
                fixed = FixedTimeValue(int(at.timestamp()), *home.raw(i), ValueSource.MEASURED)
                self.seq += 1
                batch = ReadingsBatch(
                    self.seq, f"m{home.meter_id}", tuple(samples), (fixed,), SCALE
                )
                topic, payload = encode_publish(batch, "GW-A")
                with self.engine.begin() as conn:
                    assert ingest.handle(conn, topic, payload).kind == "readings"

    def run(self, i: int, minutes: int = 5):
        with self.engine.begin() as conn:
            return run_rules(conn, self.tenant_id, START + i * SLOT + timedelta(minutes=minutes))

    def alerts(self, rule: str) -> list:
        with self.engine.connect() as conn:
            return conn.execute(select(s.alerts).where(s.alerts.c.rule == rule)).all()


def _freeze(home: Home, boundaries: range, which: int) -> None:
    """The register `which` (0 normal, 1 reverse) stops at its value before `boundaries`."""
    held = home.registers.raw(START + (boundaries.start - 1) * SLOT)
    for i in boundaries:
        now = home.registers.raw(START + i * SLOT)
        home.frozen[i] = (held[0], now[1]) if which == 0 else (now[0], held[1])


def _no_data(street: Street) -> tuple[int, int]:
    street.homes[0].silent.update(range(21, 27))  # six half hours of silence
    return 26, 28  # (rules run while it is faulty, and once it has healed)


def _meter_stuck(street: Street) -> tuple[int, int]:
    _freeze(street.homes[0], range(21, 26), 0)  # 10:30-12:30: the register stands still
    return 25, 27


def _impossible(street: Street) -> tuple[int, int]:
    spike_at = START + 24 * SLOT - timedelta(minutes=10)
    street.homes[0].power = lambda t, w: 48_000 if t == spike_at else w
    return 24, 28


def _pv_zero(street: Street) -> tuple[int, int]:
    _freeze(street.homes[0], range(48 + 21, 48 + 29), 1)  # day 2, 10:30-14:00: sells nothing
    return 48 + 28, 96 + 28  # day 2 after 14:00; day 3 after 14:00 (it sold again)


def _outside_band(street: Street) -> tuple[int, int]:
    surge = {22, 23, 24}  # the tenant's 30-minute totals leave the forecast band
    rows = []
    for i in range(16, 30):
        slot_start = START + i * SLOT
        expected = sum(
            (h.registers.raw(slot_start + SLOT)[0] - h.registers.raw(slot_start)[0]) * 100
            for h in street.homes
        )
        low, high = int(expected * 0.8), int(expected * 1.2) + 100
        if i in surge:  # forecast as if for a much quieter day
            low, high = 0, max(1, expected // 4)
        rows.append(
            {
                "tenant_id": street.tenant_id,
                "slot_start": slot_start,
                "direction": 0,
                "low_wh": low,
                "mid_wh": (low + high) // 2,
                "high_wh": high,
            }
        )
    with street.engine.begin() as conn:
        conn.execute(insert(s.tenant_forecast), rows)
    return 25, 26


def _queue_growing(street: Street) -> tuple[int, int]:
    return 0, 0  # driven by status reports below


FAULTS = {
    "no_data": (_no_data, (False, False)),
    "meter_stuck": (_meter_stuck, (False, False)),
    "impossible_value": (_impossible, (False, False)),
    "pv_zero_midday": (_pv_zero, (True, True, True)),
    "outside_band": (_outside_band, (False, False)),
    "queue_growing": (_queue_growing, (False,)),
}


def _report(engine, gateway_id: int, depth: int) -> None:
    with engine.begin() as conn:
        gateway = conn.execute(select(s.gateways).where(s.gateways.c.id == gateway_id)).one()
        status.on_status(conn, gateway, Status(0, "1.0", 10, LinkState.JOINED, queue_depth=depth))


@pytest.mark.slow  # days of a street fed through the ingest
@pytest.mark.parametrize("rule", sorted(FAULTS))
def test_each_rule_raises_one_alert_delivers_it_and_resolves(
    rule,
    engine,
    world,
    fleet,
    smtp,
):
    inbox, config = smtp
    street = Street(engine, world, fleet, FAULTS[rule][1], rule)
    subscribe_webhook(engine, world.tenant_a, ["event"])
    with engine.begin() as conn:
        conn.execute(
            insert(s.alert_subscriptions),
            [
                {"tenant_id": world.tenant_a, "channel": "email", "target": "ops@a.test",
                 "min_severity": "info", "created_at": s.utcnow()},
                {"tenant_id": world.tenant_a, "channel": "webhook", "target": None,
                 "min_severity": "info", "created_at": s.utcnow()},
            ],
        )  # fmt: skip
    faulty, healed = FAULTS[rule][0](street)
    if rule == "queue_growing":
        for depth in (0, 30, 300):
            _report(engine, street.gateway.id, depth)
        summary = street.run(0)
    else:
        street.feed(0, faulty)
        summary = street.run(faulty)
        assert street.run(faulty, minutes=20).opened == []  # deduplicated
    opened = [a for a in street.alerts(rule) if a.state == "open"]
    assert len(opened) == 1 and summary.opened == [opened[0].id], street.alerts(rule)
    subject = opened[0].subject
    assert subject == (
        "tenant" if rule == "outside_band"
        else f"gateway:{street.gateway.id}" if rule == "queue_growing"
        else f"meter:{street.homes[0].meter_id}"
    )  # fmt: skip
    assert send_due(engine, config, s.utcnow()) == 1
    assert len(inbox.messages) == 1 and rule in inbox.messages[0]["Subject"]
    assert "警報" in inbox.messages[0].get_content()

    if rule == "queue_growing":
        _report(engine, street.gateway.id, 0)
        street.run(1)
    else:
        street.feed(faulty + 1, healed)
        street.run(healed)
    assert [a.state for a in street.alerts(rule)] == ["resolved"]
    assert send_due(engine, config, s.utcnow()) == 1
    assert "resolved" in inbox.messages[1]["Subject"]
    with engine.connect() as conn:
        events = (
            conn.execute(select(s.outbox.c.body).where(s.outbox.c.kind == "event")).scalars().all()
        )
        webhooks = (
            conn.execute(
                select(s.alert_notifications.c.state).where(
                    s.alert_notifications.c.channel == "webhook"
                )
            )
            .scalars()
            .all()
        )
    codes = [e["code"] for e in events if e["code"].startswith("alert_")]
    assert codes == ["alert_opened", "alert_resolved"]
    assert webhooks == ["sent", "sent"]


def test_a_failing_mail_server_is_retried_then_given_up(engine, world, fleet):
    street = Street(engine, world, fleet, (False,), "queue_growing")
    with engine.begin() as conn:
        conn.execute(
            insert(s.alert_subscriptions).values(
                tenant_id=world.tenant_a, channel="email", target="ops@a.test",
                min_severity="info", created_at=s.utcnow(),
            )
        )  # fmt: skip
    for depth in (0, 1, 2):
        _report(engine, street.gateway.id, depth)
    street.run(0)
    nowhere = SmtpConfig("127.0.0.1", free_tcp_port(), timeout_s=1)  # nothing listens
    now = datetime(2026, 6, 9, tzinfo=UTC)
    for attempt in range(6):
        assert send_due(engine, nowhere, now) == 0
        with engine.connect() as conn:
            row = conn.execute(select(s.alert_notifications)).one()
        assert row.attempts == attempt + 1 and row.last_error
        if row.state == "dead":
            break
        assert send_due(engine, nowhere, now) == 0  # not due again yet
        now = row.next_attempt_at
    assert row.state == "dead" and row.attempts == 6


def test_the_alerts_api_acknowledges_resolves_and_keeps_tenants_apart(
    new_client,
    engine,
    world,
    fleet,
):
    street = Street(engine, world, fleet, (False,), "queue_growing")
    for depth in (0, 1, 2):
        _report(engine, street.gateway.id, depth)
    street.run(0)
    viewer, ops = login(new_client(), "viewer@a.test"), login(new_client(), "operator@a.test")
    (alert,) = viewer.get("/api/v1/alerts", params={"state": "open"}).json()["items"]
    assert_problem(viewer.post(f"/api/v1/alerts/{alert['id']}/acknowledge"), 403)
    acked = ops.post(f"/api/v1/alerts/{alert['id']}/acknowledge").json()
    assert acked["state"] == "acknowledged" and acked["acknowledged_by"].startswith("user:")
    assert_problem(ops.post(f"/api/v1/alerts/{alert['id']}/acknowledge"), 409)
    other = login(new_client(), "admin@b.test")
    assert other.get("/api/v1/alerts").json() == {"items": [], "next_cursor": None}
    assert_problem(other.get(f"/api/v1/alerts/{alert['id']}"), 404)
    assert_problem(other.post(f"/api/v1/alerts/{alert['id']}/resolve"), 404)
    assert ops.post(f"/api/v1/alerts/{alert['id']}/resolve").json()["state"] == "resolved"

    admin = login(new_client(), "admin@a.test")
    assert_problem(ops.put("/api/v1/alert-rules/no_data", json={"params": {"slots": 2}}), 403)
    assert_problem(admin.put("/api/v1/alert-rules/no_data", json={"params": {"slots": 0}}), 422)
    assert_problem(admin.put("/api/v1/alert-rules/nope", json={}), 404)
    changed = admin.put(
        "/api/v1/alert-rules/no_data", json={"params": {"slots": 2}, "severity": "error"}
    ).json()
    assert changed["params"] == {"slots": 2} and changed["severity"] == "error"
    rules = {r["rule"]: r for r in viewer.get("/api/v1/alert-rules").json()["items"]}
    assert rules["no_data"]["params"] == {"slots": 2} and len(rules) == 6
    theirs = {r["rule"]: r for r in other.get("/api/v1/alert-rules").json()["items"]}
    assert theirs["no_data"]["params"] == {"slots": 4}  # B keeps the defaults
    sub = admin.post("/api/v1/alert-subscriptions", json={"channel": "email", "target": "a@b.jp"})
    assert sub.status_code == 201
    assert_problem(admin.post("/api/v1/alert-subscriptions", json={"channel": "email"}), 422)
    assert_problem(other.delete(f"/api/v1/alert-subscriptions/{sub.json()['id']}"), 404)
    assert admin.delete(f"/api/v1/alert-subscriptions/{sub.json()['id']}").status_code == 204


def test_the_server_runs_its_jobs_and_a_failing_one_does_not_stop_the_rest(engine):
    import asyncio

    from kenshin.server.jobs import Job, JobRunner

    calls: list[str] = []

    def boom(engine, now):
        calls.append("boom")
        raise RuntimeError("a bad day")

    async def scenario() -> JobRunner:
        runner = JobRunner(
            engine,
            [Job("boom", 0.01, boom), Job("fine", 0.01, lambda e, now: calls.append("fine"))],
        )
        await runner.start()
        # Each job ran twice: "boom" failing the first time did not stop either.
        await eventually(lambda: calls.count("boom") >= 2 and runner.runs.get("fine", 0) >= 2)
        await runner.stop()
        return runner

    runner = asyncio.run(scenario())
    assert calls.count("boom") >= 2 and runner.runs["fine"] >= 2
    assert "boom" not in runner.runs
