"""Run a tenant's anomaly rules and keep its alerts in step with what they find.

- a new finding opens an alert (the partial unique index keeps it to one unresolved alert
  per rule and subject, even with two servers running the engine at once);
- a finding seen again only moves `last_seen_at` and refreshes the detail;
- an alert whose finding is gone is resolved (acknowledged ones too: the fault ended);
- every opening and resolution is an event (`alert_opened` / `alert_resolved`, which the
  webhooks deliver) and a notification for each matching e-mail subscription.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Row, and_, insert, select, update

from ..analytics.anomalies import RULES, Finding, Rule
from ..schema_base import SEVERITIES
from . import tables as t

__all__ = [
    "RuleConfig",
    "RunSummary",
    "configured_rules",
    "rule_setting",
    "run_rules",
    "transition",
]

SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class RuleConfig:
    rule: Rule
    params: Any
    enabled: bool
    severity: str


def rule_setting(conn: Connection, tenant_id: int, rule: str) -> Row | None:
    """The tenant's stored setting of `rule` (`params`, `enabled`, `severity`), if any;
    also of a rule outside `RULES` that another room checks itself (analytics'
    `imbalance`)."""
    r = t.alert_rules.c
    return conn.execute(
        select(r.params, r.enabled, r.severity).where(r.tenant_id == tenant_id, r.rule == rule)
    ).first()


def configured_rules(conn: Connection, tenant_id: int) -> list[RuleConfig]:
    """Every rule with the tenant's parameters, or its defaults."""
    stored = {
        r.rule: r
        for r in conn.execute(select(t.alert_rules).where(t.alert_rules.c.tenant_id == tenant_id))
    }
    out = []
    for name, rule in RULES.items():
        row = stored.get(name)
        try:
            params = rule.params(**(row.params if row else {}))
        except ValidationError:  # a rule's parameters changed shape: its defaults
            params = rule.params()
        out.append(
            RuleConfig(
                rule,
                params,
                row.enabled if row else True,
                row.severity if row else rule.severity,
            )
        )
    return out


@dataclass
class RunSummary:
    opened: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    ongoing: int = 0


def _record(conn: Connection, alert, change: str, now: datetime) -> None:
    from ..events import record_event  # the one way events are written (and webhooked)

    record_event(
        conn,
        tenant_id=alert.tenant_id,
        gateway_id=alert.gateway_id,
        meter_id=alert.meter_id,
        code=f"alert_{change}",
        severity=alert.severity if change == "opened" else "info",
        detail={
            "alert_id": alert.id,
            "rule": alert.rule,
            "subject": alert.subject,
            "detail": alert.detail,
        },
        at=now,
    )
    subscriptions = conn.execute(
        select(t.alert_subscriptions).where(t.alert_subscriptions.c.tenant_id == alert.tenant_id)
    )
    rows = []
    for sub in subscriptions:
        if SEVERITY_RANK[alert.severity] < SEVERITY_RANK[sub.min_severity]:
            continue
        if sub.rules is not None and alert.rule not in sub.rules:
            continue
        delivered_by_event = sub.channel == "webhook"  # the event row above carries it
        rows.append(
            {
                "tenant_id": alert.tenant_id,
                "alert_id": alert.id,
                "channel": sub.channel,
                "target": sub.target,
                "change": change,
                "state": "sent" if delivered_by_event else "pending",
                "created_at": now,
                "sent_at": now if delivered_by_event else None,
                "next_attempt_at": None if delivered_by_event else now,
            }
        )
    if rows:
        conn.execute(insert(t.alert_notifications), rows)


def transition(conn: Connection, alert_id: int, state: str, actor: str, now: datetime):
    """Acknowledge or resolve by hand; returns the alert, or None if it was not open."""
    a = t.alerts.c
    values: dict[str, Any] = {"state": state}
    if state == "acknowledged":
        values |= {"acknowledged_at": now, "acknowledged_by": actor}
        allowed = ("open",)
    else:
        values |= {"resolved_at": now}
        allowed = ("open", "acknowledged")
    row = conn.execute(
        update(t.alerts)
        .where(a.id == alert_id, a.state.in_(allowed))
        .values(**values)
        .returning(t.alerts)
    ).first()
    if row is not None and state == "resolved":
        _record(conn, row, "resolved", now)
    return row


def open_alert(
    conn: Connection,
    tenant_id: int,
    rule: str,
    subject: str,
    *,
    meter_id: int | None,
    gateway_id: int | None,
    severity: str,
    detail: dict[str, Any],
    opened_at: datetime,
    last_seen_at: datetime | None = None,
):
    """Open an alert, with its event and its notifications; returns its row. The one way
    an alert is written, for the rules here and for the demo's history (demofaults.py)."""
    alert = conn.execute(
        insert(t.alerts)
        .values(
            tenant_id=tenant_id,
            rule=rule,
            subject=subject,
            meter_id=meter_id,
            gateway_id=gateway_id,
            severity=severity,
            state="open",
            detail=detail,
            opened_at=opened_at,
            last_seen_at=last_seen_at or opened_at,
        )
        .returning(t.alerts)
    ).one()
    _record(conn, alert, "opened", opened_at)
    return alert


def alert_opened_at(
    conn: Connection, tenant_id: int, rule: str, subject: str, at: datetime
) -> bool:
    """Whether an alert of this rule and subject opened at `at` (the demo's history is
    written once however often the demo starts)."""
    a = t.alerts.c
    found = conn.execute(
        select(a.id).where(
            a.tenant_id == tenant_id, a.rule == rule, a.subject == subject, a.opened_at == at
        )
    )
    return found.first() is not None


def run_rules(conn: Connection, tenant_id: int, now: datetime) -> RunSummary:
    summary = RunSummary()
    a = t.alerts.c
    for config in configured_rules(conn, tenant_id):
        name = config.rule.name
        findings: dict[str, Finding] = (
            {f.subject: f for f in config.rule.evaluate(conn, tenant_id, now, config.params)}
            if config.enabled
            else {}
        )
        unresolved = {
            r.subject: r
            for r in conn.execute(
                select(t.alerts).where(
                    and_(a.tenant_id == tenant_id, a.rule == name, a.state != "resolved")
                )
            )
        }
        for subject, finding in findings.items():
            current = unresolved.get(subject)
            if current is not None:
                conn.execute(
                    update(t.alerts)
                    .where(a.id == current.id)
                    .values(last_seen_at=now, detail=finding.detail)
                )
                summary.ongoing += 1
                continue
            alert = open_alert(
                conn,
                tenant_id,
                name,
                subject,
                meter_id=finding.meter_id,
                gateway_id=finding.gateway_id,
                severity=config.severity,
                detail=finding.detail,
                opened_at=now,
            )
            summary.opened.append(alert.id)
        for subject, alert in unresolved.items():
            if subject not in findings:
                resolved = transition(conn, alert.id, "resolved", "system", now)
                if resolved is not None:
                    summary.resolved.append(alert.id)
    return summary
