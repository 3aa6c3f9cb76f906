"""The dr room's writes: a DR event made (by an operator, an imbalance rule, or from an
OpenADR event), confirmed when it was only proposed, cancelled, moved through its states
by time, and a home opted out (by the customer's link, or for them through the API).

Choices:
- An event's slots are whole JST half hours, at most a day of them; its targets are one
  whole W a slot for the tenant (a reduction of the mean power over the half hour), or
  a shed level 1 to 3 (the gateway's policy says what each level does in the home).
- The homes are chosen when the event is made: every home of the tenant (a site with a
  meter behind a gateway), or the sites named; each gets a participation row with its own
  random opt-out token (`secrets.token_urlsafe`, 32 bytes: unguessable; kept as it is,
  since the retailer hands each customer their link).
- The opt-out deadline is the event's start unless an earlier one is given. A home may
  opt out in any state before it (even after its gateway acknowledged: the gateway is
  then sent a cancel by `dispatch.due_dispatches`); after it, never.
- State moves by time (`advance`, run by the dr job): scheduled -> active at the start,
  active -> ended at the end; `results.finalize` makes it final. A proposal whose start
  has come without a confirmation is cancelled.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, insert, null, select, update

from kenshin.jst import SLOT, SLOT_S

from .. import schema_base
from ..accounts import audit
from . import tables as t
from .queries import get_event, tenant_homes

__all__ = [
    "MAX_SLOTS",
    "DrConflict",
    "DrError",
    "advance",
    "cancel",
    "confirm",
    "create_event",
    "opt_out",
    "participation_by_token",
]

MAX_SLOTS = 48  # a day
MAX_AHEAD = timedelta(days=31)  # how far ahead an event may be set
MAX_TARGET_W = 10**9  # a gigawatt over the tenant: past any retailer's fleet


class DrError(ValueError):
    """An event that cannot be made as asked (400)."""


class DrConflict(DrError):
    """A move its current state does not allow (409)."""


def _check(
    start: datetime, end: datetime, targets_w: Sequence[int] | None, shed_level: int | None,
    deadline: datetime, now: datetime,
) -> int:  # fmt: skip
    for name, at in (("start", start), ("end", end)):
        if at.tzinfo is None or at.timestamp() % SLOT_S:
            raise DrError(f"{name} must be the start of a JST half hour (:00 or :30)")
    slots = (end - start) // SLOT
    if slots < 1 or slots > MAX_SLOTS:
        raise DrError(f"an event lasts 1 to {MAX_SLOTS} half hours; end must follow start")
    if start <= now:
        raise DrError("start must be in the future")
    if start - now > MAX_AHEAD:
        raise DrError(f"start must be within {MAX_AHEAD.days} days")
    if (targets_w is None) == (shed_level is None):
        raise DrError("give either targets_w (W a slot) or shed_level (1 to 3)")
    if targets_w is not None:
        if len(targets_w) != slots:
            raise DrError(f"targets_w has {len(targets_w)} values for the event's {slots} slots")
        if any(not 0 <= w <= MAX_TARGET_W for w in targets_w):
            raise DrError(f"each target is 0 to {MAX_TARGET_W} W")
    if shed_level is not None and not 1 <= shed_level <= 3:
        raise DrError("shed_level is 1, 2 or 3")
    if deadline > start:
        raise DrError("the opt-out deadline cannot be after the start")
    return slots


def create_event(
    conn: Connection,
    tenant_id: int,
    *,
    name: str,
    start: datetime,
    end: datetime,
    actor: str,
    targets_w: Sequence[int] | None = None,
    shed_level: int | None = None,
    price_jpy_kwh: float | None = None,
    opt_out_deadline: datetime | None = None,
    site_ids: Sequence[int] | None = None,
    openadr_event_id: str | None = None,
    rule_id: int | None = None,
    proposed: bool = False,
    now: datetime | None = None,
) -> int:
    """A scheduled event (or a proposal, waiting for `confirm`) with a participation for
    each of its homes; its id."""
    now = now or schema_base.utcnow()
    deadline = opt_out_deadline or start
    _check(start, end, targets_w, shed_level, deadline, now)
    homes = tenant_homes(conn, tenant_id)
    if site_ids is not None:
        unknown = sorted(set(site_ids) - set(homes))
        if unknown:
            raise DrError(f"not homes of this tenant with a gateway: {unknown[:10]}")
        homes = {site: homes[site] for site in site_ids}
    if not homes:
        raise DrError("no home of the tenant has a meter behind a gateway")
    event_id = conn.execute(
        insert(t.dr_events).values(
            tenant_id=tenant_id, name=name, start_at=start, end_at=end,
            targets_w=list(targets_w) if targets_w is not None else null(),
            shed_level=shed_level, price_jpy_kwh=price_jpy_kwh, opt_out_deadline=deadline,
            state="proposed" if proposed else "scheduled", created_by=actor,
            openadr_event_id=openadr_event_id, rule_id=rule_id, created_at=now, updated_at=now,
        )
    ).inserted_primary_key[0]  # fmt: skip
    conn.execute(
        insert(t.dr_participations),
        [
            {"event_id": event_id, "tenant_id": tenant_id, "site_id": site, "gateway_id": gw,
             "state": "pending", "opt_out_token": secrets.token_urlsafe(32), "state_at": now}
            for site, gw in sorted(homes.items())
        ],
    )  # fmt: skip
    verb = "dr_event.propose" if proposed else "dr_event.create"
    audit(conn, actor, verb, target=f"dr_event:{event_id}", tenant_id=tenant_id,
          detail={"name": name, "homes": len(homes)})  # fmt: skip
    return event_id


def _event(conn: Connection, tenant_id: int, event_id: int) -> Row:
    row = get_event(conn, tenant_id, event_id)
    if row is None:
        raise LookupError(f"no DR event {event_id}")
    return row


def _set(conn: Connection, event_id: int, now: datetime, **values: Any) -> None:
    conn.execute(
        update(t.dr_events).where(t.dr_events.c.id == event_id).values(updated_at=now, **values)
    )


def cancel(
    conn: Connection, tenant_id: int, event_id: int, actor: str, now: datetime | None = None
) -> None:
    """Cancel an event not ended yet; homes already sent it are sent a cancel."""
    row = _event(conn, tenant_id, event_id)
    if row.state not in ("proposed", "scheduled", "active"):
        raise DrConflict(f"the event is {row.state}; only one to come or under way is cancelled")
    now = now or schema_base.utcnow()
    _set(conn, event_id, now, state="cancelled", cancelled_at=now)
    audit(conn, actor, "dr_event.cancel", target=f"dr_event:{event_id}", tenant_id=tenant_id)


def confirm(
    conn: Connection, tenant_id: int, event_id: int, actor: str, now: datetime | None = None
) -> None:
    """A proposal (from an imbalance rule) becomes a scheduled event, sent to its homes."""
    row = _event(conn, tenant_id, event_id)
    now = now or schema_base.utcnow()
    if row.state != "proposed":
        raise DrConflict(f"the event is {row.state}; only a proposal is confirmed")
    if row.start_at <= now:
        raise DrConflict("the proposal's start has passed")
    _set(conn, event_id, now, state="scheduled")
    audit(conn, actor, "dr_event.confirm", target=f"dr_event:{event_id}", tenant_id=tenant_id)


def participation_by_token(conn: Connection, token: str) -> tuple[Row, Row] | None:
    """(participation, event) of an opt-out link, or None."""
    p = t.dr_participations.c
    part = conn.execute(select(t.dr_participations).where(p.opt_out_token == token)).first()
    if part is None:
        return None
    event = get_event(conn, part.tenant_id, part.event_id)
    assert event is not None
    return part, event


def opt_out(
    conn: Connection, participation: Row, event: Row, *, via: str, by: str | None = None,
    now: datetime | None = None,
) -> bool:  # fmt: skip
    """Opt the home out of the event; False when it is too late (past the deadline, or
    the event is over or cancelled). Opting out twice is a no-op that answers True."""
    now = now or schema_base.utcnow()
    if participation.state == "opted_out":
        return True
    if now >= event.opt_out_deadline or event.state not in ("proposed", "scheduled", "active"):
        return False
    p = t.dr_participations.c
    conn.execute(
        update(t.dr_participations)
        .where(p.id == participation.id)
        .values(state="opted_out", state_at=now)
    )
    conn.execute(
        insert(t.dr_opt_outs).values(
            participation_id=participation.id, event_id=event.id, tenant_id=event.tenant_id,
            at=now, via=via, by=by,
        )
    )  # fmt: skip
    detail = {"site_id": participation.site_id, "via": via}
    audit(conn, by or "anonymous", "dr_event.opt_out", target=f"dr_event:{event.id}",
          tenant_id=event.tenant_id, detail=detail)  # fmt: skip
    return True


def advance(conn: Connection, now: datetime) -> dict[str, list[int]]:
    """Move every tenant's events by time: started ones active, finished ones ended, and
    unconfirmed proposals whose start has come cancelled. Which moved, by new state."""
    e = t.dr_events.c
    moves = (
        ("active", e.state == "scheduled", e.start_at <= now, e.end_at > now),
        ("ended", e.state.in_(("scheduled", "active")), e.end_at <= now),
        ("cancelled", e.state == "proposed", e.start_at <= now),
    )
    moved: dict[str, list[int]] = {}
    for state, *where in moves:
        ids = list(conn.execute(select(e.id).where(*where)).scalars())
        if ids:
            extra = {"cancelled_at": now} if state == "cancelled" else {}
            conn.execute(
                update(t.dr_events)
                .where(e.id.in_(ids))
                .values(state=state, updated_at=now, **extra)
            )
            moved[state] = ids
    return moved
