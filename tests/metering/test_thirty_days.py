"""Thirty simulated days, end to end, against the simulator's own record.

A simulated meter (unit 0.01 kWh, coefficient 10, five digits: its register wraps in the
middle of the month, normal and reverse) is read by the real gateway poller over real UDP
on a manual clock; the meter goes silent for a day and a half mid-month and the poller
refills the gap from the meter's history by itself. The queued readings go out as the
gateway would batch them, then reach the server late, out of order and some twice. Every
30-minute slot of both directions must equal the energy between the simulator's register
values exactly (integer Wh), with the outage's slots marked refilled, and every rollup
must be the sum of its slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from kenshin.echonet.edt import EnergyUnit
from kenshin.echonet.udp import EchonetClient
from kenshin.gateway.batches import build_batches, take
from kenshin.gateway.poller import SLOT_S, MeterPoller, PollPolicy
from kenshin.gateway.queue import DurableQueue
from kenshin.meter import SmartMeterSession, UdpMeterLink
from kenshin.server import ingest
from kenshin.server import schema as s
from kenshin.server.metering.rollups import day_start, hour_start, month_start
from kenshin.sim.clock import JST, ManualClock
from kenshin.sim.fleet import SimFleet
from kenshin.sim.meter import MeterConfig
from kenshin.wire import MeterScale, encode_publish
from tests.server.conftest import udp_meter
from tests.support import eventually, free_udp_port, run

pytestmark = pytest.mark.slow  # a month of polling

START = datetime(2026, 3, 1, 0, 0, 30, tzinfo=JST)
DAYS = 30
SCALE = MeterScale(10, int(EnergyUnit.KWH_0_01), 5)  # a count is 100 Wh; wraps at 10^5
WH_PER_COUNT = 100
OUTAGE = (14 * 48 + 10, 15 * 48 + 30)  # half hours of silence: 15 Mar 05:00 .. 16 Mar 15:00


async def _month(tmp_path):
    """Run the poller for the month; returns (payload batches by day, the registers)."""
    port = free_udp_port("127.0.1.1")
    clock = ManualClock(START)
    config = MeterConfig(
        seed=21, pv=True, unit=EnergyUnit.KWH_0_01, coefficient=10, digits=5,
        initial_normal_wh=10**5 * WH_PER_COUNT - 150_000,  # 150 kWh before the wrap
    )  # fmt: skip
    fleet = SimFleet(1, clock, port=port, config=config)
    client = EchonetClient(host="127.0.0.1", port=0, remote_port=port, timeout_s=0.2,
                           backoff_s=0.01, attempts=2)  # fmt: skip
    queue = DurableQueue(tmp_path / "queue.db")
    days: list[list[tuple[str, bytes]]] = []
    async with fleet, client:
        host, meter_port = fleet.addresses[0]
        session = SmartMeterSession(UdpMeterLink(client, host, meter_port))
        poller = MeterPoller(session, queue, "m1", clock=clock,
                             policy=PollPolicy(instant_interval_s=3600))  # fmt: skip
        task = asyncio.create_task(poller.run())
        await eventually(lambda: poller.stats.connected)
        meter = fleet.meters[0]
        try:
            for half_hour in range(1, DAYS * 48 + 1):
                if half_hour == OUTAGE[1]:
                    # A read sent while the meter was silent may still be timing out (real
                    # UDP); if it failed after the clock moved, the poller would sleep to
                    # the next half hour. So let it fall asleep first: both its loops and
                    # the meter's announcer wait on the clock.
                    await asyncio.wait_for(clock.until_sleepers(3), timeout=30)
                meter.config.faults.silent = OUTAGE[0] <= half_hour < OUTAGE[1]
                before = poller.stats.fixed_reads + poller.stats.refilled_slots
                clock.advance(timedelta(minutes=30))
                if not meter.config.faults.silent:
                    await _read_or_retried(clock, poller, before)
                else:
                    await asyncio.sleep(0.01)
                if half_hour % 48 == 0:  # a day's batches, as the uplink would send them
                    days.append(_drain(queue))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return days, meter.registers, poller.stats.refilled_slots


async def _read_or_retried(clock: ManualClock, poller: MeterPoller, before: int) -> None:
    """Until the half hour's value is read. On a loaded machine a read can time out (real
    UDP, 0.2 s): the poller then sleeps on this clock until its retry, which only moving
    the clock brings. So move it on to the retry, at most five times (under 2 minutes of a
    half hour, so every slot stays where it is)."""
    for _ in range(5):
        try:
            await eventually(
                lambda: poller.stats.fixed_reads + poller.stats.refilled_slots > before,
                timeout_s=10,
            )
            return
        except AssertionError:
            clock.advance(timedelta(seconds=poller.policy.fixed_retry_s))
    raise AssertionError("the half hour's value was not read after five retries")


def _drain(queue: DurableQueue) -> list[tuple[str, bytes]]:
    out = []
    while True:
        batches = build_batches(take(queue), queue.next_seq, {"m1": SCALE})
        if not batches:
            return out
        for batch, rows in batches:
            out.append(batch)
            queue.ack(rows)


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    return run(_month(tmp_path_factory.mktemp("gateway")), timeout_s=600)


def test_thirty_days_of_slots_equal_the_simulators_record(month, engine, world, fleet):
    days, registers, refilled_by_poller = month
    meter = udp_meter(engine, world, fleet)
    batches = [b for day in days for b in day]
    assert refilled_by_poller >= OUTAGE[1] - OUTAGE[0] - 2
    rng = random.Random(30)
    late = rng.sample(range(len(batches)), len(batches) // 4)  # a quarter arrive late
    order = [i for i in range(len(batches)) if i not in late] + sorted(late, reverse=True)
    order += rng.sample(range(len(batches)), 5)  # and some twice
    for index in order:
        batch = batches[index]
        renamed = type(batch)(batch.seq, f"m{meter.id}", batch.instant, batch.fixed, batch.scale)
        topic, payload = encode_publish(renamed, "GW-A")
        with engine.begin() as conn:
            assert ingest.handle(conn, topic, payload).kind == "readings"

    first = int(START.timestamp()) // SLOT_S * SLOT_S + SLOT_S
    slots = range(first, first + (DAYS * 48 - 1) * SLOT_S, SLOT_S)
    with engine.connect() as conn:
        rows = conn.execute(select(s.slot_energy).where(s.slot_energy.c.meter_id == meter.id))
        stored = {(int(r.slot_start.timestamp()), r.direction): r for r in rows}
        meter_rollups = _rollups(conn, s.meter_energy, s.meter_energy.c.meter_id == meter.id)
        tenant_rollups = _rollups(
            conn, s.tenant_energy, s.tenant_energy.c.tenant_id == meter.tenant_id
        )
    wrapped = refilled = 0
    for slot in slots:
        at, after = datetime.fromtimestamp(slot, JST), datetime.fromtimestamp(slot + SLOT_S, JST)
        for direction in (0, 1):
            a, b = registers.raw(at)[direction], registers.raw(after)[direction]
            wrapped += b < a
            row = stored[(slot, direction)]
            assert row.wh == (b - a) % 10**5 * WH_PER_COUNT, (at, direction)
            refilled += row.status == "refilled"
    assert wrapped >= 1  # the normal register went past 99,999 during the month
    assert refilled >= 2 * (OUTAGE[1] - OUTAGE[0])

    # Every rollup (the ingest keeps them by deltas) is the sum of the slots it covers,
    # and there is one for every bucket holding a slot: the meter's hours, JST days and
    # months; the tenant's slots, hours, days and months (the tenant has this one meter).
    expected = _sums(stored.values(), ("hour", "day", "month"))
    assert meter_rollups == expected
    assert tenant_rollups == _sums(stored.values(), ("slot", "hour", "day", "month"))
    assert sum(wh for (period, *_), (wh, _, _) in expected.items() if period == "month") == sum(
        r.wh for r in stored.values() if r.wh is not None
    )


BUCKET = {"slot": lambda at: at.astimezone(UTC), "hour": hour_start, "day": day_start,
          "month": month_start}  # fmt: skip


def _sums(slot_rows, periods) -> dict:
    """(period, direction, start) -> [wh, slots with a value, refilled], from slot rows."""
    sums: dict = defaultdict(lambda: [0, 0, 0])
    for row in slot_rows:
        if row.wh is None:
            continue
        for period in periods:
            total = sums[(period, row.direction, BUCKET[period](row.slot_start))]
            total[0] += row.wh
            total[1] += 1
            total[2] += row.status == "refilled"
    return dict(sums)


def _rollups(conn, table, owner) -> dict:
    return {
        (r.period, r.direction, r.start): [r.wh, r.slots, r.refilled]
        for r in conn.execute(select(table).where(owner))
    }
