"""Now: each meter's latest instant power (or "not measured"), and today's energy so far.

A meter counts as measured when its newest reading is at most `CURRENT_WINDOW` old: a
gateway reads every minute by default, so ten minutes of silence means the number shown
would be stale, and the panel says 未計測 / not measured rather than show it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import BindParameter, Connection, Select, bindparam, func, select

from kenshin.jst import JST

from . import tables as t
from .rollups import day_start

__all__ = [
    "CURRENT_WINDOW",
    "CURRENT_WINDOW_MIN",
    "meter_now",
    "site_summary_columns",
    "site_summary_values",
]

CURRENT_WINDOW_MIN = 10
CURRENT_WINDOW = timedelta(minutes=CURRENT_WINDOW_MIN)


def _today_wh(meter_ids: Select, direction: int, today: datetime | BindParameter):
    e = t.meter_energy.c
    return (
        select(func.sum(e.wh))
        .where(
            e.meter_id.in_(meter_ids), e.period == "day", e.direction == direction,
            e.start == today,
        )
        .scalar_subquery()
    )  # fmt: skip


def site_summary_columns(site_meter_ids: Select) -> list:
    """Per site row: power_w (the sum over its meters measured in the window; NULL when
    none is), power_at (its meters' newest reading, however old), today's bought and sold
    Wh. `site_meter_ids`: the ids of the row's site's meters (the devices room's, correlated
    to its site row). Correlated subqueries on primary keys, evaluated for the page's rows
    only: one page, one query. The time is in bound parameters (`site_summary_values`), so
    a list's statement is built once."""
    latest = t.meter_latest.c

    def over_latest(value, *where):
        return select(value).where(latest.meter_id.in_(site_meter_ids), *where).scalar_subquery()

    today = bindparam("today_start")
    return [
        over_latest(func.sum(latest.power_w), latest.at >= bindparam("measured_since")).label(
            "power_w"
        ),
        over_latest(func.max(latest.at)).label("power_at"),
        _today_wh(site_meter_ids, 0, today).label("today_bought_wh"),
        _today_wh(site_meter_ids, 1, today).label("today_sold_wh"),
    ]


def site_summary_values(now: datetime) -> dict[str, datetime]:
    """The bound values of `site_summary_columns` at `now`."""
    return {"measured_since": now - CURRENT_WINDOW, "today_start": day_start(now)}


def meter_now(conn: Connection, meter_id: int, now: datetime) -> dict:
    latest = conn.execute(
        select(t.meter_latest).where(t.meter_latest.c.meter_id == meter_id)
    ).first()
    measured = latest is not None and now - latest.at <= CURRENT_WINDOW
    e = t.meter_energy.c
    today = {
        r.direction: r.wh
        for r in conn.execute(
            select(e.direction, e.wh).where(
                e.meter_id == meter_id, e.period == "day", e.start == day_start(now)
            )
        )
    }
    return {
        "meter_id": meter_id,
        "measured": measured,
        "power_w": latest.power_w if measured else None,
        "current_r_da": latest.current_r_da if measured else None,
        "current_t_da": latest.current_t_da if measured else None,
        "at": latest.at.astimezone(JST) if latest else None,
        "today": now.astimezone(JST).date(),
        "today_bought_wh": today.get(0),
        "today_sold_wh": today.get(1),
    }
