"""Measured reduction (kenshin.server.dr.reduction): hand-computed per home, slot, event and
tenant; missing homes are listed and never counted as zero; opted-out homes kept apart."""

from __future__ import annotations

from datetime import date, datetime, time
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin.jst import JST, SLOT
from kenshin.server.dr.baseline import Baseline, NoBaseline
from kenshin.server.dr.reduction import (
    HomeReduction,
    Missing,
    SlotReduction,
    event_reduction,
    home_reduction,
)

DAY = date(2024, 7, 10)
SLOTS = [datetime.combine(DAY, time(13), JST) + i * SLOT for i in range(4)]


def made(values: list[int], slots: list[datetime] = SLOTS) -> Baseline:
    """A baseline with these Wh (how it was found does not matter here)."""
    return Baseline(
        event_day=DAY, kind="weekday",
        slots=dict(zip(slots, values, strict=True)),
        unadjusted={s: Fraction(v) for s, v in zip(slots, values, strict=True)},
        like_days=(), candidates=(), excluded=(), adjustment=None,
    )  # fmt: skip


def actual(values: list[int | None]) -> dict[datetime, int]:
    return {s: v for s, v in zip(SLOTS, values, strict=True) if v is not None}


def test_reduction_per_slot_and_home():
    r = home_reduction(7, made([120, 130, 140, 150]), actual([100, 100, 150, 90]))
    assert isinstance(r, HomeReduction)
    assert [s.reduction_wh for s in r.slots] == [20, 30, -10, 60]
    assert r.slots[2] == SlotReduction(SLOTS[2], 140, 150)
    assert (r.baseline_wh, r.actual_wh, r.reduction_wh) == (540, 440, 100)


def test_a_tenant_sums_its_homes_and_lists_the_missing_and_the_opted_out():
    homes = [
        (1, made([120, 130, 140, 150]), actual([100, 100, 150, 90])),  # 100
        (2, made([200, 200, 200, 200]), actual([150, 160, 170, 180])),  # 140
        (3, made([300, 300, 300, 300]), actual([100, None, 100, 100])),  # a slot missing
        (4, NoBaseline(DAY, "weekday", "2 usable weekdays in 30 days, 5 needed"), {}),
        (5, made([100, 100, 100, 100]), actual([50, 50, 50, 50])),  # 200, opted out
        (6, made([100, 100, 100, 100]), actual([None] * 4)),  # opted out, no data
        (8, made([90, 90, 90, 90]), actual([100, 100, 100, 100])),  # -40: drew more
    ]
    e = event_reduction(SLOTS, homes, opted_out={5, 6})
    assert [h.home for h in e.homes] == [1, 2, 8]
    assert e.reduction_wh == 100 + 140 - 40
    assert (e.baseline_wh, e.actual_wh) == (540 + 800 + 360, 440 + 660 + 400)
    assert e.slot_reduction_wh == {
        SLOTS[0]: 20 + 50 - 10,
        SLOTS[1]: 30 + 40 - 10,
        SLOTS[2]: -10 + 30 - 10,
        SLOTS[3]: 60 + 20 - 10,
    }
    assert e.missing == (
        Missing(3, "missing_actual", "1 of the event's slots", (SLOTS[1],)),
        Missing(4, "no_baseline", "2 usable weekdays in 30 days, 5 needed"),
    )
    assert [h.home for h in e.opted_out] == [5, 6]
    assert isinstance(e.opted_out[1], Missing)
    assert e.opted_out_reduction_wh == 200


def test_no_homes_is_zero_with_every_slot():
    e = event_reduction(SLOTS, [])
    assert e.reduction_wh == 0
    assert e.slot_reduction_wh == dict.fromkeys(SLOTS, 0)


def test_a_baseline_for_other_slots_is_refused():
    with pytest.raises(ValueError, match="not for this event"):
        event_reduction(SLOTS, [(1, made([1, 2, 3], SLOTS[:3]), actual([1, 1, 1, 1]))])


wh = st.integers(min_value=0, max_value=10_000)
home_data = st.tuples(
    st.lists(wh, min_size=4, max_size=4),
    st.lists(st.one_of(st.none(), wh), min_size=4, max_size=4),
    st.booleans(),  # opted out
)


@given(st.lists(home_data, max_size=12))
def test_totals_agree_and_missing_homes_count_nowhere(data):
    homes = [(i, made(base), actual(act)) for i, (base, act, _) in enumerate(data)]
    opted = {i for i, (_, _, out) in enumerate(data) if out}
    e = event_reduction(SLOTS, homes, opted_out=opted)
    assert e.reduction_wh == sum(e.slot_reduction_wh.values())
    assert e.reduction_wh == e.baseline_wh - e.actual_wh
    complete = [
        i for i, (_, act, out) in enumerate(data) if not out and all(v is not None for v in act)
    ]
    assert [h.home for h in e.homes] == complete
    assert e.reduction_wh == sum(sum(data[i][0]) - sum(data[i][1]) for i in complete)
    assert len(e.homes) + len(e.missing) + len(e.opted_out) == len(data)
    # Dropping the missing homes changes nothing.
    kept = [h for h in homes if h[0] in complete or h[0] in opted]
    assert event_reduction(SLOTS, kept, opted_out=opted).reduction_wh == e.reduction_wh
