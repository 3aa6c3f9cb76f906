"""Forecasts kept in the database: today's and tomorrow's 48 slots with their band.

`refresh_tenant` reads the tenant's 30-minute totals (tenant_energy, period 'slot') of the
last five weeks, forecasts today (then scales its remaining slots by how today runs so
far) and tomorrow, and replaces those 96 rows of tenant_forecast. It is cheap (one query
of ~1,700 rows, arithmetic on one series), so the server runs it whenever a half hour
closes. `refresh_meter` does the same for one meter from slot_energy; the server runs it
over all meters once a day, in batches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, and_, delete, insert, select

from kenshin.jst import JST, SLOT, jst_midnight

from ..metering.queries import meter_slots, tenant_slots
from . import tables as t
from .forecast import SLOTS, Band, History, forecast_with_band, update_intraday

__all__ = ["ForecastRow", "read_tenant_forecast", "refresh_meter", "refresh_tenant"]

HISTORY_DAYS = 35
ForecastRow = tuple[datetime, int, int, int]  # slot start, low, mid, high (Wh)


def _slot_index(at: datetime) -> tuple[date, int]:
    local = at.astimezone(JST)
    return local.date(), (local.hour * 60 + local.minute) // 30


def _history(
    rows: Iterable[tuple[datetime, int, int]], today: date, *, min_count: float
) -> tuple[History, list[float | None]]:
    """Past days (complete or not) and today's values so far, from (start, wh, count)
    rows; a slot whose count of meters is under `min_count` is unknown, not small."""
    days: dict[date, list[float | None]] = defaultdict(lambda: [None] * SLOTS)
    for start, wh, count in rows:
        if count >= min_count:
            day, index = _slot_index(start)
            days[day][index] = float(wh)
    today_values = days.pop(today, [None] * SLOTS)
    return dict(days), today_values


def _known_prefix(values: list[float | None], now: datetime, today: date) -> list[float | None]:
    """Today's slots that have closed by `now`, in order (None where unknown)."""
    closed = int((now - jst_midnight(today)).total_seconds() // SLOT.total_seconds())
    return values[: max(0, min(SLOTS, closed))]


def _forecasts(history: History, today_so_far: list[float | None], today: date):
    today_band = update_intraday(forecast_with_band(history, today), today_so_far)
    tomorrow_band = forecast_with_band(history, today + timedelta(days=1))
    return ((today, today_band), (today + timedelta(days=1), tomorrow_band))


def _rows(day: date, band: Band, owner: dict, direction: int, made_at: datetime) -> list[dict]:
    out = []
    for index in range(SLOTS):
        low, mid, high = band.low[index], band.mid[index], band.high[index]
        if mid is None:
            continue
        out.append(
            {
                **owner,
                "slot_start": jst_midnight(day) + index * SLOT,
                "direction": direction,
                "low_wh": round(low if low is not None else mid),
                "mid_wh": round(mid),
                "high_wh": round(high if high is not None else mid),
                "made_at": made_at,
            }
        )
    return out


def _replace(conn: Connection, table, owner: dict, direction: int, today: date, rows) -> int:
    key = [table.c[name] == value for name, value in owner.items()]
    conn.execute(
        delete(table).where(
            and_(
                *key,
                table.c.direction == direction,
                table.c.slot_start >= jst_midnight(today),
                table.c.slot_start < jst_midnight(today + timedelta(days=2)),
            )
        )
    )
    if rows:
        conn.execute(insert(table), rows)
    return len(rows)


def _history_range(today: date) -> tuple[datetime, datetime]:
    """The slots a forecast of today and tomorrow learns from: HISTORY_DAYS and today."""
    return jst_midnight(today - timedelta(days=HISTORY_DAYS)), jst_midnight(
        today + timedelta(days=1)
    )


def refresh_tenant(conn: Connection, tenant_id: int, now: datetime, direction: int = 0) -> int:
    """Forecast today and tomorrow for the tenant; returns the rows written."""
    today = now.astimezone(JST).date()
    found = conn.execute(tenant_slots(tenant_id, direction, *_history_range(today))).all()
    if not found:
        return 0
    # A slot counts once at least 90 % of the usual number of meters are in it.
    counts = sorted(count for _, _, count in found)
    history, today_values = _history(found, today, min_count=0.9 * counts[len(counts) // 2])
    rows = []
    for day, band in _forecasts(history, _known_prefix(today_values, now, today), today):
        rows += _rows(day, band, {"tenant_id": tenant_id}, direction, now.astimezone(UTC))
    return _replace(conn, t.tenant_forecast, {"tenant_id": tenant_id}, direction, today, rows)


def refresh_meter(conn: Connection, meter_id: int, now: datetime, direction: int = 0) -> int:
    today = now.astimezone(JST).date()
    found = conn.execute(meter_slots(direction, *_history_range(today), meter_id)).all()
    history, today_values = _history(((at, wh, 1) for _, at, wh in found), today, min_count=1)
    rows = []
    for day, band in _forecasts(history, _known_prefix(today_values, now, today), today):
        rows += _rows(day, band, {"meter_id": meter_id}, direction, now.astimezone(UTC))
    return _replace(conn, t.meter_forecast, {"meter_id": meter_id}, direction, today, rows)


def read_tenant_forecast(
    conn: Connection, tenant_id: int, day: date, direction: int = 0
) -> list[ForecastRow]:
    f = t.tenant_forecast.c
    return [
        (r.slot_start, r.low_wh, r.mid_wh, r.high_wh)
        for r in conn.execute(
            select(f.slot_start, f.low_wh, f.mid_wh, f.high_wh)
            .where(
                f.tenant_id == tenant_id,
                f.direction == direction,
                f.slot_start >= jst_midnight(day),
                f.slot_start < jst_midnight(day + timedelta(days=1)),
            )
            .order_by(f.slot_start)
        )
    ]
