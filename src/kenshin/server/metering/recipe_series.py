"""The series recipes measure on the gateways (docs/updates.md, Recipes): stored as they
arrive, read per gateway and series.

A gateway's recipe publishes a series it declared (the agent's `RecipeContext` refuses any
other) and the agent sends each sample as an Event ``recipe_readings`` with
``{"recipe", "series", "values"}``; the ingest hands it here (`store`) instead of the
events log. The detail is checked again: a gateway is not trusted to be well formed. A
sample twice (QoS 1) is kept once. `samples` reads a gateway's series in time order for
the API; the caller has checked the gateway is the tenant's.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from . import tables as t

__all__ = ["READINGS_EVENT", "RecipeSampleError", "samples", "store"]

READINGS_EVENT = "recipe_readings"
MAX_VALUES = 16
_SERIES = re.compile(r"[a-z][a-z0-9_]{0,31}")
_RECIPE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,127}")


class RecipeSampleError(ValueError):
    """A recipe_readings detail that is not one; the message says which field."""


def _checked(detail: dict[str, Any]) -> tuple[str, str, dict[str, float]]:
    recipe, series, values = detail.get("recipe"), detail.get("series"), detail.get("values")
    if not (isinstance(recipe, str) and _RECIPE.fullmatch(recipe)):
        raise RecipeSampleError(f"recipe: not a recipe name: {recipe!r}"[:200])
    if not (isinstance(series, str) and _SERIES.fullmatch(series)):
        raise RecipeSampleError(f"series: not a series name: {series!r}"[:200])
    if not isinstance(values, dict) or not 0 < len(values) <= MAX_VALUES:
        raise RecipeSampleError(f"values: 1 to {MAX_VALUES} numbers by name")
    for key, value in values.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (isinstance(key, str) and 0 < len(key) <= 32 and number and math.isfinite(value)):
            raise RecipeSampleError(f"values: {key!r} is not a named finite number"[:200])
    return recipe, series, dict(values)


def store(
    conn: Connection, tenant_id: int, gateway_id: int, at: datetime, detail: dict[str, Any]
) -> bool:
    """Keep one sample; False if the same gateway sent that series at `at` already."""
    recipe, series, values = _checked(detail)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(t.recipe_samples).values(
        tenant_id=tenant_id, gateway_id=gateway_id, series=series, at=at, recipe=recipe,
        values=values,
    )  # fmt: skip
    return conn.execute(statement.on_conflict_do_nothing()).rowcount == 1


def samples(
    conn: Connection,
    gateway_id: int,
    series: str,
    since: datetime,
    until: datetime,
    limit: int,
) -> list[dict[str, Any]]:
    """The gateway's samples of `series` in [since, until), oldest first, at most `limit`."""
    c = t.recipe_samples.c
    rows = conn.execute(
        select(c.at, c.recipe, c["values"])
        .where(c.gateway_id == gateway_id, c.series == series, c.at >= since, c.at < until)
        .order_by(c.at)
        .limit(limit)
    )
    return [{"at": row.at, "recipe": row.recipe, "values": row[2]} for row in rows]
