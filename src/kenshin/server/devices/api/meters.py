"""A tenant's meters over HTTP: add (B-route credentials sealed), change the supply point
number or the credentials, set supply points from a CSV, and the list.

B-route credentials go in and never come out: responses say only whether a meter has
them. Separate from sites: a meter's changes are pushed to its gateway as a new settings
version (`push_meter`), which the homes import uses too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from pydantic import AfterValidator, BaseModel, Field

from ... import listing
from ...deps import Conn, Principal, RowId, TenantId
from ...problems import Problem
from .. import config, queries, registry
from .common import GatewayState, Operator, Viewer, wake

router = APIRouter(tags=["devices"])


def _supply_point(value: str | None) -> str | None:
    """Typed as people write it (hyphens, spaces, full-width digits), kept as 22 digits."""
    try:
        return registry.supply_point_digits(value) if value else None
    except registry.RegistryError as err:
        raise ValueError(str(err)) from None


SupplyPoint = Annotated[
    str | None,
    Field(max_length=64, description="供給地点特定番号: 22 digits; hyphens and spaces ignored"),
    AfterValidator(_supply_point),
]


class MeterIn(BaseModel):
    site_id: RowId
    gateway_id: RowId | None = None
    serial: str | None = Field(None, max_length=64)
    link: Literal["udp", "wisun"]
    udp_host: str | None = Field(None, max_length=200)
    udp_port: int | None = Field(None, ge=1, le=65535)
    device: str | None = Field(None, max_length=200, description="Wi-SUN dongle's serial port")
    broute_id: str | None = Field(None, min_length=32, max_length=32, repr=False)
    broute_password: str | None = Field(None, min_length=12, max_length=12, repr=False)
    supply_point: SupplyPoint = None


class MeterOut(BaseModel):
    id: int
    site_id: RowId
    gateway_id: RowId | None
    serial: str | None
    link: str
    has_broute_credentials: bool
    coefficient: int | None
    unit_code: int | None
    digits: int | None
    supply_point: str | None = Field(description="供給地点特定番号, 22 digits; null: not known")


def meter_out(row) -> MeterOut:
    return MeterOut(
        id=row.id,
        site_id=row.site_id,
        gateway_id=row.gateway_id,
        serial=row.serial,
        link=row.link,
        has_broute_credentials=row.broute_password_enc is not None,
        coefficient=row.coefficient,
        unit_code=row.unit_code,
        digits=row.digits,
        supply_point=row.supply_point,
    )


@router.post("/meters", status_code=201, summary="Add a meter (credentials are sealed)")
def add_meter(
    body: MeterIn, request: Request, conn: Conn, principal: Operator, tenant_id: TenantId
) -> MeterOut:
    try:
        row = registry.add_meter(
            conn, tenant_id, request.app.state.credential_box, principal.actor, **body.model_dump()
        )
    except registry.SupplyPointTaken as err:
        raise Problem(409, str(err)) from None
    except registry.RegistryError as err:
        raise Problem(422, str(err)) from None
    push_meter(request, conn, row, principal, tenant_id)
    return meter_out(row)


class MeterPatch(BaseModel):
    """The fields given change. The B-route ID and password go together, and like at
    creation are never answered (only `has_broute_credentials`)."""

    supply_point: SupplyPoint = Field(None, description="null or empty: clear it")
    broute_id: str | None = Field(None, min_length=32, max_length=32, repr=False)
    broute_password: str | None = Field(None, min_length=12, max_length=12, repr=False)


@router.patch(
    "/meters/{meter_id}", summary="Change a meter's supply point number or B-route credentials"
)
def patch_meter(
    meter_id: RowId,
    body: MeterPatch,
    request: Request,
    conn: Conn,
    principal: Operator,
    tenant_id: TenantId,
) -> MeterOut:
    given = body.model_fields_set
    if ("broute_id" in given or "broute_password" in given) and not (
        body.broute_id and body.broute_password
    ):
        raise Problem(422, "broute_id and broute_password are set together")
    row = registry.get_meter(conn, meter_id, tenant_id)
    if row is None:
        raise Problem(404, "no such meter")
    if "supply_point" in given:
        try:
            row = registry.set_supply_point(
                conn, tenant_id, meter_id, body.supply_point, principal.actor
            )
        except registry.SupplyPointTaken as err:
            raise Problem(409, str(err)) from None
    if body.broute_id and body.broute_password:
        row = registry.replace_broute_credentials(
            conn, tenant_id, request.app.state.credential_box, principal.actor, meter_id,
            body.broute_id, body.broute_password,
        )  # fmt: skip
        push_meter(request, conn, row, principal, tenant_id)
    return meter_out(row)


def push_meter(request: Request, conn: Conn, meter, principal: Principal, tenant_id: int) -> None:
    """A new settings version carries the meter (and its credentials) to its gateway."""
    if meter.gateway_id is not None:
        config.put_settings(conn, tenant_id, meter.gateway_id, {}, actor=principal.actor)
        wake(request)


@router.post(
    "/meters/supply-points",
    summary="Set meters' supply point numbers from a CSV",
    description="Columns `supply_point` and `meter_id` or `service_code` (a site with one "
    "meter); a header row; UTF-8, with or without a BOM. Rows are applied in order: a bad "
    "row (an unknown meter, not 22 digits, a number another meter has) is listed in "
    "`errors` and skipped; a meter that already has the number is `already_known`.",
)
def import_supply_points(
    conn: Conn,
    principal: Operator,
    tenant_id: TenantId,
    csv_text: Annotated[
        str, Body(media_type="text/csv", description="meter_id|service_code,supply_point")
    ],
) -> dict[str, Any]:
    try:
        report = registry.import_supply_points(conn, tenant_id, csv_text, principal.actor)
    except registry.RegistryError as err:
        raise Problem(422, str(err)) from None
    return {"set": report.added, "already_known": report.already_known, "errors": report.errors}


MeterSort = listing.sort_parameter(("serial", "link", "created_at", "id"))
MeterSearch = listing.search_parameter(
    "the meter's serial, UDP host, dongle port or supply point number (hyphens ignored), "
    "or its site's customer ID or service code"
)


@router.get("/meters", summary="The tenant's meters (never their credentials)")
def list_meters(
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    q: MeterSearch = None,
    link: Annotated[Literal["udp", "wisun"] | None, Query()] = None,
    state: Annotated[
        list[GatewayState] | None, Query(description="meters whose gateway is in any of")
    ] = None,
    site_id: RowId | None = None,
    gateway_id: RowId | None = None,
    sort: MeterSort = "id",
    limit: listing.Limit = listing.DEFAULT_LIMIT,
    cursor: listing.Cursor = None,
) -> listing.Page[MeterOut]:
    rows, next_cursor = queries.meter_page(
        conn, tenant_id, q=q, link=link, state=state, site_id=site_id, gateway_id=gateway_id,
        sort=sort, limit=limit, cursor=cursor,
    )  # fmt: skip
    return listing.Page[MeterOut](items=[meter_out(r) for r in rows], next_cursor=next_cursor)
