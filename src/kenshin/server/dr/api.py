"""DR events over HTTP under /api/v1/dr: viewers read events, their live view, their homes
and results (JSON and CSV); operators make, confirm and cancel events, opt a home out,
and set the imbalance rules. Another tenant's event or rule is a 404. Times are JST."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import Connection, Row

from kenshin.jst import JST

from .. import listing
from ..bounds import ApiDateTime
from ..deps import Conn, Principal, RowId, TenantId, require_role
from ..devices.api.common import wake
from ..metering.api import _exported
from ..metering.csvout import CSV_RESPONSE, CsvStream, csv_response
from ..problems import Problem
from ..times import JstDateTime, jst_text
from . import queries, results, rules, service

router = APIRouter(prefix="/dr", tags=["dr"])
Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Operator = Annotated[Principal, Depends(require_role("operator"))]
EventState = Literal["proposed", "scheduled", "active", "ended", "final", "cancelled"]
HomeState = Literal[
    "pending", "sent", "acknowledged", "no_devices", "refused", "acting", "done", "failed",
    "opted_out",
]  # fmt: skip
Watts = Annotated[int, Field(ge=0, le=service.MAX_TARGET_W)]
OPT_OUT_PATH = "/dr/opt-out/"


def _jst(at: datetime) -> datetime:
    return at.replace(tzinfo=JST) if at.tzinfo is None else at


class EventIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["夏の夕方の節電"])
    start: ApiDateTime = Field(description="a JST half hour's start; no offset: JST")
    end: ApiDateTime = Field(description="exclusive, a half hour's start; at most 24 h on")
    targets_w: list[Watts] | None = Field(
        None, max_length=service.MAX_SLOTS,
        description="the tenant's reduction in each slot, W (mean power over the half hour)",
    )  # fmt: skip
    target_w: Watts | None = Field(None, description="the same reduction in every slot")
    shed_level: int | None = Field(None, ge=1, le=3, description="instead of targets")
    price_jpy_kwh: float | None = Field(None, ge=0, le=1_000_000)
    opt_out_deadline: ApiDateTime | None = Field(None, description="default: the start")
    site_ids: list[RowId] | None = Field(
        None, max_length=100_000, description="only these homes (default: every one)"
    )

    @model_validator(mode="after")
    def _one_target(self) -> EventIn:
        if sum(x is not None for x in (self.targets_w, self.target_w, self.shed_level)) != 1:
            raise ValueError("give one of targets_w, target_w or shed_level")
        return self


class EventOut(BaseModel):
    id: int
    name: str
    start: JstDateTime
    end: JstDateTime
    targets_w: list[int] | None
    shed_level: int | None
    price_jpy_kwh: float | None
    opt_out_deadline: JstDateTime
    state: EventState
    created_by: str
    openadr_event_id: str | None
    rule_id: int | None
    created_at: JstDateTime
    updated_at: JstDateTime
    cancelled_at: JstDateTime | None
    final_at: JstDateTime | None
    homes: dict[str, int] = Field(description="the event's homes by state")


class SlotOut(BaseModel):
    start: JstDateTime
    target_w: int | None
    baseline_wh: int | None
    actual_wh: int | None
    reduction_wh: int | None
    homes_reported: int


class LiveOut(BaseModel):
    event: EventOut
    slots: list[SlotOut]


class HomeOut(BaseModel):
    site_id: int
    gateway_id: int
    state: HomeState
    targets_w: list[int] | None
    devices: list[Any] | dict[str, Any] | None = Field(
        description='what the gateway said it will act on: a list, or `{"count": n}` '
        "(a DrAck over MQTT says how many)"
    )
    reason: str | None
    report: dict[str, Any] | None
    sent_at: JstDateTime | None
    state_at: JstDateTime | None
    opt_out_path: str | None = Field(description="the customer's opt-out page (operators)")


class ResultSlot(BaseModel):
    start: JstDateTime
    baseline_wh: int
    actual_wh: int
    reduction_wh: int


class ResultHome(BaseModel):
    site_id: int
    state: HomeState
    status: Literal["measured", "missing", "opted_out"]
    reason: str | None
    detail: str | None
    baseline_wh: int | None
    actual_wh: int | None
    reduction_wh: int | None
    slots: list[ResultSlot]


class TenantSlot(ResultSlot):
    target_w: int | None


class ResultsOut(BaseModel):
    final: bool = Field(description="false: measured now, may still change")
    computed_at: JstDateTime
    totals: dict[str, int]
    slots: list[TenantSlot]
    homes: list[ResultHome]


class RuleIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    threshold_kw: float = Field(ge=0.001, le=1_000_000, description="projected imbalance, kW")
    slots: list[Annotated[int, Field(ge=0, le=47)]] = Field(
        min_length=1, max_length=48, description="the JST day's half hours: 0 = 00:00-00:30"
    )
    target_w: Annotated[int, Field(ge=1, le=service.MAX_TARGET_W)]
    auto: bool = Field(False, description="raise the event (default: propose it)")


class RuleOut(BaseModel):
    id: int
    name: str
    threshold_w: int
    slots: list[int]
    target_w: int
    auto: bool
    enabled: bool
    created_by: str
    created_at: JstDateTime


def event_out(conn: Connection, row: Row) -> EventOut:
    values = {**row._mapping, "start": row.start_at, "end": row.end_at}
    return EventOut.model_validate({**values, "homes": queries.state_counts(conn, row.id)})


def _row(conn: Connection, tenant_id: int, event_id: int) -> Row:
    row = queries.get_event(conn, tenant_id, event_id)
    if row is None:
        raise Problem(404, "no such DR event")
    return row


@router.post("/events", status_code=201, summary="Make a DR event and send it to the homes")
def create_event(
    body: EventIn, request: Request, conn: Conn, principal: Operator, tenant_id: TenantId
) -> EventOut:
    start, end = _jst(body.start), _jst(body.end)
    targets = body.targets_w
    if body.target_w is not None:
        targets = [body.target_w] * max(int((end - start).total_seconds()) // 1800, 0)
    deadline = _jst(body.opt_out_deadline) if body.opt_out_deadline else None
    try:
        event_id = service.create_event(
            conn, tenant_id, name=body.name, start=start, end=end, actor=principal.actor,
            targets_w=targets, shed_level=body.shed_level, price_jpy_kwh=body.price_jpy_kwh,
            opt_out_deadline=deadline, site_ids=body.site_ids,
        )  # fmt: skip
    except service.DrError as err:
        raise Problem(400, str(err)) from None
    wake(request)  # the homes are sent it once this commits
    return event_out(conn, _row(conn, tenant_id, event_id))


@router.get("/events", summary="The tenant's DR events, latest start first")
def list_events(
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    state: Annotated[list[EventState] | None, Query(description="any of")] = None,
    limit: listing.Limit = 50,
    cursor: listing.Cursor = None,
) -> listing.Page[EventOut]:
    rows, next_cursor = queries.event_page(conn, tenant_id, state, limit, cursor)
    return listing.Page[EventOut](items=[event_out(conn, r) for r in rows], next_cursor=next_cursor)


@router.get("/events/{event_id}", summary="A DR event, its homes counted by state")
def get_event(event_id: RowId, conn: Conn, _: Viewer, tenant_id: TenantId) -> EventOut:
    return event_out(conn, _row(conn, tenant_id, event_id))


def _move(conn: Connection, tenant_id: int, event_id: int, move, actor: str) -> EventOut:
    _row(conn, tenant_id, event_id)
    try:
        move(conn, tenant_id, event_id, actor)
    except service.DrConflict as err:
        raise Problem(409, str(err)) from None
    return event_out(conn, _row(conn, tenant_id, event_id))


@router.post("/events/{event_id}/cancel", summary="Cancel an event; homes sent it are told")
def cancel_event(
    event_id: RowId, request: Request, conn: Conn, principal: Operator, tenant_id: TenantId
) -> EventOut:
    out = _move(conn, tenant_id, event_id, service.cancel, principal.actor)
    wake(request)
    return out


@router.post("/events/{event_id}/confirm", summary="Confirm a proposed event: it is sent")
def confirm_event(
    event_id: RowId, request: Request, conn: Conn, principal: Operator, tenant_id: TenantId
) -> EventOut:
    out = _move(conn, tenant_id, event_id, service.confirm, principal.actor)
    wake(request)
    return out


@router.get("/events/{event_id}/live", summary="Per slot: target, baseline and actual so far")
def live(event_id: RowId, conn: Conn, _: Viewer, tenant_id: TenantId) -> LiveOut:
    row = _row(conn, tenant_id, event_id)
    slots = [SlotOut.model_validate(s, from_attributes=True) for s in results.live_slots(conn, row)]
    return LiveOut(event=event_out(conn, row), slots=slots)


@router.get("/events/{event_id}/homes", summary="Each home of the event and its state")
def homes(
    event_id: RowId, conn: Conn, principal: Viewer, tenant_id: TenantId
) -> listing.Page[HomeOut]:
    _row(conn, tenant_id, event_id)
    operator = principal.has_role("operator")
    return listing.one_page([_home(p, operator) for p in queries.participations(conn, event_id)])


def _home(part: Row, operator: bool) -> HomeOut:
    path = OPT_OUT_PATH + part.opt_out_token if operator else None
    return HomeOut.model_validate({**part._mapping, "opt_out_path": path})


@router.post("/events/{event_id}/homes/{site_id}/opt-out", summary="Opt a home out for them")
def opt_out(
    event_id: RowId, site_id: RowId, request: Request, conn: Conn, principal: Operator,
    tenant_id: TenantId,
) -> HomeOut:  # fmt: skip
    event = _row(conn, tenant_id, event_id)
    part = next((p for p in queries.participations(conn, event_id) if p.site_id == site_id), None)
    if part is None:
        raise Problem(404, "no such home in this event")
    if not service.opt_out(conn, part, event, via="api", by=principal.actor):
        raise Problem(409, "too late: the opt-out deadline has passed or the event is over")
    wake(request)  # its gateway, if sent the event, is sent a cancel
    part = next(p for p in queries.participations(conn, event_id) if p.site_id == site_id)
    return _home(part, True)


def _results(conn: Connection, tenant_id: int, event_id: int) -> ResultsOut:
    row = _row(conn, tenant_id, event_id)
    doc = results.stored_or_measured(conn, row)
    return ResultsOut.model_validate({**doc, "final": row.state == "final"})


@router.get("/events/{event_id}/results", summary="Per home and slot: baseline, actual, reduction")
def get_results(event_id: RowId, conn: Conn, _: Viewer, tenant_id: TenantId) -> ResultsOut:
    return _results(conn, tenant_id, event_id)


@router.get(
    "/events/{event_id}/results.csv",
    summary="The results as CSV: a row per home and slot",
    description="UTF-8 with a BOM, CRLF; times JST. A home not measured (no baseline, or a "
    "slot without a value) has one row with its status and empty numbers.",
    response_class=CsvStream,
    responses=CSV_RESPONSE,
)
def results_csv(
    event_id: RowId, request: Request, conn: Conn, principal: Viewer, tenant_id: TenantId
):
    out = _results(conn, tenant_id, event_id)
    _exported(request, conn, principal, tenant_id)
    header = ["site_id", "state", "status", "slot_start_jst", "baseline_wh", "actual_wh",
              "reduction_wh"]  # fmt: skip
    rows = []
    for h in out.homes:
        mine = [h.site_id, h.state, h.status]
        rows += [
            [*mine, jst_text(s.start), s.baseline_wh, s.actual_wh, s.reduction_wh] for s in h.slots
        ] or [[*mine, None, None, None, None]]
    return csv_response(f"dr-event-{event_id}-results.csv", header, rows)


@router.get("/rules", summary="The tenant's imbalance rules")
def list_rules(conn: Conn, _: Viewer, tenant_id: TenantId) -> listing.Page[RuleOut]:
    found = queries.rules_of(conn, tenant_id, enabled=True)
    return listing.one_page([RuleOut.model_validate(r, from_attributes=True) for r in found])


@router.post("/rules", status_code=201, summary="A rule raising or proposing events")
def add_rule(body: RuleIn, conn: Conn, principal: Operator, tenant_id: TenantId) -> RuleOut:
    rule_id = rules.add_rule(
        conn, tenant_id, name=body.name, threshold_w=round(body.threshold_kw * 1000),
        slots=body.slots, target_w=body.target_w, auto=body.auto, actor=principal.actor,
    )  # fmt: skip
    found = next(r for r in queries.rules_of(conn, tenant_id) if r.id == rule_id)
    return RuleOut.model_validate(found, from_attributes=True)


@router.delete("/rules/{rule_id}", status_code=204, summary="Stop a rule")
def remove_rule(rule_id: RowId, conn: Conn, principal: Operator, tenant_id: TenantId) -> None:
    if not rules.remove_rule(conn, tenant_id, rule_id, principal.actor):
        raise Problem(404, "no such rule")
