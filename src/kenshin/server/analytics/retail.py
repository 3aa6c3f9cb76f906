"""The retailer's day: procured plan, forecast band, actual so far, projected imbalance.

A plan comes as CSV, one row per 30-minute slot, in either of two shapes retailers use:

    slot_start,kwh                      date,slot,kwh
    2026-11-25T00:00,412.5              2026-11-25,1,412.5

`slot_start` is ISO 8601 (no offset: JST); `slot` counts the day's half hours from 1 to 48
(コマ); the energy is `kwh` (decimals allowed) or `wh` (integer). Any error names its line,
and nothing is stored unless every line is right.

The projection for a slot is its actual energy once it has closed, else the forecast's
middle; the imbalance is projection − plan. A slot still to come whose projected
deviation passes the tenant's threshold is *at risk*: `check_imbalance` raises one event
per slot and day for it (which the webhooks carry to the retailer as an energy-saving
request).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import Connection, and_, delete, insert, select

from kenshin.jst import JST, SLOT, jst_midnight

from .. import schema_base
from ..alerts.engine import rule_setting
from ..bounds import EARLIEST, LATEST
from ..events import event_details, record_event
from ..metering.queries import tenant_slots
from ..times import jst_text
from . import tables as t
from .forecast import SLOTS
from .store import read_tenant_forecast

__all__ = [
    "DEFAULT_THRESHOLD_PCT",
    "PlanError",
    "SlotOutlook",
    "check_imbalance",
    "day_outlook",
    "parse_plan_csv",
    "store_plan",
]

DEFAULT_THRESHOLD_PCT = 10.0
MAX_PLAN_ROWS = 48 * 62  # two months of slots in one upload
MAX_SLOT_WH = 10**12  # a terawatt-hour in half an hour: past any plan (and the JSON form's cap)


class PlanError(ValueError):
    """A plan that cannot be taken, with the line at fault."""


def _energy_wh(row: dict[str, str], line: int) -> int:
    try:
        if row.get("wh") not in (None, ""):
            wh = Decimal(int(row["wh"]))
        else:
            wh = Decimal(row["kwh"]) * 1000
        # 1e400 is a finite Decimal: bounded before it becomes an integer to store.
        if not wh.is_finite() or abs(wh) > MAX_SLOT_WH:
            raise PlanError(f"line {line}: energy must be at most {MAX_SLOT_WH // 1000:,} kWh")
        return int(wh.to_integral_value())
    except (KeyError, ValueError, InvalidOperation) as err:
        if isinstance(err, PlanError):
            raise
        raise PlanError(f"line {line}: energy must be a number in 'kwh' or 'wh'") from None


def _slot_start(row: dict[str, str], line: int) -> datetime:
    try:
        if row.get("slot_start"):
            at = datetime.fromisoformat(row["slot_start"].strip())
            at = at.replace(tzinfo=JST) if at.tzinfo is None else at
        else:
            number = int(row["slot"])
            if not 1 <= number <= SLOTS:
                raise PlanError(f"line {line}: slot must be 1 to 48, not {number}")
            at = jst_midnight(date.fromisoformat(row["date"].strip())) + (number - 1) * SLOT
        if not EARLIEST <= at.date() <= LATEST:
            raise PlanError(f"line {line}: a date from {EARLIEST} to {LATEST}")
    except (KeyError, ValueError, TypeError) as err:
        if isinstance(err, PlanError):
            raise
        raise PlanError(
            f"line {line}: give slot_start (ISO 8601) or date (YYYY-MM-DD) and slot (1-48)"
        ) from None
    if at.minute % 30 or at.second or at.microsecond:
        raise PlanError(f"line {line}: {at.isoformat()} is not the start of a half hour")
    return at.astimezone(UTC)


def parse_plan_csv(text: str) -> dict[datetime, int]:
    """Slot start (UTC) → planned Wh. Raises PlanError naming the first bad line."""
    try:
        return _parse_plan_csv(text)
    except csv.Error as err:  # e.g. a bare CR inside a field
        raise PlanError(f"not CSV: {err}") from None


def _parse_plan_csv(text: str) -> dict[datetime, int]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    fields = {f.strip().lower() for f in reader.fieldnames or ()}
    if not ({"slot_start"} <= fields or {"date", "slot"} <= fields) or not (fields & {"kwh", "wh"}):
        raise PlanError("header must be slot_start,kwh (or wh) or date,slot,kwh (or wh)")
    plan: dict[datetime, int] = {}
    for line, raw in enumerate(reader, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        at = _slot_start(row, line)
        if at in plan:
            raise PlanError(f"line {line}: slot {at.astimezone(JST).isoformat()} given twice")
        wh = _energy_wh(row, line)
        if wh < 0:
            raise PlanError(f"line {line}: planned energy cannot be negative")
        plan[at] = wh
        if len(plan) > MAX_PLAN_ROWS:
            raise PlanError(f"at most {MAX_PLAN_ROWS} slots in one upload")
    if not plan:
        raise PlanError("the plan has no rows")
    return plan


def store_plan(conn: Connection, tenant_id: int, plan: dict[datetime, int], actor: str) -> int:
    """Replace the tenant's plan for the slots given (other slots stay)."""
    p = t.procurement_plan.c
    conn.execute(
        delete(t.procurement_plan).where(
            and_(p.tenant_id == tenant_id, p.slot_start.in_(list(plan)))
        )
    )
    now = schema_base.utcnow()
    conn.execute(
        insert(t.procurement_plan),
        [
            {
                "tenant_id": tenant_id,
                "slot_start": at,
                "wh": wh,
                "uploaded_at": now,
                "uploaded_by": actor,
            }
            for at, wh in sorted(plan.items())
        ],
    )
    return len(plan)


@dataclass(frozen=True)
class SlotOutlook:
    start: datetime
    plan_wh: int | None
    actual_wh: int | None  # once the slot has closed and its values are in
    low_wh: int | None
    mid_wh: int | None
    high_wh: int | None
    projected_wh: int | None
    imbalance_wh: int | None  # projected − plan
    deviation_pct: float | None
    at_risk: bool  # still to come, and past the threshold


def day_outlook(
    conn: Connection,
    tenant_id: int,
    day: date,
    now: datetime,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
) -> list[SlotOutlook]:
    start, end = jst_midnight(day), jst_midnight(day + timedelta(days=1))
    p = t.procurement_plan.c
    plan = {
        r.slot_start: r.wh
        for r in conn.execute(
            select(p.slot_start, p.wh).where(
                p.tenant_id == tenant_id, p.slot_start >= start, p.slot_start < end
            )
        )
    }
    actual = {r.start: r.wh for r in conn.execute(tenant_slots(tenant_id, 0, start, end))}
    band = {
        at: (low, mid, high) for at, low, mid, high in read_tenant_forecast(conn, tenant_id, day)
    }
    out = []
    for index in range(SLOTS):
        at = start + index * SLOT
        closed = at + SLOT <= now
        low, mid, high = band.get(at, (None, None, None))
        done = actual.get(at) if closed else None
        projected = done if done is not None else mid
        planned = plan.get(at)
        imbalance = projected - planned if projected is not None and planned is not None else None
        deviation = 100 * imbalance / planned if imbalance is not None and planned else None
        out.append(
            SlotOutlook(
                start=at,
                plan_wh=planned,
                actual_wh=done,
                low_wh=low,
                mid_wh=mid,
                high_wh=high,
                projected_wh=projected,
                imbalance_wh=imbalance,
                deviation_pct=deviation,
                at_risk=not closed and deviation is not None and abs(deviation) > threshold_pct,
            )
        )
    return out


def threshold_pct(conn: Connection, tenant_id: int) -> float:
    row = rule_setting(conn, tenant_id, "imbalance")
    if row is None or not row.enabled:
        return DEFAULT_THRESHOLD_PCT if row is None else float("inf")
    return float(row.params.get("threshold_pct", DEFAULT_THRESHOLD_PCT))


def check_imbalance(conn: Connection, tenant_id: int, now: datetime) -> list[SlotOutlook]:
    """Raise one `imbalance_projected` event per at-risk slot of today (not again for a
    slot already raised). Returns the slots newly raised."""
    day = now.astimezone(JST).date()
    limit = threshold_pct(conn, tenant_id)
    at_risk = [o for o in day_outlook(conn, tenant_id, day, now, limit) if o.at_risk]
    if not at_risk:
        return []
    since = jst_midnight(day).astimezone(UTC) - timedelta(days=1)
    raised = {  # instants: details written before times were JST held UTC text
        datetime.fromisoformat(detail["slot_start"])
        for detail in event_details(conn, tenant_id, "imbalance_projected", since)
        if detail.get("slot_start")
    }
    new = [o for o in at_risk if o.start not in raised]
    for o in new:
        record_event(
            conn,
            tenant_id=tenant_id,
            code="imbalance_projected",
            severity="warning",
            detail={
                "slot_start": jst_text(o.start),
                "plan_wh": o.plan_wh,
                "projected_wh": o.projected_wh,
                "deviation_pct": round(o.deviation_pct or 0, 1),
                "threshold_pct": limit,
                "request": "energy_saving" if (o.imbalance_wh or 0) > 0 else "demand_up",
            },
            at=now,
        )
    return new
