"""The agent reports its meter link when it changes, not only at start (issue 17 item 2:
after 16 minutes the gateway page still said "connecting", LQI "—", uptime 0 h 0 min,
while data flowed). Real parts: the embedded broker, aiomqtt on both ends, a simulated
meter over UDP; a Wi-SUN link's own status (state and LQI) stands in where noted."""

from __future__ import annotations

import asyncio
import time

import pytest

from kenshin.echonet import udp
from kenshin.gateway import agent as agent_module
from kenshin.gateway import status as status_rules
from kenshin.gateway.status import STATUS_BURST, StatusGate
from kenshin.wire import LinkState, Status
from kenshin.wisun.session import LinkState as WisunState
from kenshin.wisun.session import LinkStatus
from tests.gateway.test_supervision import gateway_with_meter
from tests.support import eventually, run

SERIAL = "GW-ST"


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
        async with gateway_with_meter(tmp_path, SERIAL) as (cloud, _, fleet, agent):

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
    monkeypatch.setattr(status_rules, "STATUS_GAP_S", 0.5)
