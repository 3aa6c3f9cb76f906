"""From the outbox to the tenant's server: deliveries made, sent, retried, logged.

1. `collect` turns outbox rows into deliveries in one transaction: a tenant's slot values
   of one half hour become one "slot.closed" delivery per subscribed hook (every meter's
   value in it), each event one "event" delivery; the rows are then deleted. A half hour's
   values are taken once they stopped coming for `SLOT_QUIET` (the gateways report a
   closed slot within a minute or two of each other), or after `SLOT_MAX_WAIT` at most.
   On PostgreSQL the rows are taken with SKIP LOCKED, so several servers share the work.
2. `Dispatcher` POSTs the deliveries whose time has come, signed (signing.py), one worker
   thread per hook (at most `concurrency` at once) so that a slow or dead receiver holds up
   only itself. Any 2xx is success; anything else (an error status, a refused connection,
   a timeout) is tried again after 30 s, 2 min, 10 min, 1 h, 6 h and 12 h, then the
   delivery is dead and an event says so. Every attempt's status or error is kept.
   A hook's deliveries go in the order they were made: only its oldest pending delivery
   is ever sent, so while it waits for a retry the later ones wait behind it (a receiver
   that was down gets the half hours in order). A delivery that has waited longer than
   the whole schedule (`GIVE_UP_AFTER`) is given up at its first failure, so a receiver
   that is gone for good leaves a backlog of at most about a day.
   Before sending, a worker claims the delivery by moving its `next_attempt_at` a lease
   ahead (compare-and-set), so two servers never send the same delivery at once; a server
   that dies mid-send leaves it to be sent again when the lease runs out (receivers
   deduplicate on the delivery id).
"""

from __future__ import annotations

import functools
import json
import logging
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, Row, delete, func, insert, or_, select, update

from .. import schema_base
from ..chunked import delete_before
from ..devices.queries import service_codes
from ..events import record_event
from ..retry import after_failure
from ..security import CredentialBox, CredentialError
from . import tables as t
from .signing import SIGNATURE_HEADER, sign
from .targets import Target, UnsafeTarget, resolve_target

__all__ = [
    "BACKOFF",
    "GIVE_UP_AFTER",
    "Dispatcher",
    "collect",
    "due_hooks",
    "http_post",
    "http_poster",
    "sealed_for",
    "trim_webhook_tables",
]

log = logging.getLogger(__name__)

BACKOFF = (
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(hours=12),
)
GIVE_UP_AFTER = sum(BACKOFF, timedelta())  # about 19 h
TIMEOUT_S = 10.0
LEASE = timedelta(seconds=60)  # well past TIMEOUT_S: a claim outlives its request
DRAIN_S = 20.0  # a worker then hands its hook back, so a busy hook cannot hog a worker
OUTBOX_BATCH = 5000
SLOT_QUIET = timedelta(seconds=60)
SLOT_MAX_WAIT = timedelta(minutes=5)


def sealed_for(hook_id: int) -> bytes:
    """The associated data a hook's secret is sealed with: it opens for this hook only."""
    return f"webhook:{hook_id}".encode()


# -- 1. collect ---------------------------------------------------------------------------------


def _take(conn: Connection, kind: str) -> list[Row]:
    o = t.outbox.c
    query = select(t.outbox).where(o.kind == kind).order_by(o.id).limit(OUTBOX_BATCH)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(conn.execute(query))


def collect(conn: Connection, now: datetime | None = None) -> int:
    """Outbox rows into deliveries; returns how many deliveries were made."""
    now = now or schema_base.utcnow()
    events = _take(conn, "event")
    groups: dict[tuple[int, str], list[Row]] = defaultdict(list)
    for row in _take(conn, "slot"):
        groups[(row.tenant_id, row.body["slot_start"])].append(row)
    settled = {
        key: rows
        for key, rows in groups.items()
        if max(r.at for r in rows) <= now - SLOT_QUIET
        or min(r.at for r in rows) <= now - SLOT_MAX_WAIT
    }
    wanted = [row.id for row in events] + [row.id for rows in settled.values() for row in rows]
    if not wanted:
        return 0
    # Deleted first, and only what this transaction really deleted is delivered: on SQLite,
    # where nothing is locked while read, a second collector cannot deliver rows twice.
    o = t.outbox.c
    taken = set(conn.execute(delete(t.outbox).where(o.id.in_(wanted)).returning(o.id)).scalars())
    events = [row for row in events if row.id in taken]
    settled = {key: [r for r in rows if r.id in taken] for key, rows in settled.items()}
    settled = {key: rows for key, rows in settled.items() if rows}
    payloads: list[tuple[int, str, dict[str, Any]]] = [
        (row.tenant_id, "event", {"kind": "event", **row.body}) for row in events
    ]
    codes = service_codes(conn, {r.body["meter_id"] for rows in settled.values() for r in rows})
    for (tenant_id, slot_start), rows in settled.items():
        latest = {(r.body["meter_id"], r.body["direction"]): r.body for r in rows}  # newest wins
        values = [
            {**v, "service_code": codes.get(v["meter_id"])} for _, v in sorted(latest.items())
        ]
        payloads.append(
            (
                tenant_id,
                "slot.closed",
                {"kind": "slot.closed", "slot_start": slot_start, "values": values},
            )
        )
    hooks: dict[int, list[Row]] = defaultdict(list)
    for hook in conn.execute(
        select(t.webhooks.c.id, t.webhooks.c.tenant_id, t.webhooks.c.kinds).where(
            t.webhooks.c.active.is_(True),
            t.webhooks.c.tenant_id.in_({tenant_id for tenant_id, _, _ in payloads}),
        )
    ):
        hooks[hook.tenant_id].append(hook)
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
        conn.execute(insert(t.webhook_deliveries), deliveries)
    return len(deliveries)


# -- 2. send --------------------------------------------------------------------------------------

Poster = Callable[[Target, bytes, dict[str, str]], int]


@functools.cache
def _system_trust() -> ssl.SSLContext:
    # Made once: loading the CA store costs tens of milliseconds, more than a delivery.
    return ssl.create_default_context()


def http_poster(verify: ssl.SSLContext | None = None) -> Poster:
    """A POST that returns the status. No redirects (a 3xx is a failure: it could lead
    anywhere) and no proxies from the environment (the target is already pinned);
    `verify`: the certificate authorities trusted (default: the system's)."""

    def post(target: Target, body: bytes, headers: dict[str, str]) -> int:
        # A client per request: pooled connections are keyed by address, and one made
        # for one hook's name must not carry another's requests.
        with httpx.Client(
            timeout=TIMEOUT_S,
            follow_redirects=False,
            trust_env=False,
            verify=verify or _system_trust(),
        ) as client:
            response = client.post(
                target.url,
                content=body,
                headers={**headers, **target.headers},
                extensions=target.extensions,
            )
            return response.status_code

    return post


http_post = http_poster()


def due_hooks(engine: Engine, now: datetime) -> list[int]:
    """Active hooks whose oldest pending delivery is due, oldest first."""
    d, w = t.webhook_deliveries.c, t.webhooks.c
    heads = (
        select(d.webhook_id, func.min(d.id).label("head_id"))
        .where(d.state == "pending")
        .group_by(d.webhook_id)
        .subquery()
    )
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(heads.c.webhook_id)
                .join(t.webhook_deliveries, d.id == heads.c.head_id)
                .join(t.webhooks, w.id == heads.c.webhook_id)
                .where(
                    w.active.is_(True),
                    or_(d.next_attempt_at.is_(None), d.next_attempt_at <= now),
                )
                .order_by(heads.c.head_id)
            ).scalars()
        )


class Dispatcher:
    """Sends due deliveries, a worker thread per hook, at most `concurrency` at once.

    Called as the periodic job, ``dispatcher(engine, now)`` collects the outbox, starts
    workers for the hooks with something due that have none running, and returns without
    waiting: one future per worker started, each giving how many it delivered. `clock`
    times the attempts (tests pass their own)."""

    def __init__(
        self,
        box: CredentialBox,
        *,
        allow_private: bool,
        concurrency: int = 8,
        clock: Callable[[], datetime] = schema_base.utcnow,
        post: Poster = http_post,
    ) -> None:
        self.box, self.allow_private, self.clock, self.post = box, allow_private, clock, post
        self._slots = threading.BoundedSemaphore(concurrency)
        self._busy: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, engine: Engine, now: datetime) -> list[Future[int]]:
        with engine.begin() as conn:
            collect(conn, now)
        return self.send_due(engine, now)

    def send_due(self, engine: Engine, now: datetime) -> list[Future[int]]:
        started = []
        for hook_id in due_hooks(engine, now):
            with self._lock:
                if hook_id in self._busy:
                    continue  # its worker is still at it
                if not self._slots.acquire(blocking=False):
                    break  # all workers busy: the rest next round
                self._busy.add(hook_id)
            future: Future[int] = Future()
            # Daemon threads: a shutdown must not wait for a slow receiver; a delivery cut
            # off mid-send is sent again when its lease runs out.
            threading.Thread(
                target=self._drain, args=(engine, hook_id, future), daemon=True,
                name=f"webhook-{hook_id}",
            ).start()  # fmt: skip
            started.append(future)
        return started

    def _drain(self, engine: Engine, hook_id: int, future: Future[int]) -> None:
        """Send the hook's deliveries in order until one fails, none is due, or DRAIN_S."""
        delivered = 0
        try:
            deadline = time.monotonic() + DRAIN_S
            while time.monotonic() < deadline:
                outcome = self._send_head(engine, hook_id)
                if outcome == "delivered":
                    delivered += 1
                elif outcome != "dead":  # None (nothing due, or another server's) or a retry
                    break
            future.set_result(delivered)
        except Exception as err:  # a database outage: logged, the next round tries again
            log.exception("webhook %s: sending failed", hook_id)
            future.set_exception(err)
        finally:
            with self._lock:
                self._busy.discard(hook_id)
            self._slots.release()

    def _send_head(self, engine: Engine, hook_id: int) -> str | None:
        """Claim, send and record the hook's oldest pending delivery if it is due; the
        delivery's new state, or None if there was nothing to send."""
        d, w = t.webhook_deliveries.c, t.webhooks.c
        now = self.clock()
        with engine.begin() as conn:
            head = conn.execute(
                select(t.webhook_deliveries, w.url, w.secret_enc, w.active)
                .join(t.webhooks, w.id == d.webhook_id)
                .where(d.webhook_id == hook_id, d.state == "pending")
                .order_by(d.id)
                .limit(1)
            ).first()
            due = or_(d.next_attempt_at.is_(None), d.next_attempt_at <= now)
            if head is None or not head.active:
                return None
            claimed = conn.execute(
                update(t.webhook_deliveries)
                .where(d.id == head.id, d.state == "pending", due)
                .values(next_attempt_at=now + LEASE)
            ).rowcount
            if not claimed:
                return None  # not due yet, or another server took it
        status, error = self._post(head)
        now = self.clock()
        attempts = head.attempts + 1
        if error is None:
            values: dict[str, Any] = {"state": "delivered", "delivered_at": now, "last_error": None}
        else:
            state, next_attempt = after_failure(attempts, now, BACKOFF)
            if now - head.created_at >= GIVE_UP_AFTER:  # waited behind others long enough
                state, next_attempt = "dead", None
            values = {"state": state, "last_error": error, "next_attempt_at": next_attempt}
        with engine.begin() as conn:
            conn.execute(
                update(t.webhook_deliveries)
                .where(d.id == head.id)
                .values(attempts=attempts, last_status=status, **values)
            )
            if values["state"] == "dead":
                _dead(conn, head, attempts, error or "", now)
        return values["state"]

    def _post(self, head: Row) -> tuple[int | None, str | None]:
        """(HTTP status, error) of one attempt; error None when it was delivered."""
        body = json.dumps(
            {"delivery_id": head.id, "tenant_id": head.tenant_id, **head.payload},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        try:
            secret = self.box.open(head.secret_enc, sealed_for(head.webhook_id))
            target = resolve_target(head.url, allow_private=self.allow_private)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "kenshin-webhooks",
                "X-Kenshin-Delivery": str(head.id),
                "X-Kenshin-Kind": head.kind,
                # Wall-clock time, whatever the dispatcher's clock: the receiver checks it.
                SIGNATURE_HEADER: sign(secret, body),
            }
            status = self.post(target, body, headers)
        except (UnsafeTarget, CredentialError) as err:
            return None, f"refused: {err}"[:500]
        except (httpx.HTTPError, OSError) as err:
            return None, f"{type(err).__name__}: {err}"[:500]
        return status, None if 200 <= status < 300 else f"HTTP {status}"


def _dead(conn: Connection, head: Row, attempts: int, error: str, now: datetime) -> None:
    # Not webhooked: an event about a dead delivery must not itself be queued for the
    # same (failing) webhook, over and over.
    record_event(
        conn,
        tenant_id=head.tenant_id,
        code="webhook_delivery_dead",
        severity="error",
        detail={"delivery_id": head.id, "webhook_id": head.webhook_id, "error": error},
        at=now,
        webhooked=False,
    )
    log.warning("webhook delivery %s given up after %d tries: %s", head.id, attempts, error)


def trim_webhook_tables(
    engine: Engine, now: datetime, *, outbox_keep: timedelta, log_keep: timedelta
) -> dict[str, int]:
    """Outbox rows older than `outbox_keep` (no dispatcher took them: none runs, or the
    tenant's webhooks went since) and finished deliveries (delivered or dead) created
    before `log_keep` are deleted. Run by the retention job on every node, whether or not
    it runs the dispatcher: the outbox would otherwise grow without end on a node whose
    dispatcher is off."""
    finished = t.webhook_deliveries.c.state.in_(("delivered", "dead"))
    return {
        "outbox": delete_before(engine, t.outbox, "at", now - outbox_keep),
        "webhook_deliveries": delete_before(
            engine, t.webhook_deliveries, "created_at", now - log_keep, finished
        ),
    }
