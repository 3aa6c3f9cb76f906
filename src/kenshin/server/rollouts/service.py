"""The rollouts room's writes: a rollout made, moved by hand (advance, pause, resume,
abort), stepped by the `rollouts` job, and each gateway's `update_state` reports.

Choices:
- The cohort is fixed when the rollout is made: the tenant's gateways (or the ids named;
  of them, those carrying every tag named),
  of which `percent` are taken by a hash of the gateway id, so the same gateways fall in
  a 10 % cohort whatever the release. Their order through the stages is a hash of the
  rollout and the gateway: each release has other canaries.
- Stages are cumulative percentages of the cohort (1, 10, 50, 100): stage k covers the
  first ceil(n * p_k / 100) gateways of that order, at least one more than stage k-1.
- Every gateway of a stage is asked at once with its own `delay_s` in [0, window_s]
  (a hash again, so a re-ask keeps its place), and the gateway waits that long before it
  downloads: a stage's downloads spread over the window instead of hitting the server.
- A stage halts the rollout by itself when its gateways that failed or rolled back are
  more than `failure_threshold_pct` % of the stage's gateways (the job checks every stage
  reached so far, so late failures of an earlier stage count too). Halted, it moves only
  by hand: `advance` (the operator accepts the failures) or `abort`.
- With `soak_s`, the job advances a stage once none of its gateways is still on the way
  (pending, downloading, installed) and the last of them settled `soak_s` ago; without,
  stages advance by hand only. Either way the last stage settled ends it `done`.
- Gateways report states in any order and more than once (MQTT QoS 1): a state only ever
  moves forward (`RANK`), so a redelivered or late `downloading` is a no-op.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, func, insert, select, update

from .. import schema_base
from ..accounts import audit
from ..devices import commands
from ..devices.queries import tenant_gateways
from ..events import record_event
from . import tables as t

__all__ = [
    "DEFAULT_STAGES",
    "RolloutConflict",
    "RolloutError",
    "StepReport",
    "abort",
    "advance",
    "create",
    "on_update_state",
    "pause",
    "resume",
    "run_rollouts",
    "stage_counts",
]

DEFAULT_STAGES = (1, 10, 50, 100)
COMMAND_TTL = timedelta(days=1)  # past it (and the window) a silent gateway is asked again
RANK = {"pending": 0, "downloading": 1, "installed": 2, "healthy": 3, "failed": 3}
RANK["rolled_back"] = 4  # after a failure or even after healthy: the watchdog's word
UNSETTLED = ("pending", "downloading", "installed")
FAILED = ("failed", "rolled_back")
MOVABLE = ("running", "paused", "halted")  # not aborted, not done


class RolloutError(ValueError):
    """A rollout that cannot be made as asked (422)."""


class RolloutConflict(RolloutError):
    """A move its current state does not allow (409)."""


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def in_percent(gateway_id: int, percent: int) -> bool:
    """Whether the gateway is in a `percent` % cohort: stable, the same for every rollout."""
    return _hash(f"cohort:{gateway_id}") % 10000 < percent * 100


def delay_for(rollout_id: int, gateway_id: int, window_s: int) -> int:
    return _hash(f"delay:{rollout_id}:{gateway_id}") % (window_s + 1)


def stage_sizes(n: int, stages: Sequence[int]) -> list[int]:
    """The cumulative number of gateways each stage covers (each at least one more than
    the one before, while gateways remain; the last all of them)."""
    sizes, before = [], 0
    for percent in stages:
        size = min(n, max(math.ceil(n * percent / 100), before + 1))
        sizes.append(size)
        before = size
    sizes[-1] = n
    return sizes


def check_stages(stages: Sequence[int]) -> None:
    if not stages or any(not 1 <= p <= 100 for p in stages):
        raise RolloutError("stages are percentages from 1 to 100")
    if any(b <= a for a, b in itertools.pairwise(stages)) or stages[-1] != 100:
        raise RolloutError("stages must rise and end at 100, e.g. [1, 10, 50, 100]")


def create(
    conn: Connection,
    tenant_id: int,
    *,
    version: str,
    actor: str,
    gateway_ids: Sequence[int] | None = None,
    tags: Sequence[str] | None = None,
    percent: int = 100,
    stages: Sequence[int] = DEFAULT_STAGES,
    failure_threshold_pct: int = 5,
    soak_s: int | None = None,
    window_s: int = 3600,
    releases: Sequence[str] | None = None,
) -> int:
    """A running rollout at its first stage (the job asks its gateways); its id.
    `releases`: the versions the update repository has (None: not checked)."""
    if releases is not None and version not in releases:
        known = ", ".join(releases[-5:]) or "none"
        raise RolloutError(f"the update repository has no release {version!r} (newest: {known})")
    check_stages(stages)
    gateways = [g.id for g in tenant_gateways(conn, tenant_id)]
    if gateway_ids:
        unknown = sorted(set(gateway_ids) - set(gateways))
        if unknown:
            raise RolloutError(f"not gateways of this tenant: {unknown[:10]}")
        gateways = sorted(set(gateway_ids))
    if tags:  # and of those, the ones carrying every tag named
        tagged = {g.id for g in tenant_gateways(conn, tenant_id, tags)}
        gateways = [g for g in gateways if g in tagged]
    cohort = [g for g in gateways if in_percent(g, percent)]
    if not cohort:
        raise RolloutError("the cohort is empty: no gateway matches")
    now = schema_base.utcnow()
    rollout_id = conn.execute(
        insert(t.rollouts).values(
            tenant_id=tenant_id,
            version=version,
            cohort={"gateway_ids": sorted(set(gateway_ids)) if gateway_ids else None,
                    "tags": sorted(set(tags)) if tags else None, "percent": percent},
            stages=list(stages),
            stage=0,
            stage_started_at=now,
            failure_threshold_pct=failure_threshold_pct,
            soak_s=soak_s,
            window_s=window_s,
            state="running",
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
    ).inserted_primary_key[0]  # fmt: skip
    ordered = sorted(cohort, key=lambda g: _hash(f"order:{rollout_id}:{g}"))
    sizes = stage_sizes(len(ordered), stages)
    rows, start = [], 0
    for stage, end in enumerate(sizes):
        rows += [
            {"rollout_id": rollout_id, "gateway_id": g, "tenant_id": tenant_id, "stage": stage,
             "state": "pending", "delay_s": delay_for(rollout_id, g, window_s)}
            for g in ordered[start:end]
        ]  # fmt: skip
        start = end
    conn.execute(insert(t.rollout_gateways), rows)
    audit(conn, actor, "rollout.create", target=f"rollout:{rollout_id}", tenant_id=tenant_id,
          detail={"version": version, "gateways": len(rows)})  # fmt: skip
    return rollout_id


def _rollout(conn: Connection, tenant_id: int, rollout_id: int, *, lock: bool = False) -> Row:
    query = select(t.rollouts).where(
        t.rollouts.c.id == rollout_id, t.rollouts.c.tenant_id == tenant_id
    )
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise LookupError(f"no rollout {rollout_id}")
    return row


def _set(conn: Connection, rollout_id: int, **values: Any) -> None:
    values.setdefault("updated_at", schema_base.utcnow())
    conn.execute(update(t.rollouts).where(t.rollouts.c.id == rollout_id).values(**values))


def _move(
    conn: Connection, tenant_id: int, rollout_id: int, actor: str, verb: str,
    allowed: tuple[str, ...], reason: str | None, **values: Any,
) -> None:  # fmt: skip
    row = _rollout(conn, tenant_id, rollout_id, lock=True)
    if row.state not in allowed:
        raise RolloutConflict(f"the rollout is {row.state}; it cannot be {verb}d from there")
    _set(conn, rollout_id, reason=reason, **values)
    audit(conn, actor, f"rollout.{verb}", target=f"rollout:{rollout_id}", tenant_id=tenant_id)


def pause(conn: Connection, tenant_id: int, rollout_id: int, actor: str, reason: str | None):
    """No stage advances and no gateway is asked until it is resumed (gateways already
    asked go on: a command sent is not taken back)."""
    _move(conn, tenant_id, rollout_id, actor, "pause", ("running",), reason, state="paused")


def resume(conn: Connection, tenant_id: int, rollout_id: int, actor: str) -> None:
    _move(conn, tenant_id, rollout_id, actor, "resume", ("paused",), None, state="running")


def abort(conn: Connection, tenant_id: int, rollout_id: int, actor: str, reason: str | None):
    """For good: no gateway is asked again (their reports are still recorded)."""
    _move(conn, tenant_id, rollout_id, actor, "abort", MOVABLE, reason, state="aborted")


def advance(conn: Connection, tenant_id: int, rollout_id: int, actor: str) -> None:
    """The next stage now, running (from paused or halted too: the operator's call)."""
    row = _rollout(conn, tenant_id, rollout_id, lock=True)
    if row.stage + 1 >= len(row.stages):
        raise RolloutConflict("the rollout is at its last stage; nothing to advance to")
    _move(conn, tenant_id, rollout_id, actor, "advance", MOVABLE, None, state="running",
          stage=row.stage + 1, stage_started_at=schema_base.utcnow())  # fmt: skip


def on_update_state(conn: Connection, gateway: Row, detail: dict[str, Any]) -> bool:
    """A gateway's `update_state` report onto its row of the newest rollout of that
    version; whether it changed anything (a report out of order, again, or of a version
    no rollout names changes nothing)."""
    version, state = detail.get("version"), detail.get("state")
    if not isinstance(version, str) or state not in RANK or state == "pending":
        return False
    g, r = t.rollout_gateways.c, t.rollouts.c
    row = conn.execute(
        select(g.rollout_id, g.state)
        .join(t.rollouts, r.id == g.rollout_id)
        .where(g.gateway_id == gateway.id, r.tenant_id == gateway.tenant_id, r.version == version)
        .order_by(r.id.desc())
        .limit(1)
    ).first()
    if row is None or RANK[state] <= RANK[row.state]:
        return False
    reason, from_version = detail.get("reason"), detail.get("from_version")
    conn.execute(
        update(t.rollout_gateways)
        .where(g.rollout_id == row.rollout_id, g.gateway_id == gateway.id)
        .values(
            state=state,
            state_at=schema_base.utcnow(),
            reason=str(reason)[:500] if reason else None,
            from_version=str(from_version)[:64] if from_version else None,
        )
    )
    return True


def stage_counts(conn: Connection, rollout_id: int) -> dict[int, dict[str, int]]:
    """How many of each stage's gateways are in each state."""
    g = t.rollout_gateways.c
    counted = conn.execute(
        select(g.stage, g.state, func.count())
        .where(g.rollout_id == rollout_id)
        .group_by(g.stage, g.state)
    )
    out: dict[int, dict[str, int]] = {}
    for stage, state, n in counted:
        out.setdefault(stage, {})[state] = n
    return out


# -- the job -------------------------------------------------------------------------------


@dataclass
class StepReport:
    asked: int = 0
    advanced: list[int] = field(default_factory=list)
    halted: list[int] = field(default_factory=list)
    done: list[int] = field(default_factory=list)


def run_rollouts(engine: Engine, now: datetime) -> StepReport:
    """The `rollouts` job: each running rollout in its own transaction."""
    report = StepReport()
    with engine.connect() as conn:
        running = conn.execute(
            select(t.rollouts.c.id, t.rollouts.c.tenant_id)
            .where(t.rollouts.c.state == "running")
            .order_by(t.rollouts.c.id)
        ).all()
    for rollout_id, tenant_id in running:
        with engine.begin() as conn:
            step(conn, tenant_id, rollout_id, now, report)
    return report


def step(conn: Connection, tenant_id: int, rollout_id: int, now: datetime, report: StepReport):
    """Halt it if a stage failed past the threshold; else ask the gateways of the stages
    reached that were not asked yet, and advance (or finish) when the soak is over."""
    row = _rollout(conn, tenant_id, rollout_id, lock=True)
    if row.state != "running":  # moved by hand since the job listed it
        return
    counts = stage_counts(conn, rollout_id)
    for stage in range(row.stage + 1):
        states = counts.get(stage, {})
        total, failed = sum(states.values()), sum(states.get(s, 0) for s in FAILED)
        if total and failed * 100 > row.failure_threshold_pct * total:
            _halt(conn, row, stage, failed, total, now)
            report.halted.append(rollout_id)
            return
    report.asked += _ask(conn, row, row.stage, now)
    if not _settled(conn, row, now):
        return
    if row.stage + 1 >= len(row.stages):
        _set(conn, rollout_id, state="done", updated_at=now)
        record_event(conn, tenant_id=tenant_id, code="rollout_done", severity="info",
                     detail={"rollout_id": rollout_id, "version": row.version}, at=now)  # fmt: skip
        report.done.append(rollout_id)
    elif row.soak_s is not None:
        _set(conn, rollout_id, stage=row.stage + 1, stage_started_at=now, updated_at=now)
        report.asked += _ask(conn, row, row.stage + 1, now)
        report.advanced.append(rollout_id)


def _halt(conn: Connection, row: Row, stage: int, failed: int, total: int, now: datetime):
    reason = (
        f"stage {stage + 1}: {failed} of {total} gateways failed or rolled back, "
        f"more than {row.failure_threshold_pct} %"
    )
    _set(conn, row.id, state="halted", reason=reason, updated_at=now)
    record_event(
        conn,
        tenant_id=row.tenant_id,
        code="rollout_halted",
        severity="error",
        detail={"rollout_id": row.id, "version": row.version, "stage": stage + 1,
                "failed": failed, "gateways": total, "reason": reason},
        at=now,
    )  # fmt: skip


def _ask(conn: Connection, row: Row, through_stage: int, now: datetime) -> int:
    """Send `update` to the gateways of stages up to `through_stage` not asked yet, and
    again to those asked so long ago that their command has expired with no word back."""
    g = t.rollout_gateways.c
    stale = now - COMMAND_TTL - timedelta(seconds=row.window_s)
    due = conn.execute(
        select(g.gateway_id, g.delay_s).where(
            g.rollout_id == row.id,
            g.stage <= through_stage,
            g.state == "pending",
            g.command_id.is_(None) | (g.asked_at < stale),
        )
    ).all()
    for gateway_id, delay_s in due:
        command = commands.create(
            conn, row.tenant_id, gateway_id, "update",
            {"version": row.version, "delay_s": delay_s},
            actor=f"rollout:{row.id}", ttl=COMMAND_TTL + timedelta(seconds=row.window_s),
        )  # fmt: skip
        conn.execute(
            update(t.rollout_gateways)
            .where(g.rollout_id == row.id, g.gateway_id == gateway_id)
            .values(command_id=command.id, asked_at=now)
        )
    return len(due)


def _settled(conn: Connection, row: Row, now: datetime) -> bool:
    """Whether every gateway of the stages reached is healthy, failed or rolled back, and
    (with a soak) the last of them settled `soak_s` ago."""
    g = t.rollout_gateways.c
    reached = (g.rollout_id == row.id, g.stage <= row.stage)
    waiting = conn.execute(
        select(func.count()).where(*reached, g.state.in_(UNSETTLED))
    ).scalar_one()
    if waiting:
        return False
    if row.soak_s is None:
        return row.stage + 1 >= len(row.stages)
    last = conn.execute(select(func.max(g.state_at)).where(*reached)).scalar()
    return last is None or last + timedelta(seconds=row.soak_s) <= now
