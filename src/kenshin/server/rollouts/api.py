"""Rollouts over HTTP under /api/v1/rollouts: viewers read them (counts by stage and
state, each gateway's update state), operators make and move them (advance, pause,
resume, abort). A release version is checked against the update repository when the
server has one (`updates_dir`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from kenshin.updates.names import TargetNameError, check_version
from kenshin.updates.repository import ReleaseError, Repository

from .. import listing, schema_base
from ..deps import Conn, Principal, RowId, TenantId, get_settings, require_role
from ..devices.api.common import wake
from ..problems import Problem
from ..times import JstDateTime
from . import queries, service

router = APIRouter(prefix="/rollouts", tags=["rollouts"])
Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Operator = Annotated[Principal, Depends(require_role("operator"))]
RolloutState = Literal["running", "paused", "halted", "aborted", "done"]
UpdateState = Literal["pending", "downloading", "installed", "healthy", "failed", "rolled_back"]
Version = Annotated[str, Field(min_length=1, max_length=64, examples=["1.4.2"])]


class RolloutIn(BaseModel):
    version: Version
    gateway_ids: list[RowId] | None = Field(
        None, max_length=10_000, description="only these gateways (default: every one)"
    )
    tags: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = Field(
        None, max_length=20, description="of them, those carrying every one of these tags"
    )
    percent: int = Field(100, ge=1, le=100, description="of them, this share, chosen stably")
    stages: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: list(service.DEFAULT_STAGES), min_length=1, max_length=20,
        description="cumulative percentages of the cohort, rising to 100",
    )  # fmt: skip
    failure_threshold_pct: int = Field(
        5, ge=0, le=100, description="halt when more of a stage failed or rolled back"
    )
    soak_s: int | None = Field(
        None, ge=0, le=30 * 86_400,
        description="advance by itself once a stage has settled this long (null: by hand)",
    )  # fmt: skip
    window_s: int = Field(3600, ge=0, le=86_400, description="spread each stage's downloads")


class MoveIn(BaseModel):
    reason: str | None = Field(None, max_length=500)


class StageOut(BaseModel):
    stage: int  # from 1
    percent: int
    gateways: int
    states: dict[str, int]


class RolloutOut(BaseModel):
    id: int
    version: str
    state: RolloutState
    stage: int  # the stage reached, from 1
    stages: list[StageOut]
    counts: dict[str, int]  # every gateway of the rollout, by state
    cohort: dict[str, Any]
    failure_threshold_pct: int
    soak_s: int | None
    window_s: int
    reason: str | None
    created_by: str
    created_at: JstDateTime
    stage_started_at: JstDateTime
    updated_at: JstDateTime


class RolloutGatewayOut(BaseModel):
    gateway_id: int
    stage: int  # from 1
    state: UpdateState
    delay_s: int
    command_id: int | None
    asked_at: JstDateTime | None
    state_at: JstDateTime | None
    reason: str | None
    from_version: str | None


def rollout_out(row, counts: dict[int, dict[str, int]]) -> RolloutOut:
    totals: dict[str, int] = {}
    for states in counts.values():
        for state, n in states.items():
            totals[state] = totals.get(state, 0) + n
    stages = [
        StageOut(stage=i + 1, percent=p, gateways=sum(counts.get(i, {}).values()),
                 states=counts.get(i, {}))
        for i, p in enumerate(row.stages)
    ]  # fmt: skip
    values = {**row._mapping, "stage": row.stage + 1, "stages": stages, "counts": totals}
    return RolloutOut.model_validate(values)


def _one(conn: Connection, tenant_id: int, rollout_id: int) -> RolloutOut:
    found = queries.get_rollout(conn, tenant_id, rollout_id)
    if found is None:
        raise Problem(404, "no such rollout")
    return rollout_out(*found)


def _releases(request: Request) -> list[str] | None:
    """The versions the update repository has; None: the server serves none, so any."""
    directory: Path | None = get_settings(request).updates_dir
    if directory is None:
        return None
    try:
        return Repository(directory).releases()
    except (ReleaseError, OSError, ValueError):
        return []  # set, but no readable repository there: nothing can be rolled out


@router.post("", status_code=201, summary="Start a staged rollout of a release")
def create_rollout(
    body: RolloutIn, request: Request, conn: Conn, principal: Operator, tenant_id: TenantId
) -> RolloutOut:
    try:
        check_version(body.version)
        rollout_id = service.create(
            conn, tenant_id, version=body.version, actor=principal.actor,
            gateway_ids=body.gateway_ids, tags=body.tags, percent=body.percent,
            stages=body.stages,
            failure_threshold_pct=body.failure_threshold_pct, soak_s=body.soak_s,
            window_s=body.window_s, releases=_releases(request),
        )  # fmt: skip
    except (service.RolloutError, TargetNameError) as err:
        raise Problem(422, str(err)) from None
    _ask_now(request, conn, tenant_id, rollout_id)
    return _one(conn, tenant_id, rollout_id)


def _ask_now(request: Request, conn: Connection, tenant_id: int, rollout_id: int) -> None:
    """The stage's gateways asked in this very transaction, and pushed once it commits."""
    service.step(conn, tenant_id, rollout_id, schema_base.utcnow(), service.StepReport())
    wake(request)


@router.get("", summary="The tenant's rollouts, newest first")
def list_rollouts(
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    state: Annotated[list[RolloutState] | None, Query(description="any of")] = None,
    limit: listing.Limit = 50,
    cursor: listing.Cursor = None,
) -> listing.Page[RolloutOut]:
    rows, next_cursor = queries.rollout_page(conn, tenant_id, state, limit, cursor)
    items = [_one(conn, tenant_id, row.id) for row in rows]
    return listing.Page[RolloutOut](items=items, next_cursor=next_cursor)


@router.get("/{rollout_id}", summary="A rollout, with its gateways counted by stage and state")
def get_rollout(rollout_id: RowId, conn: Conn, _: Viewer, tenant_id: TenantId) -> RolloutOut:
    return _one(conn, tenant_id, rollout_id)


@router.get("/{rollout_id}/gateways", summary="Each gateway's update state in a rollout")
def list_rollout_gateways(
    rollout_id: RowId,
    conn: Conn,
    _: Viewer,
    tenant_id: TenantId,
    state: Annotated[list[UpdateState] | None, Query(description="any of")] = None,
    limit: listing.Limit = 100,
    cursor: listing.Cursor = None,
) -> listing.Page[RolloutGatewayOut]:
    _one(conn, tenant_id, rollout_id)  # 404 for another tenant's
    rows, next_cursor = queries.gateway_page(conn, rollout_id, state, limit, cursor)
    items = [
        RolloutGatewayOut.model_validate({**row._mapping, "stage": row.stage + 1}) for row in rows
    ]
    return listing.Page[RolloutGatewayOut](items=items, next_cursor=next_cursor)


def _move(conn: Connection, tenant_id: int, rollout_id: int, move, *args) -> RolloutOut:
    _one(conn, tenant_id, rollout_id)
    try:
        move(conn, tenant_id, rollout_id, *args)
    except service.RolloutConflict as err:
        raise Problem(409, str(err)) from None
    return _one(conn, tenant_id, rollout_id)


@router.post("/{rollout_id}/advance", summary="Start the next stage now")
def advance(
    rollout_id: RowId, request: Request, conn: Conn, principal: Operator, tenant_id: TenantId
) -> RolloutOut:
    _move(conn, tenant_id, rollout_id, service.advance, principal.actor)
    _ask_now(request, conn, tenant_id, rollout_id)
    return _one(conn, tenant_id, rollout_id)


@router.post("/{rollout_id}/pause", summary="Stop advancing and asking gateways")
def pause(
    rollout_id: RowId, conn: Conn, principal: Operator, tenant_id: TenantId,
    body: MoveIn | None = None,
) -> RolloutOut:  # fmt: skip
    reason = body.reason if body else None
    return _move(conn, tenant_id, rollout_id, service.pause, principal.actor, reason)


@router.post("/{rollout_id}/resume", summary="Go on after a pause")
def resume(rollout_id: RowId, conn: Conn, principal: Operator, tenant_id: TenantId) -> RolloutOut:
    return _move(conn, tenant_id, rollout_id, service.resume, principal.actor)


@router.post("/{rollout_id}/abort", summary="End a rollout for good")
def abort(
    rollout_id: RowId, conn: Conn, principal: Operator, tenant_id: TenantId,
    body: MoveIn | None = None,
) -> RolloutOut:  # fmt: skip
    reason = body.reason if body else None
    return _move(conn, tenant_id, rollout_id, service.abort, principal.actor, reason)
