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
