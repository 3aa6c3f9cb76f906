"""The devices room on both databases: claiming, the API's tenant walls and secret-keeping,
gateway state transitions as events, commands, and the ingest's idempotence and
quarantine."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from kenshin.server import ingest
from kenshin.server import schema as s
from kenshin.server.devices import commands, config, registry, status
from kenshin.wire import (
    CommandResult,
    FixedTimeValue,
    InstantSample,
    LinkState,
    MeterScale,
    ReadingsBatch,
    Status,
    ValueSource,
    encode_publish,
)

from .conftest import KEY, assert_problem, login
from .conftest import udp_meter as _meter


def test_import_again_is_harmless_and_bad_rows_are_reported(engine, fleet):
    with engine.begin() as conn:
        report = registry.import_identities(
            conn,
            "serial,model,public_key,claim_code\nGW-A,m,AAAA,X\nbad/serial,m,AAAA,X\n",
            KEY,
            "system",
        )
    assert report.added == 0 and report.already_known == 0 and len(report.errors) == 2
    with engine.begin() as conn, pytest.raises(registry.RegistryError, match="no unclaimed"):
        registry.claim_gateway(conn, 1, key=KEY, actor="system", claim_code="WRONG-CODE0")


def test_claimed_gateway_state_moves_and_every_move_is_an_event(engine, fleet):
    gateway = fleet["gateway"]
    assert gateway.state == "never_seen"

    def reload():
        with engine.connect() as conn:
            return conn.execute(select(s.gateways).where(s.gateways.c.id == gateway.id)).one()

    def heartbeat(link: LinkState, version: int | None = None) -> None:
        with engine.begin() as conn:
            status.on_status(
                conn, reload(), Status(int(time.time()), "1.0", 10, link, settings_version=version)
            )

    heartbeat(LinkState.JOINED, 3)
    assert reload().state == "working" and reload().settings_version_applied == 3
    heartbeat(LinkState.AUTH_FAILED, 3)
    assert reload().state == "meter_link_down"
    heartbeat(LinkState.JOINED, 3)
    with engine.begin() as conn:
        status.on_offline(conn, reload(), "connection lost")
    assert reload().state == "lost_contact"
    heartbeat(LinkState.JOINED, 4)
    with engine.begin() as conn:  # silence past 2.5 heartbeats without a last will
        status.sweep_silent(conn, 60, now=reload().last_seen_at.replace(year=2099))
    assert reload().state == "lost_contact"
    with engine.connect() as conn:
        codes = [
            r.code
            for r in conn.execute(
                select(s.events).where(s.events.c.gateway_id == gateway.id).order_by(s.events.c.id)
            )
        ]
    assert codes == [
        "gateway_claimed",
        "settings_applied",
        "gateway_working",
        "gateway_meter_link_down",
        "gateway_working",
        "gateway_lost_contact",
        "settings_applied",
        "gateway_working",
        "gateway_lost_contact",
    ]


def test_a_gateways_first_words_record_one_transition(engine, world, fleet):
    """A never-seen gateway's first batch and status, committed together as a group, move
    it to working once: the group's cached row must not make a second transition."""
    meter = _meter(engine, world, fleet)
    now = int(time.time())
    batch = ReadingsBatch(1, f"m{meter.id}", (InstantSample(now - 60, 420, 21, 0),))
    report = Status(now, "1.0", 10, LinkState.JOINED, settings_version=1)
    work = [encode_publish(batch, "GW-A"), encode_publish(report, "GW-A")]
    with engine.begin() as conn:
        assert [o.kind for o in ingest.handle_group(conn, work)] == ["readings", "status"]
    with engine.begin() as conn:  # a second status alone: already working
        ingest.handle(conn, *encode_publish(report, "GW-A"))
    with engine.connect() as conn:
        codes = conn.execute(
            select(s.events.c.code).where(s.events.c.code == "gateway_working")
        ).all()
    assert len(codes) == 1


def test_ingest_is_idempotent_and_quarantines_what_it_cannot_use(engine, world, fleet):
    meter = _meter(engine, world, fleet)
    slot = 1_780_000_200 // 1800 * 1800
    batch = ReadingsBatch(
        7,
        f"m{meter.id}",
        (InstantSample(slot + 60, 420, 21, 0), InstantSample(slot + 120, 430, 22, 0)),
        (FixedTimeValue(slot, 123456, 789),),
        MeterScale(10, 0x02, 6),
    )
    topic, payload = encode_publish(batch, "GW-A")
    for _ in range(2):  # a redelivered batch writes nothing new
        with engine.begin() as conn:
            assert ingest.handle(conn, topic, payload).kind == "readings"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.readings_instant)).scalar() == 2
        assert conn.execute(select(func.count()).select_from(s.readings_fixed)).scalar() == 2
        stored = conn.execute(select(s.meters).where(s.meters.c.id == meter.id)).one()
        assert (stored.coefficient, stored.unit_code, stored.digits) == (10, 0x02, 6)

    foreign = ReadingsBatch(8, "m999", (InstantSample(slot, 1, 1, 0),))
    cases = [
        ("k/GW-A/d", b"\xff\x00garbage", "undecodable"),
        (*encode_publish(foreign, "GW-A"), "not this gateway's"),
        (*encode_publish(batch, "GW-B"), "unclaimed"),  # GW-B may not speak for GW-A's meter
        (*encode_publish(batch, "GW-NOPE"), "unknown"),
    ]
    for topic, payload, reason in cases:
        with engine.begin() as conn:
            outcome = ingest.handle(conn, topic, payload)
        assert outcome.kind == "quarantined" and reason in outcome.reason
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.quarantine)).scalar() == 4
        assert (
            conn.execute(
                select(func.count())
                .select_from(s.events)
                .where(s.events.c.code == "payload_quarantined")
            ).scalar()
            == 4
        )


def test_command_results_count_only_from_their_own_gateway(engine, world, fleet):
    with engine.begin() as conn:
        command = commands.create(
            conn,
            world.tenant_a,
            fleet["gateway"].id,
            "read_property",
            {"epc": "0xE7"},
            actor="user:1",
        )
        with pytest.raises(commands.CommandError, match=r"needs args\.epc"):
            commands.create(
                conn, world.tenant_a, fleet["gateway"].id, "read_property", {}, actor="user:1"
            )
        other = registry.gateway_by_serial(conn, "GW-B")
        assert not commands.on_result(conn, other, CommandResult(command.id, True, {"v": 1}))
        assert commands.on_result(
            conn, fleet["gateway"], CommandResult(command.id, True, {"value": 812})
        )
        done = commands.get(conn, command.id, world.tenant_a)
    assert done.state == "done" and done.result == {"value": 812}


def test_settings_versions_grow_and_merge(engine, world, fleet):
    gateway_id = fleet["gateway"].id
    with engine.begin() as conn:
        a = config.put_settings(
            conn, world.tenant_a, None, {"poll": {"instant_interval_s": 30}}, actor="user:1"
        )
        b = config.put_settings(
            conn, world.tenant_a, gateway_id, {"poll": {"fixed_delay_s": 5}}, actor="user:1"
        )
        with pytest.raises(config.SettingsError, match="meters API"):
            config.put_settings(conn, world.tenant_a, gateway_id, {"meter": {}}, actor="user:1")
        gateway = registry.get_gateway(conn, gateway_id, world.tenant_a)
        from kenshin.server.security import CredentialBox

        effective = config.effective_settings(conn, gateway, CredentialBox(KEY), now_s=1)
        audit = conn.execute(
            select(func.count())
            .select_from(s.audit_log)
            .where(s.audit_log.c.action == "settings.update")
        ).scalar()
    assert b.version == a.version + 1 and effective.version == b.version
    assert effective.values["poll"] == {"instant_interval_s": 30, "fixed_delay_s": 5}
    assert audit == 2


def test_the_api_keeps_tenants_apart_and_credentials_hidden(client, new_client, world, fleet):
    login(client, "operator@a.test")
    meter = client.post(
        "/api/v1/meters",
        json={
            "site_id": fleet["site"].id,
            "gateway_id": fleet["gateway"].id,
            "link": "wisun",
            "device": "/dev/ttyUSB0",
            "broute_id": "0" * 28 + "CAFE",
            "broute_password": "SECRETPASS12",
        },
    )
    assert meter.status_code == 201, meter.text
    assert "SECRETPASS12" not in meter.text and meter.json()["has_broute_credentials"]
    gateway_id = fleet["gateway"].id
    settings = client.get(f"/api/v1/gateways/{gateway_id}/settings")
    assert "SECRETPASS12" not in settings.text and "CAFE" not in settings.text
    other = login(new_client(), "viewer@b.test")
    for path in (
        f"/api/v1/gateways/{gateway_id}",
        f"/api/v1/gateways/{gateway_id}/settings",
        "/api/v1/commands/1",
    ):
        assert_problem(other.get(path), 404)
    assert other.get("/api/v1/gateways").json() == {"items": [], "next_cursor": None}
    assert other.get("/api/v1/meters").json() == {"items": [], "next_cursor": None}
    viewer = login(new_client(), "viewer@a.test")
    assert_problem(
        viewer.post(f"/api/v1/gateways/{gateway_id}/commands", json={"name": "restart"}), 403
    )


def test_ingest_keeps_slot_energy_exact_through_gaps_and_late_data(engine, world, fleet):
    from datetime import datetime, timedelta

    from kenshin.jst import JST
    from kenshin.sim.load import HouseholdProfile, LoadModel
    from kenshin.sim.registers import MeterRegisters

    meter = _meter(engine, world, fleet)
    start = datetime(2026, 4, 1, tzinfo=JST)
    regs = MeterRegisters(
        LoadModel(HouseholdProfile.from_seed(9, pv=True)),
        install=start,
        anchor=start,
        unit_code=0x02,
        coefficient=10,
        digits=5,
        initial_normal_wh=10**5 * 100 - 20_000,
    )  # wraps within the day
    scale = MeterScale(10, 0x02, 5)
    boundaries = [start + i * timedelta(minutes=30) for i in range(97)]  # two days
    outage = set(range(40, 52))

    def send(indexes, seq, refill=False):
        values = tuple(
            FixedTimeValue(
                int(boundaries[i].timestamp()),
                *regs.raw(boundaries[i]),
                ValueSource.REFILLED if refill else ValueSource.MEASURED,
            )
            for i in indexes
        )
        topic, payload = encode_publish(
            ReadingsBatch(seq, f"m{meter.id}", (), values, scale), "GW-A"
        )
        with engine.begin() as conn:
            assert ingest.handle(conn, topic, payload).kind == "readings"

    # Half-hourly batches, as a gateway sends them; some lost to an outage.
    for seq, i in enumerate(i for i in range(97) if i not in outage):
        send([i], seq)
    with engine.connect() as conn:
        rows = conn.execute(select(s.slot_energy).where(s.slot_energy.c.direction == 0)).all()
    missing = {int(r.slot_start.timestamp()) for r in rows if r.status == "missing"}
    assert len(missing) == len(outage) + 1 and all(
        r.wh is None for r in rows if r.status == "missing"
    )
    # The history refill arrives late, in one batch, out of order.
    send(sorted(outage, reverse=True), 500, refill=True)
    with engine.connect() as conn:
        rows = conn.execute(
            select(s.slot_energy)
            .where(s.slot_energy.c.direction == 0)
            .order_by(s.slot_energy.c.slot_start)
        ).all()
    assert len(rows) == 96 and {r.status for r in rows} == {"measured", "refilled"}
    assert sum(r.status == "refilled" for r in rows) == len(outage) + 1
    wrapped = 0
    for r in rows:
        a = r.slot_start.astimezone(JST)
        b = a + timedelta(minutes=30)
        before, after = regs.raw(a)[0], regs.raw(b)[0]
        wrapped += after < before
        assert r.wh == (after - before) % 10**5 * 100  # 0.01 kWh × 10 = 100 Wh a count
    assert wrapped == 1


def test_a_days_slots_as_json_and_excel_csv(client, new_client, engine, world, fleet):
    from datetime import datetime, timedelta

    from kenshin.jst import JST

    meter = _meter(engine, world, fleet)
    day = datetime(2026, 4, 2, tzinfo=JST)
    values = tuple(
        FixedTimeValue(int((day + timedelta(minutes=30 * i)).timestamp()), 1000 + 3 * i)
        for i in range(49)
        if i not in (10, 11)
    )
    topic, payload = encode_publish(
        ReadingsBatch(1, f"m{meter.id}", (), values, MeterScale(1, 0x01, 6)), "GW-A"
    )
    with engine.begin() as conn:
        ingest.handle(conn, topic, payload)
    login(client, "viewer@a.test")
    body = client.get(f"/api/v1/meters/{meter.id}/slots", params={"day": "2026-04-02"}).json()
    assert len(body["values"]) == 48 and not body["complete"]
    assert [x["status"] for x in body["values"]].count("missing") == 3  # 09:30..11:00 gap
    assert body["total_wh"] == 45 * 300  # 3 counts of 0.1 kWh a slot
    csv_answer = client.get(
        f"/api/v1/meters/{meter.id}/slots", params={"day": "2026-04-02", "format": "csv"}
    )
    assert csv_answer.content.startswith("\ufeff".encode())
    assert csv_answer.headers["content-type"].startswith("text/csv")
    assert len(csv_answer.text.strip().splitlines()) == 49
    other = login(new_client(), "viewer@b.test")
    assert_problem(other.get(f"/api/v1/meters/{meter.id}/slots", params={"day": "2026-04-02"}), 404)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"": 1}, '""'),
        ({"poll": {"instant_interval_s": 0}}, "poll.instant_interval_s"),
        ({"poll": {"instant_interval_s": "60"}}, "poll.instant_interval_s"),
        ({"poll": {"initial_backfill_days": 100}}, "poll.initial_backfill_days"),
        ({"poll": {"instant_intervall_s": 60}}, "poll.instant_intervall_s"),
        ({"uplink": {"max_delay_s": True}}, "uplink.max_delay_s"),
        ({"heartbeat_s": 86401}, "heartbeat_s"),
        ({"heartbeat_s": 5}, "heartbeat_s"),
        ({"poll": []}, "poll"),
        ({"recipes": {"../pv": {}}}, "recipes.../pv.[key]"),
        ({"recipes": {"pv-inverter": {"Host": "x"}}}, "recipes.pv-inverter.Host.[key]"),
        ({"recipes": {"pv-inverter": {"host": ["x"]}}}, "recipes.pv-inverter.host.constrained-str"),
        ({"recipes": {"pv-inverter": []}}, "recipes.pv-inverter"),
    ],
)
def test_settings_a_gateway_could_not_take_are_refused_naming_the_field(
    client, new_client, world, fleet, values, field
):
    ops = login(new_client(), "operator@a.test")
    for path in ("/api/v1/settings/default", f"/api/v1/gateways/{fleet['gateway'].id}/settings"):
        problem = assert_problem(ops.patch(path, json={"values": values}), 422)
        assert problem["detail"].startswith(f"{field}:"), problem
    accepted = ops.patch(
        "/api/v1/settings/default",
        json={
            "values": {
                "poll": {"instant_interval_s": 30, "fixed_delay_s": None},
                "heartbeat_s": 600,
                "recipes": {"pv-inverter": {"host": "192.168.1.20", "interval_s": 60}},
            }
        },
    )
    assert accepted.status_code == 200, accepted.text


def test_an_operator_revokes_a_gateways_broker_credential(client, new_client, engine, fleet):
    gateway_id = fleet["gateway"].id
    with engine.begin() as conn:
        conn.execute(
            s.gateways.update()
            .where(s.gateways.c.id == gateway_id)
            .values(mqtt_username="GW-A", mqtt_password_hash="$7$101$c2FsdA==$a2V5")
        )
    viewer = login(new_client(), "viewer@a.test")
    assert_problem(viewer.delete(f"/api/v1/gateways/{gateway_id}/broker-credential"), 403)
    ops = login(new_client(), "operator@a.test")
    assert ops.delete(f"/api/v1/gateways/{gateway_id}/broker-credential").status_code == 204
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(s.gateways.c.mqtt_password_hash).where(s.gateways.c.id == gateway_id)
            ).scalar()
            is None
        )
        (event,) = conn.execute(
            select(s.events).where(s.events.c.code == "gateway_credential_revoked")
        ).all()
    assert event.severity == "warning"
    assert ops.delete(f"/api/v1/gateways/{gateway_id}/broker-credential").status_code == 204


def test_a_sent_command_is_owed_again_once_its_gateway_is_heard_from_without_a_result(
    engine, world, fleet
):
    """Clean sessions keep nothing for an absent gateway: a command published while it
    was away is published again when it speaks, and only then (devices/commands.py)."""
    gateway = fleet["gateway"]
    sent_at = datetime.now(UTC)
    with engine.begin() as conn:
        command = commands.create(
            conn, world.tenant_a, gateway.id, "apply_settings", {}, actor="user:1"
        )
        commands.mark_sent(conn, command.id, at=sent_at)

        def heard(seconds_after: float) -> list[int]:
            at = sent_at + timedelta(seconds=seconds_after)
            status.heard_from(conn, registry.gateway_by_serial(conn, gateway.serial), at=at)
            return [row.id for row, _ in commands.owed(conn, now=sent_at)]

        assert heard(-60) == []  # last heard before we sent: it may well have it
        assert heard(5) == []  # heard at once: its answer may be on the way
        assert heard(60) == [command.id]  # spoke a minute later without answering: owed
        commands.mark_sent(conn, command.id, at=sent_at + timedelta(seconds=61))  # sent again
        assert heard(62) == []  # the copy moved `sent_at`: owed again only after a while
        assert commands.on_result(
            conn, registry.gateway_by_serial(conn, gateway.serial), CommandResult(command.id, True)
        )
        assert heard(600) == []  # answered: never again
        late = commands.create(
            conn, world.tenant_a, gateway.id, "apply_settings", {}, actor="user:1"
        )
        commands.mark_sent(conn, late.id, at=sent_at)
        assert heard(600) == [late.id]
        expired = sent_at + timedelta(hours=1)  # past its expiry: never again
        assert [row.id for row, _ in commands.owed(conn, now=expired)] == []
