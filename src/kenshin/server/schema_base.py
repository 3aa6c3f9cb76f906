"""What every table module shares: the one `MetaData` (with the naming convention the
migrations follow), the column types (`UTCDateTime`, `Id`, `JSONDoc`), the helpers for ids,
creation times and CHECKed enumerations, and the severities events and alerts both use.

Separate from `schema.py` so each room's `tables.py` can build its tables on the same
metadata without importing `schema.py`, which imports them all. The conventions are in
`schema.py`'s docstring.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Column, DateTime, Integer, MetaData
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

SEVERITIES = ("info", "warning", "error", "critical")


def utcnow() -> datetime:
    """Now, aware UTC: the app's clock. Call it through its module, `schema_base.utcnow()`
    in a room, `schema.utcnow()` in the shared modules, not a name imported from it: the
    benches pin the clock by replacing both (`bench.queries.data_clock`)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An instant: aware UTC datetimes in and out, on every backend.

    Naive datetimes are refused (their zone is a guess). On SQLite the value is stored as
    naive UTC text of fixed width, so `<`, `>`, `BETWEEN`, `ORDER BY` and `max()` agree
    with time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must carry a timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# 64-bit ids; on SQLite a plain INTEGER so the column is the rowid and auto-increments.
Id = BigInteger().with_variant(Integer(), "sqlite")
# JSON documents: jsonb on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONDoc = JSON().with_variant(postgresql.JSONB(), "postgresql")


def _one_of(column: str, values: tuple[str, ...], name: str | None = None) -> CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=name or column)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _id() -> Column[Any]:
    return Column("id", Id, primary_key=True, autoincrement=True)


def _created_at() -> Column[Any]:
    return Column("created_at", UTCDateTime(), nullable=False, default=utcnow)
