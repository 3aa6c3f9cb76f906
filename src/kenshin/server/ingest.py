"""Ingest: what the gateways publish, checked and written idempotently.

`handle(conn, topic, payload)` runs inside one transaction per message; the MQTT side
(`runtime`) acknowledges the message to the broker only after that transaction commits,
so a crash anywhere in between means the broker delivers it again, and the idempotent
writes (primary keys on meter+time, ON CONFLICT DO NOTHING) make the second delivery a
no-op. A malformed or foreign payload (undecodable, an unknown gateway, a meter that is
not this gateway's) is quarantined with an event and acknowledged: it would never get
better by redelivery, and it must never stop the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from kenshin.wire import (
    CommandResult,
    Event,
    ReadingsBatch,
    Status,
    ValueSource,
    WireError,
    decode_publish,
)

from . import schema as s
from .devices import commands, status
from .devices.registry import gateway_by_serial
from .metering import rollups, store
from .schema import utcnow


@dataclass
class Outcome:
    kind: str  # readings | status | event | result | quarantined
    gateway_id: int | None = None
    instant: int = 0
    fixed: int = 0
    reason: str | None = None


def _insert_ignore(conn: Connection, table, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).on_conflict_do_nothing()
    return conn.execute(statement, rows).rowcount or 0


def quarantine(
    conn: Connection, topic: str, payload: bytes, reason: str, gateway: Row | None = None
) -> Outcome:
    now = utcnow()
    conn.execute(
        insert(s.quarantine).values(topic=topic[:512], payload=payload, reason=reason, at=now)
    )
    conn.execute(
        insert(s.events).values(
            tenant_id=gateway.tenant_id if gateway else None,
            gateway_id=gateway.id if gateway else None,
            code="payload_quarantined",
            severity="warning",
            detail={"topic": topic[:200], "reason": reason[:500]},
            at=now,
        )
    )
    return Outcome("quarantined", gateway.id if gateway else None, reason=reason)


def handle(conn: Connection, topic: str, payload: bytes) -> Outcome:
    try:
        serial, message = decode_publish(topic, payload)
    except WireError as err:
        return quarantine(conn, topic, payload, f"undecodable: {err}")
    gateway = gateway_by_serial(conn, serial)
    if gateway is None or gateway.tenant_id is None:
        return quarantine(conn, topic, payload, f"from an unknown or unclaimed gateway {serial}")
    if isinstance(message, ReadingsBatch):
        return _readings(conn, gateway, message, topic, payload)
    status.heard_from(conn, gateway)
    if isinstance(message, Status):
        status.on_status(conn, gateway, message)
        return Outcome("status", gateway.id)
    if isinstance(message, Event):
        _event(conn, gateway, message)
        return Outcome("event", gateway.id)
    if isinstance(message, CommandResult):
        commands.on_result(conn, gateway, message)
        return Outcome("result", gateway.id)
    return quarantine(
        conn, topic, payload, f"{type(message).__name__} is not for the cloud", gateway
    )


def _event(conn: Connection, gateway: Row, event: Event) -> None:
    if event.code == "offline":  # the gateway's last will, delivered by the broker
        status.on_offline(conn, gateway, str(event.detail.get("reason", "offline")))
        return
    conn.execute(
        insert(s.events).values(
            tenant_id=gateway.tenant_id,
            gateway_id=gateway.id,
            code=f"gw_{event.code}"[:64],
            severity="info",
            detail=dict(event.detail),
            at=datetime.fromtimestamp(event.at_s, UTC),
        )
    )


def _readings(
    conn: Connection, gateway: Row, batch: ReadingsBatch, topic: str, payload: bytes
) -> Outcome:
    meter_id = int(batch.meter[1:]) if batch.meter[:1] == "m" and batch.meter[1:].isdigit() else 0
    meter = conn.execute(
        select(s.meters).where(s.meters.c.id == meter_id, s.meters.c.gateway_id == gateway.id)
    ).first()
    if meter is None:  # a device may speak only for its own meters
        return quarantine(
            conn, topic, payload, f"meter {batch.meter} is not this gateway's", gateway
        )
    status.heard_from(conn, gateway)
    instant = [
        {
            "meter_id": meter.id,
            "at": datetime.fromtimestamp(x.at_s, UTC),
            "power_w": x.power_w,
            "current_r_da": x.current_r_da if x.current_r_da is not None else 0,
            "current_t_da": x.current_t_da,
        }
        for x in batch.instant
        if x.power_w is not None
    ]
    now = utcnow()
    fixed = []
    for value in batch.fixed:
        source = "refill" if value.source == ValueSource.REFILLED else "measured"
        for direction, raw in ((0, value.normal_raw), (1, value.reverse_raw)):
            if raw is not None:
                fixed.append(
                    {
                        "meter_id": meter.id,
                        "direction": direction,
                        "raw": raw,
                        "slot_start": datetime.fromtimestamp(value.slot_start_s, UTC),
                        "source": source,
                        "received_at": now,
                    }
                )
    written_instant = _insert_ignore(conn, s.readings_instant, instant)
    rollups.note_instant(conn, meter.id, instant)
    written_fixed = _insert_ignore(conn, s.readings_fixed, fixed)
    scale = batch.scale
    if scale is not None and fixed:  # the slots these boundaries open and close
        for direction in (0, 1):
            boundaries = [
                int(r["slot_start"].timestamp()) for r in fixed if r["direction"] == direction
            ]
            store.recompute(conn, meter.id, direction, scale, boundaries, tenant_id=meter.tenant_id)
    if scale is not None and (meter.coefficient, meter.unit_code, meter.digits) != (
        scale.coefficient,
        scale.unit_code,
        scale.digits,
    ):
        conn.execute(
            update(s.meters)
            .where(s.meters.c.id == meter.id)
            .values(
                coefficient=scale.coefficient,
                unit_code=scale.unit_code,
                digits=scale.digits,
            )
        )
    _progress(conn, gateway.id, batch.seq)
    return Outcome("readings", gateway.id, written_instant, written_fixed)


def _progress(conn: Connection, gateway_id: int, seq: int) -> None:
    current = conn.execute(
        select(s.ingest_progress.c.last_seq).where(s.ingest_progress.c.gateway_id == gateway_id)
    ).scalar()
    if current is None:
        _insert_ignore(conn, s.ingest_progress, [{"gateway_id": gateway_id, "last_seq": seq}])
    elif seq > current:
        conn.execute(
            update(s.ingest_progress)
            .where(s.ingest_progress.c.gateway_id == gateway_id)
            .values(last_seq=seq)
        )
