"""A tenant's customer sites over HTTP: add, change, and the list with each site's
gateway, power now and today's energy (the control panel's main list).

Separate from meters: a site is the customer's place (customer ID, service code), a meter
the device at it; the list's SQL is in `devices/queries.py` (`site_page`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ... import listing
from ...deps import Conn, RowId, TenantId
from ...jsonout import json_response
from ...metering.current import CURRENT_WINDOW_MIN
from ...problems import Problem
from ...times import JST, JstDateTime
from .. import queries, registry
from .common import GatewayState, Operator, Viewer

router = APIRouter(tags=["devices"])


class SiteIn(BaseModel):
    customer_id: str = Field(max_length=64)
    service_code: str = Field(pattern=r"^pss[0-9]{8}$", description="'pss' and 8 digits")
    address: str | None = Field(None, max_length=500)
    phone: str | None = Field(None, max_length=32)
    name: str | None = Field(None, max_length=200)


class SiteOut(SiteIn):
    model_config = ConfigDict(from_attributes=True)
    id: int


@router.post("/sites", status_code=201, summary="Add a customer site")
def add_site(body: SiteIn, conn: Conn, principal: Operator, tenant_id: TenantId) -> SiteOut:
    # Both are unique within a tenant: a clash is a 409, not the database's 500.
    if clash := registry.site_clash(conn, tenant_id, body.model_dump()):
        raise Problem(409, clash)
    return SiteOut.model_validate(
        registry.add_site(conn, tenant_id, principal.actor, **body.model_dump())
    )


class SitePatch(BaseModel):
    """The fields given change; address, phone and name may be null (none)."""

    customer_id: str | None = Field(None, min_length=1, max_length=64)
    service_code: str | None = Field(None, pattern=r"^pss[0-9]{8}$")
    address: str | None = Field(None, max_length=500)
    phone: str | None = Field(None, max_length=32)
    name: str | None = Field(None, max_length=200)


@router.patch("/sites/{site_id}", summary="Change a customer site")
def patch_site(
    site_id: RowId, body: SitePatch, conn: Conn, principal: Operator, tenant_id: TenantId
) -> SiteOut:
    changes = body.model_dump(exclude_unset=True)
    for required in ("customer_id", "service_code"):
        if required in changes and changes[required] is None:
            raise Problem(422, f"a site always has a {required}")
    if registry.get_site(conn, site_id, tenant_id) is None:
        raise Problem(404, "no such site")
    if clash := registry.site_clash(conn, tenant_id, changes, site_id):
        raise Problem(409, clash)
    row = registry.update_site(conn, tenant_id, site_id, principal.actor, **changes)
    return SiteOut.model_validate(row)


class SiteRow(SiteOut):
    """A row of the control panel's list: the site, its gateway's state, power now and
    today's energy (JST day)."""

    gateway_id: RowId | None = Field(
        description="the site's gateway (the first by id in the states asked, if several)"
    )
    gateway_state: str | None
    measured: bool = Field(
        description=f"a meter of the site read in the last {CURRENT_WINDOW_MIN} minutes; "
        "false: not measured (未計測)"
    )
    power_w: int | None = Field(
        description="instant power summed over the site's measured meters; null: not measured"
    )
    power_at: JstDateTime | None = Field(description="the newest reading's time, however old")
    today_bought_wh: int | None = Field(description="normal direction since JST midnight")
    today_sold_wh: int | None = Field(description="reverse direction since JST midnight")


_SITE_FIELDS = tuple(SiteOut.model_fields)  # a SiteRow begins with them, in this order
SiteSort = listing.sort_parameter(
    ("customer_id", "service_code", "address", "name", "created_at", "id")
)
SiteSearch = listing.search_parameter(
    "customer ID, service code, address, phone or name, or a meter's supply point number"
)


@router.get("/sites", summary="The tenant's sites with power now and today's energy")
def list_sites(
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    q: SiteSearch = None,
    state: Annotated[
        list[GatewayState] | None, Query(description="sites whose gateway is in any of")
    ] = None,
    sort: SiteSort = "service_code",
    limit: listing.Limit = listing.DEFAULT_LIMIT,
    cursor: listing.Cursor = None,
) -> listing.Page[SiteRow]:
    rows, next_cursor = queries.site_page(
        conn, tenant_id, q=q, state=state, sort=sort, limit=limit, cursor=cursor
    )
    # A Page[SiteRow], written without building the models (jsonout): keys in the model's
    # order; the sums are PostgreSQL numerics (Decimal), shown as the integers they are.
    whole = lambda n: None if n is None else int(n)  # noqa: E731
    items = [
        {
            **{field: getattr(r, field) for field in _SITE_FIELDS},
            "gateway_id": r.gateway_id,
            "gateway_state": r.gateway_state,
            "measured": r.power_w is not None,
            "power_w": whole(r.power_w),
            "power_at": r.power_at and r.power_at.astimezone(JST),  # as JstDateTime writes
            "today_bought_wh": whole(r.today_bought_wh),
            "today_sold_wh": whole(r.today_sold_wh),
        }
        for r in rows
    ]
    return json_response({"items": items, "next_cursor": next_cursor})
