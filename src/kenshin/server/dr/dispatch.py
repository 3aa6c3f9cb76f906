"""The dr room's door for the MQTT side: what to send to which gateway (`due_dispatches`,
then `mark_sent` once the broker took it), and what gateways say back (`on_ack`,
`on_report`). The MQTT glue turns a `Dispatch` into the wire's DrEvent (or its cancel)
and a DrAck / DrReport into these calls; the room never sees the wire.

Choices:
- **Per-home targets.** The tenant's target in each slot is split over the homes still in
  the event (not opted out, refused or without devices) in proportion to each home's
  standard baseline in that slot (baseline.py): a home that draws more is asked for more.
  A home without a baseline weighs the mean of the others' in that slot (1 if none has
  one). Shares are whole W by the largest remainder (ties: the lower site id), so they add
  up to the tenant's target exactly. Targets are fixed when a home's event is first
  sent; homes opting out later do not raise the others' shares.
- **Cancels.** A home that was sent the event is sent a cancel when the event is
  cancelled or the home opts out, once (`cancel_sent_at`), while the event has not ended.
- **Gateways' word moves forward only** (MQTT QoS 1 redelivers, reports come late):
  sent < acknowledged | no_devices | refused < acting < done | failed. no_devices and
  refused are final; an opted-out home stays opted out whatever its gateway says (its
  report is still kept).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, Row, select, update

from .. import schema_base
from . import tables as t
from .baseline import Baseline
from .queries import OUT_OF_IT, event_baselines, event_slots, gateway_serials

__all__ = ["Dispatch", "due_dispatches", "mark_sent", "on_ack", "on_report", "split_targets"]

RANK = {"pending": 0, "sent": 1, "acknowledged": 2, "no_devices": 2, "refused": 2}
RANK |= {"acting": 3, "done": 4, "failed": 4}
FINAL = ("no_devices", "refused", "done", "failed", "opted_out")
ACK_STATES = ("acknowledged", "no_devices", "refused", "acting", "failed")
REPORT_STATES = ("acting", "done", "failed")
CANCELLABLE = ("sent", "acknowledged", "acting", "opted_out")
RESEND_AFTER = timedelta(seconds=10)  # as devices/commands.py's OWED_AFTER


@dataclass(frozen=True)
class Dispatch:
    """One message to one gateway: the event for its home, or its cancel."""

    participation_id: int
    gateway_id: int
    serial: str
    event_id: int
    start_s: int  # Unix seconds
    end_s: int
    targets: tuple[tuple[int, int], ...]  # (slot start, Unix s; reduce W) for this home
    shed: int | None  # a shed level instead of targets
    price: float | None  # JPY/kWh
    opt_out_deadline_s: int
    cancelled: bool


def split_targets(
    targets_w: Sequence[int], weights: Mapping[int, Sequence[int | None]]
) -> dict[int, list[int]]:
    """Each home's share of each slot's target (see the module): `weights` maps a home to
    its baseline Wh in each slot (None: no baseline)."""
    homes = sorted(weights)
    shares: dict[int, list[int]] = {h: [] for h in homes}
    for i, target in enumerate(targets_w):
        known = [weights[h][i] for h in homes if weights[h][i] is not None]
        stand_in = Fraction(sum(known), len(known)) if known else Fraction(1)  # type: ignore[arg-type]
        w = {h: Fraction(weights[h][i]) if weights[h][i] is not None else stand_in for h in homes}
        total = sum(w.values())
        if total == 0:  # every home drew nothing: equal shares
            w, total = dict.fromkeys(homes, Fraction(1)), Fraction(len(homes))
        exact = {h: target * w[h] / total for h in homes}
        floor = {h: math.floor(exact[h]) for h in homes}
        left = target - sum(floor.values())
        for h in sorted(homes, key=lambda h: (-(exact[h] - floor[h]), h))[:left]:
            floor[h] += 1
        for h in homes:
            shares[h].append(floor[h])
    return shares


def _home_targets(conn: Connection, event: Row, homes: Iterable[int]) -> dict[int, list[int]]:
    homes = list(homes)
    if not homes:
        return {}
    slots = event_slots(event)
    weights = {}
    for site, baseline, _ in event_baselines(conn, event, homes):
        weights[site] = [
            baseline.slots[s] if isinstance(baseline, Baseline) else None for s in slots
        ]
    return split_targets(event.targets_w, weights)


def _seconds(at) -> int:
    return int(at.timestamp())


def due_dispatches(
    conn: Connection, now, heard: Callable[[set[int]], Mapping[int, Any]] | None = None
) -> list[Dispatch]:
    """What is owed to gateways now: each home of an event to come or under way that was
    not sent it yet (its targets computed and kept now), and each cancel owed. With
    `heard` (gateway ids → when each was last heard from, asked only for the gateways of
    homes sent an event and not answering): such a home whose gateway spoke more than
    `RESEND_AFTER` after the sending is sent it again (a clean session lost it; the
    gateway acks a copy again)."""
    e, p = t.dr_events.c, t.dr_participations.c
    rows = conn.execute(
        select(t.dr_participations, e.state.label("event_state"))
        .join(t.dr_events, e.id == p.event_id)
        .where(
            e.end_at > now,
            (p.state.in_(("pending", "sent")) & e.state.in_(("scheduled", "active")))
            | (
                p.sent_at.is_not(None) & p.cancel_sent_at.is_(None) & p.state.in_(CANCELLABLE)
                & ((e.state == "cancelled") | (p.state == "opted_out"))
            ),
        )
        .order_by(p.event_id, p.site_id)
    ).all()  # fmt: skip
    waiting = {r.gateway_id for r in rows if r.state == "sent" and r.event_state != "cancelled"}
    seen = heard(waiting) if heard is not None and waiting else {}
    rows = [r for r in rows if r.state != "sent" or r.event_state == "cancelled"
            or _unanswered(r, seen.get(r.gateway_id))]  # fmt: skip
    out: list[Dispatch] = []
    by_event: dict[int, list[Row]] = {}
    for row in rows:
        by_event.setdefault(row.event_id, []).append(row)
    for event_id, parts in by_event.items():
        event = conn.execute(select(t.dr_events).where(e.id == event_id)).one()
        serials = gateway_serials(conn, event.tenant_id)
        new = [r for r in parts if r.state == "pending"]
        shares: dict[int, list[int]] = {}
        if new and event.targets_w is not None:
            sharing = conn.execute(
                select(p.site_id).where(p.event_id == event_id, p.state.not_in(OUT_OF_IT))
            ).scalars()
            shares = _home_targets(conn, event, sharing)
        slots = [_seconds(s) for s in event_slots(event)]
        for row in parts:
            cancelled = event.state == "cancelled" or row.state == "opted_out"
            targets = row.targets_w
            if row.state == "pending" and event.targets_w is not None:
                targets = shares[row.site_id]
                conn.execute(
                    update(t.dr_participations).where(p.id == row.id).values(targets_w=targets)
                )
            out.append(
                Dispatch(
                    participation_id=row.id, gateway_id=row.gateway_id,
                    serial=serials.get(row.gateway_id, ""), event_id=event_id,
                    start_s=_seconds(event.start_at), end_s=_seconds(event.end_at),
                    targets=tuple(zip(slots, targets, strict=True)) if targets else (),
                    shed=event.shed_level, price=event.price_jpy_kwh,
                    opt_out_deadline_s=_seconds(event.opt_out_deadline), cancelled=cancelled,
                )
            )  # fmt: skip
    return out


def _unanswered(row: Row, heard_at: Any) -> bool:
    return (
        heard_at is not None and row.sent_at is not None and (heard_at - row.sent_at > RESEND_AFTER)
    )


def mark_sent(conn: Connection, participation_ids: Sequence[int]) -> None:
    """The broker took these dispatches: an event sent moves its home to `sent`, a cancel
    is not sent again."""
    if not participation_ids:
        return
    e, p = t.dr_events.c, t.dr_participations.c
    now = schema_base.utcnow()
    ids = p.id.in_(list(participation_ids))
    cancelled = select(e.id).where(e.state == "cancelled").scalar_subquery()
    conn.execute(
        update(t.dr_participations)
        .where(ids, p.sent_at.is_not(None), p.cancel_sent_at.is_(None))
        .where((p.state == "opted_out") | p.event_id.in_(cancelled))
        .values(cancel_sent_at=now)
    )
    conn.execute(
        update(t.dr_participations)
        .where(ids, p.state == "pending")
        .values(state="sent", sent_at=now, state_at=now)
    )
    conn.execute(  # sent again: the next copy only after the gateway spoke again
        update(t.dr_participations).where(ids, p.state == "sent").values(sent_at=now)
    )


def _participations(conn: Connection, gateway_id: int, event_id: int) -> list[Row]:
    p = t.dr_participations.c
    return conn.execute(
        select(t.dr_participations).where(p.gateway_id == gateway_id, p.event_id == event_id)
    ).all()


def _forward(
    conn: Connection, row: Row, state: str, moving: dict[str, Any], always: dict[str, Any]
) -> bool:
    """Move the home to `state` (with `moving`) if that is forward, and write `always`
    whatever; whether the state moved."""
    moves = row.state not in FINAL and RANK[state] > RANK[row.state]
    values = always | (moving | {"state": state, "state_at": schema_base.utcnow()} if moves else {})
    if values:
        p = t.dr_participations.c
        conn.execute(update(t.dr_participations).where(p.id == row.id).values(**values))
    return moves


def on_ack(
    conn: Connection,
    gateway_id: int,
    event_id: int,
    state: str,
    devices: Sequence[Any] | int | None = None,
    reason: str | None = None,
) -> bool:
    """The gateway's answer to an event: `acknowledged` (with the devices it will act
    on: a list, or how many), `no_devices`, `refused` (with why), or later `acting` /
    `failed`. Whether the home's state moved (a redelivered or late answer moves nothing)."""
    if state not in ACK_STATES:
        raise ValueError(f"not an answer to a DR event: {state!r}")
    moving: dict[str, Any] = {"reason": str(reason)[:500]} if reason else {}
    if isinstance(devices, int):
        moving["devices"] = {"count": devices}
    elif devices is not None:
        moving["devices"] = list(devices)
    moved = False
    for row in _participations(conn, gateway_id, event_id):
        moved |= _forward(conn, row, state, moving, {})
    return moved


def on_report(conn: Connection, gateway_id: int, event_id: int, report: dict[str, Any]) -> bool:
    """The gateway's report of what it did (kept as it came; the newest wins). Its
    `state`, if `acting`, `done` or `failed`, moves the home; without one it is `done`.
    Whether the home's state moved."""
    state = report.get("state")
    state = state if state in REPORT_STATES else "done"
    reason = report.get("reason")
    moving = {"reason": str(reason)[:500]} if reason else {}
    always = {"report": report, "reported_at": schema_base.utcnow()}
    moved = False
    for row in _participations(conn, gateway_id, event_id):
        moved |= _forward(conn, row, state, moving, always)
    return moved
