"""The simulated PV inverter (`kenshin.sim.pv`): read over real UDP on 127.0.0.x like any
ECHONET Lite node, its generation following the sun and its cumulative register the exact
integral of what it generated on a `ManualClock`."""

from __future__ import annotations

from datetime import datetime, timedelta

from kenshin.echonet.classes import GridConnection
from kenshin.echonet.udp import EchonetClient
from kenshin.sim.clock import JST, ManualClock
from kenshin.sim.pv import PV_EOJ, PvConfig, PvEndpoint, SimulatedPv
from tests.support import free_udp_port, run

HOST = "127.0.0.11"


def test_the_inverter_answers_over_udp_and_integrates_the_sun():
    clock = ManualClock(datetime(2026, 7, 1, 5, 0, tzinfo=JST))
    pv = SimulatedPv(clock, PvConfig(peak_w=3000, initial_wh=500))

    async def scenario():
        port = free_udp_port(HOST)
        endpoint = PvEndpoint(pv, host=HOST, port=port)
        await endpoint.start(announce=False)
        client = EchonetClient(host="127.0.0.1", port=0, join_multicast=False, timeout_s=1)
        await client.open()
        try:

            async def read() -> dict[int, object]:
                answer = await client.get(HOST, PV_EOJ, [0x80, 0xD0, 0xE0, 0xE1], port=port)
                assert answer.ok
                return answer.values

            night = await read()
            assert night[0xE0] == 0 and night[0xE1] == 500
            assert night[0xD0] == GridConnection.REVERSE_FLOW_ACCEPTED
            clock.advance(timedelta(hours=7))  # noon: the peak
            noon = await read()
            assert noon[0xE0] == 3000
            # From 05:00 to 12:00 (sunrise at 06:00): 3000 W over half a sine of 12 h,
            # 3000 * 6 h * 2 / pi = 11,459 Wh, within the trapezoids' error.
            assert abs(noon[0xE1] - 500 - 3000 * 6 * 2 / 3.141592653589793) < 5
            clock.advance(timedelta(hours=12))  # midnight: dark, the register kept
            late = await read()
            assert late[0xE0] == 0 and late[0xE1] - 500 > 2 * (noon[0xE1] - 500) - 10
        finally:
            client.close()
            endpoint.close()

    run(scenario())


def test_clouds_dim_the_generation():
    clock = ManualClock(datetime(2026, 7, 1, 12, 0, tzinfo=JST))
    assert SimulatedPv(clock, PvConfig(peak_w=4000, cloud=0.75)).generation_w() == 1000
