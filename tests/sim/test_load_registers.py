"""The simulated meter's physics: a seeded load model and registers that integrate it
exactly, wrap, scale, and agree with each other over a whole simulated day."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kenshin.echonet.smart_meter import EnergyScale, EnergyUnit
from kenshin.jst import JST
from kenshin.sim.load import SLOT_S, STEPS_PER_SLOT, HouseholdProfile, LoadModel
from kenshin.sim.registers import WS_PER_UNIT, MeterRegisters, floor_time

DAY = datetime(2026, 7, 14, tzinfo=JST)  # a Tuesday in summer
slots = st.integers(min_value=1_000_000, max_value=1_200_000)  # 2027..2038, any half hour
seeds = st.integers(min_value=0, max_value=2**32)


def model(seed: int = 7, pv: bool | None = None) -> LoadModel:
    return LoadModel(HouseholdProfile.from_seed(seed, pv=pv))


def registers(load: LoadModel, **kw) -> MeterRegisters:
    kw.setdefault("install", DAY - timedelta(days=120))
    return MeterRegisters(load, **kw)


# -- the load model --------------------------------------------------------------------


@given(seeds, slots)
@settings(max_examples=200)
def test_a_slot_flows_one_way_and_sums_exactly(seed, slot):
    load = model(seed, pv=seed % 2 == 0)
    mean = load.slot_mean_w(slot)
    steps = [load.step_power_w(slot * STEPS_PER_SLOT + k) for k in range(STEPS_PER_SLOT)]
    assert sum(steps) == STEPS_PER_SLOT * mean
    assert all(p >= 0 for p in steps) or all(p <= 0 for p in steps)
    normal, reverse = load.slot_energy_ws(slot)
    assert normal - reverse == 10 * sum(steps)


@given(seeds, slots, st.integers(min_value=0, max_value=STEPS_PER_SLOT))
@settings(max_examples=200)
def test_energy_into_a_slot_telescopes_to_the_step_sum(seed, slot, steps):
    load = model(seed, pv=True)
    brute = 10 * sum(load.step_power_w(slot * STEPS_PER_SLOT + k) for k in range(steps))
    assert load.energy_into_slot_ws(slot, steps) == brute


def test_the_same_seed_gives_the_same_house_and_load():
    a, b = model(11), model(11)
    assert a.profile == b.profile
    first = int(DAY.timestamp()) // SLOT_S
    assert [a.slot_mean_w(s) for s in range(first, first + 96)] == [
        b.slot_mean_w(s) for s in range(first, first + 96)
    ]
    assert model(12).profile != a.profile


def day_means(load: LoadModel, day: datetime) -> list[int]:
    first = int(day.timestamp()) // SLOT_S
    return [load.slot_mean_w(s) for s in range(first, first + 48)]


def test_daily_rhythm_evenings_above_small_hours():
    for seed in range(20):
        load = model(seed, pv=False)
        if load.profile.ev_kw:
            continue  # an EV charging overnight is the point of a night tariff
        means = day_means(load, DAY)
        assert sum(means[36:44]) > sum(means[4:12]), seed  # 18-22 h above 02-06 h


def test_pv_sells_at_midday_in_summer_and_not_at_night():
    sold_midday = 0
    for seed in range(20):
        means = day_means(model(seed, pv=True), DAY)
        assert all(m >= 0 for m in means[:8] + means[42:]), seed  # 0-4 h and 21-24 h
        sold_midday += any(m < 0 for m in means[20:28])
    assert sold_midday >= 15  # a few overcast days are allowed


def test_seasons_and_weekends_change_the_load():
    load = model(3, pv=False)
    winter = sum(sum(day_means(load, datetime(2026, 1, d, tzinfo=JST))) for d in range(12, 19))
    spring = sum(sum(day_means(load, datetime(2026, 5, d, tzinfo=JST))) for d in range(11, 18))
    assert winter > spring * 1.1  # heating
    saturday, monday = datetime(2026, 5, 16, tzinfo=JST), datetime(2026, 5, 18, tzinfo=JST)
    assert day_means(load, saturday)[20:30] != day_means(load, monday)[20:30]


def test_about_thirty_percent_of_houses_have_pv():
    with_pv = sum(HouseholdProfile.from_seed(s).pv_kw > 0 for s in range(1000))
    assert 240 < with_pv < 360


# -- the registers ---------------------------------------------------------------------


def test_currents_agree_with_power():
    for seed in range(30):
        load = model(seed, pv=True)
        regs = registers(load)
        for minute in range(0, 24 * 60, 37):
            t = DAY + timedelta(minutes=minute)
            power, (r, t_da) = regs.instant_power_w(t), regs.currents_da(t)
            amps_x10 = power / load.profile.power_factor / 10
            total = r + (t_da or 0)
            assert abs(total - amps_x10) <= 1, (seed, minute)
            assert (t_da is None) == (not load.profile.three_wire)
            if power:
                assert (r >= 0) == (power > 0) or abs(r) <= 1


def test_registers_never_run_backwards_or_ahead():
    regs = registers(model(5, pv=True), unit_code=0x04, digits=8)  # 0.1 Wh counts
    previous = (0, 0)
    for second in range(0, 6 * 3600, 7):
        now = DAY + timedelta(hours=9, seconds=second)
        ws = regs.energy_ws(now)
        assert ws[0] >= previous[0] and ws[1] >= previous[1]
        previous = ws


@pytest.mark.parametrize(
    ("unit", "coefficient", "digits"),
    [(0x01, 1, 6), (0x02, 10, 5), (0x04, 1, 8), (0x00, 1, 4), (0x03, 3, 6)],
)
def test_one_day_is_self_consistent(unit, coefficient, digits):
    """The sum of the day's 30-minute history deltas equals the register's advance
    exactly (across wrap), and integrated instant power matches it within 1 %."""
    load = model(21, pv=True)
    # Start close to the wrap so that this day crosses it for the small registers.
    modulus_wh = 10**digits * WS_PER_UNIT[unit] * coefficient // 3600
    regs = registers(
        load,
        unit_code=unit,
        coefficient=coefficient,
        digits=digits,
        initial_normal_wh=modulus_wh - 3_000,
        anchor=DAY,
    )
    scale = EnergyScale(coefficient, EnergyUnit(unit), digits)
    after = DAY + timedelta(days=1, minutes=5)
    values = regs.history1(after, 1)  # yesterday, i.e. DAY
    values.append(regs.history1(after, 0)[0])  # today's 00:00 closes the last slot
    assert None not in values
    deltas = [scale.delta_counts(a, b) for a, b in pairwise(values)]
    start, end = regs.raw(DAY)[0], regs.raw(DAY + timedelta(days=1))[0]
    assert sum(deltas) == scale.delta_counts(start, end)
    # The register truly wrapped on the small registers: the test must exercise it.
    if modulus_wh < 100_000:
        assert end < start

    # Integrate the instant power a reader would sample (each minute) over the day.
    sampled_ws = 0
    for minute in range(24 * 60):
        power = regs.instant_power_w(DAY + timedelta(minutes=minute, seconds=30))
        sampled_ws += max(power, 0) * 60
    counted_mwh = scale.to_milliwatt_hours(sum(deltas))
    exact_ws = regs.energy_ws(DAY + timedelta(days=1))[0] - regs.energy_ws(DAY)[0]
    assert abs(counted_mwh - exact_ws / 3.6) <= scale.milliwatt_hours_per_count
    assert sampled_ws == pytest.approx(exact_ws, rel=0.01)
    if scale.milliwatt_hours_per_count <= 10_000:  # counts finer than 10 Wh: within 1 %
        assert counted_mwh == pytest.approx(sampled_ws / 3.6, rel=0.01)


def test_reverse_registers_count_what_pv_sells():
    regs = registers(model(4, pv=True), unit_code=0x03, digits=8, anchor=DAY)
    end = DAY + timedelta(days=1)
    start_ws, end_ws = regs.energy_ws(DAY), regs.energy_ws(end)
    sold = sum(
        max(-regs.instant_power_w(DAY + timedelta(seconds=s + 5)), 0) * 10
        for s in range(0, 86400, 10)
    )
    assert end_ws[1] - start_ws[1] == sold  # 10-s steps integrate exactly


def test_history_has_no_data_before_install_and_in_the_future():
    install = DAY + timedelta(hours=10, minutes=15)
    regs = registers(model(2), install=install, anchor=install)
    now = DAY + timedelta(hours=15, minutes=1)
    today = regs.history1(now, 0)
    assert today[:21] == [None] * 21  # 00:00 .. 10:00 are before install
    assert all(v is not None for v in today[21:31])  # 10:30 .. 15:00
    assert today[31:] == [None] * 17
    pairs = regs.history2(now, DAY + timedelta(hours=16), 4)
    assert pairs[:2] == [(None, None)] * 2 and pairs[2] == regs.raw(DAY + timedelta(hours=15))


def test_fixed_time_and_minute_values_sit_on_their_boundaries():
    regs = registers(model(9))
    now = DAY + timedelta(hours=13, minutes=47, seconds=12)
    at, normal, reverse = regs.fixed_time(now)
    assert at == DAY + timedelta(hours=13, minutes=30)
    assert (normal, reverse) == regs.raw(at)
    minute, *values = regs.minute_value(now)
    assert minute == DAY + timedelta(hours=13, minutes=47)
    assert tuple(values) == regs.raw(minute)
    assert floor_time(now, timedelta(minutes=30)).tzinfo is not None


def test_bad_register_settings_are_refused():
    with pytest.raises(ValueError, match="unit code"):
        registers(model(), unit_code=0x05)
    with pytest.raises(ValueError, match="digits"):
        registers(model(), digits=9)
    with pytest.raises(ValueError, match="coefficient"):
        registers(model(), coefficient=0)
