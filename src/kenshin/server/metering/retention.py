"""Retention: how long each tenant's data is kept, and the job that enforces it.
The audit log is kept `audit_keep_days` (a server setting), whoever it belongs to.

`tenants.instant_retention_days` covers instant power (and the daily peaks drawn from it);
`energy_retention_days` the 30-minute values and everything derived from them. NULL keeps
forever. A month whose every row is past every tenant's retention is dropped whole (on
PostgreSQL, a partition: nearly free); before that, a tenant with a shorter retention has
its own old rows deleted, a bounded chunk at a time so the job never holds long locks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, delete, func, select, true

from .. import schema as s
from .partitions import drop_months_before

__all__ = ["RetentionReport", "apply_retention", "trim_webhook_tables"]

CHUNK = 10_000

# What each retention setting covers: (table, time column, owner: "meter" | "tenant").
COVERS = {
    "instant_retention_days": [
        (s.readings_instant, "at", "meter"),
        (s.meter_daily_peak, "day", "meter"),
    ],
    "energy_retention_days": [
        (s.readings_fixed, "slot_start", "meter"),
        (s.slot_energy, "slot_start", "meter"),
        (s.meter_energy, "start", "meter"),
        (s.tenant_energy, "start", "tenant"),
    ],
}


@dataclass
class RetentionReport:
    deleted: dict[str, int] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def _delete_chunked(engine: Engine, table, column: str, owner_filter, cutoff: datetime) -> int:
    """Delete rows older than `cutoff` in chunks, each in its own transaction."""
    key = list(table.primary_key.columns)
    total = 0
    while True:
        with engine.begin() as conn:
            old = select(*key).where(owner_filter, table.c[column] < cutoff).limit(CHUNK)
            rows = conn.execute(old).all()
            if not rows:
                return total
            for row in rows:  # by primary key, so each statement hits one row's index
                conn.execute(
                    delete(table).where(and_(*(c == v for c, v in zip(key, row, strict=True))))
                )
            total += len(rows)


def apply_retention(
    engine: Engine, now: datetime, *, dry_run: bool = False, audit_keep_days: float = 0
) -> RetentionReport:
    """`audit_keep_days` (0: forever): the audit log's entries older than that go too,
    every tenant's and the platform's alike (setting `audit_keep_days`)."""
    report = RetentionReport()
    if audit_keep_days > 0:
        cutoff = now - timedelta(days=audit_keep_days)
        if dry_run:
            with engine.connect() as conn:
                old = select(func.count()).select_from(s.audit_log)
                n = conn.execute(old.where(s.audit_log.c.at < cutoff)).scalar_one()
        else:
            n = _delete_chunked(engine, s.audit_log, "at", true(), cutoff)
        if n:
            report.deleted["audit_log"] = n
    with engine.connect() as conn:
        tenants = conn.execute(select(s.tenants)).all()
    for setting, covered in COVERS.items():
        days = [getattr(t, setting) for t in tenants]
        for tenant in tenants:
            keep = getattr(tenant, setting)
            if keep is None:
                continue
            cutoff = now - timedelta(days=keep)
            for table, column, owner in covered:
                if owner == "meter":
                    mine = table.c.meter_id.in_(
                        select(s.meters.c.id).where(s.meters.c.tenant_id == tenant.id)
                    )
                else:
                    mine = table.c.tenant_id == tenant.id
                if dry_run:
                    with engine.connect() as conn:
                        old = select(func.count()).where(mine, table.c[column] < cutoff)
                        n = conn.execute(old.select_from(table)).scalar_one()
                else:
                    n = _delete_chunked(engine, table, column, mine, cutoff)
                report.deleted[table.name] = report.deleted.get(table.name, 0) + n
        if tenants and all(d is not None for d in days) and not dry_run:
            cutoff = now - timedelta(days=max(days))
            with engine.begin() as conn:
                report.dropped += _drop_partitions(conn, covered, cutoff)
    return report


def trim_webhook_tables(
    engine: Engine, now: datetime, *, outbox_keep: timedelta, log_keep: timedelta
) -> dict[str, int]:
    """Outbox rows older than `outbox_keep` (no dispatcher took them: none runs, or the
    tenant's webhooks went since) and finished deliveries (delivered or dead) created
    before `log_keep` are deleted. Run by the retention job on every node, whether or not
    it runs the dispatcher: the outbox would otherwise grow without end on a node whose
    dispatcher is off."""
    d = s.webhook_deliveries.c
    return {
        "outbox": _delete_chunked(engine, s.outbox, "at", true(), now - outbox_keep),
        "webhook_deliveries": _delete_chunked(
            engine,
            s.webhook_deliveries,
            "created_at",
            d.state.in_(("delivered", "dead")),
            now - log_keep,
        ),
    }


def _drop_partitions(conn: Connection, covered, cutoff: datetime) -> list[str]:
    if conn.dialect.name != "postgresql":
        return []
    dropped = []
    for table, _, _ in covered:
        if table.name in ("readings_instant", "readings_fixed", "slot_energy", "meter_energy"):
            dropped += drop_months_before(conn, table.name, cutoff)
    return dropped
