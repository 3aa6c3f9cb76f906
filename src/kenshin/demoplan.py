"""The demo retailer's procurement plan and its forecasts, as a retailer would have them
after a month: each past day's forecast made from the days before it (as the forecast job
would have made it that morning), and a plan that follows the forecast within a few
percent, with a few deliberate deviations (an evening under-procured, a morning over),
so that the Demand page shows imbalances worth looking back at, not a page of red.

Run once the gateways' backfill is in (the forecast needs the history); running it again
writes the same rows, so a demo started again in its folder does no harm.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, and_, delete, func, insert, select

from kenshin.jst import JST, SLOT, jst_midnight
from kenshin.server import schema as s
from kenshin.server.analytics.forecast import SLOTS, forecast_with_band
from kenshin.server.analytics.retail import store_plan

__all__ = ["history_days", "plan_and_forecast"]

FIRST_FORECAST_AGE = 7  # the forecast needs a week of history before its first day


def _history(engine: Engine, tenant_id: int, first: date, last: date) -> dict[date, list]:
    """Complete slots (every meter in) of the tenant's bought energy, by JST day."""
    t, m = s.tenant_energy.c, s.meters.c
    with engine.connect() as conn:
        meters = conn.execute(select(func.count()).where(m.tenant_id == tenant_id)).scalar_one()
        rows = conn.execute(
            select(t.start, t.wh, t.slots).where(
                t.tenant_id == tenant_id, t.period == "slot", t.direction == 0,
                t.start >= jst_midnight(first), t.start < jst_midnight(last + timedelta(days=1)),
            )
        ).all()  # fmt: skip
    days: dict[date, list] = {}
    for start, wh, slots in rows:
        local = start.astimezone(JST)
        if slots >= meters:
            index = (local.hour * 60 + local.minute) // 30
            days.setdefault(local.date(), [None] * SLOTS)[index] = float(wh)
    return days


def history_days(engine: Engine, tenant_id: int, today: date, span: int) -> int:
    """How many of the `span` days before today are complete: the backfill's progress."""
    days = _history(engine, tenant_id, today - timedelta(days=span), today - timedelta(days=1))
    return sum(all(v is not None for v in values) for values in days.values())


def _planned(day: date, mid: list[float | None]) -> dict[int, int]:
    """The plan of a day from its forecast: within ±3 %, and on some days a block of slots
    procured on purpose too low (an evening) or too high (a morning)."""
    rng = random.Random(day.toordinal())  # the same plan for the same day, every run
    plan = {}
    for index, wh in enumerate(mid):
        if wh is None:
            continue
        factor = 1 + rng.uniform(-0.03, 0.03)
        if day.toordinal() % 7 == 3 and 34 <= index < 40:  # 17:00-20:00 under-procured
            factor = 0.85
        elif day.toordinal() % 7 == 5 and 14 <= index < 18:  # 07:00-09:00 over-procured
            factor = 1.12
        plan[index] = max(1, round(wh * factor))
    return plan


def plan_and_forecast(engine: Engine, tenant_id: int, now: datetime, span: int) -> int:
    """Forecasts for the past days the history allows (today's and tomorrow's are the
    forecast job's), and the plan for those days, today and tomorrow. Returns plan days."""
    today = now.astimezone(JST).date()
    history = _history(engine, tenant_id, today - timedelta(days=span), today)
    history.pop(today, None)
    made = 0
    with engine.begin() as conn:
        for age in range(span - FIRST_FORECAST_AGE, -2, -1):
            day = today - timedelta(days=age)
            before = {d: v for d, v in history.items() if d < day}
            band = forecast_with_band(before, day)
            if all(v is None for v in band.mid):
                continue
            start = jst_midnight(day)
            if day < today:  # a past day's forecast, as it was that morning
                f = s.tenant_forecast.c
                conn.execute(
                    delete(s.tenant_forecast).where(
                        and_(f.tenant_id == tenant_id, f.direction == 0, f.slot_start >= start,
                             f.slot_start < start + SLOTS * SLOT)
                    )
                )  # fmt: skip
                rows = [
                    {"tenant_id": tenant_id, "slot_start": start + i * SLOT, "direction": 0,
                     "low_wh": round(lo if lo is not None else mid),
                     "mid_wh": round(mid),
                     "high_wh": round(hi if hi is not None else mid),
                     "made_at": start}
                    for i, (lo, mid, hi) in enumerate(
                        zip(band.low, band.mid, band.high, strict=True)
                    )
                    if mid is not None
                ]  # fmt: skip
                if rows:
                    conn.execute(insert(s.tenant_forecast), rows)
            plan = _planned(day, band.mid)
            if plan:
                slots = {start + i * SLOT: wh for i, wh in plan.items()}
                store_plan(conn, tenant_id, slots, "demo")
                made += 1
    return made
