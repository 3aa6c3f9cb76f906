"""Time partitions on PostgreSQL: one partition a JST month for each big table, made ahead.

The readings (`readings_instant` by `at`, `readings_fixed` and `slot_energy` by
`slot_start`) and the hourly-to-monthly rollups (`meter_energy` by `start`) are
range-partitioned (migration 0005). Each has a DEFAULT partition, so a row whose month has
no partition yet (a backfill from long ago, a gateway with a wild clock) is never lost;
`ensure_partitions` makes the months from the oldest row it finds there to three ahead,
moving such rows into their month as it goes. Old months are dropped whole by the
retention policy (`retention.py`), which is why partitions exist at all: dropping a month
costs nothing, deleting its rows costs a vacuum.

SQLite has no partitions; there everything here does nothing.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Connection, text

from kenshin.jst import JST

__all__ = [
    "MONTHS_AHEAD",
    "PARTITIONED",
    "drop_months_before",
    "ensure_partitions",
    "include_object",
    "is_partition",
    "month_partitions",
    "partition_name",
]

# table → the time column it is partitioned by
PARTITIONED = {
    "readings_instant": "at",
    "readings_fixed": "slot_start",
    "slot_energy": "slot_start",
    "meter_energy": "start",
}
MONTHS_AHEAD = 3


def is_partition(name: str) -> bool:
    """A partition of one of the partitioned tables (not part of the schema's metadata)."""
    for table in PARTITIONED:
        suffix = name.removeprefix(table + "_")
        if suffix != name and (suffix == "default" or (suffix[:1] == "p" and suffix[1:].isdigit())):
            return True
    return False


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """For Alembic: compare the schema, not the monthly partitions made at run time."""
    return not (type_ == "table" and reflected and is_partition(name))


def _month(day: date) -> date:
    return day.replace(day=1)


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _bound(month: date) -> str:
    return datetime(month.year, month.month, 1, tzinfo=JST).isoformat()


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month:%Y%m}"


def month_partitions(conn: Connection, table: str) -> list[tuple[str, date]]:
    """The monthly partitions of `table` that exist, oldest first."""
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :table"
        ),
        {"table": table},
    ).scalars()
    out = []
    for name in rows:
        suffix = name.removeprefix(f"{table}_p")
        if suffix != name and len(suffix) == 6 and suffix.isdigit():
            out.append((name, date(int(suffix[:4]), int(suffix[4:]), 1)))
    return sorted(out, key=lambda x: x[1])


def _create_month(conn: Connection, table: str, column: str, month: date) -> None:
    name, lo, hi = partition_name(table, month), _bound(month), _bound(_next_month(month))
    default = f"{table}_default"
    # Made apart, filled from the default partition, then attached: CREATE ... PARTITION OF
    # would refuse while the default partition holds rows of this month.
    like = f'LIKE "{table}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS'
    conn.execute(text(f'CREATE TABLE "{name}" ({like})'))
    conn.execute(
        text(
            f'WITH moved AS (DELETE FROM "{default}" WHERE "{column}" >= :lo AND "{column}" < :hi '
            f'RETURNING *) INSERT INTO "{name}" SELECT * FROM moved'
        ),
        {"lo": lo, "hi": hi},
    )
    bounds = f"FOR VALUES FROM ('{lo}') TO ('{hi}')"
    conn.execute(text(f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" {bounds}'))


def ensure_partitions(
    conn: Connection, now: datetime, months_ahead: int = MONTHS_AHEAD
) -> list[str]:
    """Make every missing month from the oldest row waiting in a default partition (or this
    month) to `months_ahead` ahead; returns the partitions made."""
    if conn.dialect.name != "postgresql":
        return []
    made = []
    this_month = _month(now.astimezone(JST).date())
    last = this_month
    for _ in range(months_ahead):
        last = _next_month(last)
    for table, column in PARTITIONED.items():
        existing = {month for _, month in month_partitions(conn, table)}
        oldest = conn.execute(text(f'SELECT min("{column}") FROM "{table}_default"')).scalar()
        first = min(this_month, _month(oldest.astimezone(JST).date())) if oldest else this_month
        if existing:
            first = min(first, max(existing))  # keep the months contiguous after a pause
        month = first
        while month <= last:
            if month not in existing:
                _create_month(conn, table, column, month)
                made.append(partition_name(table, month))
            month = _next_month(month)
    return made


def drop_months_before(conn: Connection, table: str, cutoff: datetime) -> list[str]:
    """Drop `table`'s monthly partitions that end at or before `cutoff`."""
    dropped = []
    for name, month in month_partitions(conn, table):
        end = datetime(_next_month(month).year, _next_month(month).month, 1, tzinfo=JST)
        if end <= cutoff:
            conn.execute(text(f'DROP TABLE "{name}"'))
            dropped.append(name)
    return dropped
