"""The simulated meter over real UDP on loopback, read by Kenshin's own client and
session: discovery, every 0x0288 property typed, histories equal to the registers,
half-hourly INF, refused multi-EPC Gets, dropped answers and timeouts, a 1,000-meter fleet."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import TypeVar

import pytest

from kenshin.cli.meter import read_meter
from kenshin.echonet import NODE_PROFILE, SMART_METER
from kenshin.echonet import edt as e
from kenshin.echonet.frame import ESV, Property
from kenshin.echonet.udp import EchonetClient
from kenshin.meter import MeterTimeout, PropertyUnavailable, SmartMeterSession, UdpMeterLink
from kenshin.sim.clock import JST, ManualClock
from kenshin.sim.fleet import SimFleet, fleet_addresses
from kenshin.sim.meter import SIM_MANUFACTURER, MeterConfig, MeterFaults, SimulatedMeter
from tests.support import free_udp_port, run

T = TypeVar("T")
START = datetime(2026, 8, 3, 12, 40, 10, tzinfo=JST)


@contextlib.asynccontextmanager
async def fleet_and_client(
    count: int = 1, *, config: MeterConfig | None = None, timeout_s: float = 0.5, **fleet_kw
) -> AsyncIterator[tuple[SimFleet, EchonetClient, ManualClock]]:
    port = free_udp_port("127.0.1.1")
    clock = ManualClock(START)
    fleet = SimFleet(count, clock, port=port, config=config, **fleet_kw)
    client = EchonetClient(
        host="127.0.0.1", port=0, remote_port=port, timeout_s=timeout_s, backoff_s=0.01
    )
    async with fleet, client:
        yield fleet, client, clock


def session_for(client: EchonetClient, fleet: SimFleet, i: int = 0) -> SmartMeterSession:
    host, port = fleet.addresses[i]
    return SmartMeterSession(UdpMeterLink(client, host, port))


def test_fleet_addresses_stay_on_loopback():
    assert list(fleet_addresses(2)) == [("127.0.1.1", 3610), ("127.0.1.2", 3610)]
    assert list(fleet_addresses(2, "127.0.0.1", 4000, distinct_ports=True))[1] == (
        "127.0.0.1",
        4001,
    )
    with pytest.raises(ValueError, match="loopback"):
        list(fleet_addresses(1, "192.168.1.10"))


def test_multicast_discovery_finds_every_meter():
    async def scenario():
        async with fleet_and_client(5) as (fleet, client, _):
            nodes = await client.discover(timeout_s=0.5)
            assert [(n.host, n.port) for n in nodes] == fleet.addresses
            assert all(SMART_METER in n.instances for n in nodes)
            unicast = await client.discover(timeout_s=0.3, hosts=["127.0.1.3"])
            assert [n.host for n in unicast] == ["127.0.1.3"]

    run(scenario())


EXPECTED_TYPES = {
    "operation_status": e.OnOff,
    "standard_version": e.StandardVersion,
    "fault_status": e.FaultStatus,
    "manufacturer_code": int,
    "production_number": str,
    "current_time": time,
    "current_date": date,
    "coefficient": int,
    "effective_digits": int,
    "energy_unit": e.EnergyUnit,
    "fixed_time_energy_normal": e.FixedTimeEnergy,
    "fixed_time_energy_reverse": e.FixedTimeEnergy,
    "cumulative_energy_normal": int,
    "cumulative_energy_reverse": int,
    "instantaneous_power": int,
    "instantaneous_currents": e.Currents,
    "history1_day": int,
    "history1_normal": e.History1,
    "history1_reverse": e.History1,
    "one_minute_cumulative_energy": e.OneMinuteEnergy,
    "history2_time": e.HistoryTime,
    "history3_time": e.HistoryTime,
    "get_property_map": frozenset,
}


def test_every_smart_meter_property_reads_typed():
    config = MeterConfig(seed=4, pv=True, unit=e.EnergyUnit.KWH_0_01, coefficient=10, digits=6)

    async def scenario():
        async with fleet_and_client(1, config=config) as (fleet, client, clock):
            reading = await read_meter(session_for(client, fleet))
            for name, kind in EXPECTED_TYPES.items():
                assert name in reading, f"{name} missing from {sorted(reading)}"
                assert isinstance(reading[name]["value"], kind), name
            normal, reverse = fleet.meters[0].registers.raw(clock.now())
            assert reading["cumulative_energy_normal"]["value"] == normal
            # 0.01 kWh × 10 = 100 Wh per count, exactly
            assert reading["cumulative_energy_normal_wh"]["value"] == normal * 100
            assert reading["cumulative_energy_reverse_wh"]["value"] == reverse * 100
            assert reading["instantaneous_power"]["unit"] == "W"

    run(scenario())


def test_session_histories_equal_the_registers():
    async def scenario():
        async with fleet_and_client(1, config=MeterConfig(seed=8, pv=True)) as (fl, client, clk):
            session = session_for(client, fl)
            facts = await session.connect()
            assert facts.measures_reverse and facts.scale.unit == e.EnergyUnit.KWH_0_1
            regs, now = fl.meters[0].registers, clk.now()
            for day in (0, 1, 99):
                points = await session.history1(day)
                assert [p.normal.raw if p.normal else None for p in points] == regs.history1(
                    now, day
                )
            reverse = await session.history1(2, reverse=True)
            assert [p.reverse.raw for p in reverse] == regs.history1(now, 2, reverse=True)
            newest = START.replace(minute=30, second=0)
            pairs = await session.history2(newest, 12)
            assert [(p.normal.raw, p.reverse.raw) for p in pairs] == regs.history2(now, newest, 12)
            assert pairs[0].at == newest and pairs[1].at == newest - timedelta(minutes=30)
            minute = START.replace(second=0)
            ones = await session.history3(minute, 10)
            assert [(p.normal.raw, p.reverse.raw) for p in ones] == regs.history3(now, minute, 10)
            fixed = await session.fixed_time_energy()
            assert fixed.at == START.replace(minute=30, second=0)
            fl.meters[0].config.history_days = 40  # a meter that keeps fewer days refuses more
            with pytest.raises(PropertyUnavailable, match="0xE5"):
                await session.history1(45)

    run(scenario())


def test_half_hour_values_are_announced_by_inf():
    config = MeterConfig(seed=2, pv=True, announce_delay=timedelta(seconds=40))

    async def scenario():
        async with fleet_and_client(1, config=config) as (fleet, client, clock):
            await client.get(fleet.addresses[0][0], SMART_METER, [0xE7], port=fleet.addresses[0][1])
            notes = client.notifications()
            clock.set(START.replace(minute=59, second=59))
            await asyncio.sleep(0.05)
            clock.advance(timedelta(seconds=41))  # 13:00:40, the announcement is due
            note = await asyncio.wait_for(anext(notes), 2)
            assert note.source[0] == fleet.addresses[0][0]
            fixed = note.values[0xEA]
            assert fixed.at == START.replace(hour=13, minute=0, second=0)
            assert fixed.raw == fleet.meters[0].registers.raw(fixed.at)[0]
            assert 0xEB in note.values

    run(scenario())


def test_a_meter_that_takes_one_epc_per_get_is_read_by_splitting():
    config = MeterConfig(seed=3, faults=MeterFaults(max_epcs_per_get=1))

    async def scenario():
        async with fleet_and_client(1, config=config) as (fleet, client, clock):
            session = session_for(client, fleet)
            await session.connect()
            power, currents = await session.instant()
            assert power == fleet.meters[0].registers.instant_power_w(clock.now())
            assert isinstance(currents, e.Currents)

    run(scenario())


def test_a_get_res_carrying_only_some_epcs_is_completed_by_asking_again():
    # Issue 17 item 7.1: a Get_Res (0x72, not an SNA) that leaves EPCs out was taken as final.
    faults = MeterFaults(max_epcs_per_get=1, omit_beyond_limit=True)
    config = MeterConfig(seed=3, faults=faults)

    async def scenario():
        async with fleet_and_client(1, config=config) as (fleet, client, clock):
            session = session_for(client, fleet)
            facts = await session.connect()
            assert facts.get_map and facts.set_map and facts.serial  # all asked in groups
            power, currents = await session.instant()
            assert power == fleet.meters[0].registers.instant_power_w(clock.now())
            assert isinstance(currents, e.Currents)

    run(scenario())


def test_a_property_refused_alone_is_really_refused():
    config = MeterConfig(seed=3, faults=MeterFaults(max_epcs_per_get=1, omit_beyond_limit=True))

    async def scenario():
        async with fleet_and_client(1, config=config) as (fleet, client, _clock):
            session = session_for(client, fleet)
            await session.connect()
            with pytest.raises(PropertyUnavailable) as caught:
                await session.get_values([0xE7, 0xC9])  # 0xC9: no such property
            assert caught.value.epc == 0xC9

    run(scenario())


def test_every_simulated_meter_has_its_own_identification_number():
    # Issue 17 item 7.4: tools that key nodes by 0x83 (pychonet) saw one device.
    async def scenario():
        async with fleet_and_client(2) as (fleet, client, _clock):
            idents = []
            for host, port in fleet.addresses:
                answer = await client.request(
                    host, NODE_PROFILE, ESV.GET, [Property(0x83)], port=port
                )
                idents.append(answer.values[0x83])
            assert len(idents[0]) == 17 and idents[0][0] == 0xFE
            assert idents[0][1:4] == SIM_MANUFACTURER.to_bytes(3, "big")
            assert idents[0] != idents[1]
        again = SimulatedMeter(ManualClock(START), MeterConfig(seed=1))
        assert again.node.profile.value(0x83) == idents[0]  # the seed decides

    run(scenario())


def test_a_dropped_answer_is_retried_then_a_timeout_names_node_and_epc():
    async def scenario():
        async with fleet_and_client(1, timeout_s=0.2) as (fleet, client, clock):
            meter, session = fleet.meters[0], session_for(client, fleet)
            meter.config.faults.drop_next = 2  # two attempts lost, the third answered
            assert await session.instant_power_w() == meter.registers.instant_power_w(clock.now())
            assert client.counters["timeouts"] == 2
            meter.config.faults.silent = True
            with pytest.raises(MeterTimeout) as caught:
                await session.instant_power_w()
            message = str(caught.value)
            assert "127.0.1.1" in message and "E7" in message and "3 attempts" in message

    run(scenario())


def test_duplicated_and_late_answers_are_matched_by_tid():
    config = MeterConfig(seed=5, faults=MeterFaults(duplicate_rate=1.0, delay_s=0.05))

    async def scenario():
        async with fleet_and_client(1, config=config) as (fleet, client, clock):
            session = session_for(client, fleet)
            for _ in range(5):
                assert await session.instant_power_w() == fleet.meters[0].registers.instant_power_w(
                    clock.now()
                )
            await asyncio.sleep(0.1)
            assert client.counters["stale"] >= 4  # the doubles, ignored

    run(scenario())


def test_meter_clock_drift_shows_in_its_timestamps():
    config = MeterConfig(seed=6, drift=timedelta(minutes=-3))

    async def scenario():
        async with fleet_and_client(1, config=config) as (fleet, client, _):
            session = session_for(client, fleet)
            await session.connect()
            fixed = await session.fixed_time_energy()
            assert fixed.at == START.replace(minute=30, second=0)  # 12:37 by the meter
            clock_value = await session.read_property(0x97)
            assert clock_value == (START - timedelta(minutes=3)).time().replace(second=0)

    run(scenario())


@pytest.mark.slow
def test_a_fleet_of_a_thousand_meters_answers():
    async def scenario():
        template = replace(MeterConfig(), history_days=100)
        async with fleet_and_client(1000, config=template, timeout_s=2.0) as (fleet, client, _):
            nodes = await client.discover(timeout_s=2.0)
            assert len(nodes) == 1000
            results = await asyncio.gather(
                *(client.get(h, SMART_METER, [0xE7, 0xE0], port=p) for h, p in fleet.addresses)
            )
            assert all(r.ok for r in results)
            assert fleet.requests_answered >= 2000

    run(scenario(), timeout_s=120)


class _PartialLink:
    """Answers a multi-EPC Get with a Get_Res (0x72) giving the first EPC and the rest with
    PDC 0 (no EDT); alone, each EPC is answered in full."""

    description = "fake"

    def __init__(self) -> None:
        self.asked: list[list[int]] = []

    async def request(self, esv, props, props_get=None):
        from kenshin.echonet.frame import Frame
        from kenshin.echonet.udp import Response

        epcs = [p.epc for p in props]
        self.asked.append(epcs)
        edts = {0xE7: (1234).to_bytes(4, "big"), 0xE8: bytes.fromhex("001E7FFE")}
        given = [Property(epc, edts[epc] if i == 0 else b"") for i, epc in enumerate(epcs)]
        request = Frame(1, SMART_METER, SMART_METER, ESV.GET, tuple(Property(e_) for e_ in epcs))
        answer = request._replace(esv=ESV.GET_RES, props=tuple(given))
        return Response.from_frame(answer, ("127.0.0.1", 3610), request)


def test_a_get_res_with_empty_edts_is_completed_by_asking_again():
    async def scenario():
        link = _PartialLink()
        values = await SmartMeterSession(link).get_values([0xE7, 0xE8])
        assert values[0xE7] == 1234 and values[0xE8].r_da == 30
        assert link.asked == [[0xE7, 0xE8], [0xE8]]

    run(scenario())
