"""GET a gateway's recipe series (docs/updates.md, Recipes; docs/api.md): what a recipe on
that gateway measured, e.g. the PV recipe's ``pv`` (generation_w, cumulative_wh)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from kenshin.jst import JST

from ..bounds import ApiDateTime
from ..deps import Conn, Principal, RowId, TenantId, require_role
from ..devices.registry import get_gateway
from ..problems import Problem
from ..times import JstDateTime
from . import recipe_series

Viewer = Annotated[Principal, Depends(require_role("viewer"))]
MAX_SAMPLES = 10_000
router = APIRouter(tags=["metering"])


class RecipeSample(BaseModel):
    at: JstDateTime = Field(description="when the gateway measured it, JST")
    recipe: str = Field(description="the recipe that published it")
    values: dict[str, float] = Field(description="the sample's numbers by name")


class RecipeSeries(BaseModel):
    gateway_id: RowId
    series: str
    samples: list[RecipeSample] = Field(description="oldest first")
    complete: bool = Field(description="false: `limit` cut it; ask again from the last `at`")


@router.get(
    "/gateways/{gateway_id}/series/{series}",
    summary="A series a recipe on the gateway measures",
    response_model=RecipeSeries,
)
def gateway_series(
    gateway_id: RowId,
    series: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,31}$")],
    conn: Conn,
    principal: Viewer,
    tenant_id: TenantId,
    start: Annotated[ApiDateTime, Query(description="ISO 8601; no offset: JST")],
    end: Annotated[ApiDateTime, Query(description="exclusive")],
    limit: Annotated[int, Query(ge=1, le=MAX_SAMPLES)] = 1000,
) -> Any:
    if get_gateway(conn, gateway_id, tenant_id) is None:
        raise Problem(404, "no such gateway")
    start, end = (t if t.tzinfo else t.replace(tzinfo=JST) for t in (start, end))
    if end <= start:
        raise Problem(400, "'end' must be after 'start'")
    rows = recipe_series.samples(conn, gateway_id, series, start, end, limit + 1)
    return RecipeSeries(
        gateway_id=gateway_id, series=series, samples=rows[:limit], complete=len(rows) <= limit
    )
