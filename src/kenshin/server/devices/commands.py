"""Remote operations: recorded with an id, sent over MQTT, their results recorded.

pending ──published──▶ sent ──result──▶ done | failed;  pending/sent ──past expiry──▶ expired

A sent command whose gateway is heard from well after, still without a result, is
published again (`owed`): the broker kept no session for it (clean sessions, the
cluster's default) or lost its queue. The gateway answers a copy of a command it has
done with the same result and drops one under way (gateway/commands.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, insert, select, update

from kenshin.wire import Command, CommandName, CommandResult

from ..accounts import audit
from ..schema_base import utcnow
from . import tables as t

DEFAULT_TTL = timedelta(minutes=10)
OWED_AFTER = timedelta(seconds=10)  # heard from this long after sending, still no result
KNOWN = {name.value for name in CommandName}


class CommandError(ValueError):
    pass


def _check_args(name: str, args: dict[str, Any]) -> None:
    if name not in KNOWN:
        raise CommandError(f"unknown command {name!r}; known: {', '.join(sorted(KNOWN))}")
    if name == "read_property" and "epc" not in args:
        raise CommandError('read_property needs args.epc, e.g. "0xE7"')
    if name == "backfill" and not {"from_s", "to_s"} <= args.keys():
        raise CommandError("backfill needs args.from_s and args.to_s (epoch seconds)")
    if name == "update":  # the wire contract of issue 19's rollouts (docs/updates.md)
        delay = args.get("delay_s")
        if not isinstance(args.get("version"), str) or type(delay) is not int:
            raise CommandError("update needs args.version (a release) and args.delay_s (seconds)")
        if not 0 <= delay <= 86_400:
            raise CommandError("update's args.delay_s is 0 to 86400 seconds")


def create(
    conn: Connection,
    tenant_id: int,
    gateway_id: int,
    name: str,
    args: dict[str, Any],
    *,
    actor: str,
    ttl: timedelta = DEFAULT_TTL,
) -> Row:
    _check_args(name, args)
    now = utcnow()
    key = conn.execute(
        insert(t.commands).values(
            tenant_id=tenant_id,
            gateway_id=gateway_id,
            name=name,
            args=args,
            state="pending",
            created_at=now,
            expires_at=now + ttl,
            created_by=actor,
        )
    ).inserted_primary_key
    audit(
        conn,
        actor,
        f"command.{name}",
        target=f"gateway:{gateway_id}",
        tenant_id=tenant_id,
        detail={"command_id": key[0]},
    )
    return get(conn, key[0], tenant_id)


def get(conn: Connection, command_id: int, tenant_id: int) -> Row | None:
    return conn.execute(
        select(t.commands).where(t.commands.c.id == command_id, t.commands.c.tenant_id == tenant_id)
    ).first()


def newest(
    conn: Connection, tenant_id: int, gateway_id: int, name: str, since: datetime
) -> Row | None:
    """The gateway's newest command `name` created after `since`, if any."""
    c = t.commands.c
    return conn.execute(
        select(t.commands)
        .where(
            c.tenant_id == tenant_id,
            c.gateway_id == gateway_id,
            c.name == name,
            c.created_at > since,
        )
        .order_by(c.id.desc())
        .limit(1)
    ).first()


def pending(conn: Connection) -> list[tuple[Row, str]]:
    """Commands to publish, with their gateway's MQTT id."""
    rows = conn.execute(
        select(t.commands, t.gateways.c.serial)
        .join(t.gateways, t.gateways.c.id == t.commands.c.gateway_id)
        .where(t.commands.c.state == "pending", t.commands.c.expires_at > utcnow())
        .order_by(t.commands.c.id)
    ).all()
    return [(row, row.serial) for row in rows]


def owed(conn: Connection, now: datetime | None = None) -> list[tuple[Row, str]]:
    """Sent commands to publish again: their gateway was heard from more than
    OWED_AFTER after the last sending, and no result came. Sending again moves
    `sent_at`, so a gateway busy with a long command gets a copy per OWED_AFTER of its
    activity at most, which it drops."""
    rows = conn.execute(
        select(t.commands, t.gateways.c.serial, t.gateways.c.last_seen_at)
        .join(t.gateways, t.gateways.c.id == t.commands.c.gateway_id)
        .where(t.commands.c.state == "sent", t.commands.c.expires_at > (now or utcnow()))
        .order_by(t.commands.c.id)
    ).all()
    return [
        (row, row.serial)
        for row in rows
        if row.last_seen_at is not None
        and row.sent_at is not None
        and row.last_seen_at - row.sent_at > OWED_AFTER
    ]


def as_message(row: Row) -> Command:
    return Command(row.id, row.name, int(row.expires_at.timestamp()), dict(row.args or {}))


def mark_sent(conn: Connection, command_id: int, at: datetime | None = None) -> None:
    conn.execute(
        update(t.commands)
        .where(t.commands.c.id == command_id)
        .values(state="sent", sent_at=at or utcnow())
    )


def on_result(conn: Connection, gateway: Row, result: CommandResult) -> bool:
    """Record a result; only for a command of this very gateway (a device cannot answer
    for another's)."""
    done = conn.execute(
        update(t.commands)
        .where(
            and_(
                t.commands.c.id == result.id,
                t.commands.c.gateway_id == gateway.id,
                t.commands.c.state.in_(("pending", "sent")),
            )
        )
        .values(
            state="done" if result.ok else "failed",
            result=dict(result.result),
            error=result.error,
            done_at=utcnow(),
        )
    )
    return bool(done.rowcount)


def expire(conn: Connection, now: datetime | None = None) -> int:
    done = conn.execute(
        update(t.commands)
        .where(
            and_(
                t.commands.c.state.in_(("pending", "sent")),
                t.commands.c.expires_at <= (now or utcnow()),
            )
        )
        .values(state="expired")
    )
    return done.rowcount


def fail(conn: Connection, command_id: int, error: str) -> None:
    """A command the server itself could not send: failed, with why."""
    conn.execute(
        update(t.commands)
        .where(t.commands.c.id == command_id, t.commands.c.state == "pending")
        .values(state="failed", error=error[:500], done_at=utcnow())
    )
