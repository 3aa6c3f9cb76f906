"""Deleting old rows a bounded chunk at a time, each chunk its own transaction, so a
retention job never holds long locks. Shared by every room that trims its own tables
(metering's retention, the accounts' audit log, the webhooks' outbox and log)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Engine, Table, and_, delete, func, select, true

__all__ = ["CHUNK", "delete_before"]

CHUNK = 10_000


def delete_before(
    engine: Engine,
    table: Table,
    column: str,
    cutoff: datetime,
    where: ColumnElement | None = None,
    *,
    dry_run: bool = False,
) -> int:
    """Delete `table`'s rows (matching `where`) whose `column` is older than `cutoff`;
    returns how many went (with `dry_run`: how many would, nothing deleted)."""
    old = and_(true() if where is None else where, table.c[column] < cutoff)
    if dry_run:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table).where(old)).scalar_one()
    key = list(table.primary_key.columns)
    total = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(select(*key).where(old).limit(CHUNK)).all()
            if not rows:
                return total
            for row in rows:  # by primary key, so each statement hits one row's index
                conn.execute(
                    delete(table).where(and_(*(c == v for c, v in zip(key, row, strict=True))))
                )
            total += len(rows)
