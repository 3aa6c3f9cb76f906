"""The fault matrix: one fault at a time on the real stack, each ending with every half
hour of every meter stored once and equal to the simulator's register (what was lost in
transit is back through server-driven repair within the test), and the instant readings
stored before the fault still there."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import delete, insert, select

from kenshin.ports import port_holder
from kenshin.server import schema as s
from tests.support import run

from .postgres import OwnPostgres
from .stack import FaultStack

BROKERS = ("mosquitto", "embedded")
pytestmark = pytest.mark.slow  # each runs the platform for simulated hours (30-100 s)


def _scenario(tmp_path, database_url, fault, *, broker="mosquitto", homes=1, tenants=1,
              after_h: float = 1.25, timeout_s: float = 150):  # fmt: skip
    """Run until readings flow, apply `fault`, run `after_h` simulated hours on, then
    check."""

    async def scenario():
        async with FaultStack(
            tmp_path, database_url, broker=broker, homes=homes, tenants=tenants
        ) as stack:
            await stack.until(
                lambda: all(stack.instant_times(m) for m in stack.meter_ids()),
                "instant readings flow before the fault",
            )
            await stack.until_sim(stack.clock.now() + timedelta(minutes=20))
            kept = {m: stack.instant_times(m) for m in stack.meter_ids()}
            await fault(stack)
            end = stack.clock.now() + timedelta(hours=after_h)
            await stack.until_sim(end)
            await stack.complete_through(end)
            stack.check_against_registers(end)
            for meter_id, before in kept.items():
                assert before <= stack.instant_times(meter_id), "instant readings lost"
            return stack

    return run(scenario(), timeout_s=timeout_s)


@pytest.mark.parametrize("broker", BROKERS)
def test_server_kill_9_takes_its_broker_along_and_comes_back_on_the_same_port(
    tmp_path, postgres_url, broker
):
    async def fault(stack: FaultStack) -> None:
        stack.kill_server()
        await stack.until(
            lambda: port_holder("127.0.0.1", stack.mqtt_port) is None,
            "nothing listens on the MQTT port while the server is down",
            timeout_s=15,
        )
        await asyncio.sleep(1)
        assert port_holder("127.0.0.1", stack.mqtt_port) is None
        await stack.start_server()
        assert "mosquitto" in (port_holder("127.0.0.1", stack.mqtt_port) or "") or (
            broker == "embedded"
        )

    _scenario(tmp_path, postgres_url, fault, broker=broker)


def test_a_managed_broker_killed_by_hand_is_back_within_30_s(tmp_path, postgres_url):
    async def fault(stack: FaultStack) -> None:
        os.kill(stack.broker_pid(), signal.SIGKILL)
        await stack.until(lambda: stack.readyz().status_code == 503, "not ready", 10)
        problem = stack.readyz().json()
        assert (
            problem["parts"]["broker"]["ok"] is False or problem["parts"]["ingest"]["ok"] is False
        )
        killed_at = time.monotonic()
        await stack.until(lambda: stack.ready(), "ready again", timeout_s=30)
        assert time.monotonic() - killed_at < 30
        assert stack.readyz().json()["parts"]["broker"]["restarts"] >= 1

    _scenario(tmp_path, postgres_url, fault)


def test_a_broker_left_running_by_a_killed_server_is_stopped_by_the_next(tmp_path, postgres_url):
    """The death signal could not be delivered (here: the broker is stopped, SIGSTOP): the
    restarted server finds it by its pid file, stops it, and serves the same port."""

    async def fault(stack: FaultStack) -> None:
        orphan = stack.broker_pid()
        os.kill(orphan, signal.SIGSTOP)
        stack.kill_server()
        assert "mosquitto" in (port_holder("127.0.0.1", stack.mqtt_port) or "")
        await stack.start_server()
        assert not _alive(orphan)
        assert stack.broker_pid() != orphan
        assert port_holder("127.0.0.1", stack.mqtt_port) == f"pid {stack.broker_pid()} (mosquitto)"

    _scenario(tmp_path, postgres_url, fault)


@pytest.mark.parametrize("broker", BROKERS)
def test_the_ingest_killed_mid_group(tmp_path, postgres_url, broker):
    """The ingest has taken readings from the broker and is committing them (held on a
    table lock) when its process is killed: Mosquitto redelivers what was never
    acknowledged; what the embedded broker took with it comes back through repair."""

    async def fault(stack: FaultStack) -> None:
        with psycopg.connect(stack.database_url) as blocker:
            blocker.execute("LOCK TABLE readings_fixed IN ACCESS EXCLUSIVE MODE")
            await stack.until(
                lambda: stack.readyz().json()["parts"]["ingest_lag"]["lag_s"] > 1,
                "the ingest holds a group it cannot commit",
            )
            stack.kill_server()
        await stack.start_server()

    _scenario(tmp_path, postgres_url, fault, broker=broker)


def test_postgresql_unavailable_for_60_s(tmp_path):
    own = OwnPostgres().init()
    own.start()
    try:
        with psycopg.connect(own.url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE kenshin")
        database = own.url.rsplit("/", 1)[0] + "/kenshin"

        async def fault(stack: FaultStack) -> None:
            own.stop("immediate")
            await stack.until(lambda: stack.readyz().status_code == 503, "not ready", 10)
            assert stack.readyz().json()["parts"]["database"]["ok"] is False
            await asyncio.sleep(60)
            own.start()
            await stack.until(lambda: stack.ready(), "ready again", timeout_s=30)

        _scenario(tmp_path, database, fault, timeout_s=240)
    finally:
        own.close()


def test_a_gateway_killed_mid_batch(tmp_path, postgres_url):
    async def fault(stack: FaultStack) -> None:
        half_hour = (stack.clock.now().timestamp() // 1800 + 1) * 1800
        await stack.until_sim(datetime.fromtimestamp(half_hour + 70, UTC))  # a batch going out
        stack.kill_agent(0)
        await asyncio.sleep(2)
        stack.start_agent(0)

    _scenario(tmp_path, postgres_url, fault)


def test_the_meter_link_cut_for_two_simulated_hours(tmp_path, postgres_url):
    async def fault(stack: FaultStack) -> None:
        faults = stack.fleet.meters[0].config.faults
        faults.silent = True
        await stack.until_sim(stack.clock.now() + timedelta(hours=2))
        faults.silent = False

    _scenario(tmp_path, postgres_url, fault, after_h=1)


def test_readings_lost_after_they_were_acknowledged_come_back_by_repair(tmp_path, postgres_url):
    """Lost anywhere on the way (here: gone from the database after the gateway had them
    acknowledged and forgot them): the server sees the hole and asks the gateway again."""

    async def fault(stack: FaultStack) -> None:
        await stack.until_sim(stack.clock.now() + timedelta(hours=1))
        meter_id = stack.meter_ids()[0]
        lost = stack.clock.now() - timedelta(hours=1)
        with stack.engine.begin() as conn:
            gone = conn.execute(
                delete(s.readings_fixed).where(
                    s.readings_fixed.c.meter_id == meter_id,
                    s.readings_fixed.c.slot_start > lost - timedelta(hours=1),
                    s.readings_fixed.c.slot_start <= lost,
                )
            ).rowcount
        assert gone >= 2

    stack = _scenario(tmp_path, postgres_url, fault)
    requested = stack.events("gap_repair_requested")
    assert requested and requested[0].detail["slots"] >= 1


def test_a_broken_setting_of_one_tenant_delays_no_push_to_another(tmp_path, postgres_url):
    """Tenant 0's gateway holds a value the wire cannot carry (written before settings were
    checked): tenant 1's command still goes out at once, and the broken one is an event."""

    async def fault(stack: FaultStack) -> None:
        broken, other = stack.tenants
        with stack.engine.begin() as conn:
            conn.execute(
                insert(s.settings).values(
                    tenant_id=_tenant_of(conn, broken.gateways[0]["id"]),
                    gateway_id=broken.gateways[0]["id"],
                    version=1000,
                    values={"": 1},
                    created_at=s.utcnow(),
                )
            )
        async with stack.operator(other) as ops:
            sent = time.monotonic()
            command = (
                await ops.post(
                    f"/api/v1/gateways/{other.gateways[0]['id']}/commands",
                    json={"name": "read_property", "args": {"epc": "0xE7"}},
                )
            ).json()

            async def state() -> str:
                return (await ops.get(f"/api/v1/commands/{command['id']}")).json()["state"]

            while await state() != "done":
                assert time.monotonic() - sent < 15, "tenant 1's command did not go out"
                await asyncio.sleep(0.1)
        await stack.until(lambda: stack.events("settings_not_pushed"), "the event", 10)
        event = stack.events("settings_not_pushed")[0]
        assert event.gateway_id == broken.gateways[0]["id"]

    _scenario(tmp_path, postgres_url, fault, homes=2, tenants=2)


def _tenant_of(conn, gateway_id: int) -> int:
    return conn.execute(
        select(s.gateways.c.tenant_id).where(s.gateways.c.id == gateway_id)
    ).scalar_one()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie (its parent, the test runner, reaps late)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False
