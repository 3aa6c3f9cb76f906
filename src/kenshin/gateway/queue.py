"""The gateway's durable queue: readings wait here until the broker has acknowledged them.

SQLite in WAL mode with `synchronous=FULL`: a reading that `put_*` returned for is on
disk and survives kill -9 and power loss; a batch leaves only through `ack()`, after the
broker's PUBACK. Only data lives here, never settings or credentials.

It is bounded by a stated policy: when instant-power samples exceed `max_instant`, the
oldest are thinned (every other one of the oldest half goes, so an outage degrades to a
coarser trace rather than a hole); 30-minute values are never dropped — a year of them
is 17,520 rows per direction. Everything thinned is counted, and the counters survive
restarts.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS instant (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    meter TEXT NOT NULL,
    at INTEGER NOT NULL,            -- epoch seconds, UTC
    power_w INTEGER,                -- NULL: the meter had no value
    current_r_da INTEGER,
    current_t_da INTEGER            -- NULL on single-phase 2-wire
);
CREATE TABLE IF NOT EXISTS fixed (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    meter TEXT NOT NULL,
    slot_start INTEGER NOT NULL,    -- epoch seconds of the JST half hour, by the meter's clock
    direction INTEGER NOT NULL,     -- 0 normal, 1 reverse
    raw INTEGER,                    -- the register count; NULL: the meter had none
    source INTEGER NOT NULL,        -- 0 measured, 1 refilled from the meter's history
    UNIQUE (meter, slot_start, direction)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class InstantRow:
    id: int
    meter: str
    at: int
    power_w: int | None
    current_r_da: int | None
    current_t_da: int | None


@dataclass(frozen=True, slots=True)
class FixedRow:
    id: int
    meter: str
    slot_start: int
    direction: int
    raw: int | None
    source: int


@dataclass(frozen=True, slots=True)
class Pending:
    """What to send next; hand the same object back to `ack()` once the broker has it."""

    instant: tuple[InstantRow, ...]
    fixed: tuple[FixedRow, ...]

    def __bool__(self) -> bool:
        return bool(self.instant or self.fixed)


class DurableQueue:
    def __init__(self, path: str | Path, *, max_instant: int = 200_000):
        self.path = Path(path)
        self.max_instant = max_instant
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()  # one writer; the agent may call from a worker thread
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # durable at commit, power loss included
        self._db.executescript(SCHEMA)
        (self._instant_count,) = self._db.execute("SELECT count(*) FROM instant").fetchone()

    def close(self) -> None:
        self._db.close()

    # -- putting ---------------------------------------------------------------------------

    def put_instant(
        self,
        meter: str,
        at: int,
        power_w: int | None,
        current_r_da: int | None = None,
        current_t_da: int | None = None,
    ) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO instant (meter, at, power_w, current_r_da, current_t_da) "
                "VALUES (?, ?, ?, ?, ?)",
                (meter, at, power_w, current_r_da, current_t_da),
            )
            self._instant_count += 1
            self._thin_if_full()

    def put_fixed(
        self, meter: str, slot_start: int, direction: int, raw: int | None, *, refill: bool = False
    ) -> bool:
        """Queue a 30-minute value; False if that slot was queued already (idempotent)."""
        with self._lock, self._db:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO fixed (meter, slot_start, direction, raw, source) "
                "VALUES (?, ?, ?, ?, ?)",
                (meter, slot_start, direction, raw, int(refill)),
            )
            if cursor.rowcount:
                self._mark_max(f"fixed:{meter}:{direction}", slot_start)
            return bool(cursor.rowcount)

    def _thin_if_full(self) -> None:
        if self._instant_count <= self.max_instant:
            return
        oldest_half = self._instant_count // 2
        cursor = self._db.execute(
            "DELETE FROM instant WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER "
            "(ORDER BY id) AS n FROM instant ORDER BY id LIMIT ?) WHERE n % 2 = 0)",
            (oldest_half,),
        )
        self._instant_count -= cursor.rowcount
        self._count("instant_thinned", cursor.rowcount)

    # -- marks: what the gateway has seen, so it knows what to refill after an outage -------

    def _mark_max(self, name: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO marks (name, value) VALUES (?, ?) ON CONFLICT (name) "
            "DO UPDATE SET value = max(value, excluded.value)",
            (name, value),
        )

    def next_seq(self) -> int:
        """The next batch sequence number: 0, 1, 2, ... across restarts."""
        with self._lock, self._db:
            self._mark_max("seq", -1)
            self._db.execute("UPDATE marks SET value = value + 1 WHERE name = 'seq'")
            (value,) = self._db.execute("SELECT value FROM marks WHERE name = 'seq'").fetchone()
        return value

    def last_fixed_slot(self, meter: str, direction: int = 0) -> int | None:
        """The newest 30-minute slot ever queued for this meter (sent or not)."""
        row = self._db.execute(
            "SELECT value FROM marks WHERE name = ?", (f"fixed:{meter}:{direction}",)
        ).fetchone()
        return None if row is None else row[0]

    # -- taking ----------------------------------------------------------------------------

    def peek(self, *, max_instant: int = 500, max_fixed: int = 200) -> Pending:
        """The oldest queued readings, 30-minute values first (they matter most)."""
        with self._lock:
            fixed = self._db.execute(
                "SELECT id, meter, slot_start, direction, raw, source FROM fixed "
                "ORDER BY id LIMIT ?",
                (max_fixed,),
            ).fetchall()
            instant = self._db.execute(
                "SELECT id, meter, at, power_w, current_r_da, current_t_da FROM instant "
                "ORDER BY id LIMIT ?",
                (max_instant,),
            ).fetchall()
        return Pending(tuple(InstantRow(*r) for r in instant), tuple(FixedRow(*r) for r in fixed))

    def ack(self, pending: Pending) -> None:
        """The broker has these: forget them."""
        with self._lock, self._db:
            for table, rows in (("instant", pending.instant), ("fixed", pending.fixed)):
                cursor = self._db.executemany(
                    f"DELETE FROM {table} WHERE id = ?", [(r.id,) for r in rows]
                )
                if table == "instant":
                    self._instant_count -= cursor.rowcount

    # -- numbers ---------------------------------------------------------------------------

    def _count(self, name: str, by: int) -> None:
        if by:
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) "
                "DO UPDATE SET value = value + excluded.value",
                (name, by),
            )

    def depth(self) -> dict[str, int]:
        with self._lock:
            (fixed,) = self._db.execute("SELECT count(*) FROM fixed").fetchone()
        return {"instant": self._instant_count, "fixed": fixed}

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT name, value FROM counters").fetchall())
