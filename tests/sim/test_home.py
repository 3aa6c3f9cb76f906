"""The simulated controllable devices (`kenshin.sim.home`) and the meter they sit behind:
each model exact on a `ManualClock`, Sets and refusals over real UDP, and the meter's
registers moving by exactly the devices' energy (a twin meter without them is the base)."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from kenshin.echonet.classes import (
    AirconMode,
    BatteryMode,
    EvMode,
    HeatingStatus,
    PowerSaving,
    WaterHeating,
)
from kenshin.echonet.frame import ESV
from kenshin.echonet.udp import EchonetClient
from kenshin.sim.clock import JST, ManualClock
from kenshin.sim.devices import DeviceEndpoint
from kenshin.sim.home import (
    BATTERY_EOJ,
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
from kenshin.sim.meter import MeterConfig, SimulatedMeter
from tests.support import free_udp_port, run

START = datetime(2026, 8, 3, 16, 0, tzinfo=JST)
WH = 3600  # Ws


def meters(clock: ManualClock, *, pv: bool = False) -> tuple[SimulatedMeter, SimulatedMeter]:
    """A meter and its twin without devices: same house, same registers."""
    config = MeterConfig(seed=7, pv=pv, anchor=clock.now())
    twin = MeterConfig(seed=7, pv=pv, anchor=clock.now())
    return SimulatedMeter(clock, config), SimulatedMeter(clock, twin)


def added(meter: SimulatedMeter, twin: SimulatedMeter) -> tuple[int, int]:
    now = meter.now()
    (n, r), (tn, tr) = meter.registers.energy_ws(now), twin.registers.energy_ws(now)
    return n - tn, r - tr


def test_battery_discharges_to_its_floor_and_the_meter_counts_exactly_that():
    clock = ManualClock(START)
    meter, twin = meters(clock)
    battery = SimulatedBattery(clock, BatteryConfig(stored_wh=2_000, min_percent=10))
    meter.attach(battery)
    clock.advance(600)
    battery.object.write(0xEC, (1_000).to_bytes(4, "big"))
    assert battery.object.write(0xDA, bytes([BatteryMode.DISCHARGING]))
    clock.advance(1800)
    assert battery.power_w() == -1000 and battery.object.value(0xCF) == BatteryMode.DISCHARGING
    assert (
        meter.registers.instant_power_w(clock.now()) - twin.registers.instant_power_w(clock.now())
        == -1000
    )
    clock.advance(3 * 3600)
    # 1,000 Wh above the 10 % floor at 1,000 W: it stopped at 17:10, exactly.
    assert battery.object.value(0xE2) == 1_000 and battery.object.value(0xE4) == 10
    assert battery.power_w(START + timedelta(minutes=69, seconds=59)) == -1000
    assert battery.power_w(START + timedelta(minutes=70)) == 0
    assert added(meter, twin) == (-1_000 * WH, 0)


def test_a_device_drawing_nothing_leaves_the_registers_as_they_were():
    clock = ManualClock(START)
    meter, twin = meters(clock)
    meter.attach(SimulatedBattery(clock))  # standby
    clock.advance(timedelta(hours=5, seconds=7))
    assert added(meter, twin) == (0, 0)
    assert meter.registers.fixed_time(meter.now()) == twin.registers.fixed_time(meter.now())


def test_past_zero_the_flow_is_reverse_where_the_meter_measures_it():
    clock = ManualClock(datetime(2026, 8, 3, 12, 0, tzinfo=JST))
    for pv in (True, False):
        meter, twin = meters(clock, pv=pv)
        battery = SimulatedBattery(clock, BatteryConfig(mode=BatteryMode.DISCHARGING))
        meter.attach(battery)
        before = clock.now()
        clock.advance(600)
        normal, reverse = added(meter, twin)
        # Either way the house bought 3 kW less (down to nothing); what was left over went
        # out, counted only by a meter with a reverse register.
        steps = [
            twin.registers.instant_power_w(before + timedelta(seconds=10 * k)) for k in range(60)
        ]
        assert normal == -sum(min(max(w, 0), 3000) for w in steps) * 10
        assert reverse == (sum(max(3000 - max(w, 0), 0) for w in steps) * 10 if pv else 0)
        clock = ManualClock(datetime(2026, 8, 3, 12, 0, tzinfo=JST))


def test_ev_session_pauses_on_standby_and_ends_when_the_car_has_what_it_wanted():
    clock = ManualClock(START)
    ev = SimulatedEvCharger(clock, EvConfig(rated_w=3_000, wanted_wh=1_500, vehicle_wh=20_000))
    assert ev.power_w() == 3000
    clock.advance(600)
    assert ev.object.write(0xDA, bytes([EvMode.STANDBY]))
    clock.advance(3600)
    assert ev.power_w() == 0 and ev.object.value(0xE2) == 20_500
    assert not ev.object.write(0xDA, bytes([EvMode.DISCHARGING]))  # a charger only
    assert ev.object.write(0xDA, bytes([EvMode.CHARGING]))
    clock.advance(3600)
    # 1,000 Wh left at 3 kW: 20 minutes after 17:10.
    assert ev.power_w(START + timedelta(minutes=89, seconds=59)) == 3000
    assert ev.power_w() == 0 and ev.object.value(0xE2) == 21_500


def test_water_heater_follows_its_windows_and_holds_on_manual_stop():
    clock = ManualClock(datetime(2026, 8, 3, 12, 0, tzinfo=JST))
    config = WaterHeaterConfig(heater_w=1_500, full_wh=12_000, stored_wh=9_000)
    heater = SimulatedWaterHeater(clock, config)
    assert heater.power_w() == 0 and heater.object.value(0xB2) == HeatingStatus.NOT_HEATING
    clock.advance(3600)  # 13:00: the afternoon window opens
    assert heater.power_w() == 1500 and heater.object.value(0xB2) == HeatingStatus.HEATING
    clock.advance(1800)
    assert heater.object.write(0xB0, bytes([WaterHeating.MANUAL_STOP]))
    clock.advance(3600)
    assert heater.power_w() == 0
    assert heater.object.write(0xB0, bytes([WaterHeating.AUTO]))
    clock.advance(3 * 3600)
    # 750 Wh before the hold; the 2,250 Wh still missing take from 14:30 to 16:00, when
    # the tank is full just as the window closes.
    heater.settle()
    assert heater.stored_wus // (3600 * 10**6) == 12_000
    assert heater.power_w(datetime(2026, 8, 3, 15, 59, 59, tzinfo=JST)) == 1500
    assert heater.power_w(datetime(2026, 8, 3, 16, 0, tzinfo=JST)) == 0


@settings(max_examples=60, deadline=None)
@given(
    setpoint=st.integers(16, 30),
    mode=st.sampled_from([AirconMode.COOLING, AirconMode.HEATING, AirconMode.AUTO]),
    saving=st.booleans(),
    minutes=st.integers(0, 3 * 24 * 60),
)
def test_aircon_power_is_its_documented_model(setpoint, mode, saving, minutes):
    clock = ManualClock(START + timedelta(minutes=minutes))
    ac = SimulatedAircon(clock, AirconConfig(mode=mode, setpoint_c=setpoint))
    if saving:
        assert ac.object.write(0x8F, bytes([PowerSaving.SAVING]))
    outdoor = half_hour_outdoor_c(clock.now())
    gap = {AirconMode.COOLING: outdoor - setpoint, AirconMode.HEATING: setpoint - outdoor}.get(
        mode, abs(outdoor - setpoint)
    )
    watts = min(2000, round(40 + 150 * max(0.0, gap)))
    assert ac.power_w() == (watts * 80 // 100 if saving else watts)
    assert not ac.object.write(0xB3, bytes([31]))  # outside 16..30 °C: refused
    assert ac.object.write(0x80, bytes([0x31])) and ac.power_w() == 0


def test_devices_answer_sets_and_refusals_over_udp():
    clock = ManualClock(START)
    battery = SimulatedBattery(clock)

    async def scenario():
        host = "127.0.0.31"
        port = free_udp_port(host)
        endpoint = DeviceEndpoint(battery, host=host, port=port)
        await endpoint.start(announce=False)
        client = EchonetClient(host="127.0.0.1", port=0, join_multicast=False, timeout_s=1)
        await client.open()
        try:
            nodes = await client.discover(timeout_s=0.3, hosts=[host], port=port)
            assert nodes[0].instances == (BATTERY_EOJ,)
            ok = await client.set_c(host, BATTERY_EOJ, {0xDA: BatteryMode.DISCHARGING}, port=port)
            assert ok.ok
            refused = await client.set_c(host, BATTERY_EOJ, {0xDA: BatteryMode.TEST}, port=port)
            assert refused.frame.esv == ESV.SETC_SNA and refused.refused == {0xDA}
            clock.advance(60)
            got = await client.get(host, BATTERY_EOJ, [0xDA, 0xD3, 0xE2], port=port)
            assert got.values == {0xDA: BatteryMode.DISCHARGING, 0xD3: -3000, 0xE2: 5_950}
        finally:
            client.close()
            endpoint.close()

    run(scenario())
