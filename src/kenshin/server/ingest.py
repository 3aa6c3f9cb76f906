"""Ingest: what the gateways publish, checked and written idempotently.

`handle(conn, topic, payload)` runs inside one transaction per message; the MQTT side
(`runtime`) acknowledges the message to the broker only after that transaction commits,
so a crash anywhere in between means the broker delivers it again, and the idempotent
writes (primary keys on meter+time, ON CONFLICT DO NOTHING) make the second delivery a
no-op. A malformed or foreign payload (undecodable, an unknown gateway, a meter that is
not this gateway's) is quarantined with an event and acknowledged: it would never get
better by redelivery, and it must never stop the loop.

Under load the runtime hands over all the messages waiting at once (`handle_group`, one
transaction): they are decoded first, their gateways and meters fetched with one query
each, and their instant readings written together at the end (on PostgreSQL by a binary
COPY), with one upsert each for the newest and the peak values, and one sign of life and
one progress row a gateway.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat, starmap
from operator import attrgetter, mul, sub
from typing import Any

import psycopg
from sqlalchemy import Connection, Row, delete, insert, select, update

from kenshin.wire import (
    CommandResult,
    DrAck,
    DrReport,
    Event,
    Message,
    ReadingsBatch,
    Status,
    ValueSource,
    WireDecodeError,
    WireError,
    decode_publish,
)

from . import dr_link
from . import schema as s
from .devices import commands, status
from .devices.registry import gateway_by_serial
from .events import record_event
from .metering import recipe_series, rollups, store
from .rollouts.service import on_update_state
from .schema import utcnow


@dataclass
class Outcome:
    kind: str  # readings | status | event | result | dr_ack | dr_report | quarantined
    gateway_id: int | None = None
    instant: int = 0
    fixed: int = 0
    reason: str | None = None


COPY_FROM = 500  # instant readings in a group from which COPY beats a multi-row insert
LOOKUP_CHUNK = 500  # keys in one IN (...) of a group's lookups
_INSTANT_COLUMNS = ("meter_id", "at", "power_w", "current_r_da", "current_t_da")

InstantRow = rollups.InstantRow  # (meter id, at epoch s, W, dA, dA | None)

# PostgreSQL's binary COPY format: signature, flags, header extension; then each row as
# a field count and (length, bytes) per field; then -1. Timestamps are microseconds since
# 2000-01-01 UTC, and the columns are int8, timestamptz, int4, int4, int4 (or NULL).
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = struct.pack("!h", -1)
_PG_EPOCH_S = 946_684_800
_ROW = struct.Struct("!hiqiqiiiiii")
_ROW_NO_T = struct.Struct("!hiqiqiiiii")  # current T absent: its length is -1


def binary_copy(rows: list[InstantRow]) -> bytes:
    """The rows in PostgreSQL's binary COPY format, for readings_instant's five columns."""
    pack, pack_no_t, epoch = _ROW.pack, _ROW_NO_T.pack, _PG_EPOCH_S
    meters, ats, powers, currents_r, currents_t = zip(*rows, strict=True) if rows else ((),) * 5
    if None not in currents_t:  # every current T there: packed column-wise by built-ins
        micros = map(mul, map(sub, ats, repeat(epoch)), repeat(1_000_000))
        fields = (repeat(5), repeat(8), meters, repeat(8), micros, repeat(4), powers,
                  repeat(4), currents_r, repeat(4), currents_t)  # fmt: skip
        body = b"".join(starmap(pack, zip(*fields, strict=False)))
        return b"".join((_COPY_HEADER, body, _COPY_TRAILER))
    body = b"".join(
        pack(5, 8, m, 8, (at - epoch) * 1_000_000, 4, p, 4, r, 4, t)
        if t is not None
        else pack_no_t(5, 8, m, 8, (at - epoch) * 1_000_000, 4, p, 4, r, -1)
        for m, at, p, r, t in rows
    )
    return b"".join((_COPY_HEADER, body, _COPY_TRAILER))


def _copy_instant(conn: Connection, rows: list[InstantRow]) -> None:
    """PostgreSQL: one binary COPY straight into readings_instant, under a savepoint. If
    some rows are there already (a redelivery: COPY has no ON CONFLICT), the savepoint is
    rolled back and the rows go through a session-local staging table and an INSERT ...
    SELECT that skips them. All in the caller's transaction."""
    data = binary_copy(rows)
    columns = ", ".join(_INSTANT_COLUMNS)
    copy_in = f"COPY readings_instant ({columns}) FROM STDIN (FORMAT BINARY)"
    driver = conn.connection.driver_connection
    try:
        with conn.begin_nested(), driver.cursor() as cur, cur.copy(copy_in) as copy:
            copy.write(data)
        return
    except psycopg.errors.UniqueViolation:
        pass
    with driver.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS ingest_instant "
            "(LIKE readings_instant INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cur.copy(f"COPY ingest_instant ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(data)
        cur.execute(
            f"INSERT INTO readings_instant ({columns}) SELECT {columns} FROM ingest_instant "
            "ON CONFLICT DO NOTHING"
        )
        cur.execute("DELETE FROM ingest_instant")  # a second group in this transaction


def _write_instant(conn: Connection, rows: list[InstantRow]) -> None:
    if conn.dialect.name == "postgresql" and len(rows) >= COPY_FROM:
        _copy_instant(conn, rows)
        return
    values = [
        {"meter_id": m, "at": _utc(at), "power_w": p, "current_r_da": r, "current_t_da": t}
        for m, at, p, r, t in rows
    ]
    _insert_ignore(conn, s.readings_instant, values)


def _utc(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _insert_ignore(conn: Connection, table, rows: list[dict[str, Any]]) -> int:
    """Insert rows, skipping those already there (redelivery); returns how many were new."""
    return rollups.insert_rows(conn, table, rows, lambda st: st.on_conflict_do_nothing())


def quarantine(
    conn: Connection, topic: str, payload: bytes, reason: str, gateway: Row | None = None
) -> Outcome:
    now = utcnow()
    if len(payload) > QUARANTINE_MAX_BYTES:  # kept to be looked at, not to fill the disk
        reason = f"{reason} (payload of {len(payload)} bytes, first {QUARANTINE_MAX_BYTES} kept)"
        payload = payload[:QUARANTINE_MAX_BYTES]
    conn.execute(
        insert(s.quarantine).values(topic=topic[:512], payload=payload, reason=reason, at=now)
    )
    record_event(
        conn,
        tenant_id=gateway.tenant_id if gateway else None,
        gateway_id=gateway.id if gateway else None,
        code="payload_quarantined",
        severity="warning",
        detail={"topic": topic[:200], "reason": reason[:500]},
        at=now,
    )
    return Outcome("quarantined", gateway.id if gateway else None, reason=reason)


def _meter_id(label: str) -> int | None:
    """The meter id in a batch's meter reference ("m123"), or None if it is none."""
    digits = label[1:]
    if label[:1] != "m" or not (digits.isascii() and digits.isdigit()):
        return None
    meter_id = int(digits)
    return meter_id if 0 < meter_id < 2**63 else None


Decoded = tuple[str, Message] | WireError  # (gateway serial, message), or why not


@dataclass
class Group:
    """What the messages of one transaction share, written once at `flush`: gateway and
    meter rows looked up together, every instant reading in one write and one rollup
    upsert, each gateway's sign of life and progress once. A group of one is a message.
    Rows are looked up in the group's own transaction, never kept across transactions:
    a gateway claimed elsewhere or a meter moved counts from the next group on."""

    gateways: dict[str, Row | None] = field(default_factory=dict)
    meters: dict[int, Row | None] = field(default_factory=dict)
    instant: list[InstantRow] = field(default_factory=list)
    heard: dict[int, Row] = field(default_factory=dict)
    progress: dict[int, int] = field(default_factory=dict)

    def look_up(self, conn: Connection, decoded: Iterable[Decoded]) -> None:
        """The gateways and meters these messages name, one query each (per chunk)."""
        messages = [d for d in decoded if not isinstance(d, WireError)]
        serials = sorted({serial for serial, _ in messages} - self.gateways.keys())
        for i in range(0, len(serials), LOOKUP_CHUNK):
            chunk = serials[i : i + LOOKUP_CHUNK]
            found = conn.execute(select(s.gateways).where(s.gateways.c.serial.in_(chunk)))
            by_serial = {row.serial: row for row in found}
            self.gateways.update((serial, by_serial.get(serial)) for serial in chunk)
        wanted = {_meter_id(m.meter) for _, m in messages if isinstance(m, ReadingsBatch)}
        meter_ids = sorted(wanted - {None} - self.meters.keys())
        for i in range(0, len(meter_ids), LOOKUP_CHUNK):
            chunk = meter_ids[i : i + LOOKUP_CHUNK]
            found = conn.execute(select(s.meters).where(s.meters.c.id.in_(chunk)))
            by_id = {row.id: row for row in found}
            self.meters.update((meter_id, by_id.get(meter_id)) for meter_id in chunk)

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
        if self.instant:
            _write_instant(conn, self.instant)
            rollups.note_instant(conn, self.instant)
        status.heard_from_all(conn, list(self.heard.values()))
        _progress(conn, self.progress)


def decode(topic: str, payload: bytes) -> Decoded:
    """What a message says, or why it says nothing usable (no database needed: the
    runtime decodes while the previous group is being written)."""
    try:
        return decode_publish(topic, payload)
    except WireError as err:
        return err
    except Exception as err:  # a decoder bug: quarantine the message, never stop the loop
        return WireDecodeError(f"the decoder failed: {type(err).__name__}: {err}")


def handle_group(
    conn: Connection, work: list[tuple[str, bytes]], decoded: list[Decoded] | None = None
) -> list[Outcome]:
    """Several messages in one transaction, as `handle` does each (`decoded`: what
    `decode` made of them, if that is done already)."""
    if decoded is None:
        decoded = [decode(topic, payload) for topic, payload in work]
    group = Group()
    group.look_up(conn, decoded)
    outcomes = [
        _handle(conn, topic, payload, message, group)
        for (topic, payload), message in zip(work, decoded, strict=True)
    ]
    group.flush(conn)
    return outcomes


def handle(conn: Connection, topic: str, payload: bytes) -> Outcome:
    return handle_group(conn, [(topic, payload)])[0]


def _handle(
    conn: Connection, topic: str, payload: bytes, decoded: Decoded, group: Group
) -> Outcome:
    if isinstance(decoded, WireError):
        return quarantine(conn, topic, payload, f"undecodable: {decoded}")
    serial, message = decoded
    gateway = group.gateway(conn, serial)
    if gateway is None or gateway.tenant_id is None:
        return quarantine(conn, topic, payload, f"from an unknown or unclaimed gateway {serial}")
    if isinstance(message, ReadingsBatch):
        return _readings(conn, gateway, message, topic, payload, group)
    if isinstance(message, Status):  # says how it is itself: no "heard from" transition
        status.on_status(conn, gateway, message)
        return Outcome("status", gateway.id)
    status.heard_from(conn, gateway)
    if isinstance(message, Event):
        _event(conn, gateway, message)
        return Outcome("event", gateway.id)
    if isinstance(message, CommandResult):
        commands.on_result(conn, gateway, message)
        return Outcome("result", gateway.id)
    if isinstance(message, DrAck):
        dr_link.on_ack(conn, gateway, message)
        return Outcome("dr_ack", gateway.id)
    if isinstance(message, DrReport):
        dr_link.on_report(conn, gateway, message)
        return Outcome("dr_report", gateway.id)
    return quarantine(
        conn, topic, payload, f"{type(message).__name__} is not for the cloud", gateway
    )


def _event(conn: Connection, gateway: Row, event: Event) -> None:
    if event.code == "offline":  # the gateway's last will, delivered by the broker
        status.on_offline(conn, gateway, str(event.detail.get("reason", "offline")))
        return
    severity, detail = "info", dict(event.detail)
    if event.code == recipe_series.READINGS_EVENT:  # a series of its own, not the events log
        try:
            recipe_series.store(conn, gateway.tenant_id, gateway.id, _utc(event.at_s), detail)
            return
        except recipe_series.RecipeSampleError as err:
            severity, detail = "warning", {"error": str(err)}
    if event.code == "update_state":  # a rollout's progress: the rollouts room's to keep
        on_update_state(conn, gateway, dict(event.detail))
        if event.detail.get("state") in ("failed", "rolled_back"):
            severity = "warning"
    elif event.code == "integrity" and event.detail.get("ok") is not True:
        severity = "critical"  # installed files differ from the signed release: intrusion?
    record_event(
        conn,
        tenant_id=gateway.tenant_id,
        gateway_id=gateway.id,
        code=f"gw_{event.code}",
        severity=severity,
        detail=detail,
        at=_utc(event.at_s),
    )


_SAMPLE_FIELDS = attrgetter("at_s", "power_w", "current_r_da", "current_t_da")


def _instant_rows(meter_id: int, batch: ReadingsBatch) -> list[InstantRow]:
    """The batch's samples with a power as rows (current R absent: 0). Column-wise with
    built-ins when nothing is absent, as nearly always: the ingest handles every sample."""
    if not batch.instant:
        return []
    ats, powers, currents_r, currents_t = zip(*map(_SAMPLE_FIELDS, batch.instant), strict=True)
    if None not in powers and None not in currents_r:
        return list(zip(repeat(meter_id), ats, powers, currents_r, currents_t, strict=False))
    return [
        (meter_id, at, power, r or 0, t)
        for at, power, r, t in zip(ats, powers, currents_r, currents_t, strict=True)
        if power is not None
    ]


def _readings(
    conn: Connection, gateway: Row, batch: ReadingsBatch, topic: str, payload: bytes, group: Group
) -> Outcome:
    meter_id = _meter_id(batch.meter)
    meter = group.meter(conn, meter_id) if meter_id is not None else None
    if meter is None or meter.gateway_id != gateway.id:  # a device speaks for its own meters
        return quarantine(
            conn, topic, payload, f"meter {batch.meter} is not this gateway's", gateway
        )
    group.heard[gateway.id] = gateway
    instant = _instant_rows(meter.id, batch)
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
                        "slot_start": _utc(value.slot_start_s),
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
    rollups.insert_rows(
        conn,
        p,
        [{"gateway_id": g, "last_seq": seq} for g, seq in sorted(newest.items())],
        lambda statement: statement.on_conflict_do_update(
            index_elements=["gateway_id"],
            set_={"last_seq": statement.excluded.last_seq},
            where=statement.excluded.last_seq > p.c.last_seq,
        ),
    )


QUARANTINE_MAX_BYTES = 64 * 1024  # per row: as large as a broker lets a packet be


def trim_quarantine(conn: Connection, now: datetime, keep_days: float, max_rows: int) -> int:
    """Quarantined messages older than `keep_days`, and the oldest beyond `max_rows`, go
    (each was recorded as an event when it came); returns how many."""
    q = s.quarantine
    gone = conn.execute(delete(q).where(q.c.at < now - timedelta(days=keep_days))).rowcount
    newest_kept = select(q.c.id).order_by(q.c.id.desc()).offset(max_rows).limit(1).scalar_subquery()
    gone += conn.execute(delete(q).where(q.c.id <= newest_kept)).rowcount
    return gone
