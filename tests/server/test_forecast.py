"""Forecasts: each method on histories whose right answer is known."""

from __future__ import annotations

import math
import random
from datetime import date, timedelta

import pytest

from kenshin.server.analytics.forecast import (
    SLOTS,
    day_type,
    forecast_with_band,
    kenshin,
    mean_of_four_weekdays,
    same_slot_last_week,
    update_intraday,
)

TARGET = date(2026, 11, 25)  # a Wednesday
SHAPE = [100 + 80 * math.sin(math.pi * s / SLOTS) for s in range(SLOTS)]


def _history(level, days: int = 60, shape=SHAPE):
    return {
        TARGET - timedelta(days=age): [level(TARGET - timedelta(days=age)) * x for x in shape]
        for age in range(1, days + 1)
    }


@pytest.mark.parametrize("method", [same_slot_last_week, mean_of_four_weekdays, kenshin])
def test_a_constant_history_is_forecast_exactly(method):
    forecast = method(_history(lambda d: 1.0), TARGET)
    assert forecast == pytest.approx(SHAPE)


def test_weekends_and_holidays_keep_their_own_level():
    history = _history(lambda d: 0.6 if day_type(d) == "holiday" else 1.0)
    assert kenshin(history, TARGET) == pytest.approx(SHAPE)
    assert kenshin(history, date(2026, 11, 28)) == pytest.approx([0.6 * x for x in SHAPE])
    assert day_type(date(2026, 11, 23)) == "holiday"  # 勤労感謝の日, a Monday


# The weekday holidays 2025-2027 the forecast used to list by hand: still holidays.
_LISTED = """
2025-01-01 2025-01-13 2025-02-11 2025-02-24 2025-03-20 2025-04-29 2025-05-05 2025-05-06
2025-07-21 2025-08-11 2025-09-15 2025-09-23 2025-10-13 2025-11-03 2025-11-24
2026-01-01 2026-01-12 2026-02-11 2026-02-23 2026-03-20 2026-04-29 2026-05-04 2026-05-05
2026-05-06 2026-07-20 2026-08-11 2026-09-21 2026-09-22 2026-09-23 2026-10-12 2026-11-03
2026-11-23 2027-01-01 2027-01-11 2027-02-11 2027-02-23 2027-03-22 2027-04-29 2027-05-03
2027-05-04 2027-05-05 2027-07-19 2027-08-11 2027-09-20 2027-09-23 2027-10-11 2027-11-03
2027-11-23
"""


def test_holidays_come_from_the_calendar_for_any_year():
    listed = {date.fromisoformat(d) for d in _LISTED.split()}
    for day in listed:
        assert day_type(day) == "holiday", day
        assert day_type(day, holidays=False) == "weekday", day
    # Every other weekday of those years is still a working day.
    day = date(2025, 1, 1)
    while day.year < 2028:
        if day.weekday() < 5 and day not in listed:
            assert day_type(day) == "weekday", day
        day += timedelta(days=1)
    # Past the old list's end: 春分の日 2028 (a Monday, by the equinox) and a substitute
    # holiday (振替休日) of 2029 (建国記念の日 on a Sunday).
    assert day_type(date(2028, 3, 20)) == "holiday"
    assert day_type(date(2029, 2, 12)) == "holiday"
    assert day_type(date(2028, 3, 21)) == "weekday"


def test_a_seasonal_trend_is_followed_not_lagged():
    history = _history(lambda d: 1.0 + 0.01 * (d - TARGET).days)  # +1 % a day
    ours = sum(kenshin(history, TARGET))
    mean4 = sum(mean_of_four_weekdays(history, TARGET))
    truth = sum(SHAPE)
    assert abs(ours - truth) < 0.02 * truth
    assert abs(mean4 - truth) > 0.1 * truth  # two and a half weeks behind


def test_the_band_holds_the_mid_and_covers_noise_at_its_level():
    rng = random.Random(3)
    noisy = {
        day: [x * rng.uniform(0.9, 1.1) for x in values]
        for day, values in _history(lambda d: 1.0, days=120).items()
    }
    inside = total = 0
    for offset in range(40):
        day = TARGET - timedelta(days=offset)
        past = {d: v for d, v in noisy.items() if d < day}
        band = forecast_with_band(past, day)
        for low, mid, high in zip(band.low, band.mid, band.high, strict=True):
            assert low <= mid <= high
        if day in noisy:
            for slot, actual in enumerate(noisy[day]):
                total += 1
                inside += band.low[slot] <= actual <= band.high[slot]
    assert 0.7 < inside / total < 0.9


def test_too_little_history_falls_back_and_then_has_no_band():
    history = _history(lambda d: 1.0, days=2)
    assert kenshin(history, TARGET) == [None] * SLOTS  # no level, no same weekday yet
    band = forecast_with_band(history, TARGET)
    assert band.low == [None] * SLOTS


def test_the_rest_of_today_follows_how_it_runs_so_far():
    band = forecast_with_band(_history(lambda d: 1.0), TARGET)
    hot = [1.5 * x for x in band.mid[:16]]  # the first eight hours ran 50 % high
    updated = update_intraday(band, hot)
    assert updated.mid[:16] == band.mid[:16]
    ratio = updated.mid[20] / band.mid[20]
    assert 1.3 < ratio < 1.5  # shrunk towards 1 by 8 / (8 + 16)
    assert updated.low[20] / band.low[20] == pytest.approx(ratio)
    assert update_intraday(band, []) == band


def test_tenant_forecasts_are_stored_for_today_and_tomorrow(engine, world):
    from datetime import datetime, time

    from sqlalchemy import insert, select

    from kenshin.jst import JST
    from kenshin.server import schema as s
    from kenshin.server.analytics.store import read_tenant_forecast, refresh_tenant

    midnight = datetime.combine(TARGET, time(0), JST)
    rows = []
    for age in range(30, -1, -1):  # 30 past days and today's morning, 40 % high
        for slot in range(SLOTS if age else 20):
            rows.append(
                {
                    "tenant_id": world.tenant_a,
                    "period": "slot",
                    "direction": 0,
                    "start": midnight - timedelta(days=age, minutes=-30 * slot),
                    "wh": round(SHAPE[slot] * (1.4 if age == 0 else 1.0)),
                    "slots": 100,
                    "refilled": 0,
                }
            )
    with engine.begin() as conn:
        conn.execute(insert(s.tenant_energy), rows)
        now = midnight + timedelta(hours=10, minutes=5)
        assert refresh_tenant(conn, world.tenant_a, now) == 2 * SLOTS
        assert refresh_tenant(conn, world.tenant_a, now) == 2 * SLOTS  # replaces, no dupes
        today = read_tenant_forecast(conn, world.tenant_a, TARGET)
        tomorrow = read_tenant_forecast(conn, world.tenant_a, TARGET + timedelta(days=1))
        assert len(conn.execute(select(s.tenant_forecast)).all()) == 2 * SLOTS
        assert read_tenant_forecast(conn, world.tenant_b, TARGET) == []
    assert [r[0] for r in today] == [midnight + timedelta(minutes=30 * i) for i in range(SLOTS)]
    for _, low, mid, high in today + tomorrow:
        assert low <= mid <= high
    assert today[5][2] == pytest.approx(SHAPE[5], abs=1)  # closed slots: as forecast
    assert today[30][2] > 1.2 * SHAPE[30]  # the afternoon follows the high morning
    assert tomorrow[30][2] == pytest.approx(SHAPE[30], rel=0.01)
