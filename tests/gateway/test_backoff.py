"""The gateway's one backoff: every wait within [0, ceiling], ceilings in order, the last
one repeating, and back to the first after a success."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin.gateway.backoff import Backoff, doubling, full_jitter

ceilings = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(ceiling=ceilings, seed=st.integers())
def test_full_jitter_stays_within_zero_and_the_ceiling(ceiling, seed):
    assert 0.0 <= full_jitter(ceiling, random.Random(seed)) <= ceiling


@given(
    steps=st.lists(ceilings, min_size=1, max_size=8),
    failures=st.integers(min_value=1, max_value=20),
    floor=ceilings,
    seed=st.integers(),
)
def test_each_wait_is_within_its_ceiling(steps, failures, floor, seed):
    backoff = Backoff(steps, random.Random(seed))
    for n in range(failures):
        ceiling = steps[min(n, len(steps) - 1)]
        assert backoff.ceiling_s == ceiling
        assert 0.0 <= backoff.next_delay(min_ceiling_s=floor) <= max(ceiling, floor)
    backoff.reset()
    assert backoff.ceiling_s == steps[0]


def test_waits_spread_over_the_whole_interval():
    """Full jitter, not a jitter around the ceiling: a fleet's retries spread out."""
    rng = random.Random(1)
    waits = [Backoff([10.0], rng).next_delay() for _ in range(2000)]
    assert min(waits) < 0.5 and max(waits) > 9.5
    assert 4.5 < sum(waits) / len(waits) < 5.5


def test_doubling():
    assert doubling(2, 300) == (2, 4, 8, 16, 32, 64, 128, 256, 300)
    assert doubling(5, 5) == (5,)
    with pytest.raises(ValueError):
        Backoff([])
