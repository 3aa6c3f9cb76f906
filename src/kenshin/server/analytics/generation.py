"""The generator pack's arithmetic: sale prices per plant, sales estimates, weather.

A plant is a meter whose reverse direction (sold energy) counts. Its price is in 1/1000
yen per kWh, valid over JST dates (`valid_to` inclusive, open-ended when None); a day
with no valid price is estimated at nothing and said to be unpriced, never guessed.

Weather comes through `WeatherProvider`; the built-in `CsvWeather` reads hourly
irradiance and temperature from a CSV file (offline, for sites with their own station or
a downloaded series). An online provider plugs in behind the same method.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, or_, select

from kenshin.jst import JST

from ..metering.queries import meter_days
from . import tables as t

__all__ = [
    "CsvWeather",
    "DailySales",
    "HourlyWeather",
    "WeatherError",
    "WeatherProvider",
    "daily_sales",
]


@dataclass(frozen=True)
class DailySales:
    day: date
    sold_wh: int
    yen_per_kwh_milli: int | None  # None: no price valid that day
    yen: float | None


def _price_for(prices: list, day: date) -> int | None:
    for price in prices:  # newest first: a later price overrides an earlier one
        if price.valid_from <= day and (price.valid_to is None or day <= price.valid_to):
            return price.yen_per_kwh_milli
    return None


def daily_sales(conn: Connection, meter_id: int, first: date, last: date) -> list[DailySales]:
    """Sold energy and its value per JST day from `first` to `last` (inclusive)."""
    p = t.plant_prices.c
    prices = conn.execute(
        select(p.valid_from, p.valid_to, p.yen_per_kwh_milli)
        .where(
            p.meter_id == meter_id,
            p.valid_from <= last,
            or_(p.valid_to.is_(None), p.valid_to >= first),
        )
        .order_by(p.valid_from.desc(), p.id.desc())
    ).all()
    start = datetime.combine(first, datetime.min.time(), JST)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), JST)
    sold = {
        r.start.astimezone(JST).date(): r.wh
        for r in conn.execute(meter_days(meter_id, 1, start, end))
    }
    out = []
    day = first
    while day <= last:
        wh = sold.get(day, 0)
        price = _price_for(prices, day)
        yen = None if price is None else wh * price / 1_000_000  # Wh × milli-yen/kWh
        out.append(DailySales(day, wh, price, yen))
        day += timedelta(days=1)
    return out


@dataclass(frozen=True)
class HourlyWeather:
    at: datetime  # the hour's start
    irradiance_w_m2: float | None
    temperature_c: float | None


class WeatherError(ValueError):
    """A weather source that cannot be read, with where and why."""


class WeatherProvider(Protocol):
    def hourly(self, site_id: int, start: datetime, end: datetime) -> list[HourlyWeather]: ...


class CsvWeather:
    """Hourly weather from a CSV: `time,irradiance_w_m2,temperature_c[,site_id]`.

    `time` is ISO 8601 (no offset: JST). Rows without a site_id apply to every site;
    rows with one only to that site. Empty cells are unknown values."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rows: list[tuple[int | None, HourlyWeather]] | None = None

    def _load(self) -> list[tuple[int | None, HourlyWeather]]:
        if self._rows is not None:
            return self._rows
        rows = []
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as handle:
                for line, row in enumerate(csv.DictReader(handle), start=2):
                    rows.append(self._parse(row, line))
        except OSError as err:
            raise WeatherError(f"{self.path}: {err.strerror}") from None
        self._rows = rows
        return rows

    def _parse(self, row: dict[str, str], line: int) -> tuple[int | None, HourlyWeather]:
        try:
            at = datetime.fromisoformat(row["time"].strip())
            at = at.replace(tzinfo=JST) if at.tzinfo is None else at

            def number(key: str) -> float | None:
                value = (row.get(key) or "").strip()
                return float(value) if value else None

            site = (row.get("site_id") or "").strip()
            return (
                int(site) if site else None,
                HourlyWeather(at, number("irradiance_w_m2"), number("temperature_c")),
            )
        except (KeyError, ValueError, AttributeError):
            raise WeatherError(
                f"{self.path}, line {line}: need time (ISO 8601) and numeric "
                "irradiance_w_m2, temperature_c"
            ) from None

    def hourly(self, site_id: int, start: datetime, end: datetime) -> list[HourlyWeather]:
        chosen: dict[datetime, HourlyWeather] = {}
        for site, hour in self._load():
            if not start <= hour.at < end or site not in (None, site_id):
                continue
            if site is not None or hour.at not in chosen:  # the site's own rows win
                chosen[hour.at] = hour
        return [chosen[at] for at in sorted(chosen)]
