"""Rollups kept current by the ingest, in the ingest's own transaction, never rebuilt.

Energy (meter_energy, tenant_energy): when `store.recompute` replaces a run of slots, it
hands the old and new values to `apply_slot_changes`, which turns them into additive
deltas per period (tenant slot, hour, JST day, JST month) and adds them with one upsert
each. A duplicate delivery changes no slot, so it adds nothing; a refill turns a missing
slot into a value and adds exactly it. The same call writes an outbox row for each slot
that got or changed its value, for the webhook dispatcher.

Instant readings (meter_latest, meter_daily_peak): `note_instant` keeps the newest reading
and each JST day's highest bought and sold power with upserts that only ever move towards
the newer or the higher value, so order and repetition of deliveries do not matter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, case, insert, or_
from sqlalchemy.dialects import postgresql, sqlite

from kenshin.echonet.edt import JST

from .. import schema as s

__all__ = [
    "SlotValue",
    "apply_slot_changes",
    "day_start",
    "hour_start",
    "month_start",
    "note_instant",
]


@dataclass(frozen=True, slots=True)
class SlotValue:
    """What slot_energy holds for one slot: status and Wh (None when missing)."""

    status: str
    wh: int | None

    @property
    def counted(self) -> int:
        return 0 if self.wh is None else 1

    @property
    def refilled(self) -> int:
        return 1 if self.wh is not None and self.status == "refilled" else 0


MISSING = SlotValue("missing", None)


def hour_start(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_start(at: datetime) -> datetime:
    """JST midnight of the JST day holding `at` (as an aware datetime in UTC)."""
    local = at.astimezone(JST)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def month_start(at: datetime) -> datetime:
    local = at.astimezone(JST)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


_PERIOD_START = {"hour": hour_start, "day": day_start, "month": month_start}


def _insert(conn: Connection, table):
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def _add(conn: Connection, table, key: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Upsert `rows`, adding wh/slots/refilled to what is there. Rows go in key order, so
    two transactions touching the same tenant rows take their locks in the same order."""
    if not rows:
        return
    rows.sort(key=lambda r: tuple(r[k] for k in key))
    statement = _insert(conn, table)
    statement = statement.on_conflict_do_update(
        index_elements=list(key),
        set_={c: table.c[c] + statement.excluded[c] for c in ("wh", "slots", "refilled")},
    )
    conn.execute(statement, rows)


def apply_slot_changes(
    conn: Connection,
    *,
    tenant_id: int,
    meter_id: int,
    direction: int,
    old: Mapping[datetime, SlotValue],
    new: Mapping[datetime, SlotValue],
) -> int:
    """Add the difference between `old` and `new` slot values (by slot start) to the
    rollups and queue outbox rows for slots that got or changed a value. Returns how many
    slots changed."""
    meter_deltas: dict[tuple[str, datetime], list[int]] = defaultdict(lambda: [0, 0, 0])
    tenant_deltas: dict[tuple[str, datetime], list[int]] = defaultdict(lambda: [0, 0, 0])
    outbox: list[dict[str, Any]] = []
    changed = 0
    for slot_start in sorted(set(old) | set(new)):
        before, after = old.get(slot_start, MISSING), new.get(slot_start, MISSING)
        if before == after:
            continue
        changed += 1
        delta = (
            (after.wh or 0) - (before.wh or 0),
            after.counted - before.counted,
            after.refilled - before.refilled,
        )
        buckets = [(period, start(slot_start)) for period, start in _PERIOD_START.items()]
        for bucket in buckets:
            _accumulate(meter_deltas[bucket], delta)
        for bucket in [("slot", slot_start), *buckets]:
            _accumulate(tenant_deltas[bucket], delta)
        if after.wh is not None:
            outbox.append(
                {
                    "tenant_id": tenant_id,
                    "kind": "slot",
                    "body": {
                        "meter_id": meter_id,
                        "slot_start": slot_start.astimezone(UTC).isoformat(),
                        "direction": direction,
                        "status": after.status,
                        "wh": after.wh,
                    },
                    "at": s.utcnow(),
                }
            )
    _add(
        conn,
        s.meter_energy,
        ("meter_id", "period", "direction", "start"),
        _rows(meter_deltas, meter_id=meter_id, direction=direction),
    )
    _add(
        conn,
        s.tenant_energy,
        ("tenant_id", "period", "direction", "start"),
        _rows(tenant_deltas, tenant_id=tenant_id, direction=direction),
    )
    if outbox:
        conn.execute(insert(s.outbox), outbox)
    return changed


def _accumulate(total: list[int], delta: tuple[int, int, int]) -> None:
    for i, d in enumerate(delta):
        total[i] += d


def _rows(deltas: Mapping[tuple[str, datetime], list[int]], **fixed: int) -> list[dict]:
    return [
        {**fixed, "period": period, "start": start, "wh": wh, "slots": n, "refilled": r}
        for (period, start), (wh, n, r) in deltas.items()
        if (wh, n, r) != (0, 0, 0)
    ]


def note_instant(conn: Connection, readings: Iterable[Mapping[str, Any]]) -> None:
    """Keep meter_latest and meter_daily_peak up to date with these instant readings of
    any meters (dicts with meter_id, at, power_w, current_r_da, current_t_da; power
    negative when selling): one statement each, whatever the number of meters."""
    newest: dict[int, Mapping[str, Any]] = {}
    days: dict[tuple[int, datetime], dict[str, Any]] = {}
    for r in sorted(readings, key=lambda r: r["at"]):  # earliest wins a tie
        newest[r["meter_id"]] = r
        day = days.setdefault(
            (r["meter_id"], day_start(r["at"])),
            {"import_w": None, "import_at": None, "export_w": None, "export_at": None},
        )
        power = r["power_w"]
        if power >= 0 and (day["import_w"] is None or power > day["import_w"]):
            day["import_w"], day["import_at"] = power, r["at"]
        if power < 0 and (day["export_w"] is None or -power > day["export_w"]):
            day["export_w"], day["export_at"] = -power, r["at"]
    if not newest:
        return
    latest = s.meter_latest
    statement = _insert(conn, latest)
    fields = ("at", "power_w", "current_r_da", "current_t_da")
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["meter_id"],
            set_={c: statement.excluded[c] for c in fields},
            where=statement.excluded.at > latest.c.at,
        ),
        [{"meter_id": m, **{c: r[c] for c in fields}} for m, r in sorted(newest.items())],
    )
    peak = s.meter_daily_peak
    statement = _insert(conn, peak)
    higher = {
        side: and_(
            statement.excluded[f"{side}_w"].is_not(None),
            or_(
                peak.c[f"{side}_w"].is_(None),
                statement.excluded[f"{side}_w"] > peak.c[f"{side}_w"],
                and_(
                    statement.excluded[f"{side}_w"] == peak.c[f"{side}_w"],
                    statement.excluded[f"{side}_at"] < peak.c[f"{side}_at"],
                ),
            ),
        )
        for side in ("import", "export")
    }
    set_ = {
        f"{side}_{field}": case(
            (higher[side], statement.excluded[f"{side}_{field}"]), else_=peak.c[f"{side}_{field}"]
        )
        for side in ("import", "export")
        for field in ("w", "at")
    }
    rows = [{"meter_id": m, "day": day, **values} for (m, day), values in sorted(days.items())]
    conn.execute(
        statement.on_conflict_do_update(index_elements=["meter_id", "day"], set_=set_), rows
    )
