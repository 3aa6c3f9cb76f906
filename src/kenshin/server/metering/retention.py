"""Retention: how long each tenant's data is kept, and the job that enforces it.
The audit log is kept `audit_keep_days` (a server setting), whoever it belongs to.

`tenants.instant_retention_days` covers instant power (and the daily peaks drawn from it)
and the series recipes publish;
`energy_retention_days` the 30-minute values and everything derived from them. NULL keeps
forever. A month whose every row is past every tenant's retention is dropped whole (on
PostgreSQL, a partition: nearly free); before that, a tenant with a shorter retention has
its own old rows deleted, a bounded chunk at a time so the job never holds long locks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from ..accounts import tenant_retentions, trim_audit_log
from ..chunked import delete_before
from ..devices.queries import tenant_meter_ids
from . import tables as t
from .partitions import drop_months_before

__all__ = ["RetentionReport", "apply_retention"]

# What each retention setting covers: (table, time column, owner: "meter" | "tenant").
COVERS = {
    "instant_retention_days": [
        (t.readings_instant, "at", "meter"),
        (t.meter_daily_peak, "day", "meter"),
        (t.recipe_samples, "at", "tenant"),  # what recipes measure, sampled like power
    ],
    "energy_retention_days": [
        (t.readings_fixed, "slot_start", "meter"),
        (t.slot_energy, "slot_start", "meter"),
        (t.meter_energy, "start", "meter"),
        (t.tenant_energy, "start", "tenant"),
    ],
}


@dataclass
class RetentionReport:
    deleted: dict[str, int] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def apply_retention(
    engine: Engine, now: datetime, *, dry_run: bool = False, audit_keep_days: float = 0
) -> RetentionReport:
    """`audit_keep_days` (0: forever): the audit log's entries older than that go too,
    every tenant's and the platform's alike (setting `audit_keep_days`)."""
    report = RetentionReport()
    if audit_keep_days > 0:
        cutoff = now - timedelta(days=audit_keep_days)
        if n := trim_audit_log(engine, cutoff, dry_run=dry_run):
            report.deleted["audit_log"] = n
    with engine.connect() as conn:
        tenants = tenant_retentions(conn)
    for setting, covered in COVERS.items():
        days = [getattr(tenant, setting) for tenant in tenants]
        for tenant in tenants:
            keep = getattr(tenant, setting)
            if keep is None:
                continue
            cutoff = now - timedelta(days=keep)
            for table, column, owner in covered:
                if owner == "meter":
                    mine = table.c.meter_id.in_(tenant_meter_ids(tenant.id))
                else:
                    mine = table.c.tenant_id == tenant.id
                n = delete_before(engine, table, column, cutoff, mine, dry_run=dry_run)
                report.deleted[table.name] = report.deleted.get(table.name, 0) + n
        if tenants and all(d is not None for d in days) and not dry_run:
            cutoff = now - timedelta(days=max(days))
            with engine.begin() as conn:
                report.dropped += _drop_partitions(conn, covered, cutoff)
    return report


def _drop_partitions(conn: Connection, covered, cutoff: datetime) -> list[str]:
    if conn.dialect.name != "postgresql":
        return []
    dropped = []
    for table, _, _ in covered:
        if table.name in ("readings_instant", "readings_fixed", "slot_energy", "meter_energy"):
            dropped += drop_months_before(conn, table.name, cutoff)
    return dropped
