"""The ingest under load, on both databases: many messages in one transaction write what
they would one by one (on PostgreSQL by a binary COPY into the right monthly partitions),
a redelivered group is a no-op, one message the database refuses is quarantined alone
while the rest of its group goes through, an unreachable database quarantines nothing,
and through a real Mosquitto a burst is committed in groups and acknowledged only after
(nothing comes again after a restart)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiomqtt
import pytest
from sqlalchemy import func, select, text, update

from kenshin.ports import free_tcp_port
from kenshin.server import ingest
from kenshin.server import schema as s
from kenshin.server.broker.access import hash_password
from kenshin.server.db import make_engine
from kenshin.server.metering.partitions import ensure_partitions
from kenshin.server.runtime import SERVICE_USER, DeviceService
from kenshin.server.security import CredentialBox
from kenshin.wire import InstantSample, ReadingsBatch, encode_publish

from .conftest import KEY, udp_meter

T0 = 1_780_000_200  # 2026-05-28 20:30 UTC
REFUSED_W = 666  # the power the refusing trigger below will not take
LOGIN = {"username": "GW-A", "password": "gw-a secret", "identifier": "GW-A"}  # see below


def _batch(meter_id: int, k: int, power_w: int | None = None) -> ReadingsBatch:
    samples = tuple(
        InstantSample(T0 + 1800 * k + 60 * i, power_w or 100 + k + i, 5, 5) for i in range(30)
    )
    return ReadingsBatch(k + 1, f"m{meter_id}", samples)


def _work(meter_id: int, batches: int) -> list[tuple[str, bytes]]:
    return [encode_publish(_batch(meter_id, k), "GW-A") for k in range(batches)]


def _give_gw_a_its_mqtt_login(engine, fleet) -> None:
    """GW-A logs in to the broker as GW-A / "gw-a secret" (as after its enrollment)."""
    with engine.begin() as conn:
        conn.execute(
            update(s.gateways)
            .where(s.gateways.c.id == fleet["gateway"].id)
            .values(mqtt_username="GW-A", mqtt_password_hash=hash_password("gw-a secret"))
        )


def _count(engine, table=s.readings_instant) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_a_group_writes_what_its_messages_would_and_twice_is_once(engine, world, fleet):
    meter = udp_meter(engine, world, fleet)
    work = _work(meter.id, 30)  # 900 readings: past the COPY threshold on PostgreSQL
    assert len(work) * 30 >= ingest.COPY_FROM
    junk = ("k/GW-A/d", b"\xff")
    for _ in range(2):  # the second time every row is there: COPY gives way to the skip
        with engine.begin() as conn:
            outcomes = ingest.handle_group(conn, [*work[:10], junk, *work[10:]])
        assert [o.kind for o in outcomes].count("readings") == 30
        assert outcomes[10].kind == "quarantined"
    with engine.connect() as conn:
        latest = conn.execute(select(s.meter_latest)).one()
        progress = conn.execute(select(s.ingest_progress.c.last_seq)).scalar()
        seen = conn.execute(
            select(s.gateways.c.state, s.gateways.c.last_seen_at).where(
                s.gateways.c.id == fleet["gateway"].id
            )
        ).one()
    assert _count(engine) == 900
    assert (latest.power_w, int(latest.at.timestamp())) == (100 + 29 + 29, T0 + 1800 * 29 + 60 * 29)
    assert progress == 30
    assert seen.state == "working" and seen.last_seen_at is not None


def test_copied_rows_are_exact_and_land_in_their_month(backend, engine, world, fleet):
    """Selling (negative) power, a missing current, a JST month boundary: as sent."""
    meter = udp_meter(engine, world, fleet)
    november_jst = int(datetime(2026, 10, 31, 15, 0, tzinfo=UTC).timestamp())  # 00:00 JST
    samples = [
        InstantSample(november_jst + 60 * (i - 300), -1500 + i, i % 7, None if i % 2 else i)
        for i in range(600)
    ]
    work = [
        encode_publish(ReadingsBatch(k + 1, f"m{meter.id}", tuple(samples[k * 30 : k * 30 + 30])),
                       "GW-A")
        for k in range(20)
    ]  # fmt: skip
    with engine.begin() as conn:
        ensure_partitions(conn, datetime(2026, 10, 1, tzinfo=UTC))
        assert {o.kind for o in ingest.handle_group(conn, work)} == {"readings"}
    with engine.connect() as conn:
        stored = conn.execute(select(s.readings_instant).order_by(s.readings_instant.c.at)).all()
        peak = conn.execute(select(s.meter_daily_peak).order_by(s.meter_daily_peak.c.day)).all()
    assert [(int(r.at.timestamp()), r.power_w, r.current_r_da, r.current_t_da) for r in stored] == [
        (x.at_s, x.power_w, x.current_r_da, x.current_t_da) for x in samples
    ]
    # Selling peaks per JST day: the day before midnight and the first of November.
    assert [(p.export_w, int(p.export_at.timestamp())) for p in peak] == [
        (1500, samples[0].at_s),
        (1500 - 300, november_jst),
    ]
    if backend == "postgresql":
        with engine.connect() as conn:
            where = conn.execute(
                text("SELECT tableoid::regclass::text, count(*) FROM readings_instant GROUP BY 1")
            ).all()
        assert dict(where) == {"readings_instant_p202610": 300, "readings_instant_p202611": 300}


@pytest.fixture
def refusing_database(engine, backend):
    """The database refuses any instant reading of REFUSED_W watts (a trigger: a real
    error from the real database, as a broken row or a bug would raise)."""
    if backend == "postgresql":
        made = [
            "CREATE FUNCTION kenshin_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.power_w = {REFUSED_W} THEN RAISE EXCEPTION 'refused by the test'; END IF; "
            "RETURN NEW; END $$",
            "CREATE TRIGGER kenshin_test_refuse BEFORE INSERT ON readings_instant "
            "FOR EACH ROW EXECUTE FUNCTION kenshin_test_refuse()",
        ]
        undone = [
            "DROP TRIGGER kenshin_test_refuse ON readings_instant",
            "DROP FUNCTION kenshin_test_refuse()",
        ]
    else:
        made = [
            "CREATE TRIGGER kenshin_test_refuse BEFORE INSERT ON readings_instant "
            f"WHEN NEW.power_w = {REFUSED_W} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        ]
        undone = ["DROP TRIGGER kenshin_test_refuse"]
    with engine.begin() as conn:
        for statement in made:
            conn.execute(text(statement))
    yield
    with engine.begin() as conn:  # the PostgreSQL database is shared by the session
        for statement in undone:
            conn.execute(text(statement))


def test_a_message_the_database_refuses_is_quarantined_alone(
    engine, world, fleet, refusing_database
):
    meter = udp_meter(engine, world, fleet)
    work = _work(meter.id, 30)
    work[7] = encode_publish(_batch(meter.id, 7, power_w=REFUSED_W), "GW-A")
    service = DeviceService(engine, CredentialBox(KEY))
    outcomes = service.commit_group(work)
    assert outcomes is not None
    assert [o.kind for o in outcomes] == ["readings"] * 7 + ["quarantined"] + ["readings"] * 22
    assert _count(engine) == 29 * 30
    with engine.connect() as conn:
        reasons = conn.execute(select(s.quarantine.c.reason)).scalars().all()
    assert len(reasons) == 1 and reasons[0].startswith("could not be stored: ")
    assert "refused by the test" in reasons[0]
    assert service.commit_group(work[7:8])[0].kind == "quarantined"  # and so every time


def test_an_unreachable_database_quarantines_nothing(backend, tmp_path):
    if backend == "postgresql":
        url = f"postgresql://postgres@127.0.0.1:{free_tcp_port()}/nowhere"
    else:
        url = f"sqlite:///{tmp_path / 'no-such-directory' / 'kenshin.db'}"
    engine = make_engine(url)
    service = DeviceService(engine, CredentialBox(KEY))
    work = [encode_publish(_batch(1, k), "GW-A") for k in range(3)]
    assert service.commit_group(work) is None  # held, not acknowledged: tried again later
    assert service.counters["ingest_errors"] == 1
    engine.dispose()


def test_a_burst_through_mosquitto_is_committed_in_groups_and_acked(engine, world, fleet, tmp_path):
    """200 batches published at once: all committed, in fewer transactions than
    messages; a restart of the ingest's persistent session brings nothing again."""
    meter = udp_meter(engine, world, fleet)
    _give_gw_a_its_mqtt_login(engine, fleet)
    work = _work(meter.id, 200)

    def service() -> DeviceService:
        return DeviceService(
            engine, CredentialBox(KEY), mode="mosquitto", mosquitto_dir=tmp_path / "mosquitto"
        )

    async def burst() -> dict[str, int]:
        ingesting = service()
        await ingesting.start()
        try:
            await asyncio.wait_for(ingesting.subscribed.wait(), 30)
            port = ingesting.endpoint.port
            async with aiomqtt.Client("127.0.0.1", port, **LOGIN) as gateway:
                await asyncio.gather(*(gateway.publish(t, p, qos=1) for t, p in work))
            deadline = time.monotonic() + 60
            # Rows are visible once committed, a moment before the ingest acks and counts
            # them: wait for both (a loaded machine made the counters lag the rows).
            while (
                _count(engine) < 200 * 30 or ingesting.counters.get("readings", 0) < 200
            ) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return dict(ingesting.counters)
        finally:
            await ingesting.stop()

    async def again() -> dict[str, int]:
        ingesting = service()
        await ingesting.start()
        try:
            await asyncio.wait_for(ingesting.subscribed.wait(), 30)
            # Anything unacknowledged comes at the reconnect, before a message sent after
            # it: once that one is in, nothing more of the burst can come.
            topic, payload = encode_publish(_batch(meter.id, 200), "GW-A")
            async with aiomqtt.Client("127.0.0.1", ingesting.endpoint.port, **LOGIN) as gateway:
                await gateway.publish(topic, payload, qos=1)
            deadline = time.monotonic() + 30
            while (
                _count(engine) < 201 * 30 or not ingesting.counters.get("readings")
            ) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # anything more (a redelivery) would be counted too
            return dict(ingesting.counters)
        finally:
            await ingesting.stop()

    counters = asyncio.run(burst())
    assert _count(engine) == 200 * 30
    assert counters["readings"] == 200 and counters.get("groups", 0) >= 1
    assert asyncio.run(again())["readings"] == 1  # the new message alone
    assert _count(engine) == 201 * 30


def test_two_ingest_processes_share_the_readings_through_one_broker(engine, world, fleet, tmp_path):
    """The server scaled out: a second ingest worker on the same Mosquitto (as an external
    broker, with the service's own login) takes part of a burst through the shared
    subscription; together they commit every reading exactly once."""
    meter = udp_meter(engine, world, fleet)
    _give_gw_a_its_mqtt_login(engine, fleet)
    work = _work(meter.id, 300)

    async def burst() -> tuple[dict, dict]:
        first = DeviceService(
            engine, CredentialBox(KEY), mode="mosquitto", mosquitto_dir=tmp_path / "mosquitto"
        )
        await first.start()
        await asyncio.wait_for(first.subscribed.wait(), 30)
        second = DeviceService(
            engine,
            CredentialBox(KEY),
            mode="external",
            node_name="2",
            endpoint=first.endpoint,
            service_login=(SERVICE_USER, first._service_password),
        )
        await second.start()
        try:
            await asyncio.wait_for(second.subscribed.wait(), 30)
            port = first.endpoint.port
            async with aiomqtt.Client("127.0.0.1", port, **LOGIN) as gateway:
                for t, p in work:  # one at a time: the broker deals them out in turn
                    await gateway.publish(t, p, qos=1)
            deadline = time.monotonic() + 60
            while _count(engine) < 300 * 30 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return dict(first.counters), dict(second.counters)
        finally:
            await second.stop()
            await first.stop()

    one, two = asyncio.run(burst())
    assert _count(engine) == 300 * 30
    assert one.get("readings", 0) + two.get("readings", 0) == 300  # each message once
    assert one.get("readings", 0) > 0 and two.get("readings", 0) > 0
