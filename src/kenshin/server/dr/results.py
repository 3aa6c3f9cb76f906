"""What an event achieved: its live view (per slot the tenant's target against its homes'
baseline and actual energy, and the homes counted by state) and its results (per home
and slot baseline, actual and reduction, and totals), stored once final by `finalize`.

Choices:
- **Who counts.** Every home of the event is measured (reduction.py); the opted-out ones
  are kept apart from the totals and listed as opted out, never as failures or missing.
  Homes whose gateway refused, had no devices or failed stay in the totals: the tenant's
  delivered reduction is what its homes that did not opt out drew less, whatever their
  gateways did, and each home's row says its state.
- **Live.** A slot's `baseline_wh` is the sum over the homes (not opted out) that have a
  baseline; `actual_wh` and `reduction_wh` are over those of them with a value in that
  slot already (`homes_reported`), so a reduction is never a baseline minus a partial sum.
- **Final** when the event has ended and every home has a value in each of its slots, or
  `FINAL_AFTER` (2 days) after the end, whatever is missing then: the results are stored
  on the event, it becomes `final`, and a `dr_results_final` event (webhooked like every
  event) carries the totals.
- Slot power (W) is the slot's Wh x 2, the half hour's mean power, to set beside targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, select, update

from .. import schema_base
from ..events import record_event
from ..times import jst_text
from . import tables as t
from .baseline import Baseline
from .queries import event_baselines, event_slots, participations, state_counts
from .reduction import EventReduction, HomeReduction, Missing, event_reduction

__all__ = ["FINAL_AFTER", "SlotLive", "finalize", "live_slots", "measure", "results_doc"]

FINAL_AFTER = timedelta(days=2)


@dataclass(frozen=True)
class SlotLive:
    start: datetime
    target_w: int | None  # None: a shed-level event
    baseline_wh: int | None  # None: no home has a baseline
    actual_wh: int | None  # None: no home has a value yet
    reduction_wh: int | None
    homes_reported: int


def _opted_out(parts: list[Row]) -> set[int]:
    return {p.site_id for p in parts if p.state == "opted_out"}


def live_slots(conn: Connection, event: Row) -> list[SlotLive]:
    """The event's slots as they stand (see the module)."""
    parts = participations(conn, event.id)
    out_of_it = _opted_out(parts)
    homes = [p.site_id for p in parts if p.site_id not in out_of_it]
    measured = event_baselines(conn, event, homes) if homes else []
    out = []
    for i, slot in enumerate(event_slots(event)):
        base = [b.slots[slot] for _, b, _ in measured if isinstance(b, Baseline)]
        both = [
            (b.slots[slot], energy[slot])
            for _, b, energy in measured
            if isinstance(b, Baseline) and slot in energy
        ]
        actual = sum(a for _, a in both) if both else None
        out.append(
            SlotLive(
                start=slot,
                target_w=event.targets_w[i] if event.targets_w is not None else None,
                baseline_wh=sum(base) if base else None,
                actual_wh=actual,
                reduction_wh=sum(b - a for b, a in both) if both else None,
                homes_reported=len(both),
            )
        )
    return out


def measure(conn: Connection, event: Row) -> tuple[EventReduction, list[Row]]:
    """The event's reduction over its homes (the opted-out apart), and its homes."""
    parts = participations(conn, event.id)
    homes = event_baselines(conn, event, [p.site_id for p in parts])
    return event_reduction(event_slots(event), homes, opted_out=_opted_out(parts)), parts


def _home(result: HomeReduction | Missing, state: str, opted_out: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"site_id": result.home, "state": state}
    if isinstance(result, Missing):
        status = "opted_out" if opted_out else "missing"
        return doc | {
            "status": status, "reason": result.reason, "detail": result.detail,
            "baseline_wh": None, "actual_wh": None, "reduction_wh": None, "slots": [],
        }  # fmt: skip
    return doc | {
        "status": "opted_out" if opted_out else "measured", "reason": None, "detail": None,
        "baseline_wh": result.baseline_wh, "actual_wh": result.actual_wh,
        "reduction_wh": result.reduction_wh,
        "slots": [
            {"start": jst_text(s.slot), "baseline_wh": s.baseline_wh, "actual_wh": s.actual_wh,
             "reduction_wh": s.reduction_wh}
            for s in result.slots
        ],
    }  # fmt: skip


def results_doc(event: Row, reduction: EventReduction, parts: list[Row], now: datetime) -> dict:
    """The results as stored and answered: JSON, times JST text."""
    states = {p.site_id: p.state for p in parts}
    homes = [_home(h, states[h.home], False) for h in (*reduction.homes, *reduction.missing)]
    homes += [_home(h, states[h.home], True) for h in reduction.opted_out]
    homes.sort(key=lambda h: h["site_id"])
    per_slot = reduction.slot_reduction_wh
    slots = []
    for i, slot in enumerate(reduction.slots):
        taking = [s for h in reduction.homes for s in h.slots if s.slot == slot]
        slots.append({
            "start": jst_text(slot),
            "target_w": event.targets_w[i] if event.targets_w is not None else None,
            "baseline_wh": sum(s.baseline_wh for s in taking),
            "actual_wh": sum(s.actual_wh for s in taking),
            "reduction_wh": per_slot[slot],
        })  # fmt: skip
    return {
        "computed_at": jst_text(now),
        "totals": {
            "baseline_wh": reduction.baseline_wh, "actual_wh": reduction.actual_wh,
            "reduction_wh": reduction.reduction_wh, "homes_measured": len(reduction.homes),
            "homes_missing": len(reduction.missing), "homes_opted_out": len(reduction.opted_out),
            "opted_out_reduction_wh": reduction.opted_out_reduction_wh,
        },
        "slots": slots,
        "homes": homes,
    }  # fmt: skip


def _complete(reduction: EventReduction) -> bool:
    """Every home has a value in each slot (a home without a baseline cannot get one)."""
    everyone = (*reduction.missing, *reduction.opted_out)
    return not any(isinstance(h, Missing) and h.reason == "missing_actual" for h in everyone)


def finalize(engine: Engine, now: datetime) -> list[int]:
    """The dr job's step: make final every ended event whose data is in (or whose wait
    is over); the ids made final. Each event in its own transaction."""
    e = t.dr_events.c
    with engine.connect() as conn:
        ended = conn.execute(select(e.id).where(e.state == "ended").order_by(e.id)).scalars()
        ids = list(ended)
    done = []
    for event_id in ids:
        with engine.begin() as conn:
            event = conn.execute(select(t.dr_events).where(e.id == event_id)).one()
            if event.state != "ended":
                continue
            reduction, parts = measure(conn, event)
            if not _complete(reduction) and now < event.end_at + FINAL_AFTER:
                continue
            doc = results_doc(event, reduction, parts, now)
            conn.execute(
                update(t.dr_events)
                .where(e.id == event_id)
                .values(state="final", results=doc, final_at=now, updated_at=now)
            )
            counts = state_counts(conn, event_id)
            record_event(
                conn, tenant_id=event.tenant_id, code="dr_results_final", severity="info",
                detail={"dr_event_id": event_id, "name": event.name, **doc["totals"],
                        "homes_failed": counts["failed"]},
                at=now,
            )  # fmt: skip
            done.append(event_id)
    return done


def stored_or_measured(conn: Connection, event: Row) -> dict:
    """The event's results: stored once final, else measured now (provisional)."""
    if event.results is not None:
        return event.results
    reduction, parts = measure(conn, event)
    return results_doc(event, reduction, parts, schema_base.utcnow())
