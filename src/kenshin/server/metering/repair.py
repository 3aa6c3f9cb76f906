"""Server-driven repair of lost half hours: whatever was lost on the way (a broker that
acknowledged and died, a crashed ingest, a queue wiped on the gateway), the server sees the
hole in its own data and asks the gateway to read it again from the meter's history.

Per meter the server keeps a watermark, ``complete_through``: the newest half-hour
boundary up to which every fixed-time value (normal direction) is stored. Each run of the
job looks past it, up to ``delay`` before now (values arrive a minute or so after each half
hour; a gap younger than the delay is not yet a gap). The first run of missing boundaries
becomes one ``backfill`` command for exactly that range, sent to the meter's gateway when:

* the gateway is ``working`` (online; a silent one will backfill by itself when it returns),
* no backfill for that meter is outstanding (pending or sent): never more than one,
* the meter's ``next_try_at`` has passed (spacing between requests to one gateway, longer
  after each request that did not fill the hole, up to ``max_retry_s``),
* the run's budget for the fleet is not spent (``fleet_max`` commands per run).

A hole older than the meter's history (``horizon_days``) cannot come back: the watermark
moves past it and a ``gap_repair_gave_up`` event says which range is lost for good. Once
every ``rescan_every_s`` a meter is looked at from the horizon again rather than from its
watermark: values can also go missing after they were stored (a database restored from an
older backup, rows removed by hand), and the meter may still hold them. Every
request is a ``gap_repair_requested`` event. ``now`` is the job's clock, so tests can run
this on the simulators' compressed time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, Row, func, insert, select, update

from .. import schema_base
from ..devices import commands
from ..devices.queries import working_meters
from ..events import record_event
from ..times import jst_text
from . import tables as t
from .slots import SLOT_S

__all__ = ["RepairPolicy", "run_repairs"]

ACTOR = "system:repair"
OUTSTANDING = ("pending", "sent")


@dataclass(frozen=True)
class RepairPolicy:
    delay_s: float = 3600.0  # a missing value younger than this is not yet a gap
    horizon_days: float = 45.0  # how far back a meter's history reaches
    gateway_every_s: float = 600.0  # at least this between two requests to one meter
    max_retry_s: float = 6 * 3600.0  # a request that did not fill: back-off up to this
    fleet_max: int = 100  # requests per run, for the whole fleet
    max_slots: int = 96  # half hours in one request (two days)
    rescan_every_s: float = 86400.0  # look again from the horizon, past the watermark
    # A request sent but not answered in this long (real seconds) was lost on the way (a
    # broker that restarted without the gateway's session): ask again when its turn comes.
    answer_within_s: float = 300.0


@dataclass
class RepairReport:
    requested: int = 0
    gave_up: int = 0
    checked: int = 0


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def _at(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def run_repairs(engine: Engine, now: datetime, policy: RepairPolicy | None = None) -> RepairReport:
    """One pass over the meters behind online gateways; each meter in its own transaction,
    so one meter's trouble holds back no other."""
    policy = policy or RepairPolicy()
    report = RepairReport()
    with engine.connect() as conn:
        meters = working_meters(conn)
    for meter in meters:
        with engine.begin() as conn:
            budget = report.requested < policy.fleet_max
            _repair_meter(conn, meter, now, policy, report, may_request=budget)
        report.checked += 1
    return report


def _state(conn: Connection, meter_id: int) -> Row:
    row = conn.execute(select(t.meter_repair).where(t.meter_repair.c.meter_id == meter_id)).first()
    if row is None:
        conn.execute(insert(t.meter_repair).values(meter_id=meter_id, attempts=0))
        row = conn.execute(
            select(t.meter_repair).where(t.meter_repair.c.meter_id == meter_id)
        ).one()
    return row


def _save(conn: Connection, meter_id: int, **values) -> None:
    conn.execute(
        update(t.meter_repair).where(t.meter_repair.c.meter_id == meter_id).values(**values)
    )


def _repair_meter(
    conn: Connection, meter: Row, now: datetime, policy: RepairPolicy, report: RepairReport,
    *, may_request: bool,
) -> None:  # fmt: skip
    state = _state(conn, meter.id)
    if state.command_id is not None and not _settled(conn, meter, state, now, policy):
        return  # one outstanding request per meter
    state = _state(conn, meter.id)
    horizon = _epoch(now) - int(policy.horizon_days * 86400)
    since = horizon  # a rescan looks at what the meter can still give
    if state.rescanned_at is None:  # the first look starts at the meter's first value
        _save(conn, meter.id, rescanned_at=now)
        since = None
    elif (now - state.rescanned_at).total_seconds() >= policy.rescan_every_s:
        _save(conn, meter.id, complete_through=None, rescanned_at=now)
    state = _state(conn, meter.id)
    last = (_epoch(now) - int(policy.delay_s)) // SLOT_S * SLOT_S
    first = _first_boundary(conn, meter.id, state, since)
    if first is None or first > last:
        return
    present = set(
        conn.execute(
            select(t.readings_fixed.c.slot_start).where(
                t.readings_fixed.c.meter_id == meter.id,
                t.readings_fixed.c.direction == 0,
                t.readings_fixed.c.slot_start >= _at(first),
                t.readings_fixed.c.slot_start <= _at(last),
            )
        ).scalars()
    )
    have = {_epoch(at) for at in present}
    complete = first - SLOT_S if first not in have else first
    gap: list[int] = []
    for boundary in range(first, last + 1, SLOT_S):
        if boundary in have:
            if gap:
                break
            complete = boundary
        elif len(gap) < policy.max_slots:
            gap.append(boundary)
        else:
            break
    if complete != (_epoch(state.complete_through) if state.complete_through else None):
        moved = state.missing_to is not None and complete >= _epoch(state.missing_to)
        _save(
            conn, meter.id, complete_through=_at(complete),
            **({"attempts": 0, "missing_from": None, "missing_to": None} if moved else {}),
        )  # fmt: skip
    if not gap:
        return
    if gap[-1] < horizon:  # the meter no longer holds any of it
        _save(conn, meter.id, complete_through=_at(gap[-1]), attempts=0)
        record_event(
            conn, tenant_id=meter.tenant_id, gateway_id=meter.gateway_id, meter_id=meter.id,
            code="gap_repair_gave_up", severity="warning",
            detail={"from": jst_text(_at(gap[0])), "to": jst_text(_at(gap[-1])),
                    "slots": len(gap), "reason": "older than the meter's history"},
        )  # fmt: skip
        report.gave_up += 1
        return
    if not may_request or (state.next_try_at is not None and now < state.next_try_at):
        return
    gap = [b for b in gap if b >= horizon]
    command = commands.create(
        conn, meter.tenant_id, meter.gateway_id, "backfill",
        {"from_s": gap[0], "to_s": gap[-1]}, actor=ACTOR,
    )  # fmt: skip
    _save(
        conn, meter.id, command_id=command.id, missing_from=_at(gap[0]),
        missing_to=_at(gap[-1]), next_try_at=None,
    )  # fmt: skip
    record_event(
        conn, tenant_id=meter.tenant_id, gateway_id=meter.gateway_id, meter_id=meter.id,
        code="gap_repair_requested", severity="info",
        detail={"from": jst_text(_at(gap[0])), "to": jst_text(_at(gap[-1])),
                "slots": len(gap), "attempt": state.attempts + 1, "command_id": command.id},
    )  # fmt: skip
    report.requested += 1


def _settled(conn: Connection, meter: Row, state: Row, now: datetime, policy: RepairPolicy) -> bool:
    """Whether the outstanding request is over (answered, failed or expired); if so, the
    next one waits (the values a done request read are still on their way up), longer
    after each request that did not fill the hole."""
    command = commands.get(conn, state.command_id, meter.tenant_id)
    if command is not None and command.state in OUTSTANDING:
        sent_at = command.sent_at
        unanswered = sent_at is not None and (schema_base.utcnow() - sent_at).total_seconds() > (
            policy.answer_within_s
        )
        if not unanswered:
            return False
    attempts = state.attempts + 1  # back to 0 once the watermark passes the hole
    wait = min(policy.gateway_every_s * 2 ** (attempts - 1), policy.max_retry_s)
    _save(
        conn, meter.id, command_id=None, attempts=attempts,
        next_try_at=now + timedelta(seconds=wait),
    )  # fmt: skip
    return True


def _first_boundary(conn: Connection, meter_id: int, state: Row, since: int | None) -> int | None:
    """The first boundary to look at: past the watermark, else the meter's first value
    (since `since`, if given)."""
    if state.complete_through is not None:
        return _epoch(state.complete_through) + SLOT_S
    where = [t.readings_fixed.c.meter_id == meter_id, t.readings_fixed.c.direction == 0]
    if since is not None:
        where.append(t.readings_fixed.c.slot_start >= _at(since // SLOT_S * SLOT_S))
    first = conn.execute(select(func.min(t.readings_fixed.c.slot_start)).where(*where)).scalar()
    return None if first is None else _epoch(first)
