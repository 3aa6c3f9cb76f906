"""One home on loopback UDP, a `ManualClock` and a 17:00-19:00 demand-response action: the
smart meter and four controllable devices, each its own node on 127.0.0.x; the gateway's
`DrActor` discovers them, sets them within the policy, reads every Set back and restores
them. The meter's instant power and 30-minute registers, read over ECHONET Lite, equal the
house's own registers plus the devices' energy as their models give it, to the count."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta

from kenshin.echonet import SMART_METER
from kenshin.echonet import edt as e
from kenshin.echonet.classes import AirconMode, BatteryMode, EvMode, PowerSaving, WaterHeating
from kenshin.echonet.udp import EchonetClient
from kenshin.gateway import dr
from kenshin.gateway.dr_actor import DrActor
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
    half_hour_outdoor_c,
)
from kenshin.sim.meter import MeterConfig, MeterEndpoint, SimulatedMeter
from tests.support import free_udp_port, run

ATTACH = datetime(2026, 8, 3, 16, 50, tzinfo=JST)
H = timedelta(hours=1)
START, END = ATTACH + timedelta(minutes=10), ATTACH + timedelta(minutes=130)
HOSTS = ["127.0.0.41", "127.0.0.42", "127.0.0.43", "127.0.0.44", "127.0.0.45"]
WS_PER_COUNT = 360  # E1 = 0x04: 0.0001 kWh


def meter_config() -> MeterConfig:
    return MeterConfig(seed=7, pv=False, unit=e.EnergyUnit.KWH_0_0001, digits=8, anchor=ATTACH)


def energy_ws(pieces: list[tuple[datetime, datetime, int]], until: datetime) -> int:
    return sum(w * int((min(b, until) - a).total_seconds()) for a, b, w in pieces if a < until)


def test_a_dr_action_sets_reads_back_restores_and_shows_in_the_meter():
    clock = ManualClock(ATTACH)
    meter, twin = SimulatedMeter(clock, meter_config()), SimulatedMeter(clock, meter_config())
    battery = SimulatedBattery(clock, BatteryConfig(stored_wh=8_000))
    ev = SimulatedEvCharger(clock, EvConfig(rated_w=3_000, wanted_wh=20_000))
    aircon = SimulatedAircon(clock, AirconConfig(mode=AirconMode.COOLING, setpoint_c=26))
    heater = SimulatedWaterHeater(
        clock, WaterHeaterConfig(heater_w=1_500, stored_wh=2_000, afternoon=(16.0, 20.0))
    )
    devices = (battery, ev, aircon, heater)
    for device in devices:
        meter.attach(device)
    policy = dr.parse_policy(
        {"battery": {"max_discharge_w": 1000, "min_soc_percent": 20},
         "ev": {"max_pause_minutes": 60}, "water_heater": {"max_hold_minutes": 120}}
    )  # fmt: skip
    action = dr.parse_action({"start": START, "end": END, "shed": 3})

    # What the devices draw by their models, with the action and without it (W, + drawn).
    def ac(moment: datetime, setpoint: int, saving: bool) -> int:
        return aircon.model_w(half_hour_outdoor_c(moment), setpoint, AirconMode.COOLING, saving)

    halves = [ATTACH + timedelta(minutes=m) for m in (0, 10, 40, 70, 100, 130, 160)]
    far = ATTACH + 24 * H
    acted = [(START, END, -1000), (ATTACH, START, 3000), (START + H, far, 3000),
             (ATTACH, START, 1500), (END, far, 1500)]  # fmt: skip
    untouched = [(ATTACH, far, 3000), (ATTACH, far, 1500)]
    for a, b in itertools.pairwise(halves):
        acted.append((a, b, ac(a, 28, True) if START <= a < END else ac(a, 26, False)))
        untouched.append((a, b, ac(a, 26, False)))

    async def scenario():
        port = free_udp_port(HOSTS[0])
        endpoints = [MeterEndpoint(meter, host=HOSTS[0], port=port)]
        endpoints += [
            DeviceEndpoint(d, host=h, port=port) for d, h in zip(devices, HOSTS[1:], strict=True)
        ]
        for endpoint in endpoints:
            await endpoint.start(announce=False)
        client = EchonetClient(
            host="127.0.0.1", port=0, join_multicast=False, timeout_s=1, backoff_s=0.01
        )
        await client.open()
        actor = DrActor(client, clock, policy, hosts=HOSTS, port=port, discover_timeout_s=0.3)

        async def meter_reads() -> tuple[int, int]:
            answer = await client.get(HOSTS[0], SMART_METER, [0xE7, 0xEA], port=port)
            return answer.values[0xE7], answer.values[0xEA].raw

        async def move_to(moment: datetime) -> None:
            clock.set(moment)
            await asyncio.wait_for(clock.until_sleepers(1), 10)  # the actor waits again

        def expected_ea(moment: datetime) -> int:
            ws = twin.registers.energy_ws(moment)[0] + energy_ws(acted, moment)
            assert meter.registers.energy_ws(moment)[0] == ws  # exactly, in watt-seconds
            return ws // WS_PER_COUNT % 10**8

        try:
            task = asyncio.create_task(actor.run(action))
            await asyncio.wait_for(clock.until_sleepers(1), 10)
            await move_to(START)  # acts, then sleeps until the EV's pause ends at 18:00
            assert battery.object.value(0xDA) == BatteryMode.DISCHARGING
            assert battery.object.value(0xEC) == 1000
            assert ev.object.value(0xDA) == EvMode.STANDBY
            assert aircon.object.value(0xB3) == 28
            assert aircon.object.value(0x8F) == PowerSaving.SAVING
            assert heater.object.value(0xB0) == WaterHeating.MANUAL_STOP
            instant, _ = await meter_reads()
            house = twin.registers.instant_power_w(START)
            assert instant == house - 1000 + ac(START, 28, True)
            drops = []
            for minutes in (30, 60, 90, 120):
                moment = START + timedelta(minutes=minutes)
                if moment < END:
                    await move_to(moment)
                else:
                    clock.set(moment)
                    report = await asyncio.wait_for(task, 10)
                _, ea = await meter_reads()
                assert ea == expected_ea(moment)
                drops.append(energy_ws(untouched, moment) - energy_ws(acted, moment))
            # The half hours' drop, in Wh: battery 500, water heater 750, EV 1,500 for the
            # first hour, and what the air conditioner saved at 28 °C with power saving.
            ac_saved = [(ac(START + k * H / 2, 26, False) - ac(START + k * H / 2, 28, True)) * 1800
                        for k in range(4)]  # fmt: skip
            steps = [b - a for a, b in itertools.pairwise([0, *drops])]
            assert steps == [(500 + 750 + 1500) * 3600 + ac_saved[0],
                             (500 + 750 + 1500) * 3600 + ac_saved[1],
                             (500 + 750) * 3600 + ac_saved[2],
                             (500 + 750) * 3600 + ac_saved[3]]  # fmt: skip
            instant, _ = await meter_reads()
            assert instant == twin.registers.instant_power_w(END) + 3000 + 1500 + ac(END, 26, False)
        finally:
            client.close()
            for endpoint in endpoints:
                endpoint.close()
        return report

    report = run(scenario(), 60)
    assert battery.object.value(0xDA) == BatteryMode.STANDBY
    assert battery.object.value(0xEC) == 3000
    assert ev.object.value(0xDA) == EvMode.CHARGING
    assert (aircon.object.value(0xB3), aircon.object.value(0x8F)) == (26, PowerSaving.NORMAL)
    assert heater.object.value(0xB0) == WaterHeating.AUTO
    assert not report.skipped  # the meter was never a candidate
    by_class = {d.class_code: r for d, r in report.devices.items()}
    for entry in by_class.values():
        assert all(s.confirmed for s in entry.sets)  # every Set accepted and read back
        assert [s.restore for s in entry.sets].count(True) == len(entry.sets) // 2
    power = {code: (r.power_before_w, r.power_after_w, r.power_restored_w)
             for code, r in by_class.items()}  # fmt: skip
    assert power == {
        dr.BATTERY: (0, -1000, 0),
        dr.EV: (3000, 0, 3000),
        dr.AIRCON: (ac(START, 26, False), ac(START, 28, True), ac(END, 26, False)),
        dr.WATER_HEATER: (1500, 0, 1500),
    }
    ev_sets = by_class[dr.EV].sets
    assert [(s.asked, s.at) for s in ev_sets] == [(EvMode.STANDBY, START),
                                                 (EvMode.CHARGING, START + H)]  # fmt: skip
