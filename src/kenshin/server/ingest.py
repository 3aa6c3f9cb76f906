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

from dataclasses import dataclass, field
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


def _dialect_insert(conn: Connection, table):
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


COPY_FROM = 500  # instant readings in a group from which COPY beats a multi-row insert
_INSTANT_COLUMNS = ("meter_id", "at", "power_w", "current_r_da", "current_t_da")


def _copy_instant(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: COPY into a session-local staging table, then one INSERT ... SELECT that
    skips what is already there (redelivery), all in the caller's transaction."""
    columns = ", ".join(_INSTANT_COLUMNS)
    driver = conn.connection.driver_connection
    with driver.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS ingest_instant "
            "(LIKE readings_instant INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cur.copy(f"COPY ingest_instant ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in _INSTANT_COLUMNS])
        cur.execute(
            f"INSERT INTO readings_instant ({columns}) SELECT {columns} FROM ingest_instant "
            "ON CONFLICT DO NOTHING"
        )
        cur.execute("DELETE FROM ingest_instant")  # a second group in this transaction


def _insert_ignore(conn: Connection, table, rows: list[dict[str, Any]]) -> int:
    """Insert rows, skipping those already there (redelivery); returns how many were new."""
    if not rows:
        return 0
    return conn.execute(_dialect_insert(conn, table).on_conflict_do_nothing(), rows).rowcount or 0


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


@dataclass
class Group:
    """What the messages of one transaction share, written once at `flush`: gateway and
    meter rows looked up once, every instant reading in one insert and one rollup
    upsert, each gateway's sign of life and progress once. A group of one is a message."""

    gateways: dict[str, Row | None] = field(default_factory=dict)
    meters: dict[int, Row | None] = field(default_factory=dict)
    instant: list[dict[str, Any]] = field(default_factory=list)
    heard: dict[int, Row] = field(default_factory=dict)
    progress: dict[int, int] = field(default_factory=dict)

    def gateway(self, conn: Connection, serial: str) -> Row | None:
        if serial not in self.gateways:
            self.gateways[serial] = gateway_by_serial(conn, serial)
        return self.gateways[serial]

    def meter(self, conn: Connection, meter_id: int) -> Row | None:
        if meter_id not in self.meters:
            self.meters[meter_id] = conn.execute(
                select(s.meters).where(s.meters.c.id == meter_id)
            ).first()
        return self.meters[meter_id]

    def flush(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql" and len(self.instant) >= COPY_FROM:
            _copy_instant(conn, self.instant)
        else:
            _insert_ignore(conn, s.readings_instant, self.instant)
        rollups.note_instant(conn, self.instant)
        status.heard_from_all(conn, list(self.heard.values()))
        _progress(conn, self.progress)


def handle_group(conn: Connection, work: list[tuple[str, bytes]]) -> list[Outcome]:
    """Several messages in one transaction, as `handle` does each."""
    group = Group()
    outcomes = [_handle(conn, topic, payload, group) for topic, payload in work]
    group.flush(conn)
    return outcomes


def handle(conn: Connection, topic: str, payload: bytes) -> Outcome:
    return handle_group(conn, [(topic, payload)])[0]


def _handle(conn: Connection, topic: str, payload: bytes, group: Group) -> Outcome:
    try:
        serial, message = decode_publish(topic, payload)
    except WireError as err:
        return quarantine(conn, topic, payload, f"undecodable: {err}")
    gateway = group.gateway(conn, serial)
    if gateway is None or gateway.tenant_id is None:
        return quarantine(conn, topic, payload, f"from an unknown or unclaimed gateway {serial}")
    if isinstance(message, ReadingsBatch):
        return _readings(conn, gateway, message, topic, payload, group)
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
    conn: Connection, gateway: Row, batch: ReadingsBatch, topic: str, payload: bytes, group: Group
) -> Outcome:
    meter_id = int(batch.meter[1:]) if batch.meter[:1] == "m" and batch.meter[1:].isdigit() else 0
    meter = group.meter(conn, meter_id) if 0 < meter_id < 2**63 else None
    if meter is None or meter.gateway_id != gateway.id:  # a device speaks for its own meters
        return quarantine(
            conn, topic, payload, f"meter {batch.meter} is not this gateway's", gateway
        )
    group.heard[gateway.id] = gateway
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
    group.instant += instant
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
        group.meters.pop(meter.id, None)  # read again, with its new scale
    group.progress[gateway.id] = max(batch.seq, group.progress.get(gateway.id, batch.seq))
    return Outcome("readings", gateway.id, len(instant), written_fixed)


def _progress(conn: Connection, newest: dict[int, int]) -> None:
    """Each gateway's highest batch sequence number seen, never lowered."""
    if not newest:
        return
    p = s.ingest_progress
    statement = _dialect_insert(conn, p)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["gateway_id"],
            set_={"last_seq": statement.excluded.last_seq},
            where=statement.excluded.last_seq > p.c.last_seq,
        ),
        [{"gateway_id": g, "last_seq": seq} for g, seq in sorted(newest.items())],
    )
