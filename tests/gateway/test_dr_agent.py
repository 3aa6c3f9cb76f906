"""Demand response through the agent: the stand-in cloud (tests/gateway/cloud.py, the
embedded broker) publishes a DrEvent on `k/<gw>/c`; the agent acks at once, sets the
simulated home's devices (127.0.0.41-45, as test_dr_home.py) at the start by the
`ManualClock`, restores them and reports after the end. A cancel restores at once; a copy
is acked again and acted on once; a restart mid-event restores from the state file."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from kenshin.echonet.classes import AirconMode, BatteryMode, EvMode, PowerSaving, WaterHeating
from kenshin.echonet.classes import encode_property as edt
from kenshin.gateway import dr
from kenshin.gateway.agent import AgentOptions, GatewayAgent
from kenshin.gateway.identity import Identity
from kenshin.sim.clock import JST, ManualClock
from kenshin.sim.devices import DeviceEndpoint
from kenshin.sim.home import (
    AirconConfig,
    BatteryConfig,
    EvConfig,
    SimulatedAircon,
    SimulatedBattery,
    SimulatedEvCharger,
    SimulatedWaterHeater,
    WaterHeaterConfig,
)
from kenshin.wire import DrAck, DrAckState, DrEvent, DrReport, DrSet, Event, Settings
from tests.gateway.cloud import Cloud
from tests.support import eventually, free_udp_port, run

SERIAL = "GW-DR"
ATTACH = datetime(2026, 8, 3, 16, 50, tzinfo=JST)
START, END = ATTACH + timedelta(minutes=10), ATTACH + timedelta(minutes=130)
START_S, END_S = int(START.timestamp()), int(END.timestamp())
HOSTS = ["127.0.0.42", "127.0.0.43", "127.0.0.44", "127.0.0.45"]
POLICY = {"battery": {"max_discharge_w": 1000, "min_soc_percent": 20},
          "ev": {"max_pause_minutes": 60}, "water_heater": {"max_hold_minutes": 120}}  # fmt: skip


class Home:
    """The four devices of test_dr_home.py, each its own ECHONET Lite node."""

    def __init__(self, clock: ManualClock):
        self.battery = SimulatedBattery(clock, BatteryConfig(stored_wh=8_000))
        self.ev = SimulatedEvCharger(clock, EvConfig(rated_w=3_000, wanted_wh=20_000))
        self.aircon = SimulatedAircon(clock, AirconConfig(mode=AirconMode.COOLING, setpoint_c=26))
        self.heater = SimulatedWaterHeater(
            clock, WaterHeaterConfig(heater_w=1_500, stored_wh=2_000, afternoon=(16.0, 20.0))
        )
        self.port = free_udp_port(HOSTS[0])
        devices = (self.battery, self.ev, self.aircon, self.heater)
        self.endpoints = [
            DeviceEndpoint(d, host=h, port=self.port) for d, h in zip(devices, HOSTS, strict=True)
        ]

    def values(self, **policy) -> dict:
        lan = {"hosts": HOSTS, "port": self.port, "bind": "127.0.0.1", "discover_timeout_s": 0.3}
        return {"dr": {**POLICY, **policy, "lan": lan}}

    def acted(self) -> tuple:
        return (self.battery.object.value(0xDA), self.battery.object.value(0xEC),
                self.ev.object.value(0xDA), self.aircon.object.value(0xB3),
                self.aircon.object.value(0x8F), self.heater.object.value(0xB0))  # fmt: skip


ACTED = (BatteryMode.DISCHARGING, 1000, EvMode.STANDBY, 28, PowerSaving.SAVING,
         WaterHeating.MANUAL_STOP)  # fmt: skip
RESTORED = (BatteryMode.STANDBY, 3000, EvMode.CHARGING, 26, PowerSaving.NORMAL, WaterHeating.AUTO)


@contextlib.asynccontextmanager
async def running(cloud: Cloud, tmp_path, clock: ManualClock) -> AsyncIterator[GatewayAgent]:
    options = AgentOptions(queue_path=tmp_path / "q.db", reconnect_backoff_s=(0.05, 0.1))
    agent = GatewayAgent(Identity.generate(SERIAL, cloud.url), options, clock=clock)
    task = asyncio.create_task(agent.run_forever())
    try:
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def on_the_lan(clock: ManualClock) -> AsyncIterator[Home]:
    home = Home(clock)
    for endpoint in home.endpoints:
        await endpoint.start(announce=False)
    try:
        yield home
    finally:
        for endpoint in home.endpoints:
            endpoint.close()


@contextlib.asynccontextmanager
async def with_agent(tmp_path, home: Home, clock: ManualClock, **policy) -> AsyncIterator[tuple]:
    """The cloud, its service client, the agent with the home's DR settings applied."""
    async with Cloud() as cloud, cloud.service() as service:
        settings = Settings(1, 1_785_000_000, home.values(**policy))
        await cloud.send(service, settings, SERIAL, retain=True)
        async with running(cloud, tmp_path, clock) as agent:
            await eventually(lambda: agent.state.settings is not None, timeout_s=10)
            yield cloud, service


@contextlib.asynccontextmanager
async def a_home(tmp_path, **policy) -> AsyncIterator[tuple]:
    clock = ManualClock(ATTACH)
    async with on_the_lan(clock) as home, with_agent(tmp_path, home, clock, **policy) as (c, s):
        yield c, s, home, clock


async def move_to(clock: ManualClock, moment: datetime) -> None:
    """Move the clock; return once the runner sleeps again (its work at `moment` done)."""
    clock.set(moment)
    await asyncio.wait_for(clock.until_sleepers(1), 10)


def test_an_event_is_acked_acted_on_restored_and_reported(tmp_path):
    event = DrEvent(1, START_S, END_S, shed=3, opt_out_deadline_s=START_S - 3600)

    async def main() -> None:
        async with a_home(tmp_path) as (cloud, service, home, clock):
            for copies in (1, 2):  # the copy is acked again ...
                await cloud.send(service, event, SERIAL)
                await eventually(lambda c=copies: len(cloud.of(DrAck)) == c, timeout_s=10)
            assert cloud.of(DrAck) == [DrAck(1, DrAckState.ACCEPTED, 4)] * 2
            await asyncio.wait_for(clock.until_sleepers(1), 10)  # waits for the start
            assert home.acted() == RESTORED
            await move_to(clock, START)
            assert home.acted() == ACTED
            await move_to(clock, START + timedelta(hours=1))  # the EV's 60 minutes are up
            assert home.ev.object.value(0xDA) == EvMode.CHARGING
            clock.set(END)
            await eventually(lambda: cloud.of(DrReport), timeout_s=10)
            assert home.acted() == RESTORED
            # ... and acted on once: a later answer comes, and no second report before it
            await cloud.send(service, DrEvent(1, START_S, END_S, cancelled=True), SERIAL)
            await eventually(lambda: len(cloud.of(DrAck)) == 3, timeout_s=10)
            assert cloud.of(DrAck)[2] == DrAck(
                1, DrAckState.CANCELLED, 0, "no such event under way"
            )
            [report] = cloud.of(DrReport)
            assert report.event_id == 1 and report.ok
            by_class = {d.eoj >> 8: d for d in report.devices}
            assert sorted(by_class) == sorted([dr.BATTERY, dr.EV, dr.AIRCON, dr.WATER_HEATER])
            for device in report.devices:
                assert all(s.confirmed for s in device.sets)  # every Set read back equal

            def sets(code: int, *changes: tuple[int, object, bool]) -> tuple[DrSet, ...]:
                return tuple(DrSet(epc, edt(code, epc, v), True, edt(code, epc, v), restore)
                             for epc, v, restore in changes)  # fmt: skip

            assert by_class[dr.BATTERY].sets == sets(
                dr.BATTERY, (0xEC, 1000, False), (0xDA, BatteryMode.DISCHARGING, False),
                (0xDA, BatteryMode.STANDBY, True), (0xEC, 3000, True),
            )  # fmt: skip
            assert by_class[dr.EV].sets == sets(
                dr.EV, (0xDA, EvMode.STANDBY, False), (0xDA, EvMode.CHARGING, True)
            )
            assert by_class[dr.WATER_HEATER].sets == sets(
                dr.WATER_HEATER, (0xB0, WaterHeating.MANUAL_STOP, False),
                (0xB0, WaterHeating.AUTO, True),
            )  # fmt: skip
            assert by_class[dr.AIRCON].sets == sets(
                dr.AIRCON, (0xB3, 28, False), (0x8F, PowerSaving.SAVING, False),
                (0x8F, PowerSaving.NORMAL, True), (0xB3, 26, True),
            )  # fmt: skip
            powers = {c: (d.power_before_w, d.power_during_w, d.power_after_w)
                      for c, d in by_class.items()}  # fmt: skip
            assert powers[dr.BATTERY] == (0, -1000, 0)
            assert powers[dr.EV] == (3000, 0, 3000)
            assert powers[dr.WATER_HEATER] == (1500, 0, 1500)

    run(main(), timeout_s=60)


def test_a_cancel_restores_at_once(tmp_path):
    async def main() -> None:
        async with a_home(tmp_path) as (cloud, service, home, clock):
            await cloud.send(service, DrEvent(2, START_S, END_S, shed=3), SERIAL)
            await eventually(lambda: cloud.of(DrAck), timeout_s=10)
            await asyncio.wait_for(clock.until_sleepers(1), 10)
            await move_to(clock, START)
            assert home.acted() == ACTED
            await cloud.send(service, DrEvent(2, START_S, END_S, cancelled=True), SERIAL)
            await eventually(lambda: cloud.of(DrReport), timeout_s=10)
            assert clock.now() == START  # not a second later by the home's clock
            assert home.acted() == RESTORED
            assert cloud.of(DrAck) == [DrAck(2, DrAckState.ACCEPTED, 4),
                                       DrAck(2, DrAckState.CANCELLED, 0)]  # fmt: skip
            [report] = cloud.of(DrReport)
            assert report.ok and len(report.devices) == 4
            assert [s.restore for d in report.devices for s in d.sets].count(True) == 6

    run(main(), timeout_s=60)


def test_a_bad_policy_refuses_the_event_and_says_why(tmp_path):
    async def main() -> None:
        async with a_home(tmp_path, battery={"min_soc_percent": 200}) as (cloud, service, *_):
            await cloud.send(service, DrEvent(3, START_S, END_S, shed=1), SERIAL)
            await eventually(lambda: cloud.of(DrAck), timeout_s=10)
            assert cloud.of(DrAck) == [
                DrAck(3, DrAckState.REFUSED, 0, "the dr settings do not validate")
            ]
            await eventually(
                lambda: any(e.code == "dr_policy_invalid" for e in cloud.of(Event)), timeout_s=10
            )

    run(main(), timeout_s=60)


def test_a_restart_mid_event_restores_from_the_state_file(tmp_path):
    async def main() -> None:
        clock = ManualClock(ATTACH)
        async with on_the_lan(clock) as home:
            async with with_agent(tmp_path, home, clock) as (cloud, service):
                await cloud.send(service, DrEvent(4, START_S, END_S, shed=3), SERIAL)
                await eventually(lambda: cloud.of(DrAck), timeout_s=10)
                await asyncio.wait_for(clock.until_sleepers(1), 10)
                await move_to(clock, START)
                assert home.acted() == ACTED
                assert not cloud.of(DrReport)
            # The agent stopped mid-event, the devices still held; another one starts.
            assert home.acted() == ACTED
            async with Cloud() as cloud, cloud.service(), running(cloud, tmp_path, clock):
                await eventually(lambda: cloud.of(DrReport), timeout_s=15)
                assert clock.now() == START
                assert home.acted() == RESTORED
                [report] = cloud.of(DrReport)
                assert report.event_id == 4 and not report.ok  # given up, not resumed
                assert len(report.devices) == 4
                restores = [s for d in report.devices for s in d.sets if s.restore]
                assert len(restores) == 6 and all(s.confirmed for s in restores)
                made = [s for d in report.devices for s in d.sets if not s.restore]
                assert len(made) == 6 and all(s.confirmed for s in made)
                state = tmp_path / "dr-state.json"  # forgotten once the broker has the report
                await eventually(lambda: '"events": {}' in state.read_text())

    run(main(), timeout_s=90)
