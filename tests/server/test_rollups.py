"""Rollups kept by the ingest: always equal to the sums of the slots and readings they
summarise, whatever order, repetition or lateness the batches arrive with."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from kenshin.jst import JST
from kenshin.server import ingest
from kenshin.server import schema as s
from kenshin.server.metering.rollups import day_start, hour_start, month_start
from kenshin.sim.load import HouseholdProfile, LoadModel
from kenshin.sim.registers import MeterRegisters
from kenshin.wire import (
    FixedTimeValue,
    InstantSample,
    MeterScale,
    ReadingsBatch,
    ValueSource,
    encode_publish,
)

from .conftest import subscribe_webhook, udp_meter

START = datetime(2026, 3, 31, 12, tzinfo=JST)  # crosses a JST month and two JST days
SLOTS = 80
SCALE = MeterScale(1, 0x01, 6)  # 0.1 kWh a count


def _registers() -> MeterRegisters:
    return MeterRegisters(
        LoadModel(HouseholdProfile.from_seed(4, pv=True)),
        install=START,
        anchor=START,
        unit_code=0x01,
        coefficient=1,
        digits=6,
    )


def _send(engine, meter_id: int, seq: int, fixed=(), instant=()) -> None:
    batch = ReadingsBatch(seq, f"m{meter_id}", tuple(instant), tuple(fixed), SCALE)
    topic, payload = encode_publish(batch, "GW-A")
    with engine.begin() as conn:
        assert ingest.handle(conn, topic, payload).kind == "readings"


def _fixed(regs: MeterRegisters, i: int, refill: bool = False) -> FixedTimeValue:
    at = START + i * timedelta(minutes=30)
    source = ValueSource.REFILLED if refill else ValueSource.MEASURED
    return FixedTimeValue(int(at.timestamp()), *regs.raw(at), source)


def _expected_sums(conn, period_start) -> dict:
    sums: dict = defaultdict(lambda: [0, 0, 0])
    for r in conn.execute(select(s.slot_energy).where(s.slot_energy.c.wh.is_not(None))):
        total = sums[(r.direction, period_start(r.slot_start))]
        total[0] += r.wh
        total[1] += 1
        total[2] += r.status == "refilled"
    return {k: tuple(v) for k, v in sums.items()}


def _stored(conn, table, period: str) -> dict:
    rows = conn.execute(select(table).where(table.c.period == period))
    return {
        (r.direction, r.start): (r.wh, r.slots, r.refilled)
        for r in rows
        if (r.wh, r.slots, r.refilled) != (0, 0, 0)
    }


def test_energy_rollups_equal_the_sums_of_their_slots(engine, world, fleet):
    meter = udp_meter(engine, world, fleet)
    subscribe_webhook(engine, world.tenant_a, ["slot.closed"])
    regs = _registers()
    outage = set(range(30, 41))
    order = [i for i in range(SLOTS + 1) if i not in outage]
    rng = random.Random(5)
    late = rng.sample(order[5:], 6)  # some batches come hours late, out of order
    seq = 0
    for i in order:
        if i not in late:
            seq += 1
            _send(engine, meter.id, seq, [_fixed(regs, i)])
    for i in reversed(late):
        seq += 1
        _send(engine, meter.id, seq, [_fixed(regs, i)])
    for i in rng.sample(order, 10):  # redelivered: nothing may count twice
        _send(engine, meter.id, 7, [_fixed(regs, i)])
    seq += 1
    _send(engine, meter.id, seq, [_fixed(regs, i, refill=True) for i in sorted(outage)])

    with engine.connect() as conn:
        slots = conn.execute(select(s.slot_energy)).all()
        assert {r.status for r in slots} == {"measured", "refilled"}
        assert len(slots) == 2 * SLOTS
        for period, start in (("hour", hour_start), ("day", day_start), ("month", month_start)):
            expected = _expected_sums(conn, start)
            assert _stored(conn, s.meter_energy, period) == expected, period
            assert _stored(conn, s.tenant_energy, period) == expected, period
        assert _stored(conn, s.tenant_energy, "slot") == _expected_sums(conn, lambda t: t)
        months = {start for _, start in _stored(conn, s.meter_energy, "month")}
        assert months == {datetime(2026, 3, 1, tzinfo=JST), datetime(2026, 4, 1, tzinfo=JST)}
        # One outbox row each time a slot got or changed its value: every slot once.
        outbox = conn.execute(select(s.outbox.c.body).where(s.outbox.c.kind == "slot")).all()
        assert len(outbox) == 2 * SLOTS
        bodies = {(b["slot_start"], b["direction"]): b["wh"] for (b,) in outbox}
        for r in slots:
            assert bodies[(r.slot_start.astimezone(UTC).isoformat(), r.direction)] == r.wh


def test_latest_reading_and_daily_peaks_whatever_the_order(engine, world, fleet):
    meter = udp_meter(engine, world, fleet)
    base = datetime(2026, 4, 1, 14, 0, tzinfo=UTC)  # 23:00 JST: two JST days in 3 hours
    powers = [((i * 37) % 900) - 300 for i in range(180)]  # bought and sold
    powers[10] = powers[40] = 850  # a tie: the earlier instant is the peak's time
    samples = [
        InstantSample(int((base + timedelta(minutes=i)).timestamp()), p, 50, None)
        for i, p in enumerate(powers)
    ]
    chunks = [samples[i : i + 30] for i in range(0, len(samples), 30)]
    for seq, chunk in enumerate(reversed(chunks)):  # newest first
        _send(engine, meter.id, seq, instant=chunk)
    _send(engine, meter.id, 99, instant=chunks[0])  # and one again

    with engine.connect() as conn:
        latest = conn.execute(select(s.meter_latest)).one()
        peaks = conn.execute(select(s.meter_daily_peak).order_by("day")).all()
    assert latest.at == datetime.fromtimestamp(samples[-1].at_s, UTC)
    assert latest.power_w == powers[-1]
    by_day: dict = defaultdict(list)
    for sample in samples:
        by_day[day_start(datetime.fromtimestamp(sample.at_s, UTC))].append(sample)
    assert [p.day for p in peaks] == sorted(by_day)
    for peak in peaks:
        day = by_day[peak.day]
        bought = max(x.power_w for x in day)
        first = min((x for x in day if x.power_w == bought), key=lambda x: x.at_s)
        assert (peak.import_w, peak.import_at.timestamp()) == (bought, first.at_s)
        sold = -min(x.power_w for x in day)
        first = min((x for x in day if x.power_w == -sold), key=lambda x: x.at_s)
        assert (peak.export_w, peak.export_at.timestamp()) == (sold, first.at_s)
