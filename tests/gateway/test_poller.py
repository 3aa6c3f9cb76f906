"""The gateway's poller against a simulated meter over real UDP, on a manual clock: one day
of instant samples and 30-minute values equal to the meter's registers; gaps after an
outage refilled from history (EC for short gaps, E2/E4 by day for long ones)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from kenshin.echonet.udp import EchonetClient
from kenshin.gateway.poller import SLOT_S, MeterPoller, PollPolicy
from kenshin.gateway.queue import DurableQueue
from kenshin.meter import SmartMeterSession, UdpMeterLink
from kenshin.sim.clock import JST, ManualClock
from kenshin.sim.fleet import SimFleet
from kenshin.sim.meter import MeterConfig, MeterFaults
from tests.support import eventually, free_udp_port, run

START = datetime(2026, 6, 1, 0, 0, 30, tzinfo=JST)
# Asleep on the clock when all is idle: the poller's instant and fixed-time loops, and the
# meter's half-hourly tick.
IDLE = 3


@contextlib.asynccontextmanager
async def rig(
    tmp_path, config: MeterConfig | None = None, **policy
) -> AsyncIterator[tuple[MeterPoller, SimFleet, ManualClock]]:
    port = free_udp_port("127.0.1.1")
    clock = ManualClock(START)
    fleet = SimFleet(1, clock, port=port, config=config or MeterConfig(seed=12, pv=True))
    client = EchonetClient(host="127.0.0.1", port=0, remote_port=port, timeout_s=0.2,
                           backoff_s=0.01, attempts=2)  # fmt: skip
    async with fleet, client:
        host, meter_port = fleet.addresses[0]
        session = SmartMeterSession(UdpMeterLink(client, host, meter_port))
        queue = DurableQueue(tmp_path / "queue.db")
        poller = MeterPoller(session, queue, "m1", clock=clock, policy=PollPolicy(**policy))
        task = asyncio.create_task(poller.run())
        await eventually(lambda: poller.stats.connected)
        await asyncio.wait_for(clock.until_sleepers(IDLE), 5)
        try:
            yield poller, fleet, clock
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def step_minutes(poller: MeterPoller, clock: ManualClock, minutes: int, step: int = 1):
    """Advance `step` minutes at a time; each step ends when the poller's loops have done
    the reads it woke them for (a fixed-time read due in the same minute too) and sleep on
    the clock again."""
    for _ in range(0, minutes, step):
        before = poller.stats.instant_reads + sum(poller.stats.errors.values())
        clock.advance(timedelta(minutes=step))
        await asyncio.wait_for(clock.until_sleepers(IDLE), 5)
        assert poller.stats.instant_reads + sum(poller.stats.errors.values()) > before


def fixed_values(queue: DurableQueue, direction: int = 0) -> dict[int, tuple[int, int]]:
    pending = queue.peek(max_instant=0, max_fixed=100_000)
    return {r.slot_start: (r.raw, r.source) for r in pending.fixed if r.direction == direction}


def test_a_day_of_readings_equals_the_meter(tmp_path):
    async def scenario():
        async with rig(tmp_path) as (poller, fleet, clock):
            await step_minutes(poller, clock, 24 * 60)
            regs = fleet.meters[0].registers
            pending = poller.queue.peek(max_instant=100_000, max_fixed=100_000)
            assert len(pending.instant) == 24 * 60
            for row in pending.instant[:50]:
                assert row.at % 60 == 0  # stamped at the tick it was due
                read_at = datetime.fromtimestamp(row.at, JST) + timedelta(seconds=30)
                assert row.power_w == regs.instant_power_w(read_at)  # the manual clock's step
            normal, reverse = fixed_values(poller.queue), fixed_values(poller.queue, 1)
            assert len(normal) == 48 and len(reverse) == 48
            for slot, (raw, source) in normal.items():
                at = datetime.fromtimestamp(slot, JST)
                assert (raw, source) == (regs.raw(at)[0], 0)
                assert reverse[slot][0] == regs.raw(at)[1]

    run(scenario(), timeout_s=120)


def test_refused_currents_do_not_cost_the_instant_power(tmp_path):
    # Issue 17 item 7.5: a meter refusing E8 lost E7 with it.
    config = MeterConfig(seed=12, pv=True, faults=MeterFaults(refused_epcs=frozenset({0xE8})))

    async def scenario():
        async with rig(tmp_path, config=config) as (poller, fleet, clock):
            await step_minutes(poller, clock, 10)
            regs = fleet.meters[0].registers
            pending = poller.queue.peek(max_instant=100_000, max_fixed=0)
            assert len(pending.instant) == 10
            for row in pending.instant:
                read_at = datetime.fromtimestamp(row.at, JST) + timedelta(seconds=30)
                assert row.power_w == regs.instant_power_w(read_at)
                assert row.current_r_da is None and row.current_t_da is None
            assert poller.stats.errors.get("instant") is None
            assert poller.stats.errors.get("currents", 0) >= 1

    run(scenario(), timeout_s=60)


def test_a_two_hour_outage_is_refilled_from_history(tmp_path):
    async def scenario():
        async with rig(tmp_path) as (poller, fleet, clock):
            await step_minutes(poller, clock, 60)
            fleet.meters[0].config.faults.silent = True  # the link is cut
            await step_minutes(poller, clock, 120, step=10)
            fleet.meters[0].config.faults.silent = False
            await step_minutes(poller, clock, 60)
            regs, values = fleet.meters[0].registers, fixed_values(poller.queue)
            first = int(START.timestamp()) // SLOT_S * SLOT_S + SLOT_S
            slots = range(first, first + 8 * SLOT_S, SLOT_S)
            assert sorted(values) == list(slots)
            refilled = [s for s in slots if values[s][1] == 1]
            assert len(refilled) >= 3
            for slot in slots:
                assert values[slot][0] == regs.raw(datetime.fromtimestamp(slot, JST))[0]

    run(scenario(), timeout_s=120)


def test_a_long_outage_is_refilled_day_by_day(tmp_path):
    async def scenario():
        async with rig(tmp_path, instant_interval_s=3600) as (poller, fleet, clock):
            clock.advance(timedelta(minutes=31))  # 00:31: the 00:30 value is in
            await eventually(lambda: poller.stats.fixed_reads == 1)
            meter = fleet.meters[0]
            meter.config.faults.silent = True
            clock.advance(timedelta(days=3))  # three days without the meter
            await asyncio.wait_for(clock.until_sleepers(IDLE), 5)  # its reads failed
            meter.config.faults.silent = False
            await poller.read_fixed()
            values, regs = fixed_values(poller.queue), meter.registers
            first = int(START.timestamp()) // SLOT_S * SLOT_S + SLOT_S
            newest = int(clock.now().timestamp()) // SLOT_S * SLOT_S
            assert sorted(values) == list(range(first, newest + SLOT_S, SLOT_S))
            assert poller.stats.refilled_slots >= 3 * 48 - 2
            for slot, (raw, _) in values.items():
                assert raw == regs.raw(datetime.fromtimestamp(slot, JST))[0]
            reverse = fixed_values(poller.queue, 1)
            assert reverse.keys() == values.keys()

    run(scenario(), timeout_s=120)


def test_realtime_mode_reads_faster_for_a_while(tmp_path):
    async def scenario():
        async with rig(tmp_path) as (poller, _, clock):
            poller.realtime(interval_s=5, duration_s=60)
            before = poller.stats.instant_reads
            for _ in range(6):
                clock.advance(timedelta(seconds=5))
                await eventually(lambda b=before: poller.stats.instant_reads > b)
                before = poller.stats.instant_reads

    run(scenario())
