"""The gateway's meter poller: what to read, when, and how to fill what was missed.

- Instant power and currents every `instant_interval_s` (aligned to the clock, so many
  gateways' samples line up), stamped with the gateway's clock.
- The 30-minute fixed-time value (EA, and EB where the meter measures reverse flow) after
  each JST half hour, read again until the meter shows a newer slot than the last one
  queued — the meter's clock may lag, and its own timestamp decides the slot.
- Gaps are refilled from the meter's histories: EC (12 half hours per read) for short
  gaps, E5 + E2/E4 a day at a time for long ones, up to the meter's depth; on its own
  after an outage and on command (`backfill`).

All reads go through `kenshin.meter.SmartMeterSession`; everything read goes to the
durable queue first. Errors are counted, kept as values (`stats`), and never stop a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from kenshin.echonet import edt as e
from kenshin.jst import JST, SLOT_S
from kenshin.meter import MeterError, PropertyUnavailable, SmartMeterSession

from .backoff import Backoff, doubling, raise_if_cancelled
from .queue import DurableQueue

log = logging.getLogger(__name__)
HISTORY2_MAX = 12
HISTORY1_MAX_DAY = 99
CLOCK_SET_AFTER_S = 1_577_836_800  # 2020-01-01: earlier means the clock was never set


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, moment: datetime) -> None: ...


class SystemClock:
    """The real time (a simulated clock with the same two methods may stand in)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime) -> None:
        while (left := (moment - self.now()).total_seconds()) > 0:
            await asyncio.sleep(left)


@dataclass
class PollPolicy:
    instant_interval_s: float = 60.0
    # Currents cost bytes on every sample and say little that power does not: every 5 min
    # by default (always in realtime mode).
    currents_every_s: float = 300.0
    fixed_delay_s: float = 20.0  # after the half hour, before asking for EA
    fixed_retry_s: float = 20.0
    fixed_give_up_s: float = 600.0  # then the history refill takes over
    initial_backfill_days: int = 0  # at first start; 0: only from now on


@dataclass
class PollStats:
    """What the heartbeat reports about reading the meter."""

    connected: bool = False
    last_good_read: float | None = None  # epoch seconds
    failures_in_row: int = 0  # reads (instant or fixed) failed since the last good one
    instant_reads: int = 0
    fixed_reads: int = 0
    refilled_slots: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None

    def failed(self, what: str, err: Exception) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1
        self.last_error = f"{what}: {err}"
        if what in ("instant", "fixed"):
            self.failures_in_row += 1

    def read_ok(self) -> None:
        self.last_good_read = time.time()
        self.failures_in_row = 0


def slot_of(moment: datetime) -> int:
    """Epoch seconds of the JST half hour `moment` falls in (JST is whole hours off UTC)."""
    return int(moment.timestamp()) // SLOT_S * SLOT_S


class MeterPoller:
    def __init__(
        self,
        session: SmartMeterSession,
        queue: DurableQueue,
        meter_ref: str,
        *,
        clock: Clock | None = None,
        policy: PollPolicy | None = None,
        on_urgent: Callable[[], None] | None = None,
    ):
        self.session, self.queue, self.meter_ref = session, queue, meter_ref
        # Called when queued readings should go out now: a 30-minute value, or any sample
        # while a person watches in realtime.
        self.on_urgent = on_urgent or (lambda: None)
        self.clock = clock or SystemClock()
        self.policy = policy or PollPolicy()
        self.stats = PollStats()
        self._realtime_until = 0.0
        self._currents_at = 0
        self._realtime_interval_s = 5.0
        self._wake_instant = asyncio.Event()
        self._refill_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until cancelled."""
        await self._connect()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._instant_loop())
            group.create_task(self._fixed_loop())

    async def _connect(self) -> None:
        backoff = Backoff(doubling(5.0, 300.0))
        while True:
            try:
                await self.session.connect()
                self.stats.connected = True
                break
            except MeterError as err:
                self.stats.failed("connect", err)
                delay = backoff.next_delay()
                log.warning("meter connect failed (%s); again in %.0f s", err, delay)
                await asyncio.sleep(delay)
        if self.queue.last_fixed_slot(self.meter_ref) is None and self.policy.initial_backfill_days:
            now_slot = slot_of(self.clock.now())
            start = now_slot - self.policy.initial_backfill_days * 86400
            with contextlib.suppress(MeterError):
                await self.backfill(start, now_slot)

    # -- instant power ---------------------------------------------------------------------

    def realtime(self, interval_s: float, duration_s: float) -> None:
        """Faster instant reads for a person watching, for a while."""
        self._realtime_interval_s = max(1.0, interval_s)
        self._realtime_until = time.monotonic() + duration_s
        self._wake_instant.set()

    @property
    def realtime_active(self) -> bool:
        return time.monotonic() < self._realtime_until

    def _interval_s(self) -> float:
        if time.monotonic() < self._realtime_until:
            return self._realtime_interval_s
        return self.policy.instant_interval_s

    async def _instant_loop(self) -> None:
        while True:
            interval = self._interval_s()
            now = self.clock.now().timestamp()
            due = datetime.fromtimestamp((now // interval + 1) * interval, UTC)
            self._wake_instant.clear()
            sleeper = asyncio.ensure_future(self.clock.sleep_until(due))
            waker = asyncio.ensure_future(self._wake_instant.wait())
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            sleeper.cancel()
            waker.cancel()
            # Stamped at the tick it was due (not when the answer came): regular times
            # compress to almost nothing on the wire.
            await self.read_instant(int(due.timestamp()) if sleeper.done() else None)
            raise_if_cancelled()

    async def read_instant(self, at: int | None = None) -> None:
        at = at if at is not None else int(self.clock.now().timestamp())
        with_currents = (
            self.realtime_active or at - self._currents_at >= self.policy.currents_every_s
        )
        try:
            if with_currents:
                # E8 refused or garbled must not cost E7: ask both, keep what came.
                values = await self.session.get_values([0xE7, 0xE8], required=False)
                self._currents_at = at
                r_da = t_da = None
                currents = values.get(0xE8)
                if isinstance(currents, e.Currents):
                    r_da, t_da = currents.r_da, currents.t_da
                else:
                    self.stats.failed("currents", PropertyUnavailable(0xE8))
                if 0xE7 not in values:
                    raise PropertyUnavailable(0xE7)
                power_w = values[0xE7]
            else:
                power_w, r_da, t_da = await self.session.instant_power_w(), None, None
        except MeterError as err:
            self.stats.failed("instant", err)
            return
        if at < CLOCK_SET_AFTER_S:  # a box without a real-time clock, before NTP
            self.stats.failed("clock_unset", ValueError("gateway clock not set"))
            return
        self.queue.put_instant(self.meter_ref, at, power_w, r_da, t_da)
        self.stats.instant_reads += 1
        self.stats.read_ok()
        if self.realtime_active:
            self.on_urgent()

    # -- 30-minute values ------------------------------------------------------------------

    async def _fixed_loop(self) -> None:
        while True:
            boundary = slot_of(self.clock.now()) + SLOT_S
            first_try = datetime.fromtimestamp(boundary + self.policy.fixed_delay_s, UTC)
            await self.clock.sleep_until(first_try)
            await self.read_fixed_until_new(boundary)
            raise_if_cancelled()

    async def read_fixed_until_new(self, expected_slot: int) -> bool:
        """Read EA/EB until the meter shows a slot newer than the last queued (or give
        up after `fixed_give_up_s`; the refill will fetch it from history)."""
        deadline = expected_slot + self.policy.fixed_delay_s + self.policy.fixed_give_up_s
        while True:
            if await self.read_fixed():
                return True
            raise_if_cancelled()
            if self.clock.now().timestamp() + self.policy.fixed_retry_s > deadline:
                return False
            await self.clock.sleep_until(
                self.clock.now() + timedelta(seconds=self.policy.fixed_retry_s)
            )

    async def read_fixed(self) -> bool:
        """One EA/EB read; True when it gave a slot newer than any queued before."""
        try:
            reading = await self.session.fixed_time_energy()
        except MeterError as err:
            self.stats.failed("fixed", err)
            return False
        self.stats.read_ok()
        slot = slot_of(reading.at)
        last = self.queue.last_fixed_slot(self.meter_ref)
        if last is not None and slot <= last:
            return False
        self.stats.fixed_reads += 1
        if last is not None and slot - last > SLOT_S:
            await self._refill_quietly(last + SLOT_S, slot - SLOT_S)
        self._put(
            slot,
            reading.normal.raw if reading.normal else None,
            reading.reverse.raw if reading.reverse else None,
        )
        return True

    def accept_announcement(
        self, at: datetime, normal_raw: int | None, reverse_raw: int | None = None
    ) -> None:
        """An EA/EB the meter announced by INF: as good as a read."""
        slot = slot_of(at)
        last = self.queue.last_fixed_slot(self.meter_ref)
        if last is None or slot > last:
            self._put(slot, normal_raw, reverse_raw)

    def _put(self, slot: int, normal: int | None, reverse: int | None, *, refill=False) -> None:
        self.queue.put_fixed(self.meter_ref, slot, 0, normal, refill=refill)
        if reverse is not None or self._measures_reverse:
            self.queue.put_fixed(self.meter_ref, slot, 1, reverse, refill=refill)
        self.on_urgent()

    @property
    def _measures_reverse(self) -> bool:
        facts = self.session.facts
        return facts is not None and 0xEB in facts.get_map

    # -- history refill --------------------------------------------------------------------

    async def _refill_quietly(self, first: int, last: int) -> None:
        try:
            await self.backfill(first, last)
        except MeterError as err:
            self.stats.failed("refill", err)

    async def backfill(self, first_slot: int, last_slot: int) -> int:
        """Queue every slot from `first_slot` to `last_slot` (epoch s, inclusive) that the
        meter's history holds and the queue has not seen; returns how many."""
        async with self._refill_lock:
            count = (last_slot - first_slot) // SLOT_S + 1
            if count <= 0:
                return 0
            if count <= HISTORY2_MAX:
                points = await self.session.history2(_jst(last_slot), count)
                values = {slot_of(p.at): (p.normal, p.reverse) for p in points}
            else:
                values = await self._history_by_day(first_slot, last_slot)
            added = 0
            for slot in range(first_slot, last_slot + 1, SLOT_S):
                normal, reverse = values.get(slot, (None, None))
                if normal is None:
                    continue  # the meter has nothing for it (before install, or too old)
                self._put(slot, normal.raw, reverse.raw if reverse else None, refill=True)
                added += 1
            self.stats.refilled_slots += added
            return added

    async def _history_by_day(self, first_slot: int, last_slot: int) -> dict:
        today = (await self.session.fixed_time_energy()).at.astimezone(JST).date()
        first_day = _jst(first_slot).date()
        last_day = _jst(last_slot).date()
        values: dict[int, list] = {}
        for day in range(
            min((today - first_day).days, HISTORY1_MAX_DAY), (today - last_day).days - 1, -1
        ):
            normal = await self.session.history1(day)
            reverse = (
                await self.session.history1(day, reverse=True) if self._measures_reverse else []
            )
            for point in normal:
                values[slot_of(point.at)] = [point.normal, None]
            for point in reverse:
                values.setdefault(slot_of(point.at), [None, None])[1] = point.reverse
        return {slot: tuple(pair) for slot, pair in values.items()}


def _jst(slot: int) -> datetime:
    return datetime.fromtimestamp(slot, JST)
