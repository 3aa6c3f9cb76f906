"""What a simulated meter counts: cumulative registers that integrate the load exactly.

The registers hold watt-seconds as integers and show them as counts of
unit(E1) × coefficient(D3), truncated and wrapped at 10^digits(D7), as a real register
does. Because the load model gives exact slot energies, every value here (instant, the
half-hour EA/EB, history 1/2/3, the 1-minute D0) comes from one function of time, so
they agree with each other to the count by construction.

The register reads `initial_normal_wh` at the start of the anchor's slot (by default,
when the simulation starts). Slot energies are summed outwards from there on demand and
kept as prefix sums, so a fleet starts in no time and a 100-day history read costs one
pass over 4,800 slots, once.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from kenshin.echonet.edt import HISTORY1_SLOTS
from kenshin.jst import JST, SLOT

from .load import SLOT_S, STEP_S, STEPS_PER_SLOT, LoadModel, mix, unit_interval

# One count of each E1 unit code, in watt-seconds (1 kWh = 3,600,000 Ws).
WS_PER_UNIT = {
    0x00: 3_600_000,
    0x01: 360_000,
    0x02: 36_000,
    0x03: 3_600,
    0x04: 360,
    0x0A: 36_000_000,
    0x0B: 360_000_000,
    0x0C: 3_600_000_000,
    0x0D: 36_000_000_000,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
US = 1_000_000
_STEP_US = STEP_S * US
_SLOT_US = SLOT_S * US
MINUTE = timedelta(minutes=1)


class PowerSource(Protocol):
    """A device behind the meter (`sim.devices.SimulatedDevice`): its power, + drawn and
    - fed into the house, as (from epoch µs, watts) changes covering [start_us, end_us)."""

    def segments(self, start_us: int, end_us: int) -> list[tuple[int, int]]: ...


def epoch_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (no float rounding)."""
    return (moment - _EPOCH) // _US


class MeterRegisters:
    def __init__(
        self,
        load: LoadModel,
        *,
        install: datetime,
        anchor: datetime | None = None,
        coefficient: int = 1,
        unit_code: int = 0x01,
        digits: int = 6,
        initial_normal_wh: int | None = None,
        initial_reverse_wh: int | None = None,
    ):
        if unit_code not in WS_PER_UNIT:
            raise ValueError(f"unknown unit code 0x{unit_code:02X}")
        if not 1 <= digits <= 8:
            raise ValueError(f"effective digits must be 1..8, got {digits}")
        if not 1 <= coefficient <= 999_999:
            raise ValueError(f"coefficient must be 1..999999, got {coefficient}")
        self.load = load
        self.install = install
        self.coefficient = coefficient
        self.unit_code = unit_code
        self.digits = digits
        self.ws_per_count = WS_PER_UNIT[unit_code] * coefficient
        self.modulus = 10**digits
        seed = load.profile.seed
        if initial_normal_wh is None:  # an old meter in an old house: thousands of kWh
            initial_normal_wh = 2_000_000 + int(unit_interval(mix(seed, 0xE0)) * 40_000_000)
        if initial_reverse_wh is None:
            sells = load.profile.pv_kw > 0
            initial_reverse_wh = int(unit_interval(mix(seed, 0xE3)) * 8_000_000) if sells else 0
        self._initial_ws = (initial_normal_wh * 3600, initial_reverse_wh * 3600)
        anchor = anchor if anchor is not None else install
        self._anchor_slot = epoch_us(anchor) // (SLOT_S * 1_000_000)
        # _after[d][i]: energy from the anchor slot's start to the start of slot anchor+i;
        # _before[d][i]: energy from the start of slot anchor-i to the anchor slot's start.
        self._after: tuple[list[int], list[int]] = ([0], [0])
        self._before: tuple[list[int], list[int]] = ([0], [0])
        self.gaps: tuple[tuple[datetime, datetime], ...] = ()  # no values recorded
        # Devices behind the meter (`attach`), each counted from the µs it was attached.
        self.devices: list[tuple[PowerSource, int]] = []
        self._counts_reverse = True
        self._now: Callable[[], datetime] | None = None
        self._added: dict[int, tuple[int, int]] = {}  # slot -> W·µs the devices changed before it
        self._added_last = 0  # the newest slot of _added (they are contiguous from the first)

    def attach(
        self, device: PowerSource, *, since: datetime, now: Callable[[], datetime],
        counts_reverse: bool,
    ) -> None:  # fmt: skip
        """Count `device`'s power from `since` on, added to the load step by step. Where the
        net flow turns negative, the reverse register counts it (if `counts_reverse`: a
        meter without a reverse register counts nothing then). Past half hours are summed
        once and kept: a device's past never changes, since Sets only change its future."""
        if not self.devices:
            first = epoch_us(since) // _SLOT_US
            self._added, self._added_last = {first: (0, 0)}, first
        self.devices.append((device, epoch_us(since)))
        self._now, self._counts_reverse = now, counts_reverse

    def devices_power_w(self, moment: datetime) -> int:
        us = epoch_us(moment)
        return sum(d.segments(us, us + 1)[0][1] for d, since in self.devices if since <= us)

    def _devices_added(self, us: int) -> tuple[int, int]:
        """(normal, reverse) W·µs the devices added to the registers up to `us`."""
        slot = us // _SLOT_US
        first = min(self._added)
        if slot < first:
            return 0, 0
        start = min(slot, self._added_last)
        normal, reverse = self._added[start]
        now_us = epoch_us(self._now()) if self._now is not None else us
        while start < slot:
            n, r = self._added_between(start * _SLOT_US, (start + 1) * _SLOT_US)
            normal, reverse, start = normal + n, reverse + r, start + 1
            if start * _SLOT_US <= now_us and start == self._added_last + 1:
                self._added[start], self._added_last = (normal, reverse), start
        n, r = self._added_between(slot * _SLOT_US, us)
        return normal + n, reverse + r

    def _added_between(self, a: int, b: int) -> tuple[int, int]:
        if b <= a:
            return 0, 0
        tables = []
        for device, since in self.devices:
            if since >= b:
                continue
            changes = [(max(t, since), w) for t, w in device.segments(max(a, since), b)]
            tables.append(([a, *(t for t, _ in changes)], [0, *(w for _, w in changes)]))
        points = sorted({a, *(t for times, _ in tables for t in times if a <= t < b)})
        normal = reverse = 0
        for p, q in zip(points, [*points[1:], b], strict=True):
            extra = sum(w[bisect.bisect_right(t, p) - 1] for t, w in tables)
            if extra:
                n, r = self._with_extra(p, q, extra)
                normal, reverse = normal + n, reverse + r
        return normal, reverse

    def _with_extra(self, a: int, b: int, extra: int) -> tuple[int, int]:
        """What `extra` W over [a, b) changes in each register, 10-second step by step."""
        normal = reverse = 0
        while a < b:
            step = a // _STEP_US
            end = min(b, (step + 1) * _STEP_US)
            load = self.load.step_power_w(step)
            net, us = load + extra, end - a
            normal += (max(net, 0) - max(load, 0)) * us
            if self._counts_reverse:
                reverse += (max(-net, 0) - max(-load, 0)) * us
            a = end
        return normal, reverse

    def forget(self) -> None:
        """Drop what was summed so far (after the load changed)."""
        self._after, self._before = ([0], [0]), ([0], [0])

    # -- energy --------------------------------------------------------------------------

    def _to_slot_start(self, slot: int) -> tuple[int, int]:
        """Signed (normal, reverse) Ws from the anchor slot's start to `slot`'s start."""
        offset = slot - self._anchor_slot
        if offset >= 0:
            normal, reverse = self._after
            while len(normal) <= offset:
                n, r = self.load.slot_energy_ws(self._anchor_slot + len(normal) - 1)
                normal.append(normal[-1] + n)
                reverse.append(reverse[-1] + r)
            return normal[offset], reverse[offset]
        normal, reverse = self._before
        while len(normal) <= -offset:
            n, r = self.load.slot_energy_ws(self._anchor_slot - len(normal))
            normal.append(normal[-1] + n)
            reverse.append(reverse[-1] + r)
        return -normal[-offset], -reverse[-offset]

    def energy_ws(self, moment: datetime) -> tuple[int, int]:
        """(normal, reverse) Ws counted up to `moment` since the register was zero."""
        us = epoch_us(moment)
        slot, into_slot_us = divmod(us, SLOT_S * 1_000_000)
        steps, into_step_us = divmod(into_slot_us, _STEP_US)
        normal, reverse = self._to_slot_start(slot)
        normal, reverse = normal * US, reverse * US  # W·µs from here, floored once at the end
        within = self.load.energy_into_slot_ws(slot, steps)
        # The running step adds power × elapsed time, floored so the count never runs ahead.
        power = self.load.step_power_w(slot * STEPS_PER_SLOT + steps)
        within_abs = abs(within) * US + abs(power) * into_step_us
        if self.load.slot_mean_w(slot) >= 0:
            normal += within_abs
        else:
            reverse += within_abs
        if self.devices:
            added_normal, added_reverse = self._devices_added(us)
            normal, reverse = normal + added_normal, reverse + added_reverse
        return normal // US + self._initial_ws[0], reverse // US + self._initial_ws[1]

    def counts(self, energy_ws: int) -> int:
        return energy_ws // self.ws_per_count % self.modulus

    def raw(self, moment: datetime) -> tuple[int, int]:
        """The registers E0 and E3 as the meter shows them at `moment`."""
        normal, reverse = self.energy_ws(moment)
        return self.counts(normal), self.counts(reverse)

    def _raw_if_recorded(self, moment: datetime, now: datetime) -> tuple[int | None, int | None]:
        if moment > now or moment < self.install:
            return None, None
        if any(start <= moment < end for start, end in self.gaps):  # the meter was off
            return None, None
        return self.raw(moment)

    # -- instantaneous ------------------------------------------------------------------

    def instant_power_w(self, moment: datetime) -> int:
        load = self.load.step_power_w(epoch_us(moment) // _STEP_US)
        return load + self.devices_power_w(moment) if self.devices else load

    def currents_da(self, moment: datetime) -> tuple[int, int | None]:
        """R and T phase currents in 0.1 A, signed like the power; T is None on 2-wire.
        3-wire service carries each phase at 100 V, 2-wire its only phase at 100 V."""
        profile = self.load.profile
        amps_x10 = self.instant_power_w(moment) / profile.power_factor / 10  # W / 100 V × 10
        if not profile.three_wire:
            return round(amps_x10), None
        r = round(amps_x10 * profile.r_share)
        return r, round(amps_x10) - r

    # -- recorded values -----------------------------------------------------------------

    def fixed_time(self, now: datetime) -> tuple[datetime, int, int]:
        """EA/EB: the latest half-hour boundary and both registers at it."""
        boundary = floor_time(now, SLOT)
        normal, reverse = self.raw(boundary)
        return boundary, normal, reverse

    def minute_value(self, now: datetime) -> tuple[datetime, int, int]:
        """D0: the latest whole minute and both registers at it."""
        minute = floor_time(now, MINUTE)
        normal, reverse = self.raw(minute)
        return minute, normal, reverse

    def history1(self, now: datetime, day: int, *, reverse: bool = False) -> list[int | None]:
        """E2/E4: 48 half-hour values from 00:00 JST `day` days before `now`'s date."""
        midnight = datetime.combine(now.astimezone(JST).date(), datetime.min.time(), JST)
        start = midnight - timedelta(days=day)
        side = 1 if reverse else 0
        return [self._raw_if_recorded(start + i * SLOT, now)[side] for i in range(HISTORY1_SLOTS)]

    def history2(
        self, now: datetime, newest: datetime, count: int
    ) -> list[tuple[int | None, int | None]]:
        """EC: (normal, reverse) pairs from `newest` backwards in 30-minute steps."""
        return [self._raw_if_recorded(newest - i * SLOT, now) for i in range(count)]

    def history3(
        self, now: datetime, newest: datetime, count: int
    ) -> list[tuple[int | None, int | None]]:
        """EE: (normal, reverse) pairs from `newest` backwards in 1-minute steps."""
        return [self._raw_if_recorded(newest - i * MINUTE, now) for i in range(count)]


def floor_time(moment: datetime, step: timedelta) -> datetime:
    """`moment` rounded down to a multiple of `step` (whole minutes align with JST)."""
    step_us = step // _US
    return (_EPOCH + timedelta(microseconds=epoch_us(moment) // step_us * step_us)).astimezone(JST)
