"""The ERAB standard baseline (kenshin.server.dr.baseline) on hand-computed tables, and its
properties. The guideline gives no worked example in the sources we could read
(docs/dr.md), so each table below is worked out in its comments."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin.jst import JST, SLOT
from kenshin.server.dr.baseline import (
    STANDARD,
    Baseline,
    Excluded,
    NoBaseline,
    Reason,
    Rules,
    compute_baseline,
    day_kind,
    round_wh,
)

NO_ADJUSTMENT = Rules(adjustment_span=timedelta(0))
EVENT_DAY = date(2024, 7, 10)  # a Wednesday; 2024-07-15 (Mon) is 海の日


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), JST)


def event(day: date = EVENT_DAY, start: tuple[int, int] = (13, 0), n: int = 4) -> list[datetime]:
    return [at(day, *start) + i * SLOT for i in range(n)]


def whole_day(energy: dict[datetime, int], day: date, wh: int) -> None:
    for i in range(48):
        energy[at(day, 0) + i * SLOT] = wh


def with_event(energy: dict[datetime, int], day: date, values: list[int]) -> None:
    """The day at 100 Wh a slot, and `values` in the event's slots (13:00-15:00)."""
    whole_day(energy, day, 100)
    for slot, wh in zip(event(day), values, strict=True):
        energy[slot] = wh


def baseline(energy, slots=None, rules=NO_ADJUSTMENT, **kw) -> Baseline:
    result = compute_baseline(energy, slots or event(), rules=rules, **kw)
    assert isinstance(result, Baseline), result
    return result


def d(day: int, month: int = 7) -> date:
    return date(2024, month, day)


def weekdays_table() -> dict[datetime, int]:
    """Weekdays before Wed 10 July 2024 (event slots 13:00-15:00), and a weekend that must
    not count."""
    energy: dict[datetime, int] = {}
    with_event(energy, d(9), [100, 110, 120, 130])  # 460
    with_event(energy, d(8), [200, 200, 200, 200])  # 800
    with_event(energy, d(5), [90, 90, 90, 90])  # 360: the lowest of five
    with_event(energy, d(4), [150, 150, 150, 150])  # 600
    with_event(energy, d(3), [120, 120, 120, 120])  # 480
    with_event(energy, d(2), [130, 130, 130, 130])  # 520
    with_event(energy, d(1), [140, 140, 140, 140])  # 560
    whole_day(energy, d(7), 9999)  # Sunday
    whole_day(energy, d(6), 9999)  # Saturday
    return energy


def test_high_4_of_5_on_weekdays():
    # Candidates 9, 8, 5, 4, 3 July; mean 540, a quarter 135: none low. The 4 highest:
    # 8 (800), 4 (600), 3 (480), 9 (460); 5 July (360) is left out. Per slot:
    # (100+200+150+120)/4 = 142.5 -> 143, 580/4 = 145, 590/4 = 147.5 -> 148, 600/4 = 150.
    b = baseline(weekdays_table())
    assert b.kind == "weekday"
    assert b.candidates == (d(9), d(8), d(5), d(4), d(3))
    assert b.like_days == (d(9), d(8), d(4), d(3))
    assert b.excluded == (Excluded(d(5), Reason.NOT_HIGH, 360),)
    assert list(b.slots.values()) == [143, 145, 148, 150]
    assert list(b.unadjusted.values()) == [Fraction(285, 2), 145, Fraction(295, 2), 150]
    assert b.total_wh == 586
    assert b.adjustment is None and b.adjustment_skipped is None


def test_a_dr_day_is_excluded_and_the_window_reaches_further_back():
    # 8 July was a DR day: candidates 9, 5, 4, 3, 2; mean 484, a quarter 121, none low.
    # Highest four: 4 (600), 2 (520), 3 (480), 9 (460); 5 July (360) left out. Per slot:
    # (100+150+120+130)/4 = 125, 510/4 = 127.5 -> 128, 520/4 = 130, 530/4 = 132.5 -> 133.
    b = baseline(weekdays_table(), dr_days={d(8)})
    assert b.candidates == (d(9), d(5), d(4), d(3), d(2))
    assert b.like_days == (d(9), d(4), d(3), d(2))
    assert b.excluded == (
        Excluded(d(8), Reason.DR_DAY, None),
        Excluded(d(5), Reason.NOT_HIGH, 360),
    )
    assert list(b.slots.values()) == [125, 128, 130, 133]


def test_a_low_day_is_excluded_and_replaced():
    # 5 July at 10 Wh a slot (40): candidates 9, 8, 5, 4, 3 have mean 2380/5 = 476, a
    # quarter 119 > 40, so 5 July is low and 2 July comes in: mean 2860/5 = 572, a quarter
    # 143, none low. Highest four: 8, 4, 2, 3 (800, 600, 520, 480); 9 July (460) left out:
    # (200+150+130+120)/4 = 150 in every slot.
    energy = weekdays_table()
    with_event(energy, d(5), [10, 10, 10, 10])
    b = baseline(energy)
    assert b.candidates == (d(9), d(8), d(4), d(3), d(2))
    assert b.like_days == (d(8), d(4), d(3), d(2))
    assert b.excluded == (
        Excluded(d(9), Reason.NOT_HIGH, 460),
        Excluded(d(5), Reason.LOW_DAY, 40),
    )
    assert list(b.slots.values()) == [150, 150, 150, 150]


def test_low_days_are_looked_for_again_after_a_replacement():
    # 9 July at 30 (120) is not low among 9, 8, 5, 4, 3: mean (120+800+40+600+480)/5 =
    # 408, a quarter 102; 5 July's 40 is. With 2 July in its place the mean is
    # (120+800+600+480+520)/5 = 504, a quarter 126: now 9 July is low too, and 1 July comes
    # in: (800+600+480+520+560)/5 = 592, a quarter 148, none low.
    energy = weekdays_table()
    with_event(energy, d(5), [10, 10, 10, 10])
    with_event(energy, d(9), [30, 30, 30, 30])
    b = baseline(energy)
    assert b.candidates == (d(8), d(4), d(3), d(2), d(1))
    assert [(e.day, e.reason) for e in b.excluded] == [
        (d(9), Reason.LOW_DAY),
        (d(5), Reason.LOW_DAY),
        (d(3), Reason.NOT_HIGH),
    ]
    # 8, 4, 1, 2: (200+150+140+130)/4 = 155
    assert list(b.slots.values()) == [155] * 4


def test_a_day_missing_a_slot_is_excluded():
    energy = weekdays_table()
    del energy[at(d(8), 14)]
    b = baseline(energy)
    assert b.excluded[0] == Excluded(d(8), Reason.MISSING_DATA, None)
    assert b.candidates == (d(9), d(5), d(4), d(3), d(2))


def test_equal_days_drop_the_one_furthest_back():
    energy: dict[datetime, int] = {}
    for day in (9, 8, 5, 4, 3):
        with_event(energy, d(day), [100] * 4)
    b = baseline(energy)
    assert b.like_days == (d(9), d(8), d(5), d(4))
    assert b.excluded == (Excluded(d(3), Reason.NOT_HIGH, 400),)


def test_weekend_and_holiday_events_use_high_2_of_3_of_such_days():
    # Mon 15 July 2024 is 海の日: like days are Sun 14, Sat 13, Sun 7 (the weekdays 12 and
    # 11 July, however high, are not). Mean (1200+400+800)/3 = 800, a quarter 200: none
    # low. The two highest, 14 and 7 July: (300+200)/2 = 250.
    energy = weekdays_table()
    whole_day(energy, d(12), 5000)
    whole_day(energy, d(11), 5000)
    slots = event(d(15))
    with_event(energy, d(14), [300] * 4)
    with_event(energy, d(13), [100] * 4)
    with_event(energy, d(7), [200] * 4)
    b = baseline(energy, slots)
    assert b.kind == "holiday"
    assert b.candidates == (d(14), d(13), d(7))
    assert b.like_days == (d(14), d(7))
    assert b.excluded == (Excluded(d(13), Reason.NOT_HIGH, 400),)
    assert list(b.slots.values()) == [250] * 4


def test_a_weekday_event_skips_the_holiday_before_it():
    # Tue 16 July: 15 July (海の日) is no weekday; the five are 12, 11, 10, 9, 8 July.
    energy = weekdays_table()
    whole_day(energy, d(15), 9999)
    for day in (12, 11, 10):
        with_event(energy, d(day), [100] * 4)
    b = baseline(energy, event(d(16)))
    assert b.candidates == (d(12), d(11), d(10), d(9), d(8))
    assert d(15) not in b.like_days


def test_day_kind():
    assert day_kind(d(10)) == "weekday"
    assert day_kind(d(13)) == "holiday"  # Saturday
    assert day_kind(d(15)) == "holiday"  # 海の日
    assert day_kind(date(2024, 9, 23)) == "holiday"  # 振替休日 for 秋分の日 (22 Sep, Sunday)
    assert day_kind(d(15), lambda _day: False) == "weekday"  # the calendar is the caller's
    assert day_kind(d(10), lambda day: day == d(10)) == "holiday"


def test_not_enough_days_is_no_baseline():
    energy: dict[datetime, int] = {}
    for day in (9, 8, 5, 4):
        with_event(energy, d(day), [100] * 4)
    result = compute_baseline(energy, event(), rules=NO_ADJUSTMENT)
    assert isinstance(result, NoBaseline)
    assert result.found == (d(9), d(8), d(5), d(4))
    assert "4 usable weekdays in 30 days, 5 needed" in result.reason


# -- the same-day adjustment: 3 hours ending 1 hour before the event ----------------------


def flat_history(values: dict[int, int]) -> dict[datetime, int]:
    energy: dict[datetime, int] = {}
    for day, wh in values.items():
        whole_day(energy, d(day), wh)
    return energy


def with_window(energy: dict[datetime, int], actual: list[int]) -> dict[datetime, int]:
    """The event day's 09:00-12:00 (the window of a 13:00 event)."""
    for i, wh in enumerate(actual):
        energy[at(EVENT_DAY, 9) + i * SLOT] = wh
    return energy


def test_the_adjustment_window_is_the_three_hours_ending_an_hour_before():
    energy = with_window(flat_history({9: 100, 8: 100, 5: 100, 4: 100, 3: 80}), [100] * 6)
    b = baseline(energy, rules=STANDARD)
    assert b.adjustment is not None
    assert b.adjustment.window == tuple(at(EVENT_DAY, 9) + i * SLOT for i in range(6))


def test_same_day_adjustment_up():
    # Kept: 9, 8, 5, 4 July at 100 (3 July, 80, left out). The event day's 09:00-12:00
    # averages 720/6 = 120, the kept days 100 there: +20 on every slot.
    energy = flat_history({9: 100, 8: 100, 5: 100, 4: 100, 3: 80})
    b = baseline(with_window(energy, [130, 130, 120, 120, 110, 110]), rules=STANDARD)
    assert b.adjustment is not None
    assert (b.adjustment.like_days_mean_wh, b.adjustment.per_slot) == (100, 20)
    assert b.adjustment.actual_wh == (130, 130, 120, 120, 110, 110)
    assert list(b.slots.values()) == [120] * 4
    assert list(b.unadjusted.values()) == [100] * 4


def test_same_day_adjustment_down():
    energy = flat_history({9: 100, 8: 100, 5: 100, 4: 100, 3: 80})
    b = baseline(with_window(energy, [70, 80, 90, 70, 80, 90]), rules=STANDARD)  # mean 80
    assert b.adjustment is not None and b.adjustment.per_slot == -20
    assert list(b.slots.values()) == [80] * 4


def test_same_day_adjustment_is_exact_then_rounded_once():
    # 601/6 - 100 = 1/6 Wh: 100.17 -> 100.
    energy = flat_history({9: 100, 8: 100, 5: 100, 4: 100, 3: 80})
    b = baseline(with_window(energy, [101, 100, 100, 100, 100, 100]), rules=STANDARD)
    assert b.adjustment is not None and b.adjustment.per_slot == Fraction(1, 6)
    assert list(b.slots.values()) == [100] * 4


def test_a_cap_limits_the_adjustment_both_ways():
    rules = Rules(cap=Fraction(1, 10))
    history = {9: 100, 8: 100, 5: 100, 4: 100, 3: 80}
    up = baseline(with_window(flat_history(history), [130] * 6), rules=rules)
    assert up.adjustment is not None and up.adjustment.capped and up.adjustment.per_slot == 30
    assert list(up.slots.values()) == [110] * 4
    down = baseline(with_window(flat_history(history), [50] * 6), rules=rules)
    assert list(down.slots.values()) == [90] * 4
    within = baseline(with_window(flat_history(history), [105] * 6), rules=rules)
    assert within.adjustment is not None and not within.adjustment.capped
    assert list(within.slots.values()) == [105] * 4


def test_a_baseline_adjusted_below_zero_is_zero():
    # Like days: 10 Wh in the event's slots, 40 in the window; the event day's window 0:
    # 10 + (0 - 40) = -30, floored at 0.
    energy = flat_history({9: 10, 8: 10, 5: 10, 4: 10, 3: 10})
    for back in (1, 2, 5, 6, 7):
        for i in range(6):
            energy[at(EVENT_DAY - timedelta(days=back), 9) + i * SLOT] = 40
    b = baseline(with_window(energy, [0] * 6), rules=STANDARD)
    assert b.adjustment is not None and b.adjustment.per_slot == -40
    assert list(b.slots.values()) == [0] * 4


def test_no_same_day_data_skips_the_adjustment_and_says_so():
    energy = flat_history({9: 100, 8: 100, 5: 100, 4: 100, 3: 80})
    b = baseline(with_window(energy, [130] * 5), rules=STANDARD)  # 11:30 missing
    assert b.adjustment is None
    assert b.adjustment_skipped is not None and "adjustment window" in b.adjustment_skipped
    assert list(b.slots.values()) == [100] * 4


def test_an_early_event_reads_its_window_on_the_day_before():
    # A 01:00 event: its window is 21:00-24:00 of 9 July, compared with 21:00-24:00 of the
    # day before each like day (100 everywhere): 160 - 100 = +60.
    energy: dict[datetime, int] = {}
    for back in range(16):
        whole_day(energy, EVENT_DAY - timedelta(days=back), 100)
    for i in range(6):
        energy[at(d(9), 21) + i * SLOT] = 160
    b = baseline(energy, event(start=(1, 0)), rules=STANDARD)
    assert b.adjustment is not None
    assert b.adjustment.window[0] == at(d(9), 21)
    assert b.adjustment.per_slot == 60
    assert list(b.slots.values()) == [160] * 4


def test_event_slots_are_checked():
    with pytest.raises(ValueError, match="at least one"):
        compute_baseline({}, [])
    with pytest.raises(ValueError, match="slot start"):
        compute_baseline({}, [at(EVENT_DAY, 13, 10)])
    with pytest.raises(ValueError, match="slot start"):
        compute_baseline({}, [datetime(2024, 7, 10, 13)])
    with pytest.raises(ValueError, match="increasing"):
        compute_baseline({}, [at(EVENT_DAY, 13), at(EVENT_DAY, 13)])


def test_rules_are_checked():
    with pytest.raises(ValueError):
        Rules(weekday_keep=6)
    with pytest.raises(ValueError):
        Rules(adjustment_gap=timedelta(minutes=10))
    with pytest.raises(ValueError):
        Rules(lookback_days=4)


def test_round_wh_is_half_up():
    assert [round_wh(Fraction(n, 2)) for n in (0, 1, 2, 3, 5)] == [0, 1, 1, 2, 3]


# -- properties -------------------------------------------------------------------------

DAYS = 45
START = date(2024, 5, 20)  # history from here; events fall from START + 35 days on


def history(profile: list[int], days: int = DAYS) -> dict[datetime, int]:
    energy: dict[datetime, int] = {}
    for k in range(days):
        day = START + timedelta(days=k)
        for i, wh in enumerate(profile):
            energy[at(day, 0) + i * SLOT] = wh
    return energy


event_shapes = st.tuples(
    st.integers(min_value=35, max_value=DAYS - 1),  # the event's day, as days after START
    st.integers(min_value=0, max_value=47),  # its first slot
    st.integers(min_value=1, max_value=8),  # its length in slots
)


def shape_slots(shape: tuple[int, int, int]) -> list[datetime]:
    day, first, n = shape
    return [at(START + timedelta(days=day), 0) + (first + i) * SLOT for i in range(n)]


@given(
    profile=st.lists(st.integers(min_value=0, max_value=5000), min_size=48, max_size=48),
    shape=event_shapes,
    dr=st.sets(st.integers(min_value=20, max_value=34), max_size=4),
)
def test_identical_days_give_that_day(profile, shape, dr):
    slots = shape_slots(shape)
    dr_days = {START + timedelta(days=k) for k in dr}
    b = compute_baseline(history(profile), slots, dr_days=dr_days)
    assert isinstance(b, Baseline)
    assert b.adjustment is not None and b.adjustment.per_slot == 0
    offset = shape[1]
    assert list(b.slots.values()) == [profile[(offset + i) % 48] for i in range(shape[2])]


values = st.integers(min_value=100, max_value=300)  # within 3x: no day can be "low"


@given(
    data=st.data(),
    shape=event_shapes,
    profile=st.lists(values, min_size=48, max_size=48),
    levels=st.lists(st.integers(min_value=0, max_value=50), min_size=DAYS, max_size=DAYS),
)
def test_more_energy_on_a_like_day_never_lowers_the_unadjusted_total(data, shape, profile, levels):
    slots = shape_slots(shape)
    # Days a little apart (within 100..300 Wh still), so that which days are kept matters.
    energy = {k: v + levels[(k.astimezone(JST).date() - START).days] // 2 for k, v in
              history([min(v, 275) for v in profile]).items()}  # fmt: skip
    before = compute_baseline(energy, slots, rules=NO_ADJUSTMENT)
    assert isinstance(before, Baseline)
    day = data.draw(st.sampled_from(before.candidates))
    slot = data.draw(st.sampled_from(slots)) - (before.event_day - day)
    raised = {**energy, slot: min(300, energy[slot] + data.draw(st.integers(1, 200)))}
    after = compute_baseline(raised, slots, rules=NO_ADJUSTMENT)
    assert isinstance(after, Baseline)
    assert after.candidates == before.candidates
    assert sum(after.unadjusted.values()) >= sum(before.unadjusted.values())


@given(
    profile=st.lists(values, min_size=48, max_size=48),
    shape=event_shapes,
    more=st.lists(st.integers(min_value=0, max_value=500), min_size=6, max_size=6),
)
def test_more_energy_before_the_event_never_lowers_the_baseline(profile, shape, more):
    slots = shape_slots(shape)
    energy = history(profile)
    before = compute_baseline(energy, slots)
    assert isinstance(before, Baseline) and before.adjustment is not None
    raised = dict(energy)
    for slot, extra in zip(before.adjustment.window, more, strict=True):
        raised[slot] += extra
    after = compute_baseline(raised, slots)
    assert isinstance(after, Baseline)
    assert all(after.slots[s] >= before.slots[s] for s in slots)


@given(
    profile=st.lists(values, min_size=48, max_size=48),
    shape=event_shapes,
    noise=st.integers(min_value=0, max_value=10_000),
)
def test_nothing_from_an_hour_before_the_event_on_is_read(profile, shape, noise):
    slots = shape_slots(shape)
    energy = history(profile)
    cutoff = slots[0] - STANDARD.adjustment_gap
    later = {k: (v + noise if k >= cutoff else v) for k, v in energy.items()}
    assert compute_baseline(later, slots) == compute_baseline(energy, slots)
    assert compute_baseline({k: v for k, v in energy.items() if k < cutoff}, slots) == (
        compute_baseline(energy, slots)
    )
