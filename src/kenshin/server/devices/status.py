"""Each gateway's state, from what the broker and the gateway tell us, with every change
recorded as an event (the control panel's donut and event list read these).

    unclaimed ──claim──▶ never_seen ──heartbeat/data──▶ working
    working ──last will / silence──▶ lost_contact ──heartbeat/data──▶ working
    working ──heartbeat with the meter link down──▶ meter_link_down ──link up──▶ working
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Row, and_, insert, select, update

from kenshin.wire import LinkState, Status

from ..events import record_event
from ..metering.queries import newest_reading_at
from ..schema_base import utcnow
from . import tables as t

METER_LINK_DOWN = {LinkState.AUTH_FAILED, LinkState.DEVICE_LOST, LinkState.NO_METER}
SILENCE_FACTOR = 2.5  # lost contact after this many heartbeat periods without a word


def set_state(conn: Connection, gateway: Row, state: str, *, reason: str, at: datetime) -> bool:
    """Move a gateway to `state`, recording the transition; False if it was there. The
    state is read afresh: `gateway` may be a row read earlier in the transaction (a group of
    messages), and a stale one would record the same transition twice."""
    if gateway.state == state:
        return False
    current = conn.execute(
        select(t.gateways.c.state).where(t.gateways.c.id == gateway.id)
    ).scalar_one()
    if current == state:
        return False
    conn.execute(
        update(t.gateways).where(t.gateways.c.id == gateway.id).values(state=state, state_since=at)
    )
    severity = "warning" if state in ("lost_contact", "meter_link_down") else "info"
    record_event(
        conn,
        tenant_id=gateway.tenant_id,
        gateway_id=gateway.id,
        code=f"gateway_{state}",
        severity=severity,
        detail={"from": current, "reason": reason},
        at=at,
    )
    return True


def heard_from(conn: Connection, gateway: Row, *, at: datetime | None = None) -> None:
    """Any message from the gateway: it is alive."""
    heard_from_all(conn, [gateway], at=at)


def heard_from_all(conn: Connection, gateways: list[Row], *, at: datetime | None = None) -> None:
    """Messages from these gateways: one update for all, a transition where one woke up."""
    if not gateways:
        return
    at = at or utcnow()
    ids = sorted(g.id for g in gateways)
    conn.execute(update(t.gateways).where(t.gateways.c.id.in_(ids)).values(last_seen_at=at))
    for gateway in gateways:
        if gateway.state in ("never_seen", "lost_contact"):
            set_state(conn, gateway, "working", reason="heard from it", at=at)


def on_status(conn: Connection, gateway: Row, status: Status) -> None:
    at = utcnow()
    conn.execute(
        update(t.gateways)
        .where(t.gateways.c.id == gateway.id)
        .values(
            last_seen_at=at,
            settings_version_applied=status.settings_version,
        )
    )
    conn.execute(
        insert(t.gateway_reports).values(
            gateway_id=gateway.id,
            at=at,
            agent_version=status.agent_version[:64],
            uptime_s=status.uptime_s,
            link=LinkState(status.link).value,
            lqi=status.lqi,
            queue_depth=status.queue_depth,
            last_good_read_at=(
                datetime.fromtimestamp(status.last_good_read_s, UTC)
                if status.last_good_read_s is not None
                else None
            ),
            settings_version=status.settings_version,
            errors=dict(status.errors) or None,
        )
    )
    if (
        status.settings_version is not None
        and status.settings_version != gateway.settings_version_applied
    ):
        record_event(
            conn,
            tenant_id=gateway.tenant_id,
            gateway_id=gateway.id,
            code="settings_applied",
            severity="info",
            detail={"version": status.settings_version},
            at=at,
        )
    link = LinkState(status.link)
    wanted = "meter_link_down" if link in METER_LINK_DOWN else "working"
    if gateway.state != "unclaimed":
        set_state(conn, gateway, wanted, reason=f"meter link {link.value}", at=at)


def on_offline(conn: Connection, gateway: Row, reason: str) -> None:
    """The broker delivered the gateway's last will: the connection is gone."""
    if gateway.state not in ("unclaimed", "never_seen"):
        set_state(conn, gateway, "lost_contact", reason=reason, at=utcnow())


def sweep_silent(conn: Connection, heartbeat_s: float, *, now: datetime | None = None) -> int:
    """Gateways working (or link-down) that went quiet without a last will (a cut power
    line or a NAT that dropped the connection silently): lost contact."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=heartbeat_s * SILENCE_FACTOR)
    quiet = conn.execute(
        select(t.gateways).where(
            and_(
                t.gateways.c.state.in_(("working", "meter_link_down")),
                t.gateways.c.last_seen_at < cutoff,
            )
        )
    ).all()
    for gateway in quiet:
        set_state(conn, gateway, "lost_contact", reason="silent", at=now)
    return len(quiet)


# -- what the gateway page shows, live -------------------------------------------------------

LQI_HISTORY = timedelta(days=1)
LINK_UP_STATES = ("working", "meter_link_down")  # the agent is connected: its clock runs


def rssi_dbm(lqi: int | None) -> float | None:
    """The LQI as dBm, by the dongle vendors' formula (as the agent's link status)."""
    return None if lqi is None else round(0.275 * lqi - 104.27, 1)


def gateway_status(
    conn: Connection, tenant_id: int, gateway_id: int, *, now: datetime | None = None
) -> dict | None:
    """The gateway's state and newest status report as the page shows it (None: not this
    tenant's): the uptime carried forward to now while the gateway is connected, the last
    good read the later of the agent's word and the newest reading stored, and the LQI
    reports of the last day. Three indexed queries."""
    now = now or utcnow()
    g, r = t.gateways.c, t.gateway_reports.c
    gateway = conn.execute(
        select(g.id, g.state, g.state_since, g.last_seen_at).where(
            g.id == gateway_id, g.tenant_id == tenant_id
        )
    ).one_or_none()
    if gateway is None:
        return None
    report = conn.execute(
        select(t.gateway_reports)
        .where(r.gateway_id == gateway_id)
        .order_by(r.at.desc(), r.id.desc())
        .limit(1)
    ).one_or_none()
    history = conn.execute(
        select(r.at, r.lqi)
        .where(r.gateway_id == gateway_id, r.at >= now - LQI_HISTORY, r.lqi.is_not(None))
        .order_by(r.at)
    ).all()
    m = t.meters.c
    of_gateway = select(m.id).where(m.gateway_id == gateway_id, m.tenant_id == tenant_id)
    last_reading = newest_reading_at(conn, of_gateway)
    out: dict = {
        "gateway_id": gateway.id,
        "state": gateway.state,
        "state_since": gateway.state_since,
        "last_seen_at": gateway.last_seen_at,
        "report": None,
        "lqi_history": [{"at": h.at, "lqi": h.lqi} for h in history],
        "last_good_read_at": last_reading,
    }
    if report is not None:
        uptime = report.uptime_s
        if gateway.state in LINK_UP_STATES:
            uptime += max(0, int((now - report.at).total_seconds()))
        good = [at for at in (report.last_good_read_at, last_reading) if at is not None]
        out["last_good_read_at"] = max(good) if good else None
        out["report"] = {
            "at": report.at,
            "link": report.link,
            "lqi": report.lqi,
            "rssi_dbm": rssi_dbm(report.lqi),
            "uptime_s": uptime,
            "queue_depth": report.queue_depth,
            "agent_version": report.agent_version,
            "settings_version": report.settings_version,
            "errors": report.errors or {},
        }
    return out
