"""Alerts over HTTP: read them (viewer), acknowledge or resolve them (operator), choose
the rules' parameters and who is told (admin)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import delete, insert, select

from .. import accounts, listing, schema_base
from ..analytics.anomalies import RULES
from ..deps import Conn, Principal, RowId, TenantId, require_role
from ..problems import Problem
from ..times import JstDateTime
from . import tables as t
from .engine import configured_rules, transition

router = APIRouter(tags=["alerts"])
Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Operator = Annotated[Principal, Depends(require_role("operator"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
Severity = Literal["info", "warning", "error", "critical"]


class AlertOut(BaseModel):
    id: int
    rule: str
    subject: str
    meter_id: RowId | None
    gateway_id: RowId | None
    severity: Severity
    state: Literal["open", "acknowledged", "resolved"]
    detail: dict[str, Any] | None
    opened_at: JstDateTime
    last_seen_at: JstDateTime
    acknowledged_at: JstDateTime | None
    acknowledged_by: str | None
    resolved_at: JstDateTime | None


@router.get("/alerts", summary="The tenant's alerts, newest first")
def list_alerts(
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    state: Annotated[
        list[Literal["open", "acknowledged", "resolved"]] | None, Query(description="any of")
    ] = None,
    limit: listing.Limit = 100,
    cursor: listing.Cursor = None,
) -> listing.Page[AlertOut]:
    a = t.alerts.c
    query = select(t.alerts).where(a.tenant_id == tenant_id)
    if state:
        query = query.where(a.state.in_(state))
    query, page = listing.paginate(
        query, sortable={"opened_at": a.opened_at}, id_column=a.id, sort="-opened_at",
        limit=limit, cursor=cursor,
    )  # fmt: skip
    rows, next_cursor = page(conn.execute(query).all())
    return listing.Page[AlertOut](
        items=[AlertOut.model_validate(r._mapping) for r in rows], next_cursor=next_cursor
    )


def _alert(conn, alert_id: RowId, tenant_id: RowId):
    row = conn.execute(
        select(t.alerts).where(t.alerts.c.id == alert_id, t.alerts.c.tenant_id == tenant_id)
    ).first()
    if row is None:
        raise Problem(404, "no such alert")
    return row


@router.get("/alerts/{alert_id}", summary="One alert")
def get_alert(alert_id: RowId, conn: Conn, _: Viewer, tenant_id: TenantId) -> AlertOut:
    return AlertOut.model_validate(_alert(conn, alert_id, tenant_id)._mapping)


def _move(conn, alert_id: RowId, tenant_id: RowId, principal: Principal, state: str) -> AlertOut:
    current = _alert(conn, alert_id, tenant_id)
    row = transition(conn, alert_id, state, principal.actor, schema_base.utcnow())
    if row is None:
        raise Problem(409, f"the alert is {current.state}; it cannot become {state}")
    accounts.audit(
        conn, principal.actor, f"alert.{state}", target=f"alert:{alert_id}", tenant_id=tenant_id
    )
    return AlertOut.model_validate(row._mapping)


@router.post("/alerts/{alert_id}/acknowledge", summary="Say someone is on it")
def acknowledge(alert_id: RowId, conn: Conn, principal: Operator, tenant_id: TenantId) -> AlertOut:
    return _move(conn, alert_id, tenant_id, principal, "acknowledged")


@router.post("/alerts/{alert_id}/resolve", summary="Close an alert by hand")
def resolve(alert_id: RowId, conn: Conn, principal: Operator, tenant_id: TenantId) -> AlertOut:
    return _move(conn, alert_id, tenant_id, principal, "resolved")


# -- rules -----------------------------------------------------------------------------------


class RuleOut(BaseModel):
    rule: str
    enabled: bool
    severity: Severity
    params: dict[str, Any]
    description: str


class RuleIn(BaseModel):
    enabled: bool = True
    severity: Severity | None = None
    params: dict[str, Any] = Field(default_factory=dict)


def _rule_out(config) -> RuleOut:
    return RuleOut(
        rule=config.rule.name,
        enabled=config.enabled,
        severity=config.severity,
        params=config.params.model_dump(),
        description=config.rule.summary,
    )


@router.get("/alert-rules", summary="Every anomaly rule with the tenant's parameters")
def list_rules(conn: Conn, _: Viewer, tenant_id: TenantId) -> listing.Page[RuleOut]:
    return listing.one_page([_rule_out(c) for c in configured_rules(conn, tenant_id)])


@router.put("/alert-rules/{rule}", summary="Set a rule's parameters, severity, on or off")
def put_rule(rule: str, body: RuleIn, conn: Conn, principal: Admin, tenant_id: TenantId) -> RuleOut:
    if rule not in RULES:
        raise Problem(404, f"no rule {rule!r}; the rules are {', '.join(RULES)}")
    try:
        params = RULES[rule].params(**body.params)
    except ValidationError as err:
        raise Problem(422, f"parameters of {rule}: {err.errors()[0]['msg']}") from None
    r = t.alert_rules.c
    conn.execute(delete(t.alert_rules).where(r.tenant_id == tenant_id, r.rule == rule))
    conn.execute(
        insert(t.alert_rules).values(
            tenant_id=tenant_id,
            rule=rule,
            params=params.model_dump(),
            enabled=body.enabled,
            severity=body.severity or RULES[rule].severity,
        )
    )
    accounts.audit(
        conn,
        principal.actor,
        "alert_rule.set",
        target=f"rule:{rule}",
        tenant_id=tenant_id,
        detail=body.model_dump(),
    )
    return next(_rule_out(c) for c in configured_rules(conn, tenant_id) if c.rule.name == rule)


# -- subscriptions ---------------------------------------------------------------------------


class SubscriptionIn(BaseModel):
    channel: Literal["email", "webhook"]
    target: str | None = Field(
        None,
        max_length=320,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="the address, for e-mail",
    )
    min_severity: Severity = "warning"
    rules: list[str] | None = Field(None, description="only these rules (default: all)")


class SubscriptionOut(SubscriptionIn):
    id: int
    target: str | None = None


@router.post("/alert-subscriptions", status_code=201, summary="Tell someone about alerts")
def add_subscription(
    body: SubscriptionIn, conn: Conn, principal: Admin, tenant_id: TenantId
) -> SubscriptionOut:
    if (body.channel == "email") != (body.target is not None):
        raise Problem(422, "an e-mail subscription needs a target address; a webhook one none")
    unknown = set(body.rules or ()) - set(RULES)
    if unknown:
        raise Problem(422, f"unknown rules: {', '.join(sorted(unknown))}")
    row = conn.execute(
        insert(t.alert_subscriptions)
        .values(tenant_id=tenant_id, created_at=schema_base.utcnow(), **body.model_dump())
        .returning(t.alert_subscriptions)
    ).one()
    accounts.audit(
        conn,
        principal.actor,
        "alert_subscription.add",
        target=f"subscription:{row.id}",
        tenant_id=tenant_id,
    )
    return SubscriptionOut.model_validate(row._mapping)


@router.get("/alert-subscriptions", summary="Who is told about alerts")
def list_subscriptions(conn: Conn, _: Admin, tenant_id: TenantId) -> listing.Page[SubscriptionOut]:
    c = t.alert_subscriptions.c
    rows = conn.execute(
        select(t.alert_subscriptions).where(c.tenant_id == tenant_id).order_by(c.id)
    )
    return listing.one_page([SubscriptionOut.model_validate(r._mapping) for r in rows])


@router.delete(
    "/alert-subscriptions/{subscription_id}", status_code=204, summary="Stop telling someone"
)
def delete_subscription(
    subscription_id: RowId, conn: Conn, principal: Admin, tenant_id: TenantId
) -> None:
    c = t.alert_subscriptions.c
    gone = conn.execute(
        delete(t.alert_subscriptions).where(c.id == subscription_id, c.tenant_id == tenant_id)
    ).rowcount
    if not gone:
        raise Problem(404, "no such subscription")
    accounts.audit(
        conn,
        principal.actor,
        "alert_subscription.delete",
        target=f"subscription:{subscription_id}",
        tenant_id=tenant_id,
    )
