"""From the outbox to the tenant's server: deliveries made, sent, retried, logged.

1. `collect` turns outbox rows into deliveries in one transaction: a tenant's slot values
   of one half hour become one "slot.closed" delivery per subscribed hook (every meter's
   value in it), each event one "event" delivery; the rows are then deleted. On
   PostgreSQL the rows are taken with SKIP LOCKED, so several servers share the work.
2. `send_due` POSTs the deliveries whose time has come, signed (signing.py). Any 2xx is
   success; anything else (an error status, a refused connection, a timeout) is tried
   again after 30 s, 2 min, 10 min, 1 h, 6 h and 12 h, then the delivery is dead and an
   event says so. Every attempt's status or error is kept. A hook's deliveries go in the
   order they were made: while its oldest pending one waits for a retry, the later ones
   wait behind it (a receiver that was down gets the half hours in order).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Connection, Engine, and_, delete, insert, or_, select, update

from .. import schema as s
from ..retry import after_failure
from ..security import CredentialBox
from .signing import SIGNATURE_HEADER, sign

__all__ = ["BACKOFF", "UnsafeTarget", "check_target", "collect", "sealed_for", "send_due"]

log = logging.getLogger(__name__)

BACKOFF = (
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(hours=12),
)
TIMEOUT_S = 10.0
OUTBOX_BATCH = 5000


class UnsafeTarget(ValueError):
    """A URL that would make the platform reach into private networks."""


def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse non-HTTP(S) URLs, and unless allowed, hosts that resolve to loopback,
    private, link-local or otherwise non-public addresses (no scanning inside networks)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("a webhook URL is http:// or https:// with a host")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as err:
        raise UnsafeTarget(f"{parts.hostname} does not resolve: {err}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise UnsafeTarget(f"{parts.hostname} is {address}, not a public address")


def sealed_for(hook_id: int) -> bytes:
    return f"webhook:{hook_id}".encode()


# -- 1. collect ---------------------------------------------------------------------------------


def collect(conn: Connection, now: datetime | None = None) -> int:
    """Outbox rows into deliveries; returns how many deliveries were made."""
    o = s.outbox.c
    query = select(s.outbox).order_by(o.id).limit(OUTBOX_BATCH)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = conn.execute(query).all()
    if not rows:
        return 0
    hooks: dict[int, list] = defaultdict(list)
    for hook in conn.execute(
        select(s.webhooks).where(
            s.webhooks.c.active.is_(True),
            s.webhooks.c.tenant_id.in_({r.tenant_id for r in rows}),
        )
    ):
        hooks[hook.tenant_id].append(hook)
    payloads: list[tuple[int, str, dict]] = []  # (tenant, kind, payload)
    slots: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for row in rows:
        if row.kind == "slot":
            slots[(row.tenant_id, row.body["slot_start"])].append(row.body)
        else:
            payloads.append((row.tenant_id, "event", {"kind": "event", **row.body}))
    codes = _service_codes(conn, {b["meter_id"] for values in slots.values() for b in values})
    for (tenant_id, slot_start), values in slots.items():
        latest = {(v["meter_id"], v["direction"]): v for v in values}  # a later value wins
        payloads.append(
            (
                tenant_id,
                "slot.closed",
                {
                    "kind": "slot.closed",
                    "slot_start": slot_start,
                    "values": [
                        {**v, "service_code": codes.get(v["meter_id"])}
                        for _, v in sorted(latest.items())
                    ],
                },
            )
        )
    now = now or s.utcnow()
    deliveries = [
        {
            "tenant_id": tenant_id,
            "webhook_id": hook.id,
            "kind": kind,
            "payload": payload,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for tenant_id, kind, payload in payloads
        for hook in hooks[tenant_id]
        if kind in hook.kinds
    ]
    if deliveries:
        conn.execute(insert(s.webhook_deliveries), deliveries)
    conn.execute(delete(s.outbox).where(o.id.in_([r.id for r in rows])))
    return len(deliveries)


def _service_codes(conn: Connection, meter_ids: set[int]) -> dict[int, str]:
    if not meter_ids:
        return {}
    m, site = s.meters.c, s.sites.c
    return dict(
        conn.execute(
            select(m.id, site.service_code)
            .join_from(s.meters, s.sites, site.id == m.site_id)
            .where(m.id.in_(meter_ids))
        ).all()
    )


# -- 2. send --------------------------------------------------------------------------------------

Poster = Callable[[str, bytes, dict[str, str]], int]


def http_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as client:
        return client.post(url, content=body, headers=headers).status_code


def send_due(
    engine: Engine,
    box: CredentialBox,
    now: datetime,
    *,
    allow_private: bool,
    post: Poster = http_post,
    limit: int = 200,
) -> int:
    """Send what is due; returns how many were delivered."""
    d, w = s.webhook_deliveries.c, s.webhooks.c
    with engine.connect() as conn:
        due = conn.execute(
            select(s.webhook_deliveries, w.url, w.secret_enc)
            .join(s.webhooks, w.id == d.webhook_id)
            .where(
                and_(
                    d.state == "pending",
                    or_(d.next_attempt_at.is_(None), d.next_attempt_at <= now),
                )
            )
            .order_by(d.id)
            .limit(limit)
        ).all()
        queues: dict[int, list[int]] = defaultdict(list)  # every pending id, per hook
        for hook_id, delivery_id in conn.execute(
            select(d.webhook_id, d.id)
            .where(d.state == "pending", d.webhook_id.in_({r.webhook_id for r in due}))
            .order_by(d.id)
        ):
            queues[hook_id].append(delivery_id)
    delivered = 0
    held: set[int] = set()  # hooks whose earlier delivery failed this round
    for row in due:
        queue = queues[row.webhook_id]
        if row.webhook_id in held or not queue or queue[0] != row.id:
            continue  # an older delivery of this hook is still waiting: keep the order
        body = json.dumps(
            {"delivery_id": row.id, "tenant_id": row.tenant_id, **row.payload},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        secret = box.open(row.secret_enc, sealed_for(row.webhook_id))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "kenshin-webhooks",
            "X-Kenshin-Delivery": str(row.id),
            "X-Kenshin-Kind": row.kind,
            SIGNATURE_HEADER: sign(secret, body, int(now.timestamp())),
        }
        status: int | None = None
        try:
            check_target(row.url, allow_private=allow_private)
            status = post(row.url, body, headers)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except (httpx.HTTPError, OSError, ValueError) as err:
            error = f"{type(err).__name__}: {err}"[:500]
        attempts = row.attempts + 1
        with engine.begin() as conn:
            if error is None:
                values = {"state": "delivered", "delivered_at": now, "last_error": None}
                delivered += 1
                queue.pop(0)
            else:
                held.add(row.webhook_id)
                state, next_attempt = after_failure(attempts, now, BACKOFF)
                values = {"state": state, "last_error": error, "next_attempt_at": next_attempt}
                if state == "dead":
                    _dead(conn, row, error, now)
                    queue.pop(0)
                    held.discard(row.webhook_id)  # a dead one no longer holds the rest
            conn.execute(
                update(s.webhook_deliveries)
                .where(d.id == row.id)
                .values(attempts=attempts, last_status=status, **values)
            )
    return delivered


def _dead(conn: Connection, row, error: str, now: datetime) -> None:
    # Not through record_event: an event about a dead delivery must not itself be queued
    # for the same (failing) webhook, over and over.
    conn.execute(
        insert(s.events).values(
            tenant_id=row.tenant_id,
            code="webhook_delivery_dead",
            severity="error",
            detail={"delivery_id": row.id, "webhook_id": row.webhook_id, "error": error},
            at=now,
        )
    )
    log.warning("webhook delivery %s given up after %d tries: %s", row.id, row.attempts + 1, error)
