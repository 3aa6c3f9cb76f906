"""The agent reports its meter link when it changes, not only at start (issue 17 item 2:
after 16 minutes the gateway page still said "connecting", LQI "—", uptime 0 h 0 min,
while data flowed). Real parts: the embedded broker, aiomqtt on both ends, a simulated
meter over UDP; a Wi-SUN link's own status (state and LQI) stands in where noted."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from kenshin.echonet import udp
from kenshin.gateway import agent as agent_module
from kenshin.gateway.agent import STATUS_BURST, AgentOptions, GatewayAgent, StatusGate
from kenshin.gateway.identity import Identity
from kenshin.sim.clock import JST, ScaledClock
from kenshin.sim.fleet import SimFleet
from kenshin.sim.meter import MeterConfig
from kenshin.wire import LinkState, Settings, Status
from kenshin.wisun.session import LinkState as WisunState
from kenshin.wisun.session import LinkStatus
from tests.gateway.cloud import Cloud
from tests.support import eventually, free_udp_port, run

SERIAL = "GW-ST"


@contextlib.asynccontextmanager
async def gateway_with_meter(tmp_path) -> AsyncIterator[tuple[Cloud, SimFleet, GatewayAgent]]:
    clock = ScaledClock(datetime(2026, 7, 1, 10, 0, tzinfo=JST), speed=20.0)
    meter_port = free_udp_port("127.0.1.1")
    meter = {"link": "udp", "host": "127.0.1.1", "port": meter_port, "ref": "m1"}
    values = {"meter": meter, "poll": {"instant_interval_s": 2}, "uplink": {"max_delay_s": 0.2}}
    options = AgentOptions(queue_path=tmp_path / "q.db", restart_backoff_s=(0.05, 0.1))
    async with (
        SimFleet(1, clock, port=meter_port, config=MeterConfig(seed=5)) as fleet,
        Cloud() as cloud,
        cloud.service() as service,
    ):
        await cloud.send(service, Settings(1, int(time.time()), values), SERIAL, retain=True)
        agent = GatewayAgent(Identity.generate(SERIAL, cloud.url), options, clock=clock)
        running = asyncio.create_task(agent.run_forever())
        try:
            yield cloud, fleet, agent
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


def test_the_status_gate_lets_a_burst_through_then_one_per_refill():
    gate = StatusGate(burst=STATUS_BURST, refill_s=600)
    now = 1000.0
    sent = []
    for _ in range(70):  # a flapping LQI: a change every 10 s for 11 minutes and a half
        sent.append(gate.allow(now))
        now += 10
    assert sum(sent) == STATUS_BURST + 1  # the burst, then one refilled token
    assert not gate.allow(now)
    assert gate.allow(now + 600)  # a refill period later, one more
    assert not gate.allow(now + 601, gap_s=5)  # never two within the gap


class _Wisun:
    """A Wi-SUN link's own view, set by the test."""

    def __init__(self) -> None:
        self.status = LinkStatus(state=WisunState.JOINED, lqi=150)


def statuses(cloud) -> list[Status]:
    return cloud.of(Status)


def test_link_state_and_lqi_are_reported_when_they_change(tmp_path, monkeypatch):
    # A silent meter costs each read 3 short timeouts, not 3 x 5 s.
    real_init = udp.EchonetClient.__init__

    def quick(self, *args, **kwargs):
        real_init(self, *args, **{**kwargs, "timeout_s": 0.2, "attempts": 1})

    monkeypatch.setattr(udp.EchonetClient, "__init__", quick)

    async def main() -> None:
        async with gateway_with_meter(tmp_path) as (cloud, fleet, agent):

            def joined() -> bool:
                return any(
                    s.link == LinkState.JOINED and s.last_good_read_s for s in statuses(cloud)
                )

            # Connected to the meter and read it: said within seconds, not at the next day.
            await eventually(joined, timeout_s=10)
            first = next(s for s in statuses(cloud) if s.link == LinkState.JOINED)
            assert first.uptime_s >= 0 and first.last_good_read_s <= time.time()

            # The meter stops answering: "no_meter", then back to "joined" when it answers.
            sim = fleet.meters[0]
            sim.config.faults.silent = True
            await eventually(lambda: statuses(cloud)[-1].link == LinkState.NO_METER, 15)
            sim.config.faults.silent = False
            await eventually(lambda: statuses(cloud)[-1].link == LinkState.JOINED, 15)

            # A Wi-SUN link's LQI: a small wobble is not news, a real move is, at once.
            wisun = _Wisun()
            agent.meter.link = wisun
            agent._status_gate = StatusGate()  # the meter's outage spent the first burst
            await eventually(lambda: statuses(cloud)[-1].lqi == 150, 10)
            count = len(statuses(cloud))
            wisun.status.lqi = 155
            await _quiet(4)
            assert len(statuses(cloud)) == count, statuses(cloud)[count:]
            wisun.status.lqi = 90
            await eventually(lambda: statuses(cloud)[-1].lqi == 90, 10)
            # Flapping: the gate holds it to the bucket, whatever the LQI does.
            before = len(statuses(cloud))
            for n in range(20):
                wisun.status.lqi = 200 if n % 2 else 60
                await _quiet(0.5)
            assert len(statuses(cloud)) - before <= STATUS_BURST

    run(main(), timeout_s=90)


async def _quiet(seconds: float) -> None:
    await asyncio.sleep(seconds)


@pytest.fixture(autouse=True)
def _fast_checks(monkeypatch):
    monkeypatch.setattr(agent_module, "STATUS_CHECK_S", 0.2)
    monkeypatch.setattr(agent_module, "STATUS_GAP_S", 0.5)
