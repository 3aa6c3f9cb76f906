"""The one backoff of every retry loop on the gateway: growing ceilings, full jitter.

Each wait is random in [0, ceiling] ("full jitter"): after a broker or server restart a
fleet that retried on the same schedule would come back in lockstep, every gateway at
the same second; spread over the whole interval it comes back as a trickle.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence


def full_jitter(ceiling_s: float, rng: random.Random | None = None) -> float:
    """A wait in [0, ceiling_s]."""
    return (rng or random).uniform(0.0, max(0.0, ceiling_s))


def doubling(first_s: float, cap_s: float) -> tuple[float, ...]:
    """first, 2×first, 4×first, … up to cap (the cap included, once)."""
    steps = [first_s]
    while steps[-1] * 2 < cap_s:
        steps.append(steps[-1] * 2)
    return (*steps, cap_s) if steps[-1] < cap_s else tuple(steps)


class Backoff:
    """Ceilings `steps`, one per failure in a row (the last one repeats); `reset()` after a
    success starts over from the first."""

    def __init__(self, steps: Sequence[float], rng: random.Random | None = None) -> None:
        if not steps or min(steps) < 0:
            raise ValueError("need at least one ceiling, none negative")
        self.steps = tuple(steps)
        self.failures = 0
        self._rng = rng

    @property
    def ceiling_s(self) -> float:
        return self.steps[min(self.failures, len(self.steps) - 1)]

    def next_delay(self, min_ceiling_s: float = 0.0) -> float:
        """The wait after one more failure: in [0, ceiling] (a ceiling of at least
        `min_ceiling_s`, for a failure that is no use retrying soon)."""
        ceiling = max(self.ceiling_s, min_ceiling_s)
        self.failures += 1
        return full_jitter(ceiling, self._rng)

    def reset(self) -> None:
        self.failures = 0

    async def wait(self, min_ceiling_s: float = 0.0) -> float:
        delay = self.next_delay(min_ceiling_s)
        await asyncio.sleep(delay)
        return delay


def raise_if_cancelled() -> None:
    """Raise the cancellation this task was sent, if an await returned in its place.

    Python 3.11's `asyncio.wait_for` (under aiomqtt's publish and its PUBACK, and the
    meter session's requests) returns the answer when it arrives together with a
    cancellation, and the cancellation is lost: a loop that then went on would keep its
    task group, and the agent's stop, waiting for ever. Loops call this after such awaits:
    `Task.cancelling()` still counts the request. Only in tasks without a TaskGroup of
    their own: on 3.11 one whose child failed leaves its parent's count at 1.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
