"""Onboarding homes from a CSV: a site, its meter and its gateway a row, checked as
POST /sites, /gateways/claim and /meters check them, every row or none.

Separate from sites and meters: it is a transaction of several resources at once, with
its own report and a preview (`dry_run`); the panel's onboarding page reads its columns.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import IntegrityError

from ...accounts import audit
from ...deps import Conn, Principal, RowId, TenantId
from ...problems import Problem
from .. import registry
from .common import Operator, keys
from .meters import MeterIn, push_meter
from .sites import SiteIn

router = APIRouter(tags=["devices"])

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
            conn, tenant_id, key=keys(request), actor=principal.actor,
            claim_code=row["claim_code"], site_id=site_row.id,
        ).id  # fmt: skip
    meter = MeterIn.model_validate({**fields, "site_id": site_row.id, "gateway_id": gateway_id})
    meter_row = registry.add_meter(
        conn, tenant_id, request.app.state.credential_box, principal.actor, **meter.model_dump()
    )
    push_meter(request, conn, meter_row, principal, tenant_id)
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
