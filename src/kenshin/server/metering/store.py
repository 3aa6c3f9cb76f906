"""Slot energy kept up to date in the database, incrementally.

The ingest calls `recompute` inside the same transaction as the readings it wrote, for
the boundaries that batch brought: only the slots between them and their known neighbours
are computed again, so late and backfilled data correct exactly what they touch and
nothing is recomputed from scratch.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Connection, and_, delete, func, insert, select

from kenshin.wire import MeterScale

from ..devices.queries import lock_meter
from . import rollups
from . import tables as t
from .rollups import SlotValue
from .slots import SLOT_S, Boundary, slot_energies


def _at(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


MAX_GAP_S = 100 * 86400  # a gap longer than a meter's history is left alone


def recompute(
    conn: Connection,
    meter_id: int,
    direction: int,
    scale: MeterScale,
    boundaries: Iterable[int],
    *,
    tenant_id: int,
) -> int:
    """Recompute the slots between the known boundaries around these new ones (epoch s):
    from the last boundary known before them to the first known after; a slot inside a gap
    is stored as missing, so a hole is visible rather than absent. The rollups get the
    difference (`rollups.apply_slot_changes`). Returns how many slots changed."""
    new = sorted(set(boundaries))
    if not new:
        return 0
    # One meter's slots are recomputed by one transaction at a time: two ingest nodes
    # reading the same old values would otherwise both add the same delta.
    lock_meter(conn, meter_id)
    fixed = t.readings_fixed.c
    mine = and_(fixed.meter_id == meter_id, fixed.direction == direction)
    before = conn.execute(
        select(func.max(fixed.slot_start)).where(
            mine, fixed.slot_start < _at(new[0]), fixed.slot_start >= _at(new[0] - MAX_GAP_S)
        )
    ).scalar()
    after = conn.execute(
        select(func.min(fixed.slot_start)).where(
            mine, fixed.slot_start > _at(new[-1]), fixed.slot_start <= _at(new[-1] + MAX_GAP_S)
        )
    ).scalar()
    first = int(before.timestamp()) if before is not None else new[0]
    end = int(after.timestamp()) if after is not None else new[-1]
    if end <= first:
        return 0
    rows = conn.execute(
        select(fixed.slot_start, fixed.raw, fixed.source).where(
            mine, fixed.slot_start >= _at(first), fixed.slot_start <= _at(end)
        )
    ).all()
    known = {
        int(at.timestamp()): Boundary(raw, refilled=source == "refill") for at, raw, source in rows
    }
    energies = slot_energies(known, scale, first, end - SLOT_S)
    stored = t.slot_energy.c
    in_range = and_(
        stored.meter_id == meter_id,
        stored.direction == direction,
        stored.slot_start >= _at(first),
        stored.slot_start < _at(end),
    )
    old = {
        r.slot_start: SlotValue(r.status, r.wh)
        for r in conn.execute(select(stored.slot_start, stored.status, stored.wh).where(in_range))
    }
    conn.execute(delete(t.slot_energy).where(in_range))
    conn.execute(
        insert(t.slot_energy),
        [
            {
                "meter_id": meter_id,
                "slot_start": _at(e.slot_start),
                "direction": direction,
                "status": e.status.value,
                "milliwatt_hours": e.milliwatt_hours,
                "wh": e.wh,
            }
            for e in energies
        ],
    )
    return rollups.apply_slot_changes(
        conn,
        tenant_id=tenant_id,
        meter_id=meter_id,
        direction=direction,
        old=old,
        new={_at(e.slot_start): SlotValue(e.status.value, e.wh) for e in energies},
    )
