"""Demand response, sans-I/O (`kenshin.gateway.dr`): the policy and action parse strictly
with typed errors, and no plan ever leaves the policy's comfort limits."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kenshin.echonet.classes import AirconMode, BatteryMode, EvMode, PowerSaving, WaterHeating
from kenshin.echonet.edt import OnOff, PowerRange
from kenshin.echonet.frame import EOJ
from kenshin.gateway import dr
from kenshin.sim.clock import JST

START = datetime(2026, 8, 3, 17, 0, tzinfo=JST)
END = START + timedelta(hours=2)
BATTERY = dr.Device("127.0.0.2", 3610, EOJ(0x02, 0x7D, 1))
EV = dr.Device("127.0.0.3", 3610, EOJ(0x02, 0x7E, 1))
AC = dr.Device("127.0.0.4", 3610, EOJ(0x01, 0x30, 1))
HEATER = dr.Device("127.0.0.5", 3610, EOJ(0x02, 0x6B, 1))


def action(**target) -> dr.DrAction:
    return dr.parse_action({"start": START, "end": END, **(target or {"shed": 3})})


def readings(*, soc=80, setpoint=26, mode=AirconMode.COOLING) -> list[dr.Reading]:
    return [
        dr.Reading(
            AC, {0x80: OnOff.ON, 0xB0: mode, 0xB3: setpoint, 0x8F: PowerSaving.NORMAL, 0x84: 800}
        ),
        dr.Reading(HEATER, {0xB0: WaterHeating.AUTO, 0x84: 1500}),
        dr.Reading(EV, {0xDA: EvMode.CHARGING, 0xD3: 3000}),
        dr.Reading(
            BATTERY,
            {
                0xDA: BatteryMode.STANDBY,
                0xD3: 0,
                0xE2: soc * 100,
                0xE4: soc,
                0xEC: 3000,
                0xC9: PowerRange(0, 3000),
            },
        ),
    ]


def test_shed_3_asks_every_device_within_the_policy_and_restores_in_reverse():
    policy = dr.parse_policy(
        {"battery": {"max_discharge_w": 1000}, "ev": {"max_pause_minutes": 60}}
    )
    plan = dr.plan(action(), readings(), policy, START)
    asked = [(c.device, c.epc, c.value, c.restore, c.restore_at) for c in plan.changes]
    assert asked == [
        (BATTERY, 0xEC, 1000, 3000, END),  # 6,000 Wh above 20 % at 1 kW: beyond the window
        (BATTERY, 0xDA, BatteryMode.DISCHARGING, BatteryMode.STANDBY, END),
        (HEATER, 0xB0, WaterHeating.MANUAL_STOP, WaterHeating.AUTO, END),
        (EV, 0xDA, EvMode.STANDBY, EvMode.CHARGING, START + timedelta(hours=1)),
        (AC, 0xB3, 28, 26, END),
        (AC, 0x8F, PowerSaving.SAVING, PowerSaving.NORMAL, END),
    ]
    restores = plan.restores()
    assert [m for m, _ in restores] == [START + timedelta(hours=1), END]
    assert [(c.device, c.epc) for c in restores[1][1]][:2] == [(AC, 0x8F), (AC, 0xB3)]


def test_shed_levels_and_a_target_take_the_least_felt_first():
    policy = dr.DrPolicy()
    level1 = dr.plan(action(shed=1), readings(), policy, START)
    assert {c.device for c in level1.changes} == {BATTERY, HEATER}
    assert level1.skipped[AC] == "not in shed level 1"
    target = dr.plan(action(reduce_w=3500), readings(), policy, START)
    assert {c.device for c in target.changes} == {BATTERY, HEATER}
    assert target.skipped[EV] == "the target is reached without it"


def test_a_battery_at_the_floor_is_left_alone_and_a_late_start_counts_from_now():
    plan = dr.plan(action(), readings(soc=20), dr.DrPolicy(), START)
    assert BATTERY in plan.skipped
    late = START + timedelta(minutes=30)
    plan = dr.plan(action(), readings(soc=30), dr.DrPolicy(), late)
    # 10 % of 10,000 Wh above the floor, at 3 kW: 20 minutes from when it acts.
    assert {c.restore_at for c in plan.changes if c.device == BATTERY} == {
        late + timedelta(minutes=20)
    }


@settings(max_examples=200, deadline=None)
@given(
    setpoint=st.integers(16, 30),
    mode=st.sampled_from([AirconMode.COOLING, AirconMode.HEATING]),
    raise_c=st.integers(0, 10),
    cap=st.integers(16, 30),
    floor=st.integers(16, 30),
)
def test_the_setpoint_never_leaves_the_comfort_limits(setpoint, mode, raise_c, cap, floor):
    limits = {"max_raise_c": raise_c, "max_cooling_c": cap, "max_lower_c": raise_c}
    policy = dr.parse_policy({"aircon": {**limits, "min_heating_c": floor}})
    plan = dr.plan(action(), readings(setpoint=setpoint, mode=mode), policy, START)
    for change in (c for c in plan.changes if c.epc == 0xB3):
        assert change.restore == setpoint
        if mode == AirconMode.COOLING:  # up by raise_c at most, to the cap, never down
            assert setpoint < change.value == min(setpoint + raise_c, cap)
        else:
            assert setpoint > change.value == max(setpoint - raise_c, floor)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["battery", "ev", "aircon", "water_heater", "other"]),
        st.one_of(
            st.dictionaries(
                st.sampled_from(
                    [
                        "min_soc_percent",
                        "max_pause_minutes",
                        "max_raise_c",
                        "max_cooling_c",
                        "hold",
                        "max_hold_minutes",
                        "x",
                    ]
                ),
                st.one_of(
                    st.integers(-5, 2000),
                    st.booleans(),
                    st.text(max_size=3),
                    st.none(),
                    st.floats(allow_nan=True),
                ),
            ),
            st.integers(),
        ),
    )
)
def test_any_input_is_a_policy_or_a_policy_error(data):
    """Strict: a wrong type, an unknown key or a value out of bounds is refused, named."""
    try:
        policy = dr.parse_policy(data)
    except dr.PolicyError as err:
        assert err.problems and all(isinstance(w, str) and w for w, _ in err.problems)
        return
    assert 0 <= policy.battery.min_soc_percent <= 100
    assert 16 <= policy.aircon.max_cooling_c <= 30


@pytest.mark.parametrize(
    "data",
    [
        {"start": START, "end": END},  # no target
        {"start": START, "end": END, "shed": 1, "reduce_w": 100},  # both
        {"start": END, "end": START, "shed": 1},  # backwards
        {"start": START.replace(tzinfo=None), "end": END, "shed": 1},  # naive
        '{"start": "2026-08-03T17:00:00+09:00", "end": "2026-08-03T19:00:00+09:00", "shed": "2"}',
    ],
)
def test_bad_actions_are_refused(data):
    with pytest.raises(dr.PolicyError):
        dr.parse_action(data)


def test_an_action_arrives_as_json():
    got = dr.parse_action(
        '{"start": "2026-08-03T17:00:00+09:00", "end": "2026-08-03T19:00:00+09:00", "shed": 2}'
    )
    assert got.start == START and got.shed == 2
