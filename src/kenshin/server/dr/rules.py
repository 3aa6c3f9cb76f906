"""Imbalance rules: a retailer's standing order to ask its homes for less when the Demand
page's projection (analytics.retail.day_outlook: actual so far, else the forecast's
middle, against the procured plan) runs over the plan.

A rule names slots of the JST day (0 = 00:00-00:30 ... 47), a threshold in W (the
projected imbalance's mean power over the half hour: imbalance Wh x 2) and the tenant's
target reduction in W. `check_rules` looks at today's slots still to come: those of a
rule's slots whose projection passes its threshold, in runs of consecutive slots, each
become one event, raised by itself (`auto`) or proposed for an operator to confirm. A run
already covered by an event of the same rule (in any state, a dismissed proposal too) is
not raised again, so the rule speaks once per run and day.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, insert, select

from kenshin.jst import JST, SLOT

from ..accounts import audit
from ..analytics.retail import SlotOutlook, day_outlook
from . import tables as t
from .queries import rules_of
from .service import DrError, create_event

__all__ = ["add_rule", "at_risk_runs", "check_rules", "remove_rule"]


def add_rule(
    conn: Connection, tenant_id: int, *, name: str, threshold_w: int, slots: Sequence[int],
    target_w: int, auto: bool, actor: str,
) -> int:  # fmt: skip
    if not slots or any(not 0 <= s <= 47 for s in slots):
        raise DrError("slots are numbers of the JST day's half hours, 0 to 47")
    rule_id = conn.execute(
        insert(t.dr_rules).values(
            tenant_id=tenant_id, name=name, threshold_w=threshold_w, slots=sorted(set(slots)),
            target_w=target_w, auto=auto, enabled=True, created_by=actor,
        )
    ).inserted_primary_key[0]  # fmt: skip
    audit(conn, actor, "dr_rule.add", target=f"dr_rule:{rule_id}", tenant_id=tenant_id)
    return rule_id


def remove_rule(conn: Connection, tenant_id: int, rule_id: int, actor: str) -> bool:
    """Disable the rule (its events keep pointing at it); False: not the tenant's."""
    r = t.dr_rules.c
    found = conn.execute(
        select(r.id).where(r.id == rule_id, r.tenant_id == tenant_id, r.enabled)
    ).first()
    if found is None:
        return False
    conn.execute(t.dr_rules.update().where(r.id == rule_id).values(enabled=False))
    audit(conn, actor, "dr_rule.remove", target=f"dr_rule:{rule_id}", tenant_id=tenant_id)
    return True


def at_risk_runs(
    outlook: Sequence[SlotOutlook], slots: Sequence[int], threshold_w: int, now: datetime
) -> list[list[datetime]]:
    """Runs of consecutive slots of the rule, still to start, whose projected imbalance
    passes the threshold."""
    wanted = set(slots)
    runs: list[list[datetime]] = []
    for index, o in enumerate(outlook):
        over = (
            index in wanted and o.start > now and o.imbalance_wh is not None
            and o.imbalance_wh * 2 > threshold_w
        )  # fmt: skip
        if not over:
            continue
        if runs and runs[-1][-1] + SLOT == o.start:
            runs[-1].append(o.start)
        else:
            runs.append([o.start])
    return runs


def _covered(conn: Connection, rule_id: int, start: datetime, end: datetime) -> bool:
    e = t.dr_events.c
    return (
        conn.execute(
            select(e.id).where(e.rule_id == rule_id, e.start_at < end, e.end_at > start)
        ).first()
        is not None
    )


def check_rules(conn: Connection, tenant_id: int, now: datetime) -> list[int]:
    """Raise or propose the events the tenant's rules call for today; their ids."""
    rules = rules_of(conn, tenant_id, enabled=True)
    if not rules:
        return []
    outlook = day_outlook(conn, tenant_id, now.astimezone(JST).date(), now)
    made = []
    for rule in rules:
        for run in at_risk_runs(outlook, rule.slots, rule.threshold_w, now):
            start, end = run[0], run[-1] + SLOT
            if _covered(conn, rule.id, start, end):
                continue
            label = f"{rule.name} {start.astimezone(JST):%H:%M}-{end.astimezone(JST):%H:%M}"
            try:
                made.append(
                    create_event(
                        conn, tenant_id, name=label[:200], start=start, end=end,
                        actor=f"dr_rule:{rule.id}", targets_w=[rule.target_w] * len(run),
                        rule_id=rule.id, proposed=not rule.auto, now=now,
                    )
                )  # fmt: skip
            except DrError:  # no home to ask: nothing to raise
                continue
    return made
