"""Queue rows → wire batches: one `ReadingsBatch` per meter, 30-minute values merged by
slot (normal and reverse travel together), within the wire's limits."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from kenshin.wire import FixedTimeValue, InstantSample, MeterScale, ReadingsBatch, ValueSource
from kenshin.wire.codec import MAX_FIXED_VALUES, MAX_INSTANT_SAMPLES

from .queue import DurableQueue, Pending


def take(queue: DurableQueue) -> Pending:
    """The oldest rows, as many as one batch may carry (fixed values count per direction)."""
    return queue.peek(max_instant=MAX_INSTANT_SAMPLES, max_fixed=MAX_FIXED_VALUES)


def more_behind(pending: Pending) -> bool:
    """Whether `take` came back full, so more rows may be queued behind these."""
    return len(pending.instant) >= MAX_INSTANT_SAMPLES or len(pending.fixed) >= MAX_FIXED_VALUES


def build_batches(
    pending: Pending, next_seq: Callable[[], int], scales: dict[str, MeterScale]
) -> list[tuple[ReadingsBatch, Pending]]:
    """Each meter's rows as one batch, with the rows it carries (to ack once sent)."""
    instant_by_meter = defaultdict(list)
    for row in pending.instant:
        instant_by_meter[row.meter].append(row)
    fixed_by_meter = defaultdict(list)
    for row in pending.fixed:
        fixed_by_meter[row.meter].append(row)
    out = []
    for meter in sorted(instant_by_meter.keys() | fixed_by_meter.keys()):
        instant_rows, fixed_rows = instant_by_meter[meter], fixed_by_meter[meter]
        if meter not in scales:
            fixed_rows = []  # not convertible yet: they wait until the meter's scale is known
            if not instant_rows:
                continue
        slots: dict[int, list] = {}
        for row in fixed_rows:
            entry = slots.setdefault(row.slot_start, [None, None, ValueSource.MEASURED])
            entry[row.direction] = row.raw
            if row.source:
                entry[2] = ValueSource.REFILLED
        fixed = tuple(
            FixedTimeValue(slot, normal, reverse, source)
            for slot, (normal, reverse, source) in sorted(slots.items())
        )
        instant = tuple(
            InstantSample(r.at, r.power_w, r.current_r_da, r.current_t_da)
            for r in sorted(instant_rows, key=lambda r: r.at)
        )
        batch = ReadingsBatch(next_seq(), meter, instant, fixed, scales[meter] if fixed else None)
        out.append((batch, Pending(tuple(instant_rows), tuple(fixed_rows))))
    return out
