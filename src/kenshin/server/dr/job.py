"""The `dr` job: events moved by time, results made final, imbalance rules checked."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select

from . import tables as t
from .results import finalize
from .rules import check_rules
from .service import advance

__all__ = ["DrJobReport", "run_dr"]

log = logging.getLogger(__name__)


@dataclass
class DrJobReport:
    moved: dict[str, list[int]] = field(default_factory=dict)
    final: list[int] = field(default_factory=list)
    raised: list[int] = field(default_factory=list)  # by rules, proposed or scheduled


def run_dr(engine: Engine, now: datetime) -> DrJobReport:
    report = DrJobReport()
    with engine.begin() as conn:
        report.moved = advance(conn, now)
    report.final = finalize(engine, now)
    with engine.connect() as conn:
        r = t.dr_rules.c
        tenants = list(conn.execute(select(r.tenant_id).where(r.enabled).distinct()).scalars())
    for tenant_id in sorted(tenants):
        try:  # one tenant's trouble must not starve the others
            with engine.begin() as conn:
                report.raised += check_rules(conn, tenant_id, now)
        except Exception:
            log.exception("DR rules failed for tenant %s", tenant_id)
    return report
