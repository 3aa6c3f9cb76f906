"""Realtime power for a person watching a meter: a short lease on its gateway's fast reads.

Opening a meter's page asks (`POST /meters/{id}/live`) for the gateway's `realtime`
command: instant power every `INTERVAL_S` seconds for `LEASE_S` seconds, each sample sent
at once (the agent flushes realtime samples as soon as they are read). The page renews
the lease while it is open; a renewal while the current lease still has more than half
of its time left sends nothing, so a page asking every 20 s costs the gateway one command
every 30 s. Closing the page (`POST /meters/{id}/live/stop`) ends the lease at once with
a `realtime` command of no duration; a lease nobody renews simply runs out.

Watching is reading: a viewer may ask. The lease belongs to the gateway, not to the
person: a second watcher renews the same lease, and a stop ends it for both (the other
page's next renewal, within 20 s, starts it again).

The samples reach the page the ordinary way: the ingest stores them, and the page reads
them from `/meters/{id}/power`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import Connection, Row

from .. import schema_base
from ..deps import Conn, Principal, RowId, TenantId, require_role
from ..devices import commands
from ..devices.registry import get_meter
from ..problems import Problem
from ..times import JstDateTime

__all__ = ["INTERVAL_S", "LEASE_S", "router"]

router = APIRouter(tags=["metering"])
Viewer = Annotated[Principal, Depends(require_role("viewer"))]

LEASE_S = 60  # how long the gateway reads fast after one request
INTERVAL_S = 3  # seconds between instant reads meanwhile
RENEW_S = 20  # how often a page should ask again while it is open
# Live values in the `commands` rows this module writes.
LIVE_STATES = ("pending", "sent", "done")


class LiveLease(BaseModel):
    meter_id: RowId
    gateway_id: RowId
    command_id: RowId | None = Field(description="the realtime command carrying the lease")
    interval_s: int = Field(description="seconds between the gateway's instant reads")
    lease_s: int = Field(description="how long one lease lasts")
    renew_s: int = Field(description="ask again this often while watching")
    until: JstDateTime | None = Field(description="when the lease runs out; null: none running")
    sent: bool = Field(description="a command went to the gateway for this request")


def _meter_gateway(conn: Connection, meter_id: int, tenant_id: int) -> int:
    meter = get_meter(conn, meter_id, tenant_id)
    if meter is None:
        raise Problem(404, "no such meter")
    if meter.gateway_id is None:
        raise Problem(409, "the meter has no gateway to read it")
    return meter.gateway_id


def _current(conn: Connection, tenant_id: int, gateway_id: int, now: datetime) -> Row | None:
    """The gateway's newest realtime command of the last lease's length, if any."""
    since = now - timedelta(seconds=LEASE_S)
    return commands.newest(conn, tenant_id, gateway_id, "realtime", since)


def _until(command: Row | None) -> datetime | None:
    """When the lease `command` gave runs out (None: it gives none, or failed)."""
    if command is None or command.state not in LIVE_STATES:
        return None
    duration = float((command.args or {}).get("duration_s", 0))
    return command.created_at + timedelta(seconds=duration) if duration > 0 else None


def _wake(request: Request) -> None:
    """Push the command as soon as this request's transaction has committed."""
    service = getattr(request.app.state, "device_service", None)
    if service is not None:
        request.state.after_commit.append(service.wake)


def _lease(meter_id: int, gateway_id: int, command: Row | None, sent: bool) -> LiveLease:
    return LiveLease(
        meter_id=meter_id,
        gateway_id=gateway_id,
        command_id=command.id if command is not None else None,
        interval_s=INTERVAL_S,
        lease_s=LEASE_S,
        renew_s=RENEW_S,
        until=_until(command),
        sent=sent,
    )


def _send(request, conn, principal, tenant_id, meter_id, gateway_id, duration_s, ttl):
    """A `realtime` command of `duration_s` to the gateway, pushed at once; its lease."""
    command = commands.create(
        conn,
        tenant_id,
        gateway_id,
        "realtime",
        {"interval_s": INTERVAL_S, "duration_s": duration_s},
        actor=principal.actor,
        ttl=ttl,
    )
    _wake(request)
    return _lease(meter_id, gateway_id, command, sent=True)


@router.post(
    "/meters/{meter_id}/live",
    summary="Watch a meter: its gateway reads instant power every few seconds for a while",
    description=f"Starts or renews a {LEASE_S} s lease of instant reads every {INTERVAL_S} s "
    "on the meter's gateway (a `realtime` command); while the current lease has more than "
    "half its time left, nothing is sent. Read the samples from `/meters/{meter_id}/power`. "
    "409: the meter has no gateway.",
)
def start_live(
    meter_id: RowId, request: Request, conn: Conn, principal: Viewer, tenant_id: TenantId
) -> LiveLease:
    gateway_id = _meter_gateway(conn, meter_id, tenant_id)
    now = schema_base.utcnow()
    current = _current(conn, tenant_id, gateway_id, now)
    until = _until(current)
    if until is not None and until - now > timedelta(seconds=LEASE_S / 2):
        return _lease(meter_id, gateway_id, current, sent=False)
    ttl = timedelta(seconds=LEASE_S / 2)  # not delivered by then: the next renewal goes
    return _send(request, conn, principal, tenant_id, meter_id, gateway_id, LEASE_S, ttl)


@router.post(
    "/meters/{meter_id}/live/stop",
    summary="Stop watching a meter: its gateway goes back to its usual pace",
    description="Ends the running lease (a `realtime` command of no duration); nothing is "
    "sent when no lease runs. Suits `navigator.sendBeacon` (no body).",
)
def stop_live(
    meter_id: RowId, request: Request, conn: Conn, principal: Viewer, tenant_id: TenantId
) -> LiveLease:
    gateway_id = _meter_gateway(conn, meter_id, tenant_id)
    now = schema_base.utcnow()
    current = _current(conn, tenant_id, gateway_id, now)
    until = _until(current)
    if until is None or until <= now:
        return _lease(meter_id, gateway_id, None, sent=False)
    ttl = timedelta(seconds=LEASE_S)
    return _send(request, conn, principal, tenant_id, meter_id, gateway_id, 0, ttl)
