"""Simulated time, so that a day of metering can pass in seconds.

Every simulator reads time through a `Clock`, never `datetime.now()` directly:
- `ScaledClock` runs `speed` simulated seconds per real second (the demo, `kenshin sim`);
- `ManualClock` moves only when a test calls `advance()`, and wakes whoever sleeps past it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from kenshin.jst import JST

__all__ = ["JST", "Clock", "ManualClock", "ScaledClock"]


def _aware(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC).astimezone(JST)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=JST)  # a naive time is read as JST, the meters' zone
    return moment


class Clock(Protocol):
    def now(self) -> datetime:
        """The simulated time, timezone-aware."""
        ...

    async def sleep_until(self, moment: datetime) -> None:
        """Return once the simulated time has reached `moment`."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep this many simulated seconds."""
        ...


class ScaledClock:
    """Simulated time = start + speed × real time elapsed since construction, or since
    the wall-clock instant `origin` (epoch seconds): two processes given the same start,
    speed and origin share one simulated time."""

    def __init__(
        self, start: datetime | None = None, *, speed: float = 1.0, origin: float | None = None
    ):
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.start = _aware(start)
        self.speed = speed
        self.origin = origin
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        if self.origin is not None:
            elapsed = time.time() - self.origin
        else:
            elapsed = time.monotonic() - self._t0
        return self.start + timedelta(seconds=elapsed * self.speed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    async def sleep_until(self, moment: datetime) -> None:
        # Re-check after waking: the event loop's timer may fire a hair early.
        while (left := (moment - self.now()).total_seconds()) > 0:
            await asyncio.sleep(left / self.speed)


class ManualClock:
    """A clock that stands still until `advance()` or `set()` moves it."""

    def __init__(self, start: datetime | None = None):
        self._now = _aware(start)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # ties wake in the order they slept
        self._watchers: list[asyncio.Future[None]] = []  # woken whenever one falls asleep

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | float) -> None:
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        if delta < timedelta(0):
            raise ValueError("a clock does not go backwards")
        self.set(self._now + delta)

    def set(self, moment: datetime) -> None:
        moment = _aware(moment)
        if moment < self._now:
            raise ValueError("a clock does not go backwards")
        self._now = moment
        while self._sleepers and self._sleepers[0][0] <= moment:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many tasks sleep on this clock now."""
        return sum(not future.done() for _, _, future in self._sleepers)

    async def until_sleepers(self, count: int) -> None:
        """Return once `count` tasks sleep on this clock: a test that moved the clock knows
        the tasks it woke have done their work and wait for the next moment, without
        polling or sleeping a guessed while. Bound it with a timeout."""
        while self.sleepers < count:
            watcher = asyncio.get_running_loop().create_future()
            self._watchers.append(watcher)
            await watcher

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + timedelta(seconds=seconds))

    async def sleep_until(self, moment: datetime) -> None:
        if moment <= self._now:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (moment, next(self._order), future))
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            if not watcher.done():
                watcher.set_result(None)
        await future
