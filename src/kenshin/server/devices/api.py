"""The devices room's HTTP face: enrollment (no user auth: the device proves itself),
the factory import, claiming, sites, meters, settings, commands, status and events.

B-route credentials go in and never come out: responses say only whether a meter has
them. Another tenant's ids are not found (404), whatever the endpoint.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Select, String, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError

from kenshin.wire.enrollment import b64decode
from kenshin.wire.sealing import check_public_key

from .. import listing
from .. import schema as s
from ..accounts import audit
from ..deps import Conn, Principal, RowId, TenantId, require_platform_admin, require_role
from ..jsonout import json_response
from ..metering.current import CURRENT_WINDOW_MIN, site_summary_columns, site_summary_values
from ..problems import Problem
from ..ratelimits import RATE_LIMITED
from ..times import JST, JstDateTime
from . import commands, config, enrollment, registry

log = logging.getLogger(__name__)
router = APIRouter(tags=["devices"])
Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Operator = Annotated[Principal, Depends(require_role("operator"))]
PlatformAdmin = Annotated[Principal, Depends(require_platform_admin)]


def _keys(request: Request) -> bytes:
    return request.app.state.device_key


def _wake(request: Request) -> None:
    """Push settings and commands as soon as this request's transaction has committed."""
    service = getattr(request.app.state, "device_service", None)
    if service is not None:
        request.state.after_commit.append(service.wake)


# -- enrollment ----------------------------------------------------------------------------


class ChallengeRequest(BaseModel):
    serial: str = Field(max_length=64)


class EnrollRequest(BaseModel):
    serial: str = Field(max_length=64)
    challenge: str = Field(max_length=200)
    signature: str = Field(max_length=200)
    seal_key: str | None = Field(
        None, max_length=64, description="the agent's X25519 public key, base64 (32 bytes)"
    )

    @field_validator("seal_key")
    @classmethod
    def _raw_seal_key(cls, value: str | None) -> str | None:
        if value is not None:
            check_public_key(b64decode(value))  # ValueError (SealError): a 422
        return value


@router.post(
    "/enroll/challenge", summary="Step 1 of enrollment: a fresh challenge", responses=RATE_LIMITED
)
def enroll_challenge(body: ChallengeRequest, request: Request) -> dict[str, str]:
    request.app.state.rate_limits.enrollment(request, body.serial)
    return {"challenge": enrollment.new_challenge(_keys(request), body.serial)}


@router.post(
    "/enroll",
    summary="Step 2: prove the identity, receive MQTT credentials",
    responses={202: {"description": "not claimed yet: ask again later"}, **RATE_LIMITED},
)
def enroll(body: EnrollRequest, request: Request, conn: Conn) -> Any:
    request.app.state.rate_limits.enrollment(request, body.serial)
    try:
        seal_key = None if body.seal_key is None else b64decode(body.seal_key)
        result = enrollment.enroll(
            conn, _keys(request), body.serial, body.challenge, body.signature, seal_key
        )
    except enrollment.EnrollmentRefused as err:
        raise Problem(401, f"enrollment refused: {err}") from None
    if isinstance(result, enrollment.Unclaimed):
        return JSONResponse({"status": "unclaimed", "retry_after_s": result.retry_after_s}, 202)
    service = getattr(request.app.state, "device_service", None)
    endpoint = service.endpoint if service is not None else None
    conn.commit()  # the broker asks the database for this password: it must be there first
    if service is not None:
        try:
            service.credential_issued(result.username, result.password)
        except Exception as err:  # the broker did not take it: the gateway tries again
            log.warning("the broker did not take %s's credential: %s", result.username, err)
            raise Problem(
                503, "the broker is not reachable; try again", headers={"Retry-After": "30"}
            ) from None
        service.wake()
    # Where gateways reach the broker: the settings' public address, where it differs from
    # the one the ingest uses (a loopback listener beside a TLS one for the Internet).
    public = request.app.state.settings
    tls = public.mqtt_public_tls
    return {
        "status": "enrolled",
        "gateway_id": result.gateway_id,
        "mqtt": {
            "host": public.mqtt_public_host or (endpoint.host if endpoint else None),
            "port": public.mqtt_public_port or (endpoint.port if endpoint else 1883),
            "tls": tls if tls is not None else bool(endpoint and endpoint.tls),
            "username": result.username,
            "password": result.password,
            # a cluster's other nodes, tried in turn when one is unreachable
            "alternates": [
                {"host": a.host, "port": a.port} for a in getattr(service, "alternates", None) or []
            ],
        },
    }


# -- the factory's identities and claiming -------------------------------------------------


@router.post("/gateways/import", summary="Import manufactured gateways (CSV)")
def import_gateways(
    request: Request,
    conn: Conn,
    principal: PlatformAdmin,
    csv_text: Annotated[
        str, Body(media_type="text/csv", description="serial,model,public_key,claim_code")
    ],
) -> dict[str, Any]:
    try:
        report = registry.import_identities(conn, csv_text, _keys(request), principal.actor)
    except registry.RegistryError as err:
        raise Problem(422, str(err)) from None
    return {"added": report.added, "already_known": report.already_known, "errors": report.errors}


class ClaimRequest(BaseModel):
    claim_code: str | None = Field(None, max_length=32)
    serial: str | None = Field(None, max_length=64)
    site_id: RowId | None = None


class GatewayOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    serial: str
    model: str
    site_id: RowId | None
    state: str
    state_since: JstDateTime
    last_seen_at: JstDateTime | None
    settings_version_applied: int | None


@router.post("/gateways/claim", status_code=201, summary="Claim a gateway by its printed code")
def claim(
    body: ClaimRequest, request: Request, conn: Conn, principal: Operator, tenant_id: TenantId
) -> GatewayOut:
    try:
        row = registry.claim_gateway(
            conn,
            tenant_id,
            key=_keys(request),
            actor=principal.actor,
            serial=body.serial,
            claim_code=body.claim_code,
            site_id=body.site_id,
        )
    except registry.RegistryError as err:
        raise Problem(404 if "no unclaimed" in str(err) else 422, str(err)) from None
    _wake(request)
    return GatewayOut.model_validate(row)


GatewayState = Literal["never_seen", "working", "lost_contact", "meter_link_down"]


GatewaySort = listing.sort_parameter(("serial", "state", "created_at", "id"))
GatewaySearch = listing.search_parameter("serial or model")


@router.get("/gateways", summary="The tenant's gateways: search, filter by state, sort, pages")
def list_gateways(
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    state: Annotated[list[GatewayState] | None, Query(description="any of")] = None,
    site_id: RowId | None = None,
    q: GatewaySearch = None,
    sort: GatewaySort = "id",
    limit: listing.Limit = listing.DEFAULT_LIMIT,
    cursor: listing.Cursor = None,
) -> listing.Page[GatewayOut]:
    g = s.gateways.c
    query = select(s.gateways).where(
        listing.combine(
            g.tenant_id == tenant_id,
            g.state.in_(state) if state else None,
            g.site_id == site_id if site_id is not None else None,
            listing.search_filter(q, [g.serial, g.model]),
        )
    )
    query, page = listing.paginate(
        query,
        sortable={"serial": g.serial, "state": g.state, "created_at": g.created_at, "id": g.id},
        id_column=g.id,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )
    rows, next_cursor = page(conn.execute(query).all())
    return listing.Page[GatewayOut](
        items=[GatewayOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


def _gateway_or_404(conn: Conn, gateway_id: RowId, tenant_id: RowId):
    row = registry.get_gateway(conn, gateway_id, tenant_id)
    if row is None:
        raise Problem(404, "no such gateway")
    return row


@router.delete(
    "/gateways/{gateway_id}/broker-credential",
    status_code=204,
    summary="Revoke the gateway's broker credential (it must enroll again)",
)
def revoke_broker_credential(
    gateway_id: RowId, request: Request, conn: Conn, principal: Operator, tenant_id: TenantId
) -> Response:
    gateway = _gateway_or_404(conn, gateway_id, tenant_id)
    username = enrollment.revoke_credential(conn, gateway, principal.actor)
    conn.commit()
    service = getattr(request.app.state, "device_service", None)
    if username is not None and service is not None:
        service.credential_revoked(username)  # a managed Mosquitto: ends its session too
    return Response(status_code=204)


@router.get("/gateways/{gateway_id}", summary="One gateway")
def get_gateway(gateway_id: RowId, conn: Conn, _: Viewer, tenant_id: TenantId) -> GatewayOut:
    return GatewayOut.model_validate(_gateway_or_404(conn, gateway_id, tenant_id))


# -- sites and meters ----------------------------------------------------------------------


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


@lru_cache(maxsize=128)
def _site_list(sort: str, searched: bool, in_states: bool, after: bool) -> Select:
    """The site list's statement for a sort and the filters asked, built once: its values
    are bound parameters (`tenant_id`, `needle` and `supply_point` when searched, `states`,
    the page's, the summary's). Building it for each request, and SQLAlchemy walking it to
    find its compiled form, cost more than the rest of the handler (issue 21)."""
    site, g, m = s.sites.c, s.gateways.c, s.meters.c
    tenant_id = bindparam("tenant_id")
    states = bindparam("states", expanding=True)
    # One gateway a site: a join would list the site once per gateway, and a walk must see
    # each site exactly once. The row shows its first gateway (by id) in the states asked.
    first = s.gateways.alias("first_gateway").c

    def of_first_gateway(column):
        return (
            select(column)
            .where(first.site_id == site.id, *([first.state.in_(states)] if in_states else []))
            .order_by(first.id)
            .limit(1)
            .scalar_subquery()
        )

    in_state = None
    if in_states:  # a semi-join: the planner sees how many sites match (index on tenant, state)
        in_state = site.id.in_(
            select(g.site_id).where(g.tenant_id == tenant_id, g.state.in_(states))
        )
    query = select(
        s.sites,
        of_first_gateway(first.id).label("gateway_id"),
        of_first_gateway(first.state).label("gateway_state"),
        *site_summary_columns(),
    ).where(
        listing.combine(
            site.tenant_id == tenant_id,
            in_state,
            or_(
                listing.matching(
                    [site.customer_id, site.service_code, site.address, site.phone, site.name],
                    bindparam("needle", type_=String),
                ),
                site.id.in_(  # a retailer's list is searched by the number it settles on
                    select(m.site_id).where(
                        m.tenant_id == tenant_id,
                        listing.matching([m.supply_point], bindparam("supply_point", type_=String)),
                    )
                ),
            )
            if searched
            else None,
        )
    )
    return listing.sorted_page(
        query, sortable=_SITE_SORTS, id_column=site.id, sort=sort, after=after
    )


_SITE_SORTS = {
    "customer_id": s.sites.c.customer_id,
    "service_code": s.sites.c.service_code,
    "address": func.coalesce(s.sites.c.address, ""),
    "name": func.coalesce(s.sites.c.name, ""),
    "created_at": s.sites.c.created_at,
    "id": s.sites.c.id,
}


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
    values = {
        "tenant_id": tenant_id,
        **site_summary_values(s.utcnow()),
        **listing.page_values(_SITE_SORTS, sort, limit, cursor),
    }
    if state:
        values["states"] = state
    if q:
        values["needle"] = listing.search_needle(q)
        values["supply_point"] = listing.search_needle(registry.supply_point_search(q))
    query = _site_list(sort, bool(q), bool(state), cursor is not None)
    rows, next_cursor = listing.page_of(
        conn.execute(query, values).all(), sort=sort, limit=limit, id_key="id"
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


def _meter_out(row) -> MeterOut:
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
    _push_meter(request, conn, row, principal, tenant_id)
    return _meter_out(row)


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
        _push_meter(request, conn, row, principal, tenant_id)
    return _meter_out(row)


def _push_meter(request: Request, conn: Conn, meter, principal: Principal, tenant_id: int) -> None:
    """A new settings version carries the meter (and its credentials) to its gateway."""
    if meter.gateway_id is not None:
        config.put_settings(conn, tenant_id, meter.gateway_id, {}, actor=principal.actor)
        _wake(request)


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


# -- homes from a CSV: sites, their meters, their gateways at once -----------------------

HOME_COLUMNS = ("customer_id", "service_code", "link")
HOME_OPTIONAL = (
    "name", "address", "phone", "udp_host", "udp_port", "device", "broute_id",
    "broute_password", "supply_point", "claim_code",
)  # fmt: skip


class HomeRow(BaseModel):
    line: int
    customer_id: str
    service_code: str
    site_id: RowId | None = Field(None, description="null in a preview, or for a bad row")
    meter_id: RowId | None = None
    gateway_id: RowId | None = None
    error: str | None = Field(None, description="why the row cannot be imported")


class HomesReport(BaseModel):
    dry_run: bool
    added: int = Field(description="rows imported (in a preview: that would be)")
    errors: int
    rows: list[HomeRow]


def _invalid(err: ValidationError) -> str:
    """A validation error as a line for a person, never echoing the input (a password)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:3])


def _import_home(
    conn: Conn, request: Request, principal: Principal, tenant_id: int, row: dict[str, str]
) -> tuple[int, int, int | None]:
    """One row: the site (the same checks as POST /sites), its gateway claimed by its
    printed code if given (POST /gateways/claim), its meter (POST /meters)."""
    site = SiteIn.model_validate({k: row.get(k) or None for k in SiteIn.model_fields})
    fields = {k: row.get(k) or None for k in MeterIn.model_fields if k not in ("site_id",)}
    MeterIn.model_validate({**fields, "site_id": 1, "gateway_id": None})  # before any write
    if clash := registry.site_clash(conn, tenant_id, site.model_dump()):
        raise registry.RegistryError(clash)
    site_row = registry.add_site(conn, tenant_id, principal.actor, **site.model_dump())
    gateway_id = None
    if row.get("claim_code"):
        gateway_id = registry.claim_gateway(
            conn, tenant_id, key=_keys(request), actor=principal.actor,
            claim_code=row["claim_code"], site_id=site_row.id,
        ).id  # fmt: skip
    meter = MeterIn.model_validate({**fields, "site_id": site_row.id, "gateway_id": gateway_id})
    meter_row = registry.add_meter(
        conn, tenant_id, request.app.state.credential_box, principal.actor, **meter.model_dump()
    )
    _push_meter(request, conn, meter_row, principal, tenant_id)
    return site_row.id, meter_row.id, gateway_id


def import_homes(
    conn: Conn, request: Request, principal: Principal, tenant_id: int, text: str, dry_run: bool
) -> HomesReport:
    """Every row of the CSV through `_import_home`, each in a savepoint of its own (a bad
    row leaves nothing behind), all in one more: a preview (`dry_run`) is the import
    itself, rolled back; an import with a bad row imports none (422, with the report)."""
    rows: list[HomeRow] = []
    everything = conn.begin_nested()
    try:
        for line, raw in enumerate(registry.csv_rows(text, HOME_COLUMNS), start=2):
            row = {k: (v or "").strip() for k, v in raw.items() if isinstance(k, str)}
            out = HomeRow(
                line=line,
                customer_id=row["customer_id"][:64],
                service_code=row["service_code"][:11],
            )
            try:
                with conn.begin_nested():
                    ids = _import_home(conn, request, principal, tenant_id, row)
                if not dry_run:
                    out.site_id, out.meter_id, out.gateway_id = ids
            except ValidationError as err:
                out.error = _invalid(err)
            except registry.RegistryError as err:
                out.error = str(err)
            except IntegrityError:
                out.error = "conflicts with what is already there"
            rows.append(out)
    except registry.RegistryError as err:  # not CSV, or a column missing
        everything.rollback()
        raise Problem(422, str(err)) from None
    bad = sum(r.error is not None for r in rows)
    report = HomesReport(dry_run=dry_run, added=len(rows) - bad, errors=bad, rows=rows)
    if dry_run or bad:
        everything.rollback()
        request.state.after_commit.clear()  # nothing to push
    else:
        everything.commit()
        audit(
            conn, principal.actor, "homes.import", tenant_id=tenant_id,
            detail={"added": report.added},
        )  # fmt: skip
    if bad and not dry_run:
        raise Problem(
            422, f"{bad} row(s) cannot be imported: nothing was", report=report.model_dump()
        )
    return report


@router.post(
    "/homes/import",
    summary="Onboard homes from a CSV: a site, its meter and its gateway a row",
    description="Columns `customer_id`, `service_code`, `link` (udp or wisun) and any of "
    "`name`, `address`, `phone`, `udp_host`, `udp_port`, `device`, `broute_id`, "
    "`broute_password`, `supply_point`, `claim_code` (the gateway's printed code: it is "
    "claimed for the row's site); a header row; UTF-8, with or without a BOM. Each row is "
    "checked as POST /sites, /gateways/claim and /meters check it. `dry_run=true`: the "
    "report of what would happen, nothing kept. Otherwise every row or none: with a bad "
    "row, a 422 whose `report` lists each row's error.",
)
def import_homes_csv(
    request: Request,
    conn: Conn,
    principal: Operator,
    tenant_id: TenantId,
    csv_text: Annotated[str, Body(media_type="text/csv", description="customer_id,...")],
    dry_run: bool = False,
) -> HomesReport:
    return import_homes(conn, request, principal, tenant_id, csv_text, dry_run)


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
    m, g = s.meters.c, s.gateways.c
    query = select(s.meters).where(
        listing.combine(
            m.tenant_id == tenant_id,
            m.link == link if link else None,
            m.site_id == site_id if site_id is not None else None,
            m.gateway_id == gateway_id if gateway_id is not None else None,
            m.gateway_id.in_(select(g.id).where(g.tenant_id == tenant_id, g.state.in_(state)))
            if state
            else None,
            registry.meter_search(q, tenant_id),
        )
    )
    query, page = listing.paginate(
        query,
        sortable={
            "serial": func.coalesce(m.serial, ""),
            "link": m.link,
            "created_at": m.created_at,
            "id": m.id,
        },
        id_column=m.id,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )
    rows, next_cursor = page(conn.execute(query).all())
    return listing.Page[MeterOut](items=[_meter_out(r) for r in rows], next_cursor=next_cursor)


# -- settings ------------------------------------------------------------------------------


class SettingsIn(BaseModel):
    values: dict[str, Any]
    replace: bool = False


class SettingsOut(BaseModel):
    version: int
    values: dict[str, Any]
    created_at: JstDateTime
    applied_version: int | None = None


@router.patch("/settings/default", summary="Change the tenant's default settings")
def put_default(
    body: SettingsIn, request: Request, conn: Conn, principal: Operator, tenant_id: TenantId
) -> SettingsOut:
    return _put(conn, request, principal, tenant_id, None, body)


@router.patch("/gateways/{gateway_id}/settings", summary="Change one gateway's settings")
def put_gateway_settings(
    gateway_id: RowId,
    body: SettingsIn,
    request: Request,
    conn: Conn,
    principal: Operator,
    tenant_id: TenantId,
) -> SettingsOut:
    _gateway_or_404(conn, gateway_id, tenant_id)
    return _put(conn, request, principal, tenant_id, gateway_id, body)


def _put(conn, request, principal, tenant_id, gateway_id, body) -> SettingsOut:
    try:
        row = config.put_settings(
            conn,
            tenant_id,
            gateway_id,
            body.values,
            actor=principal.actor,
            user_id=principal.id if principal.kind == "user" else None,
            replace=body.replace,
        )
    except config.SettingsError as err:
        raise Problem(422, str(err)) from None
    _wake(request)
    return SettingsOut(version=row.version, values=row.values, created_at=row.created_at)


@router.get("/gateways/{gateway_id}/settings", summary="Effective settings, secrets masked")
def get_gateway_settings(
    gateway_id: RowId, request: Request, conn: Conn, _: Viewer, tenant_id: TenantId
) -> SettingsOut:
    from kenshin.wire.messages import mask_secrets

    gateway = _gateway_or_404(conn, gateway_id, tenant_id)
    settings = config.effective_settings(conn, gateway, request.app.state.credential_box, now_s=0)
    return SettingsOut(
        version=settings.version,
        values=mask_secrets(dict(settings.values)),
        created_at=gateway.state_since,
        applied_version=gateway.settings_version_applied,
    )


# -- commands and events -------------------------------------------------------------------


class CommandIn(BaseModel):
    name: str = Field(max_length=32)
    args: dict[str, Any] = Field(default_factory=dict)
    ttl_s: int = Field(600, ge=5, le=86_400)


class CommandOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    gateway_id: RowId
    name: str
    args: dict[str, Any] | None
    state: str
    result: dict[str, Any] | None
    error: str | None
    created_at: JstDateTime
    done_at: JstDateTime | None


@router.post("/gateways/{gateway_id}/commands", status_code=201, summary="Run a command")
def run_command(
    gateway_id: RowId,
    body: CommandIn,
    request: Request,
    conn: Conn,
    principal: Operator,
    tenant_id: TenantId,
) -> CommandOut:
    _gateway_or_404(conn, gateway_id, tenant_id)
    try:
        row = commands.create(
            conn,
            tenant_id,
            gateway_id,
            body.name,
            body.args,
            actor=principal.actor,
            ttl=timedelta(seconds=body.ttl_s),
        )
    except commands.CommandError as err:
        raise Problem(422, str(err)) from None
    _wake(request)
    return CommandOut.model_validate(row)


@router.get("/commands/{command_id}", summary="A command and its result")
def get_command(command_id: RowId, conn: Conn, _: Viewer, tenant_id: TenantId) -> CommandOut:
    row = commands.get(conn, command_id, tenant_id)
    if row is None:
        raise Problem(404, "no such command")
    return CommandOut.model_validate(row)


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    gateway_id: RowId | None
    meter_id: RowId | None
    code: str
    severity: str
    detail: dict[str, Any] | None
    at: JstDateTime


@router.get("/events", summary="The tenant's latest events")
def list_events(
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    gateway_id: RowId | None = None,
    limit: listing.Limit = 100,
    cursor: listing.Cursor = None,
) -> listing.Page[EventOut]:
    e = s.events.c
    query = select(s.events).where(e.tenant_id == tenant_id)
    if gateway_id is not None:
        query = query.where(e.gateway_id == gateway_id)
    query, page = listing.paginate(
        query, sortable={"at": e.at}, id_column=e.id, sort="-at", limit=limit, cursor=cursor
    )
    rows, next_cursor = page(conn.execute(query).all())
    return listing.Page[EventOut](
        items=[EventOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )
