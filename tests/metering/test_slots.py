"""Slot energy against the simulator: 30 simulated days, unit 0.01 kWh × coefficient 10 with
a small register so it wraps, a mid-month outage refilled from history, and late data:
every slot's Wh equals the simulator's record exactly."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin.jst import JST
from kenshin.server.metering.slots import (
    SLOT_S,
    Boundary,
    SlotStatus,
    affected,
    slot_energies,
)
from kenshin.sim.load import HouseholdProfile, LoadModel
from kenshin.sim.registers import MeterRegisters
from kenshin.wire import MeterScale

START = datetime(2026, 3, 1, tzinfo=JST)
DAYS = 30


def simulator(unit: int, coefficient: int, digits: int) -> MeterRegisters:
    load = LoadModel(HouseholdProfile.from_seed(17, pv=True))
    return MeterRegisters(
        load,
        install=START - timedelta(days=5),
        anchor=START,
        unit_code=unit,
        coefficient=coefficient,
        digits=digits,
        initial_normal_wh=10**digits * 1000 - 50_000,
    )


def boundaries_from(regs: MeterRegisters, direction: int, skip: range = range(0)):
    out = {}
    for i in range(DAYS * 48 + 1):
        if i in skip:
            continue
        at = START + i * timedelta(minutes=30)
        out[int(at.timestamp())] = Boundary(regs.raw(at)[direction])
    return out


@pytest.mark.parametrize(("unit", "coefficient", "digits"), [(0x02, 10, 5), (0x04, 1, 8)])
def test_thirty_days_equal_the_simulator_exactly(unit, coefficient, digits):
    regs = simulator(unit, coefficient, digits)
    scale = MeterScale(coefficient, unit, digits)
    first, last = int(START.timestamp()), int(START.timestamp()) + (DAYS * 48 - 1) * SLOT_S
    outage = range(14 * 48 + 10, 14 * 48 + 30)  # ten hours mid-month without a reading
    readings = boundaries_from(regs, 0, skip=outage)
    during = slot_energies(readings, scale, first, last)
    assert sum(s.status == SlotStatus.MISSING for s in during) == len(outage) + 1
    assert all(s.wh is None for s in during if s.status == SlotStatus.MISSING)  # no guessing

    # The gateway refills the hole from the meter's history, and some values arrive late
    # and out of order; only the slots next to them are recomputed.
    late = {}
    shuffled = list(outage)
    random.Random(3).shuffle(shuffled)
    for i in shuffled:
        at = START + i * timedelta(minutes=30)
        late[int(at.timestamp())] = Boundary(regs.raw(at)[0], refilled=True)
    readings.update(late)
    redo = affected(late)
    again = {s.slot_start: s for s in slot_energies(readings, scale, first, last)}
    for slot in during:
        if slot.slot_start not in redo:
            assert again[slot.slot_start] == slot  # untouched slots are not recomputed
    energies = list(again.values())
    assert all(s.status != SlotStatus.MISSING for s in energies)
    assert sum(s.status == SlotStatus.REFILLED for s in energies) == len(outage) + 1

    # Exactly the simulator's record: its registers' energy between the boundaries.
    wrapped = 0
    for s in energies:
        a, b = (datetime.fromtimestamp(t, JST) for t in (s.slot_start, s.slot_start + SLOT_S))
        ws = regs.energy_ws(b)[0] - regs.energy_ws(a)[0]
        counted = regs.counts(regs.energy_ws(b)[0]) - regs.counts(regs.energy_ws(a)[0])
        wrapped += counted < 0
        per_count_ws = regs.ws_per_count  # the register's own integer step
        counts = regs.energy_ws(b)[0] // per_count_ws - regs.energy_ws(a)[0] // per_count_ws
        expected_mwh = counts * scale.milliwatt_hours_per_count
        assert s.milliwatt_hours == expected_mwh
        assert abs(s.milliwatt_hours - ws / 3.6) < scale.milliwatt_hours_per_count * 2
    assert wrapped >= (1 if digits == 5 else 0)  # the small register really wrapped
    total_wh = sum(s.wh for s in energies)
    first_raw = regs.raw(START)[0] * scale.milliwatt_hours_per_count
    last_at = START + DAYS * timedelta(days=1)
    advance = (regs.raw(last_at)[0] - regs.raw(START)[0]) % scale.modulus
    assert total_wh == (first_raw + advance * scale.milliwatt_hours_per_count) // 1000 - (
        first_raw // 1000
    )


@given(
    st.integers(0, 99_999),
    st.integers(0, 99_999),
    st.sampled_from([0x00, 0x02, 0x04]),
    st.integers(1, 100),
)
def test_one_slot_across_the_wrap(before, after, unit, coefficient):
    scale = MeterScale(coefficient, unit, 5)
    [slot] = slot_energies({0: Boundary(before), SLOT_S: Boundary(after)}, scale, 0, 0)
    assert slot.milliwatt_hours == (after - before) % 100_000 * scale.milliwatt_hours_per_count
    assert slot.status == SlotStatus.MEASURED


def test_slots_must_start_on_half_hours():
    with pytest.raises(ValueError, match="half hours"):
        slot_energies({}, MeterScale(), 60, 1800)
