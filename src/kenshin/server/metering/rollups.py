"""Rollups kept current by the ingest, in the ingest's own transaction, never rebuilt.

Energy (meter_energy, tenant_energy): when `store.recompute` replaces a run of slots, it
hands the old and new values to `apply_slot_changes`, which turns them into additive
deltas per period (tenant slot, hour, JST day, JST month) and adds them with one upsert
each. A duplicate delivery changes no slot, so it adds nothing; a refill turns a missing
slot into a value and adds exactly it. The same call writes an outbox row for each slot
that got or changed its value, for the webhook dispatcher, when the tenant has a webhook
for slots.

Instant readings (meter_latest, meter_daily_peak): `note_instant` keeps the newest reading
and each JST day's highest bought and sold power with upserts that only ever move towards
the newer or the higher value, so order and repetition of deliveries do not matter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from kenshin.jst import JST, JST_OFFSET_S

from ..outbox import queue_slots
from . import tables as t

__all__ = [
    "InstantRow",
    "SlotValue",
    "apply_slot_changes",
    "day_start",
    "hour_start",
    "insert_rows",
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


def _utc(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


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


ROWS_A_STATEMENT = 1000  # SQLite: far below its bind-parameter limit (32,766)


def insert_rows(
    conn: Connection, table, rows: Sequence[Mapping[str, Any]], on_conflict: Callable[[Any], Any]
) -> int:
    """INSERT `rows` (dicts with the same keys), each statement given its ON CONFLICT clause
    by `on_conflict(statement)` (which may use `statement.excluded`). No two rows may share
    a conflict key (DO UPDATE cannot touch a row twice). Returns the rows written.

    PostgreSQL: one statement whatever the number of rows, ``INSERT ... SELECT
    unnest(:column_array), ...``: its text never changes, so SQLAlchemy compiles it once
    and the server parses a few hundred bytes, where multi-row VALUES cost a compile and a
    bind parameter a value on every call (most of the ingest's time once). SQLite:
    multi-row VALUES in chunks."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        columns = list(rows[0])
        source = select(
            *(
                func.unnest(bindparam(f"{c}_all", type_=postgresql.ARRAY(table.c[c].type))).label(c)
                for c in columns
            )
        )
        statement = on_conflict(postgresql.insert(table).from_select(columns, source))
        values = {f"{c}_all": [row[c] for row in rows] for c in columns}
        return conn.execute(statement, values).rowcount or 0
    written = 0
    for i in range(0, len(rows), ROWS_A_STATEMENT):
        statement = _insert(conn, table).values(list(rows[i : i + ROWS_A_STATEMENT]))
        written += conn.execute(on_conflict(statement)).rowcount or 0
    return written


def _add(conn: Connection, table, key: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Upsert `rows`, adding wh/slots/refilled to what is there. Rows go in key order, so
    two transactions touching the same tenant rows take their locks in the same order."""
    rows.sort(key=lambda r: tuple(r[k] for k in key))
    insert_rows(
        conn,
        table,
        rows,
        lambda statement: statement.on_conflict_do_update(
            index_elements=list(key),
            set_={c: table.c[c] + statement.excluded[c] for c in ("wh", "slots", "refilled")},
        ),
    )


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
                    "meter_id": meter_id,
                    "slot_start": slot_start.astimezone(UTC).isoformat(),
                    "direction": direction,
                    "status": after.status,
                    "wh": after.wh,
                }
            )
    _add(
        conn,
        t.meter_energy,
        ("meter_id", "period", "direction", "start"),
        _rows(meter_deltas, meter_id=meter_id, direction=direction),
    )
    _add(
        conn,
        t.tenant_energy,
        ("tenant_id", "period", "direction", "start"),
        _rows(tenant_deltas, tenant_id=tenant_id, direction=direction),
    )
    queue_slots(conn, tenant_id, outbox)
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


# One instant reading as the ingest carries it: (meter id, at in epoch seconds, power W
# (negative when selling), current R dA, current T dA or None). Plain ints: a group of
# messages brings tens of thousands, and datetimes are made only for what is written.
InstantRow = tuple[int, int, int, int, int | None]

DAY_S = 86400
_INT4_MAX = 2**31 - 1  # the peak columns: a meter's -2**31 W (E7's floor) would not fit


def _note_peaks(days: dict, meter_id: int, day: int, rows: list[InstantRow]) -> None:
    """Merge the day's highest import and export (earliest among equals) of `rows`."""
    powers = list(map(itemgetter(2), rows))
    top, bottom = max(powers), min(powers)
    entry = days.get((meter_id, day))
    if entry is None:
        entry = days[meter_id, day] = [None, None, None, None]
    for side, watts, signed in ((0, top, top), (2, min(-bottom, _INT4_MAX), bottom)):
        if (side == 0 and top < 0) or (side == 2 and bottom >= 0):
            continue  # no reading on this side
        at = min(row[1] for row in rows if row[2] == signed)
        peak = entry[side]
        if peak is None or watts > peak or (watts == peak and at < entry[side + 1]):
            entry[side], entry[side + 1] = watts, at


def note_instant(conn: Connection, readings: Iterable[InstantRow]) -> None:
    """Keep meter_latest and meter_daily_peak up to date with these instant readings of
    any meters: one statement each, whatever the number of meters."""
    newest: dict[int, InstantRow] = {}
    # (meter, JST day number) → [import W, its time, export W, its time]
    days: dict[tuple[int, int], list[int | None]] = {}
    # Readings come a batch at a time: a run of one meter's, nearly always within one JST
    # day. Such a run is summed up with built-ins; only a run across midnight goes
    # reading by reading (the ingest notes every reading it writes).
    for meter_id, run in groupby(readings, key=itemgetter(0)):
        rows = list(run)
        ats = list(map(itemgetter(1), rows))
        first, last = min(ats), max(ats)
        best = newest.get(meter_id)
        if best is None or last > best[1]:
            newest[meter_id] = rows[ats.index(last)]  # the first of the newest: as before
        if (first + JST_OFFSET_S) // DAY_S == (last + JST_OFFSET_S) // DAY_S:
            _note_peaks(days, meter_id, (first + JST_OFFSET_S) // DAY_S, rows)
        else:
            for row in rows:
                _note_peaks(days, meter_id, (row[1] + JST_OFFSET_S) // DAY_S, [row])
    if not newest:
        return
    latest = t.meter_latest
    fields = ("at", "power_w", "current_r_da", "current_t_da")
    insert_rows(
        conn,
        latest,
        [
            {"meter_id": m, "at": _utc(at), "power_w": p, "current_r_da": r, "current_t_da": t_da}
            for m, (_, at, p, r, t_da) in sorted(newest.items())
        ],
        lambda statement: statement.on_conflict_do_update(
            index_elements=["meter_id"],
            set_={c: statement.excluded[c] for c in fields},
            where=statement.excluded.at > latest.c.at,
        ),
    )
    rows = [
        {
            "meter_id": m,
            "day": _utc(day * DAY_S - JST_OFFSET_S),  # JST midnight
            "import_w": import_w,
            "import_at": _utc(import_at) if import_at is not None else None,
            "export_w": export_w,
            "export_at": _utc(export_at) if export_at is not None else None,
        }
        for (m, day), (import_w, import_at, export_w, export_at) in sorted(days.items())
    ]
    insert_rows(conn, t.meter_daily_peak, rows, _keep_higher_peaks)


def _keep_higher_peaks(statement):
    """ON CONFLICT for meter_daily_peak: each side takes the new value only if it is
    higher (or as high and earlier), so the order of deliveries does not matter."""
    peak, new = t.meter_daily_peak, statement.excluded
    higher = {
        side: and_(
            new[f"{side}_w"].is_not(None),
            or_(
                peak.c[f"{side}_w"].is_(None),
                new[f"{side}_w"] > peak.c[f"{side}_w"],
                and_(
                    new[f"{side}_w"] == peak.c[f"{side}_w"],
                    new[f"{side}_at"] < peak.c[f"{side}_at"],
                ),
            ),
        )
        for side in ("import", "export")
    }
    set_ = {
        f"{side}_{field}": case(
            (higher[side], new[f"{side}_{field}"]), else_=peak.c[f"{side}_{field}"]
        )
        for side in ("import", "export")
        for field in ("w", "at")
    }
    return statement.on_conflict_do_update(index_elements=["meter_id", "day"], set_=set_)
